"""Requests that were served but whose answers were lost: every retried write is harmless.

The proxies serve one chosen request and then reset its connection, so the
client sees a failure for something that happened, and retries it. Each test
asserts that the fault really happened.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from celery import states
from celery_gcs import chords
from celery_gcs.settings import parse
from celery_gcs.stores.chord_store import ChordStore, Claim

pytestmark = pytest.mark.usefixtures("stack")


def lose_next_answer(proxy: Any, kind: str, times: int = 1) -> None:
    """The next ``times`` requests of ``kind`` are served and their answers lost."""
    proxy.faults.only = frozenset({kind})
    proxy.faults.lost_response_rate = 1.0
    proxy.faults.limit = times


@pytest.fixture
def store(stack) -> ChordStore:
    return ChordStore(parse(f"gcs://{stack.bucket}?gcs_project={stack.stack.project}&gcs_retry_deadline=30", {}))


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def test_a_part_counted_but_unanswered_is_counted_once(store, stack) -> None:
    key = f"chord-{uuid.uuid4()}"
    lose_next_answer(stack.firestore, "firestore.Commit")
    store.count_part(key, "task-1", 0, _in(60))
    assert stack.firestore.injected_snapshot() == {"lost_response": 1}
    assert store.count_part(key, "task-1", 0, _in(60)) is False
    assert store.counted(key) == 1


@pytest.mark.parametrize("times", [1, 3])
def test_a_claim_committed_but_unanswered_is_still_ours(store, stack, times: int) -> None:
    key = f"chord-{uuid.uuid4()}"
    store.set_size(key, 1, None)
    mine = Claim("mine", chords.this_holder(), _in(60))
    lose_next_answer(stack.firestore, "firestore.Commit", times)
    chord = store.claim(key, mine, chords.can_take_over)
    assert stack.firestore.injected_snapshot() == {"lost_response": times}
    assert chord is not None and chord.size == 1
    assert store.read(key).claim.token == "mine"
    # Nobody else takes it: the holder is alive and its lease runs.
    assert store.claim(key, Claim("other", chords.this_holder(), _in(60)), chords.can_take_over) is None


def test_a_renewal_committed_but_unanswered_still_renews(store, stack) -> None:
    key = f"chord-{uuid.uuid4()}"
    store.set_size(key, 1, None)
    mine = Claim("mine", chords.this_holder(), _in(60))
    assert store.claim(key, mine, chords.can_take_over) is not None
    longer = Claim("mine", mine.holder, _in(600))
    lose_next_answer(stack.firestore, "firestore.Commit")
    assert store.renew(key, longer) is True
    assert stack.firestore.injected_snapshot() == {"lost_response": 1}
    assert store.read(key).claim.lease_until == longer.lease_until


def test_a_release_committed_but_unanswered_still_releases(store, stack) -> None:
    key = f"chord-{uuid.uuid4()}"
    store.set_size(key, 1, None)
    mine = Claim("mine", chords.this_holder(), _in(60))
    store.claim(key, mine, chords.can_take_over)
    lose_next_answer(stack.firestore, "firestore.Commit")
    store.release(key, "mine")
    assert stack.firestore.injected_snapshot() == {"lost_response": 1}
    assert store.read(key).claim is None


def test_finishing_a_chord_whose_deletes_went_unanswered(store, stack, firestore_docs) -> None:
    key = f"chord-{uuid.uuid4()}"
    store.set_size(key, 2, None)
    for n in range(2):
        store.count_part(key, f"p{n}", n, None)
    lose_next_answer(stack.firestore, "firestore.Commit", times=2)
    store.finish(key, ["p0", "p1"])
    assert stack.firestore.injected_snapshot() == {"lost_response": 2}
    assert firestore_docs() == {}


def test_a_result_written_but_unanswered_is_stored_once(make_app, stack) -> None:
    app = make_app()
    task_id = str(uuid.uuid4())
    lose_next_answer(stack.gcs, "object.write")
    app.backend.store_result(task_id, "once", states.SUCCESS)
    assert stack.gcs.injected_snapshot() == {"lost_response": 1}
    assert make_app().backend.get_task_meta(task_id)["result"] == "once"


def test_a_state_written_but_unanswered_is_replaced_by_the_next(make_app, stack) -> None:
    """STARTED's answer is lost, so its generation is unknown: SUCCESS still replaces it."""
    app = make_app()
    task_id = str(uuid.uuid4())
    lose_next_answer(stack.gcs, "object.write")
    app.backend.store_result(task_id, None, states.STARTED)
    app.backend.store_result(task_id, 42, states.SUCCESS)
    assert stack.gcs.injected_snapshot() == {"lost_response": 1}
    meta = make_app().backend.get_task_meta(task_id)
    assert (meta["status"], meta["result"]) == (states.SUCCESS, 42)
