"""Telemetry for workers: metrics (the ``metrics`` extra) and traces (the ``otel`` extra).

``names`` is the one list of what is exported (pure; the Pulumi dashboard and
alerts read it); ``metrics`` and ``traces`` register observers with
``celery_gcs.observe`` when a worker imports them. The runtime imports
nothing from here.
"""
