"""The ``celery-gcs`` command: one module per subcommand, each with its own options.

Needs the ``cli`` extra (``pip install './celery-gcs[cli]'`` from a checkout); ``main`` is the entry point.
"""
