"""A backend that SIGKILLs its own pool child at a chosen step of a chord part's return.

Workers load it through ``result_backend = "tests.e2e.faulty:KillingBackend+gcs://..."``.
``CELERY_GCS_KILL_AT`` names the step (before_count, after_count, after_claim) and
``CELERY_GCS_KILL_DIR`` a directory where each kill leaves a marker, so each of
the ``CELERY_GCS_KILLS`` kills happens once and the replayed return goes through.
"""

from __future__ import annotations

import os
import signal

from celery_gcs.backend import GCSBackend
from celery_gcs.chords import ChordCoordinator, Part


def _maybe_die(step: str) -> None:
    if os.environ.get("CELERY_GCS_KILL_AT") != step:
        return
    directory = os.environ["CELERY_GCS_KILL_DIR"]
    for slot in range(int(os.environ.get("CELERY_GCS_KILLS", "1"))):
        try:
            fd = os.open(os.path.join(directory, f"kill-{slot}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


class KillingCoordinator(ChordCoordinator):
    def before_count(self, part: Part) -> None:
        _maybe_die("before_count")

    def after_count(self, part: Part) -> None:
        _maybe_die("after_count")

    def after_claim(self, part: Part) -> None:
        _maybe_die("after_claim")


class KillingBackend(GCSBackend):
    coordinator_class = KillingCoordinator
