"""Worker metrics scraped over HTTP from real `celery worker` processes, after a known workload.

The counts are asserted against what ran, and the backend's requests against
what the proxy in front of each emulator saw (every process's calls pass it).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest
from celery import chord
from celery_gcs.local.processes import free_port
from celery_gcs.telemetry import names

from ..support import tasks
from ..support.chords import callback_runs, chord_store_on, open_chord, sig
from ..support.metrics import scrape, total

pytestmark = pytest.mark.usefixtures("stack")

ADDS, PARTS = 6, 4


def run_workload(app: Any) -> None:
    """ADDS adds, a chord of PARTS adds into tsum, a failing task, a task retried once."""
    assert [r.get(timeout=30) for r in [app.send_task(tasks.add.name, (n, n)) for n in range(ADDS)]] == [
        2 * n for n in range(ADDS)
    ]
    result = chord([sig(app, tasks.add, n, 1) for n in range(PARTS)])(sig(app, tasks.collect))
    assert result.get(timeout=60) == [n + 1 for n in range(PARTS)]
    assert callback_runs(app, result) == 1
    with pytest.raises(ValueError, match="metrics"):
        app.send_task(tasks.fail.name, ("metrics",)).get(timeout=30)
    key = f"retry-{uuid.uuid4().hex}"
    assert app.send_task(tasks.retry_once.name, (key,)).get(timeout=30) == key


def after_every_run(port: int, ran: Counter, seconds: float = 30.0) -> dict:
    """A scrape once every run in ``ran`` (runs by task name) has ended, within ``seconds``.

    A client can see a result before the run's process is done with it: a
    retried task's first run published the retry before it stored RETRY, and
    each run counts its end (signals, run time) after its result is stored.
    """
    deadline = time.monotonic() + seconds
    while True:
        samples = scrape(port)
        ended = all(
            total(samples, "celery_task_runtime_seconds_count", task=task) >= runs for task, runs in ran.items()
        )
        if ended or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


@pytest.mark.parametrize("pool", ["prefork", "threads", "gevent"])
def test_a_workload_is_counted_as_it_ran(app, start_worker, stack, pool) -> None:
    port = free_port()
    start_worker(
        concurrency=2,
        pool=pool,
        env={names.PORT_ENV: str(port), names.ADDRESS_ENV: "127.0.0.1"},
        include=[names.MODULE],
    )
    before_gcs, before_firestore = stack.gcs.snapshot(), stack.firestore.snapshot()
    run_workload(app)
    open_chord(chord_store_on(stack), 2)  # a chord whose parts never return
    ran = Counter({tasks.add.name: ADDS + PARTS, tasks.collect.name: 1, tasks.fail.name: 1, tasks.retry_once.name: 2})
    samples = after_every_run(port, ran)

    def count(metric: names.Metric, **labels: str) -> float:
        return total(samples, str(metric), **labels)

    for task, runs in ran.items():
        assert count(names.TASKS_RECEIVED, task=task) == runs, task
        assert count(names.TASKS_STARTED, task=task) == runs, task
        assert total(samples, "celery_task_runtime_seconds_count", task=task) == runs, task
    assert count(names.TASKS_SUCCEEDED, task=tasks.add.name) == ADDS + PARTS
    assert count(names.TASKS_SUCCEEDED, task=tasks.retry_once.name) == 1
    assert count(names.TASKS_FAILED, task=tasks.fail.name) == 1
    assert count(names.TASKS_FAILED) == 1
    assert count(names.TASKS_RETRIED, task=tasks.retry_once.name) == 1
    assert count(names.TASKS_RETRIED) == 1

    assert count(names.CHORD_PARTS_COUNTED) == PARTS
    assert count(names.CHORD_CALLBACKS_PUBLISHED) == 1
    assert count(names.CHORD_CLAIMS, event="taken") == 1
    assert count(names.CHORD_CLAIMS, event="renewed") >= 1
    assert count(names.CHORD_CLAIMS, event="lost") == 0
    assert count(names.CHORDS_FAILED) == 0
    # Read from Firestore at the scrape (under prefork by the process the main one spawned for it):
    # the workload's chord ended, the other did not.
    assert count(names.CHORDS_OPEN) == 1
    assert 0 <= count(names.CHORD_OLDEST_OPEN_AGE) < 60

    # Each run stored one state in one GCS write, and the chord's holder its record that the callback
    # went out; the client wrote one more, the chord's GroupResult.
    # retry_once's two runs race: the first stores RETRY after publishing its retry, so the second
    # may store its SUCCESS first. A run in another process than the one that wrote last has its
    # create refused (the object is there): the SUCCESS is then written over the RETRY, or the
    # RETRY is not written over the SUCCESS, one state fewer.
    gcs = Counter(stack.gcs.snapshot()) - Counter(before_gcs)
    refused = count(names.BACKEND_REQUESTS, kind="gcs.write", outcome="refused")
    assert refused in (0, 1)
    writes = sum(ran.values()) + 1
    assert count(names.BACKEND_REQUESTS, kind="gcs.write", outcome="ok") in (writes, writes - refused)
    assert count(names.BACKEND_REQUESTS, kind="gcs.write") == gcs["object.write"] - 1
    assert total(samples, "celery_gcs_backend_request_seconds_count", kind="gcs.write") == count(
        names.BACKEND_REQUESTS, kind="gcs.write"
    )
    assert count(names.BACKEND_REQUESTS, kind="firestore.commit", outcome="ok") >= PARTS
    assert count(names.BACKEND_REQUESTS, kind="firestore.transaction", outcome="ok") >= 3  # settle, renew, end
    assert count(names.BACKEND_REQUESTS, outcome="error") == 0
    assert count(names.BACKEND_ERRORS) == 0
    assert (Counter(stack.firestore.snapshot()) - Counter(before_firestore))["firestore.Commit"] >= PARTS

