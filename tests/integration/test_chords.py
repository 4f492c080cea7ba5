"""The chord coordinator in one process against the emulators: situations a worker can meet."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from celery import states
from celery.result import AsyncResult
from celery_gcs.keys import part_document_id
from celery_gcs.stores import chord_tree
from celery_gcs.stores.chord_store import Settle

from ..support.chords import Published, apply_here, part_request

pytestmark = pytest.mark.usefixtures("stack")


def _count_without_storing(app: Any, group_id: str, ids: list[str]) -> chord_tree.Node:
    """Count parts as their processes would, then stop (as if they died before storing); the top counter."""
    coordinator = app.backend.chords
    key = coordinator.key(group_id)
    leaves = chord_tree.leaf_count(len(ids))
    for task_id in ids:
        coordinator.store.count(
            key, part_document_id(task_id), chord_tree.leaf_of(task_id, leaves), None
        )
    assert leaves == 1
    return chord_tree.Node(0, 0, 1)


def test_a_replayed_return_whose_chord_ended_meanwhile_returns(app, stack) -> None:
    """Issue 11, defect 1: claim() and read() both None (the holder finished) looped forever."""
    coordinator = app.backend.chords
    group_id, ids = apply_here(app, 2)
    key = coordinator.key(group_id)
    top = _count_without_storing(app, group_id, ids)
    # A live holder (its lease far ahead) is completing the chord.
    assert coordinator.store.settle(key, Settle("holder", 300, top=top)).claimed
    stack.firestore.reset_counts()
    replay = threading.Thread(
        target=app.backend.store_result,
        args=(ids[1], 2, states.SUCCESS),
        kwargs={"request": part_request(group_id, ids[1])},
    )
    replay.start()
    time.sleep(0.5)  # the replay now waits for the holder
    assert coordinator.store.end(key, "holder")  # the holder ends the chord
    replay.join(timeout=10)
    requests = sum(stack.firestore.snapshot().values())
    assert not replay.is_alive(), f"the replay still loops after {requests} Firestore requests"
    assert requests < 50
    assert app.AsyncResult(ids[1]).get(timeout=1) == 2


def test_a_takeover_publishes_what_is_stored_not_what_a_second_run_computed(
    app, monkeypatch
) -> None:
    """Issue 11, defect 5: the callback got a duplicate run's value while readers get the stored one."""
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    key = app.backend.chords.key(group_id)
    top = _count_without_storing(app, group_id, ids)
    app.backend.store_result(
        ids[0], "first run", states.SUCCESS
    )  # its first run stored, then its process died
    app.backend.store_result(ids[1], "b", states.SUCCESS)
    assert app.backend.chords.store.settle(key, Settle("dead holder", 0.3, top=top)).claimed
    # A second run of the first part (redelivered), with another value, takes the dead holder's claim over.
    app.backend.store_result(
        ids[0], "second run", states.SUCCESS, request=part_request(group_id, ids[0])
    )
    assert published.values == [["first run", "b"]]
    assert app.AsyncResult(ids[0]).get(timeout=1) == "first run"


def test_a_failed_join_fails_the_chord_and_leaves_the_part_a_success(make_app, stack, monkeypatch) -> None:
    """Issue 11, defect 6: a read error in the join turned the SUCCESS part into a FAILURE (errbacks, links).

    As with Redis: without ``result_backend_always_retry`` the chord fails, once, and the part stays a success.
    """
    app = make_app(f"gcs://{stack.bucket}?gcs_retry_deadline=0.5")
    published = Published(app, monkeypatch)
    failed: list[Exception] = []
    monkeypatch.setattr(app.backend, "chord_error_from_stack", lambda callback, exc: failed.append(exc))
    group_id, ids = apply_here(app, 2)
    app.backend.store_result(ids[0], 1, states.SUCCESS, request=part_request(group_id, ids[0]))
    stack.gcs.faults.only = frozenset({"object.read"})
    stack.gcs.faults.error_rate = 1.0
    try:
        app.backend.store_result(ids[1], 2, states.SUCCESS, request=part_request(group_id, ids[1]))
    finally:
        stack.gcs.faults.clear()
    assert published.values == []
    assert len(failed) == 1 and "cannot join" in str(failed[0])
    assert app.AsyncResult(ids[1]).get(timeout=1) == 2


def test_a_group_id_reused_with_another_size_completes_in_a_process_that_remembers_the_first(
    app, monkeypatch
) -> None:
    """Issue 11, suspected: a per-process cache of a group's size hung a group id re-used with a smaller size."""
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 40)
    for task_id in ids:
        app.backend.store_result(task_id, 1, states.SUCCESS, request=part_request(group_id, task_id))
    assert published.values == [[1] * 40]
    smaller = [str(uuid.uuid4()) for _ in range(5)]
    app.backend.apply_chord((group_id, [AsyncResult(task_id, app=app) for task_id in smaller]), None)
    for n, task_id in enumerate(smaller):
        app.backend.store_result(task_id, n, states.SUCCESS, request=part_request(group_id, task_id))
    assert published.values == [[1] * 40, [0, 1, 2, 3, 4]]
