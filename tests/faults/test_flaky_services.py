"""One request in ten fails, on GCS and on Firestore: nothing is lost, nothing runs twice.

Both proxies stay faulty for the whole run, for the workers and for the
client reading results: GCS answers 429 or 503, resets connections, or serves
a request and loses its answer; Firestore resets connections before calls
reach it, or after serving them (the answer lost). The gRPC client reconnects
and retries, GCS writes are create-only or generation-matched, a part counted
twice finds its document, and a claim already ours is ours.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery import chord, states
from celery.result import ResultSet

from ..support import tasks
from ..support.chords import callback_runs, settle, sig

pytestmark = pytest.mark.usefixtures("stack")

#: Of every 100 GCS requests: 5 answered 429 or 503, 2.5 reset unanswered,
#: 2.5 served but their answer lost. Of every 100 Firestore calls: 5 reset
#: before they arrive, 5 served and their answer lost.
GCS_FAULTS = {"error_rate": 0.05, "statuses": (429, 503), "reset_rate": 0.025, "lost_response_rate": 0.025}
FIRESTORE_FAULTS = {"reset_rate": 0.05, "lost_response_rate": 0.05}


def make_flaky(stack: Any) -> None:
    for proxy, faults in ((stack.gcs, GCS_FAULTS), (stack.firestore, FIRESTORE_FAULTS)):
        for name, value in faults.items():
            setattr(proxy.faults, name, value)


def run_workload(app, start_worker, stack, *, singles: int, chords: int, size: int, timeout: float) -> None:
    start_worker(concurrency=2, task_acks_late=True, task_reject_on_worker_lost=True)
    make_flaky(stack)
    started = time.monotonic()
    single = [sig(app, tasks.add, n, 1).apply_async() for n in range(singles)]
    chorded = [
        chord(sig(app, tasks.mul, n, c) for n in range(size))(sig(app, tasks.collect)) for c in range(chords)
    ]
    # The chords were queued last: once they are done, so are the single tasks,
    # which are then read in one pass rather than polled a thousand at a time.
    for c, result in enumerate(chorded):
        assert result.get(timeout=max(1.0, timeout - (time.monotonic() - started))) == [n * c for n in range(size)]
    assert ResultSet(single, app=app).join_native(timeout=60, interval=2) == [n + 1 for n in range(singles)]
    injected = {"gcs": stack.gcs.injected_snapshot(), "firestore": stack.firestore.injected_snapshot()}
    stack.gcs.faults.clear()
    stack.firestore.faults.clear()
    settle()
    assert [callback_runs(app, result) for result in chorded] == [1] * chords
    # Every result is stored and readable, read afresh from GCS.
    reader = app.backend
    parts = [part for result in chorded for part in result.parent.results]
    stored = {
        task_id: meta for task_id, meta in reader.get_many([r.id for r in [*single, *parts, *chorded]], timeout=60)
    }
    assert all(meta["status"] == states.SUCCESS for meta in stored.values())
    assert [stored[r.id]["result"] for r in single] == [n + 1 for n in range(singles)]
    assert [stored[r.id]["result"] for r in parts] == [n * c for c in range(chords) for n in range(size)]
    # The faults really happened, of every kind, on both services.
    assert {"status.429", "status.503", "reset", "lost_response"} <= set(injected["gcs"]), injected
    assert {"reset", "lost_response"} <= set(injected["firestore"]), injected


def test_one_request_in_ten_failing_loses_nothing(app, start_worker, stack) -> None:
    run_workload(app, start_worker, stack, singles=100, chords=3, size=20, timeout=300)


@pytest.mark.slow
def test_a_thousand_tasks_and_twenty_chords_of_a_hundred_with_one_request_in_ten_failing(
    app, start_worker, stack
) -> None:
    run_workload(app, start_worker, stack, singles=1000, chords=20, size=100, timeout=1200)
