"""A backend whose chord clean-up fails once, as when Firestore fails right after the callback was published.

Workers load it through ``result_backend = "tests.faults.faulty:FailingCleanupBackend+gcs://..."``.
``CELERY_GCS_FAIL_DIR`` is a directory where the one failure leaves a marker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from celery_gcs.backend import GCSBackend
from celery_gcs.chords import ChordCoordinator
from celery_gcs.errors import TransientError


def _first_time() -> bool:
    try:
        fd = os.open(os.path.join(os.environ["CELERY_GCS_FAIL_DIR"], "failed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


class FailingCleanupCoordinator(ChordCoordinator):
    def __init__(self, backend: GCSBackend) -> None:
        super().__init__(backend)
        finish = self.store.finish

        def finish_failing_once(key: str, parts: Iterable[str]) -> None:
            if _first_time():
                raise TransientError("deleting a chord in Firestore database (default): injected by the test")
            finish(key, parts)

        self.store.finish = finish_failing_once  # type: ignore[method-assign]


class FailingCleanupBackend(GCSBackend):
    coordinator_class = FailingCleanupCoordinator
