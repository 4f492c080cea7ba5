"""Transient GCS failures are retried; a long outage is reported and recovered from."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from celery import states
from celery.result import AsyncResult, GroupResult
from celery_gcs import TransientError

pytestmark = pytest.mark.usefixtures("stack")


def test_throttling_and_server_errors_are_retried_by_the_client(make_app, stack) -> None:
    backend = make_app().backend
    stack.gcs.faults.error_rate = 0.4
    stack.gcs.faults.statuses = (429, 500, 503)
    ids = [str(uuid.uuid4()) for _ in range(30)]
    for n, task_id in enumerate(ids):
        backend.store_result(task_id, n, states.SUCCESS)
    results = dict(backend.get_many(ids, timeout=30))
    stack.gcs.faults.clear()
    assert {task_id: meta["result"] for task_id, meta in results.items()} == dict(zip(ids, range(30)))


def test_connection_resets_are_retried(make_app, stack) -> None:
    backend = make_app().backend
    stack.gcs.faults.reset_rate = 0.3
    for n in range(20):
        backend.store_result(f"reset-{n}", n, states.SUCCESS)
    stack.gcs.faults.clear()
    assert [backend.get_task_meta(f"reset-{n}")["result"] for n in range(20)] == list(range(20))


def test_an_outage_longer_than_the_deadline_is_a_transient_error(make_app, stack) -> None:
    backend = make_app(gcs_retry_deadline=1).backend
    stack.gcs.faults.down = True
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        backend.store_result("t-down", 1, states.SUCCESS)
    elapsed = time.monotonic() - started
    assert "writing gs://celery-results/" in str(caught.value)
    assert backend.exception_safe_to_retry(caught.value)
    assert elapsed < 15


def test_always_retry_rides_out_an_outage(make_app, stack) -> None:
    app = make_app(
        gcs_retry_deadline=0.5,
        result_backend_always_retry=True,
        result_backend_max_retries=50,
        result_backend_base_sleep_between_retries_ms=100,
        result_backend_max_sleep_between_retries_ms=300,
    )
    stack.gcs.faults.down = True
    threading.Timer(2.0, stack.gcs.faults.clear).start()
    app.backend.store_result("t-outage", "made it", states.SUCCESS)
    assert AsyncResult("t-outage", app=app).get(timeout=5) == "made it"


def test_without_always_retry_the_error_surfaces(make_app, stack) -> None:
    app = make_app(gcs_retry_deadline=0.5, result_backend_always_retry=False)
    stack.gcs.faults.down = True
    with pytest.raises(TransientError):
        app.backend.store_result("t-fail", 1, states.SUCCESS)
    stack.gcs.faults.clear()
    app.backend.store_result("t-fail", 2, states.SUCCESS)
    assert AsyncResult("t-fail", app=app).get(timeout=5) == 2


UPLOAD = "POST /upload/storage/v1/b/[^/]+/o"


def test_a_write_without_a_precondition_is_made_once(make_app, stack) -> None:
    """Celery's plain ``set()`` carries no precondition: a failure is reported, never retried.

    A retry after an answer lost on the way back could overwrite what another
    writer stored in between (google-cloud-storage's ConditionalRetryPolicy).
    """
    backend = make_app().backend
    key = backend.get_key_for_task("t-set")
    rule = stack.gcs.fail(UPLOAD, 503, forward=True)  # it lands; the client sees 503
    stack.gcs.reset_counts()
    with pytest.raises(TransientError) as caught:
        backend.set(key, backend.encode({"status": states.SUCCESS, "result": 1}))
    assert "writing gs://celery-results/" in str(caught.value)
    assert (rule.seen, rule.struck) == (1, 1)
    assert stack.gcs.snapshot() == {"object.write": 1}
    assert backend.exception_safe_to_retry(caught.value)  # Celery's always_retry may, at its own level


def test_writes_safe_to_repeat_are_retried(app, stack) -> None:
    """A task's state (create-only) and a group's structure (idempotent by construction) ride out 503s."""
    rule = stack.gcs.fail(UPLOAD, 503, calls=range(1, 3))
    app.backend.store_result("t-safe", "stored", states.SUCCESS)
    assert rule.struck == 2
    rule = stack.gcs.fail(UPLOAD, 503, calls=range(1, 3))
    group = GroupResult(str(uuid.uuid4()), [AsyncResult("t-safe", app=app)], app=app)
    group.save()
    assert rule.struck == 2
    assert AsyncResult("t-safe", app=app).get(timeout=5) == "stored"
    restored = GroupResult.restore(group.id, app=app)
    assert restored is not None and [r.id for r in restored.results] == ["t-safe"]
