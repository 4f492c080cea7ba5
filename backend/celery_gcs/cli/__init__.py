"""The ``celery-gcs`` command: one module per subcommand, each with its own options.

Needs the ``cli`` extra (``pip install 'celery-gcs[cli]'``); ``main`` is the entry point.
"""
