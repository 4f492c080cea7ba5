"""The Pulumi program that deploys celery-gcs on Google Cloud.

``infra/__main__.py`` is the program ``pulumi up`` runs; ``infra.components``
holds the components, with :class:`infra.components.CeleryStack` as the one a
team's own Pulumi program can import; ``infra.settings`` turns stack config
into validated arguments.
"""
