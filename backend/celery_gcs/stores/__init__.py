"""Small adapters between the Celery-facing backend and Google's clients.

Each adapter owns one service (GCS objects, Firestore chord documents),
creates its client lazily per process, and translates google-api-core
errors into ``celery_gcs.errors`` at its boundary.
"""
