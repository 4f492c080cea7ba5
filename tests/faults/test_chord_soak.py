"""Chords in a row under a mixed fault rate on both services: each ends exactly once, never silently.

Issue 26's soak. Both proxies stay faulty for the whole run: GCS answers 429
or 503, resets connections, loses answers it served, and stalls single calls
for 1-30 s; Firestore resets calls, loses answers and stalls single calls. The
results expire sooner than the run lasts, so refreshes happen under faults
too. Each chord, applied after the one before has ended, must end exactly
once: its callback runs once, or its errback is called once with a
ChordError; and within a bound, never silently left open.

In CI (``make test-chords``) the run is small: SOAK_CHORDS chords of
SOAK_SIZE parts per pool (default 3 of 100). The issue's soak is
``SOAK_CHORDS=50 SOAK_SIZE=1000 make test-chords`` (hours on a laptop).
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from celery import chord

from ..support import tasks
from ..support.chords import callback_runs, errbacks, settle, sig

pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.soak]

CHORDS = int(os.environ.get("SOAK_CHORDS", "3"))
SIZE = int(os.environ.get("SOAK_SIZE", "100"))
#: Of every 100 GCS requests: 2 answered 429 or 503, 1 reset unanswered, 1 served and its answer lost,
#: 1 in 200 answered 1-30 s late. Of every 100 Firestore calls: 2 reset, 2 served and their answer lost,
#: 1 in 100 answered 1-30 s late.
GCS_FAULTS = {
    "error_rate": 0.02, "statuses": (429, 503), "reset_rate": 0.01, "lost_response_rate": 0.01,
    "stall_rate": 0.005, "stall_seconds": (1.0, 30.0),
}  # fmt: skip
FIRESTORE_FAULTS = {"reset_rate": 0.02, "lost_response_rate": 0.02, "stall_rate": 0.01, "stall_seconds": (1.0, 30.0)}
#: Seconds a chord may take to end under these faults before it counts as silently left open.
ENDS_WITHIN = 240.0


def make_faulty(stack: Any) -> None:
    for proxy, faults in ((stack.gcs, GCS_FAULTS), (stack.firestore, FIRESTORE_FAULTS)):
        for name, value in faults.items():
            setattr(proxy.faults, name, value)


def outcomes(app: Any, result: Any) -> tuple[int, list[str]]:
    return callback_runs(app, result), errbacks(app, result)


@pytest.mark.parametrize(("pool", "concurrency"), [("prefork", 4), ("threads", 8)])
def test_chords_in_a_row_under_mixed_faults_each_end_exactly_once(app, start_worker, stack, pool, concurrency) -> None:
    worker = start_worker(
        pool=pool,
        concurrency=concurrency,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        result_expires=20,  # shorter than the run: the chords' expiry is refreshed under faults
    )
    make_faulty(stack)
    applied: list[Any] = []
    for c in range(CHORDS):
        callback = sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error))
        result = chord(sig(app, tasks.mul, n, c) for n in range(SIZE))(callback)
        deadline = time.monotonic() + ENDS_WITHIN
        while outcomes(app, result) == (0, []):
            assert time.monotonic() < deadline, f"chord {c} of {CHORDS} neither called back nor failed:\n" + "\n".join(
                line for line in worker.log().splitlines() if " WARNING/" in line or " ERROR/" in line
            )[-6000:]
            time.sleep(0.5)
        applied.append(result)
    injected = {"gcs": stack.gcs.injected_snapshot(), "firestore": stack.firestore.injected_snapshot()}
    stack.gcs.faults.clear()
    stack.firestore.faults.clear()
    settle(3)
    # Exactly once each: one callback run and no errback, or no run and one ChordError.
    ended = [outcomes(app, result) for result in applied]
    for runs, failures in ended:
        assert (runs, len(failures)) in ((1, 0), (0, 1)), ended
        assert all("ChordError" in failure for failure in failures), failures
    # The faults really happened, of every kind, on both services.
    assert {"reset", "lost_response", "delay.response"} <= set(injected["gcs"]), injected
    assert {"reset", "lost_response", "delay.response"} <= set(injected["firestore"]), injected
