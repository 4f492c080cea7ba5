"""A storage client for tests to look at or change the bucket directly, beside the code under test."""

from __future__ import annotations

from celery_gcs.stores.result_store import without_bucket_reads
from google.cloud import storage


def client(project: str | None = None) -> storage.Client:
    """A plain client on ``STORAGE_EMULATOR_HOST`` that makes only the requests a test asks for.

    A stock client also GETs the bucket in a background thread
    (``without_bucket_reads``): through a counting proxy, that request can
    land after a test reset its counts, and be counted as the code under
    test's (``tests/cli/test_results.py``'s purge test, once under load).
    """
    return without_bucket_reads(storage.Client(project=project))
