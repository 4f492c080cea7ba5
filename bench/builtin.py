"""Celery's built-in ``gs://`` backend, made to start on the emulators.

Its constructor asks the Firestore Admin API whether a TTL policy is enabled
on the ``celery`` collection's ``expires_at`` field. The Firestore emulator
has no Admin API, so that one check is skipped; everything else is Celery's
code, unchanged. Select it with
``bench.builtin:BuiltinGCSBackend+gs://BUCKET/PREFIX?gcs_project=PROJECT``.
"""

from __future__ import annotations

from celery.backends.gcs import GCSBackend

#: Said in the benchmark's output, next to the built-in backend's numbers.
NOTE = (
    "Celery's built-in gs:// backend (celery.backends.gcs.GCSBackend) with one change: "
    "its start-up check of the Firestore Admin API (_is_firestore_ttl_policy_enabled) "
    "is skipped, because the Firestore emulator has no Admin API."
)


class BuiltinGCSBackend(GCSBackend):
    """The built-in backend without its start-up Admin API call."""

    def _is_firestore_ttl_policy_enabled(self) -> bool:
        return True
