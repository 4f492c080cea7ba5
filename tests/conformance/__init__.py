"""Celery's own integration suite (``t/integration`` from the locked celery sdist) against ``gcs://``."""
