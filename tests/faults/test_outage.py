"""GCS and Firestore down for longer than the retry deadline.

With ``result_backend_always_retry`` the store is retried with backoff
(``result_backend_max_retries``) and succeeds once the services are back;
without it, the task's failure to store is reported in the worker's log,
naming the object. Either way the worker process stays up and serves the next
task once the services are back.

The work is queued first and the worker started during the outage, so every
store meets it; the services come back once the worker's log shows the
failures (each after a full retry deadline).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery import chord, states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery_gcs import conventions, deadline
from celery_gcs.settings import parse
from celery_gcs.stores.chord_store import ChordStore

from ..support import tasks
from ..support.chords import callback_runs, settle, sig

pytestmark = pytest.mark.usefixtures("stack")

#: gcs_retry_deadline: how long each GCS or Firestore call is retried for.
DEADLINE = 1.0


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def down(stack: Any, *names: str) -> None:
    for name in names:
        getattr(stack, name).faults.down = True


def back(stack: Any, *names: str) -> None:
    for name in names:
        getattr(stack, name).faults.clear()


@pytest.mark.parametrize(
    "always_retry", [False, True], ids=["without-always-retry", "always-retry-runs-out"]
)
def test_a_store_failure_is_reported_naming_the_object_and_the_worker_carries_on(
    app, start_worker, stack, always_retry: bool
) -> None:
    lost = sig(app, tasks.add, 2, 2).apply_async()
    down(stack, "gcs")
    retries = {
        "result_backend_max_retries": 2,
        "result_backend_base_sleep_between_retries_ms": 100,
        "result_backend_max_sleep_between_retries_ms": 200,
    }
    worker = start_worker(
        gcs_retry_deadline=DEADLINE, result_backend_always_retry=always_retry, **(retries if always_retry else {})
    )
    name = f"gs://{stack.bucket}/{app.backend.settings.base_path}/celery-task-meta-{lost.id}"
    transient = f'TransientError("writing {name}: Timeout of {DEADLINE}s exceeded'
    if always_retry:
        stored, failed = (
            f"BackendStoreError('failed to store result on the backend') state:{state} task_id:{lost.id}"
            for state in (states.SUCCESS, states.FAILURE)
        )
    else:
        stored = failed = transient
    # The pool child reports that the result could not be stored; then the
    # worker's main process, that the failure this causes could not be either.
    wait_until(lambda: f"Pool callback raised exception: {failed}" in worker.log())
    log = worker.log()
    assert f"Exception raised outside body: {stored}" in log
    # The cause, in the traceback, however many retries it took.
    assert f"celery_gcs.errors.TransientError: writing {name}: Timeout of {DEADLINE}s exceeded" in log
    assert ("Retrying 1 more times" in log) is always_retry
    back(stack, "gcs")
    assert worker.process.poll() is None
    assert sig(app, tasks.add, 3, 3).apply_async().get(timeout=60) == 6
    # Neither the result nor the failure could be stored: the log is the record.
    assert lost.state == states.PENDING


def test_with_always_retry_results_and_chords_are_stored_once_the_services_are_back(
    app, start_worker, stack
) -> None:
    single = sig(app, tasks.add, 2, 2).apply_async()
    chorded = chord(sig(app, tasks.add, n, n) for n in range(4))(sig(app, tasks.collect))
    down(stack, "gcs", "firestore")
    worker = start_worker(
        gcs_retry_deadline=DEADLINE,
        result_backend_always_retry=True,
        result_backend_max_retries=1000,
        result_backend_base_sleep_between_retries_ms=100,
        result_backend_max_sleep_between_retries_ms=500,
    )
    retrying = "Failed operation _store_result. Retrying"
    # Each retry follows a call that failed for a whole deadline; both children retry.
    wait_until(lambda: worker.log().count(retrying) >= 6)
    back(stack, "gcs", "firestore")
    assert single.get(timeout=120) == 4
    assert chorded.get(timeout=120) == [0, 2, 4, 6]
    settle()
    assert callback_runs(app, chorded) == 1
    assert worker.process.poll() is None
    assert sig(app, tasks.add, 3, 3).apply_async().get(timeout=60) == 6
    assert stack.gcs.injected_snapshot()["down"] and stack.firestore.injected_snapshot()["down"]


def unreachable(stack: Any, fault: str) -> None:
    """GCS down (connections refused) or a blackhole (accepted, never answered)."""
    setattr(stack.gcs.faults, fault, True)
    stack.gcs.drop_connections()  # connections opened before the fault are gone too


@pytest.mark.parametrize("fault", ["down", "blackhole"])
@pytest.mark.parametrize("wait", ["get", "join_native"])
def test_the_callers_timeout_bounds_a_wait_on_an_unreachable_gcs(app, stack, fault: str, wait: str) -> None:
    """get(timeout=2) raises Celery's TimeoutError within 5 s, though a request is retried for 120 s."""
    assert app.backend.settings.retry_deadline == 120 and app.backend.settings.timeout == 60
    ids = [str(uuid.uuid4()) for _ in range(3)]
    result = app.AsyncResult(ids[0]) if wait == "get" else app.GroupResult(str(uuid.uuid4()), [
        app.AsyncResult(task_id) for task_id in ids
    ])  # fmt: skip
    unreachable(stack, fault)
    started = time.monotonic()
    with pytest.raises(CeleryTimeoutError) as caught:
        result.get(timeout=2)
    waited = time.monotonic() - started
    assert waited < 5, f"get(timeout=2) took {waited:.1f} s"
    assert stack.gcs.injected_snapshot().get(fault, 0) >= 1  # the fault was met, not bypassed
    assert f"gs://{stack.bucket}/" in str(caught.value)  # it says what it was reading


@pytest.mark.parametrize("fault", ["blackhole"])  # refused connections: tests/cli/test_chords.py
def test_the_callers_timeout_bounds_a_read_of_an_unreachable_firestore(stack, fault: str) -> None:
    """Issue 24: Firestore calls took gcs_timeout (60 s) a try and gcs_retry_deadline (120 s) whatever the caller had left."""
    store = ChordStore(parse(conventions.backend_url(stack.bucket, gcs_project=stack.local_stack.project), {}))
    assert store.settings.retry_deadline == 120 and store.settings.timeout == 60
    store.read("warm")  # connected first: the outage meets a live channel, as a running process's would
    setattr(stack.firestore.faults, fault, True)
    stack.firestore.drop_connections()
    started = time.monotonic()
    with pytest.raises(CeleryTimeoutError) as caught, deadline.within(2):
        list(store.inspect_all())
    waited = time.monotonic() - started
    assert waited < 5, f"a read within 2 s took {waited:.1f} s"
    assert stack.firestore.injected_snapshot().get(fault, 0) >= 1  # the fault was met, not bypassed
    assert "listing chords in Firestore database" in str(caught.value)


def test_a_wait_within_the_callers_timeout_still_retries_a_failed_read(app, stack) -> None:
    """The caller's timeout bounds retries, it does not drop them: a read failing once still succeeds."""
    app.backend.store_result("t-retried", 5, states.SUCCESS)
    rule = stack.gcs.fail("GET /download/storage/v1/b/[^/]+/o/.+", 503, calls=1)
    assert app.AsyncResult("t-retried").get(timeout=5) == 5
    assert rule.struck == 1
