"""Backends that fail on purpose, once, at a chosen step of a chord.

Workers load them by class path: ``result_backend = "tests.support.faulty:KillingBackend+gcs://..."``.
Each fault happens once per marker file, created exclusively in a directory the
test names, so a replayed step goes through.

* ``KillingBackend`` SIGKILLs its own process (the pool child, or the whole
  worker under threads or gevent) at the step ``CELERY_GCS_KILL_AT`` names
  (before_count, after_count, after_claim, after_publish), ``CELERY_GCS_KILLS`` times (default
  one), leaving its markers in ``CELERY_GCS_KILL_DIR``. With ``CELERY_GCS_KILL_GATED``
  set it waits first for a file ``go`` there: the test opens the gate once the
  broker has handed over every message (see ``_wait_for_the_gate``).
* ``SlowPublishBackend`` sleeps ``CELERY_GCS_PUBLISH_DELAY`` seconds between
  renewing its claim and publishing, as a holder held up by a broker failover.
* ``FailingCleanupBackend`` fails to mark its chord done once, as when Firestore
  fails right after the callback was published; its marker goes in ``CELERY_GCS_FAIL_DIR``.
"""

from __future__ import annotations

import os
import signal
import time

from celery_gcs.backend import GCSBackend
from celery_gcs.chords import ChordCoordinator, Part
from celery_gcs.errors import TransientError
from celery_gcs.stored_results import StoredResults


def _first_time(directory: str, marker: str) -> bool:
    """Create ``marker`` in ``directory``, holding this pid; False if it already exists."""
    try:
        fd = os.open(os.path.join(directory, marker), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def _wait_for_the_gate(directory: str) -> None:
    """Hold the kill until the test says so (at most a minute).

    Redis's transport pops a message before it records it as unacknowledged
    (kombu issue 305): a worker SIGKILLed in between loses that message for
    good, and the chord waits for a part nobody will run. A test that means to
    kill a worker after the broker handed it every message opens the gate then.
    """
    gate = os.path.join(directory, "go")
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)


def _maybe_die(step: str) -> None:
    if os.environ.get("CELERY_GCS_KILL_AT") != step:
        return
    directory = os.environ["CELERY_GCS_KILL_DIR"]
    if os.environ.get("CELERY_GCS_KILL_GATED"):
        _wait_for_the_gate(directory)
    for slot in range(int(os.environ.get("CELERY_GCS_KILLS", "1"))):
        if _first_time(directory, f"kill-{slot}"):
            os.kill(os.getpid(), signal.SIGKILL)


class KillingCoordinator(ChordCoordinator):
    def before_count(self, part: Part) -> None:
        _maybe_die("before_count")

    def after_count(self, part: Part) -> None:
        _maybe_die("after_count")

    def after_claim(self, part: Part) -> None:
        _maybe_die("after_claim")

    def after_publish(self, part: Part) -> None:
        _maybe_die("after_publish")


class KillingBackend(GCSBackend):
    coordinator_class = KillingCoordinator


class SlowPublishCoordinator(ChordCoordinator):
    def before_publish(self, part: Part) -> None:
        time.sleep(float(os.environ.get("CELERY_GCS_PUBLISH_DELAY", "0")))


class SlowPublishBackend(GCSBackend):
    coordinator_class = SlowPublishCoordinator


class FailingCleanupCoordinator(ChordCoordinator):
    def __init__(self, backend: GCSBackend, results: StoredResults) -> None:
        super().__init__(backend, results)
        end = self.store.end

        def end_failing_once(key: str, token: str) -> bool:
            if _first_time(os.environ["CELERY_GCS_FAIL_DIR"], "failed"):
                raise TransientError(
                    "ending a chord in Firestore database (default): injected by the test"
                )
            return end(key, token)

        self.store.end = end_failing_once  # type: ignore[method-assign]


class FailingCleanupBackend(GCSBackend):
    coordinator_class = FailingCleanupCoordinator
