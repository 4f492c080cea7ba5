"""celery-gcs: a Celery result backend on Google Cloud Storage and Firestore."""
