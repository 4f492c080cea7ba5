"""Faults between claiming a chord's callback and cleaning up: the chord still ends, once.

The last part claims the callback, reads the other parts' results from GCS,
publishes the callback and deletes the chord's documents. A result it cannot
decode fails the chord; GCS failing during the reads gives the claim up, so
that Celery's retry of the store (``result_backend_always_retry``) completes
the chord; Firestore failing after the publish never leads to a second one.

The last part goes to a queue that only a second worker consumes, started
once the rest of the header is done and the fault is in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from celery import chord
from celery.exceptions import ChordError
from google.cloud import storage

from ..support import faulty, tasks
from ..support.chords import callback_runs, errbacks, settle, sig

pytestmark = pytest.mark.usefixtures("stack")

SIZE = 5
EXPECTED = [2 * n for n in range(SIZE)]
ALWAYS_RETRY = {
    "gcs_retry_deadline": 1.0,
    "result_backend_always_retry": True,
    "result_backend_max_retries": 1000,
    "result_backend_base_sleep_between_retries_ms": 100,
    "result_backend_max_sleep_between_retries_ms": 500,
}


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def apply_with_last_part_held(app: Any) -> Any:
    """A chord whose last part waits in the queue "later"; the others have run when this returns."""
    callback = sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error))
    header = [sig(app, tasks.add, n, n) for n in range(SIZE - 1)] + [sig(app, tasks.add, 4, 4, queue="later")]
    result = chord(header)(callback)
    assert [part.get(timeout=60) for part in result.parent.results[:-1]] == EXPECTED[:-1]
    return result


def test_a_part_result_that_cannot_be_decoded_fails_the_chord_once(app, start_worker, stack) -> None:
    start_worker()
    result = apply_with_last_part_held(app)
    first = result.parent.results[0]
    name = app.backend.settings.object_name(f"celery-task-meta-{first.id}")
    storage.Client().bucket(stack.bucket).blob(name).upload_from_string(b'{"status": "SUCC')  # truncated
    start_worker(task_default_queue="later")
    with pytest.raises(ChordError) as caught:
        app.AsyncResult(result.id).get(timeout=60)
    message = str(caught.value)
    assert f"Dependency {first.id} cannot be read: object 'celery-task-meta-{first.id}'" in message
    assert f"in bucket '{stack.bucket}'" in message and "truncated" in message
    settle()
    assert callback_runs(app, result) == 0
    assert len(errbacks(app, result)) == 1


def test_a_header_group_that_cannot_be_decoded_fails_the_chord_once(app, start_worker, stack) -> None:
    start_worker()
    result = apply_with_last_part_held(app)
    name = app.backend.settings.object_name(f"celery-taskset-meta-{result.parent.id}")
    storage.Client().bucket(stack.bucket).blob(name).upload_from_string(b'{"result": "mangled"}')
    start_worker(task_default_queue="later")
    with pytest.raises(ChordError) as caught:
        app.AsyncResult(result.id).get(timeout=60)
    message = str(caught.value)
    assert f"GroupResult {result.parent.id} cannot be read" in message and "not a group of results" in message
    settle()
    assert callback_runs(app, result) == 0
    assert len(errbacks(app, result)) == 1


def test_gcs_failing_while_the_callback_gathers_results_delays_the_chord_only(app, start_worker, stack) -> None:
    start_worker(**ALWAYS_RETRY)
    result = apply_with_last_part_held(app)
    stack.gcs.faults.only = frozenset({"object.read"})
    stack.gcs.faults.error_rate = 1.0
    last = start_worker(task_default_queue="later", **ALWAYS_RETRY)
    wait_until(lambda: last.log().count("Failed operation _store_result. Retrying") >= 2)
    stack.gcs.faults.clear()
    assert result.get(timeout=60) == EXPECTED
    settle()
    assert callback_runs(app, result) == 1
    assert stack.gcs.injected_snapshot()["status.503"] > 0


def test_firestore_failing_after_the_callback_was_published_never_publishes_it_again(
    app, start_worker, stack, backend_url, tmp_path, firestore_docs
) -> None:
    fail_dir = tmp_path / "fail"
    fail_dir.mkdir()
    start_worker(
        url=f"{faulty.__name__}:FailingCleanupBackend+{backend_url}",
        env={"CELERY_GCS_FAIL_DIR": str(fail_dir)},
        **ALWAYS_RETRY,
    )
    callback = sig(app, tasks.collect)
    result = chord(sig(app, tasks.add, n, n) for n in range(SIZE))(callback)
    assert result.get(timeout=60) == EXPECTED
    wait_until(lambda: firestore_docs() == {})  # the retried store cleaned up
    settle()
    assert (fail_dir / "failed").exists()
    assert callback_runs(app, result) == 1
