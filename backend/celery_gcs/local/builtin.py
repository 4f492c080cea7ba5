"""Celery's built-in ``gs://`` backend, made to start on the emulators, to compare it with ``gcs://`` locally.

Its constructor asks the Firestore Admin API whether a TTL policy is enabled
on the ``celery`` collection's ``expires_at`` field. The Firestore emulator
has no Admin API, so that one check is skipped; everything else is Celery's
code, unchanged. Select it with
``celery_gcs.local.builtin:BuiltinGCSBackend+gs://BUCKET/PREFIX?gcs_project=PROJECT``
(``celery-gcs dev up --result-backend gs`` exports that URL for the local
stack); the benchmarks use it too.
"""

from __future__ import annotations

from celery.backends.gcs import GCSBackend

#: Said where its numbers or its URL are shown.
NOTE = (
    "Celery's built-in gs:// backend (celery.backends.gcs.GCSBackend) with one change: "
    "its start-up check of the Firestore Admin API (_is_firestore_ttl_policy_enabled) "
    "is skipped, because the Firestore emulator has no Admin API."
)


def url(bucket: str, project: str, prefix: str = "") -> str:
    """The result_backend URL that selects it, on ``bucket`` (under ``prefix``)."""
    path = f"/{prefix}" if prefix else ""
    return f"{__name__}:{BuiltinGCSBackend.__name__}+gs://{bucket}{path}?gcs_project={project}"


class BuiltinGCSBackend(GCSBackend):
    """The built-in backend without its start-up Admin API call."""

    def _is_firestore_ttl_policy_enabled(self) -> bool:
        return True
