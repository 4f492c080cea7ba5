"""Transient GCS failures are retried; a long outage is reported and recovered from."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from celery import states
from celery.result import AsyncResult
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
