"""A storage client for tests to look at or change the bucket directly, beside the code under test."""

from __future__ import annotations

import time

from celery_gcs.local.proxy import Proxy
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


def counts_once_background_reads_landed(proxy: Proxy, bucket: str, timeout: float = 30.0) -> dict[str, int]:
    """``proxy``'s counts once a stock client's background bucket GET, started now, has landed; that GET left out.

    For a test that the code before it made no such GET of its own: one
    started earlier would have landed by then too, however loaded the machine.
    """
    before = proxy.snapshot().get("bucket.read", 0)
    list(storage.Client().list_blobs(bucket, max_results=1))
    deadline = time.monotonic() + timeout
    while proxy.snapshot().get("bucket.read", 0) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    counts = proxy.snapshot()
    counts["object.list"] -= 1
    counts["bucket.read"] = counts.get("bucket.read", 0) - 1
    return {kind: n for kind, n in counts.items() if n}
