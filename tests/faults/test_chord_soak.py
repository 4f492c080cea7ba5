"""Chords in a row under a mixed fault rate on both services: each ends exactly once, never silently.

Issue 26's soak. Both proxies stay faulty for the whole run: GCS answers 429
or 503, resets connections, loses answers it served, and stalls single calls
for 1-30 s (SOAK_STALL_MAX); Firestore resets calls, loses answers and stalls single calls. The
results expire sooner than the run lasts, so refreshes happen under faults
too. Each chord, applied after the one before has ended, must end exactly
once: its callback runs once, or its errback is called once with a
ChordError; and within a bound, never silently left open.

SOAK_CHORDS chords of SOAK_SIZE parts per pool under prefork, threads and
gevent (``make test-soak``: 3 of 100; the issue's soak is ``SOAK_CHORDS=50
SOAK_SIZE=1000 SOAK_EXPIRES=90 SOAK_ENDS_WITHIN=420 make test-soak``, one
pool at a time with ``PYTEST_ARGS='-k prefork'``), and more, up to
SOAK_MORE, until every kind of fault has been met on both services: so a
small run cannot pass without the faults it is there to meet. CI's (``make
test-chords``) is one chord of 100 per pool, its stalls 1-12 s: still past
the claim's lease, the stalls that found this soak's defects.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from celery import chord

from ..support import tasks
from ..support.chords import callback_runs, errbacks, settle, sig

CHORDS = int(os.environ.get("SOAK_CHORDS", "3"))
SIZE = int(os.environ.get("SOAK_SIZE", "100"))
#: Chords applied past CHORDS at most, while some kind of fault has not been met yet.
MORE = int(os.environ.get("SOAK_MORE", "20"))
#: The longest stall of a single call, in seconds: keep it past the claim's lease (10 s).
STALL_MAX = float(os.environ.get("SOAK_STALL_MAX", "30"))
#: The workers' ``result_expires``: shorter than a run, so the chords' expiry is refreshed under faults.
#: Nothing refreshes a chord while none of its parts returns, so a chord of 1,000 reaches its callback
#: only if no gap between its parts' returns outlasts this (stalls, then retries, make gaps of 60 s and
#: more: SOAK_EXPIRES=90); under it the chord fails once, naming the setting.
EXPIRES = int(os.environ.get("SOAK_EXPIRES", "20"))
#: The applying client's ``result_expires``: Celery's default (a day) unless set, as most clients run,
#: so the workers refresh chords by their own lifetime. "workers" gives the client the workers' setting.
CLIENT_EXPIRES = os.environ.get("SOAK_CLIENT_EXPIRES", "")
#: Of every 100 GCS requests: 2 answered 429 or 503, 1 reset unanswered, 1 served and its answer lost,
#: 1 in 200 answered 1 to STALL_MAX s late. Of every 100 Firestore calls: 2 reset, 2 served and their
#: answer lost, 1 in 100 answered 1 to STALL_MAX s late.
GCS_FAULTS = {
    "error_rate": 0.02, "statuses": (429, 503), "reset_rate": 0.01, "lost_response_rate": 0.01,
    "stall_rate": 0.005, "stall_seconds": (1.0, STALL_MAX),
}  # fmt: skip
FIRESTORE_FAULTS = {"reset_rate": 0.02, "lost_response_rate": 0.02, "stall_rate": 0.01, "stall_seconds": (1.0, STALL_MAX)}
#: Seconds a chord may take to end under these faults before it counts as silently left open.
ENDS_WITHIN = float(os.environ.get("SOAK_ENDS_WITHIN", "240"))
#: Each chord is bounded by ENDS_WITHIN, not the whole run by the suite's 300 s (50 chords of 1,000 take hours).
pytestmark = [
    pytest.mark.usefixtures("stack"), pytest.mark.soak, pytest.mark.timeout((CHORDS + MORE) * ENDS_WITHIN + 300)
]  # fmt: skip
#: What the run must have met, on each service, before it may stop.
MET = {"gcs": {"reset", "lost_response", "delay.response"}, "firestore": {"reset", "lost_response", "delay.response"}}


def make_faulty(stack: Any) -> None:
    for proxy, faults in ((stack.gcs, GCS_FAULTS), (stack.firestore, FIRESTORE_FAULTS)):
        for name, value in faults.items():
            setattr(proxy.faults, name, value)


def outcomes(app: Any, result: Any) -> tuple[int, list[str]]:
    return callback_runs(app, result), errbacks(app, result)


def injected(stack: Any) -> dict[str, dict[str, int]]:
    return {"gcs": stack.gcs.injected_snapshot(), "firestore": stack.firestore.injected_snapshot()}


def all_met(found: dict[str, dict[str, int]]) -> bool:
    return all(kinds <= set(found[service]) for service, kinds in MET.items())


@pytest.mark.parametrize(("pool", "concurrency"), [("prefork", 4), ("threads", 8), ("gevent", 20)])
def test_chords_in_a_row_under_mixed_faults_each_end_exactly_once(app, start_worker, stack, pool, concurrency) -> None:
    worker = start_worker(
        pool=pool,
        concurrency=concurrency,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        result_expires=EXPIRES,
    )
    if CLIENT_EXPIRES:
        app.conf.result_expires = EXPIRES if CLIENT_EXPIRES == "workers" else int(CLIENT_EXPIRES)
    make_faulty(stack)
    applied: list[Any] = []
    while len(applied) < CHORDS or (len(applied) < CHORDS + MORE and not all_met(injected(stack))):
        c = len(applied)
        callback = sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error))
        result = chord(sig(app, tasks.mul, n, c) for n in range(SIZE))(callback)
        deadline = time.monotonic() + ENDS_WITHIN
        while outcomes(app, result) == (0, []):
            assert time.monotonic() < deadline, f"chord {c} ({CHORDS} wanted) neither called back nor failed:\n" + "\n".join(
                line for line in worker.log().splitlines() if " WARNING/" in line or " ERROR/" in line
            )[-6000:]
            time.sleep(0.5)
        applied.append(result)
    found = injected(stack)
    stack.gcs.faults.clear()
    stack.firestore.faults.clear()
    settle(3)
    # Exactly once each: one callback run and no errback, or no run and one ChordError.
    ended = [outcomes(app, result) for result in applied]
    print(f"soak {pool}: {len(applied)} chords of {SIZE}: {sum(runs for runs, _ in ended)} called back, "
          f"{sum(len(failures) for _, failures in ended)} failed once; faults met {found}")  # fmt: skip
    for runs, failures in ended:
        assert (runs, len(failures)) in ((1, 0), (0, 1)), ended
        assert all("ChordError" in failure for failure in failures), failures
    # The faults really happened, of every kind, on both services.
    assert all_met(found), (len(applied), found)
