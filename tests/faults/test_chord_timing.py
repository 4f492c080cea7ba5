"""Chords when Firestore aborts, or answers late, one chosen call (through the proxy in front of the emulator)."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest
from celery import states
from celery_gcs.local.faults import FIRESTORE_COMMIT
from celery_gcs.stores import chord_tree
from celery_gcs.stores.chord_store import Settle

from ..support.chords import Published, apply_here, part_request, store_part

pytestmark = pytest.mark.usefixtures("stack")


def test_a_transaction_aborted_past_the_clients_attempts_is_retried_not_mistaken_for_the_callers_error(
    app, stack
) -> None:
    """Issue 11, defect 7: the ValueError's __context__ (the caller's error, inside an except block) was raised."""
    store = app.backend.chords.store
    group_id, ids = apply_here(app, 1)
    key = app.backend.chords.key(group_id)
    store.count(key, ids[0], chord_tree.Node(0, 0, 1), None)
    aborted = stack.firestore.fail(FIRESTORE_COMMIT, grpc.StatusCode.ABORTED, calls=range(1, 6))
    try:
        raise KeyError("the caller's own error, being handled")
    except KeyError:
        settled = store.settle(key, Settle("mine", 60, top=chord_tree.Node(0, 0, 1)))
    assert aborted.struck == 5  # the client's five attempts all aborted; ours started it over
    assert settled.claimed and store.read(key).claim.token == "mine"


def test_a_part_whose_count_was_answered_late_looks_again_and_completes_the_chord(make_app, stack, monkeypatch) -> None:
    """Issue 11, defect 12: "slow" was timed from the count's answer, so a part counted early but answered
    late never looked again after the callback's join gave up on it: every part counted and stored, no callback.
    """
    app = make_app(result_chord_join_timeout=0.5)
    published: list[Any] = []
    monkeypatch.setattr(app.amqp, "_retry_publish", lambda publish, value: published.append(value))
    group_id, ids = apply_here(app, 2)
    late = stack.firestore.delay(FIRESTORE_COMMIT, 3.0, calls=1)  # the first part's count lands; its answer waits
    first = threading.Thread(
        target=app.backend.store_result, args=(ids[0], "a", states.SUCCESS), kwargs={"request": part_request(group_id, ids[0])}
    )
    first.start()
    late.wait(struck=1)
    time.sleep(0.2)
    app.backend.store_result(ids[1], "b", states.SUCCESS, request=part_request(group_id, ids[1]))
    assert published == []  # the join gave up on the first part, not stored yet
    first.join(timeout=30)
    assert published == [["a", "b"]]


def test_parts_slow_to_store_leave_the_chord_document_alone(make_app, stack, monkeypatch) -> None:
    """Issue 26: every part whose store took longer than half the join timeout settled the chord again, a
    transaction each on the chord document (47 transactions for 40 slow parts instead of 3), the hot spot
    the counters exist to avoid. Each now reads the chord first, and finds it ended or being ended.
    """
    app = make_app(result_chord_join_timeout=1.0)  # a part slower than 0.5 s from count to stored looks again
    published = Published(app, monkeypatch)
    size = 40
    group_id, ids = apply_here(app, size)
    slow = stack.gcs.delay("POST /upload/storage/v1/b/[^/]+/o", 0.6, calls=range(1, size + 1))
    stack.firestore.reset_counts()
    parts = [threading.Thread(target=store_part, args=(app, group_id, task_id, n)) for n, task_id in enumerate(ids)]
    for part in parts:
        part.start()
    for part in parts:
        part.join(timeout=60)
    assert slow.struck == size
    assert published.values == [list(range(size))]
    # The holder's settle, renew and end; a part or two may find it held and settle once it is free.
    assert stack.firestore.snapshot().get("firestore.BeginTransaction", 0) <= 6


@pytest.mark.parametrize(
    "late_workers_timeout",
    [None, pytest.param(20.0, marks=pytest.mark.slow)],
    ids=["celerys_default_3s", "20s"],
)
def test_a_part_the_holder_gave_up_on_completes_the_chord_whatever_its_workers_join_timeout(
    make_app, stack, monkeypatch, firestore_docs, late_workers_timeout
) -> None:
    """Review defect B: a holder with a 0.5 s join timeout gave up on a part still storing and let the
    claim go; that part, in a worker with a longer join timeout, was stored within half of *its* own
    timeout, so it did not look again: every part counted and stored, no claim, no callback, no error.
    The holder now waits, before giving up, until each late part's own threshold has passed.

    Two apps in this process play the two workers; the proxy holds the late part's upload.
    """
    holder_app = make_app(result_chord_join_timeout=0.5)
    late_app = make_app(**({} if late_workers_timeout is None else {"result_chord_join_timeout": late_workers_timeout}))
    published = [Published(holder_app, monkeypatch), Published(late_app, monkeypatch)]
    group_id, ids = apply_here(holder_app, 2)
    held = stack.gcs.delay("POST /upload/storage/v1/b/[^/]+/o", None, calls=1, direction="request")
    late = threading.Thread(target=store_part, args=(late_app, group_id, ids[0], 0), daemon=True)
    late.start()
    held.wait(struck=1)  # counted; its result not stored yet
    store_part(holder_app, group_id, ids[1], 1)  # the last part: claims, waits for the other, gives up
    held.release()
    late.join(timeout=60)
    assert not late.is_alive()
    chord = firestore_docs()[holder_app.backend.chords.key(group_id)]
    assert published[0].values + published[1].values == [[0, 1]], f"no callback: {chord}"
