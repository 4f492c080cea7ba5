"""Faults between claiming a chord's callback and cleaning up: the chord still ends, once.

The part that fills the top counter claims the callback, reads the header's
GroupResult and the other parts' results from GCS, renews its claim,
publishes the callback, marks the chord done and deletes its parts and
counters. A result or a header group it cannot decode fails the chord, once,
through its errbacks; GCS failing during the reads gives the claim up, so
that Celery's retry of the store (``result_backend_always_retry``) completes
the chord; Firestore failing to mark the chord done after the publish never
leads to a second one.

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

from ..support import faulty, gcs, tasks
from ..support.chords import callback_runs, ended_only, errbacks, settle, sig

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


def test_a_part_result_that_cannot_be_decoded_fails_the_chord_once(
    app, start_worker, stack, firestore_docs
) -> None:
    start_worker()
    result = apply_with_last_part_held(app)
    first = result.parent.results[0]
    name = app.backend.settings.object_name(f"celery-task-meta-{first.id}")
    gcs.client().bucket(stack.bucket).blob(name).upload_from_string(b'{"status": "SUCC')  # truncated
    start_worker(task_default_queue="later")
    with pytest.raises(ChordError) as caught:
        app.AsyncResult(result.id).get(timeout=60)
    message = str(caught.value)
    assert f"Dependency {first.id} cannot be read: object 'celery-task-meta-{first.id}'" in message
    assert f"in bucket '{stack.bucket}'" in message and "truncated" in message
    settle()
    assert callback_runs(app, result) == 0
    called = errbacks(app, result)
    assert len(called) == 1 and "ChordError" in called[0] and first.id in called[0]
    assert result.parent.results[-1].get(timeout=10) == EXPECTED[-1]  # the last part stays a success
    assert ended_only(firestore_docs())


def test_a_header_group_that_cannot_be_decoded_fails_the_chord_once(
    app, start_worker, stack, firestore_docs
) -> None:
    start_worker()
    result = apply_with_last_part_held(app)
    name = app.backend.settings.object_name(f"celery-taskset-meta-{result.parent.id}")
    gcs.client().bucket(stack.bucket).blob(name).upload_from_string(b'{"result": "mangled"}')
    start_worker(task_default_queue="later")
    with pytest.raises(ChordError) as caught:
        app.AsyncResult(result.id).get(timeout=60)
    message = str(caught.value)
    assert f"GroupResult {result.parent.id} cannot be read" in message and "not a group of results" in message
    settle()
    assert callback_runs(app, result) == 0
    called = errbacks(app, result)
    assert len(called) == 1 and "ChordError" in called[0] and "GroupResult" in called[0]
    assert result.parent.results[-1].get(timeout=10) == EXPECTED[-1]
    docs = firestore_docs()
    # Ended; without the header's ids the holder cannot name its parts and
    # counters, so they are left to the TTL policy.
    assert docs[app.backend.chords.key(result.parent.id)]["done"] is True
    assert all("expires_at" in data for data in docs.values())


def test_gcs_failing_while_the_callback_gathers_results_delays_the_chord_only(
    app, start_worker, stack, firestore_docs
) -> None:
    start_worker(**ALWAYS_RETRY)
    result = apply_with_last_part_held(app)
    stack.gcs.faults.only = frozenset({"object.read"})
    stack.gcs.faults.error_rate = 1.0
    last = start_worker(task_default_queue="later", **ALWAYS_RETRY)
    wait_until(lambda: last.log().count("Failed operation _store_result. Retrying") >= 2)
    stack.gcs.faults.clear()
    assert result.get(timeout=60) == EXPECTED
    settle()
    assert (callback_runs(app, result), errbacks(app, result)) == (1, [])
    assert stack.gcs.injected_snapshot()["status.503"] > 0
    assert ended_only(firestore_docs())


#: Keep the publish budget, and so the claim's lease for the publish, short:
#: a copy waiting to take the claim over waits about ``chords.MIN_LEASE`` + 1 s.
SHORT_PUBLISH = {"task_publish_retry_policy": {"max_retries": 0}, "broker_connection_timeout": 1}


def test_firestore_failing_to_mark_the_chord_done_after_the_publish_never_publishes_it_again(
    app, start_worker, backend_url, tmp_path, firestore_docs
) -> None:
    """The holder published, then failed to mark the chord done; a copy of a part arrives later.

    Brokers deliver a message twice now and then (a visibility timeout, a
    lost connection, with ``task_acks_late``): the copy must find the chord
    ended, as it does after a clean end, not take the claim over once its
    lease ran out and publish the callback a second time.
    """
    fail_dir = tmp_path / "fail"
    fail_dir.mkdir()
    worker = start_worker(
        url=f"{faulty.__name__}:FailingCleanupBackend+{backend_url}",
        env={"CELERY_GCS_FAIL_DIR": str(fail_dir)},
        **ALWAYS_RETRY,
        **SHORT_PUBLISH,
    )
    callback = sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error))
    result = chord(sig(app, tasks.add, n, n) for n in range(SIZE))(callback)
    assert result.get(timeout=60) == EXPECTED
    wait_until(lambda: (fail_dir / "failed").exists())
    first = result.parent.results[0]
    app.send_task(
        tasks.add.name, args=(0, 0), task_id=first.id, group_id=result.parent.id, group_index=0,
        chord=sig(app, tasks.collect, task_id=result.id).on_error(sig(app, tasks.on_chord_error)),
    )  # fmt: skip
    # The copy ran; had it waited for the claim to run out, it would have published by now.
    wait_until(lambda: worker.log().count(f"Task {tasks.add.name}[{first.id}] succeeded") >= 2, timeout=60)
    settle(3)
    assert (callback_runs(app, result), errbacks(app, result)) == (1, [])
    assert all("expires_at" in data for data in firestore_docs().values())
