"""Requests that were served but whose answers were lost: every retried write is harmless.

The proxies let the emulator serve a chosen request and keep its answer from
the client, so the client sees a failure for something that happened, and
retries it: GCS's connection is reset once the emulator has answered; a
Firestore commit's answer, once the emulator has sent it, is replaced by
UNAVAILABLE, what gRPC reports when a connection drops mid-call. Each test
asserts that the fault really happened.

For chords: a part's count (one commit creating its part document and
counting its leaf down), a full counter's report to its parent, and the
transactions on the chord document (settle, renew, release, end) each landed
while the client heard nothing; the clean-up's deletes too.
"""

from __future__ import annotations

import types
import uuid
from typing import Any

import grpc
import pytest
from celery import states
from celery_gcs.local.faults import FIRESTORE_COMMIT
from celery_gcs.local.proxy import Rule
from celery_gcs.stores import chord_tree
from celery_gcs.stores.chord_store import ChordStore, PartState, Settle

from ..support.chords import (
    Published,
    apply_here,
    chord_store_on,
    ended_only,
    in_seconds,
    open_chord,
)

pytestmark = pytest.mark.usefixtures("stack")


def lose_next_answer(proxy: Any, kind: str, times: int = 1) -> None:
    """The next ``times`` HTTP requests of ``kind`` are served and their answers lost."""
    proxy.faults.only = frozenset({kind})
    proxy.faults.lost_response_rate = 1.0
    proxy.faults.limit = times


def unanswered_commits(stack: Any, times: int = 1) -> Rule:
    """The next ``times`` Firestore commits land, and their answers never reach the client."""
    return stack.firestore.fail(FIRESTORE_COMMIT, grpc.StatusCode.UNAVAILABLE, calls=range(1, times + 1), forward=True)


def assert_unanswered(stack: Any, rule: Rule, times: int = 1) -> None:
    """The rule acted: ``times`` commits served, each answer replaced."""
    assert rule.struck == times
    assert stack.firestore.injected_snapshot() == {"replaced.14": times}


@pytest.fixture
def store(stack) -> ChordStore:
    return chord_store_on(stack)




def _claimed(store: ChordStore, token: str = "mine", lease: float = 60) -> str:
    """A chord of one part, counted, whose callback ``token`` holds: its key."""
    key, ids, leaves = open_chord(store, 1)
    top = chord_tree.leaf_of(ids[0], leaves)
    assert store.count(key, ids[0], top, in_seconds(60)) is not None
    assert store.settle(key, Settle(token, lease, top=top)).claimed
    return key


# -- the store's calls, one by one ----------------------------------------------------------


def test_a_part_counted_but_unanswered_is_counted_once(store, stack) -> None:
    key, ids, leaves = open_chord(store, 2)
    leaf = chord_tree.leaf_of(ids[0], leaves)
    unanswered = unanswered_commits(stack)
    # The client's retry finds the part's document there and is refused whole:
    # the caller hears "refused" and looks at the part (the coordinator's recount).
    assert store.count(key, ids[0], leaf, in_seconds(60)) is None
    assert_unanswered(stack, unanswered)
    assert store.read_counter(key, leaf).remaining == 1
    assert store.read_part(key, ids[0]) == PartState(added=False, counted=True)
    assert store.count(key, ids[0], leaf, in_seconds(60)) is None  # a later copy: refused too
    assert store.read_counter(key, leaf).remaining == 1


@pytest.mark.parametrize("times", [1, 3])
def test_a_claim_committed_but_unanswered_is_still_ours(store, stack, times: int) -> None:
    key, ids, leaves = open_chord(store, 1)
    top = chord_tree.leaf_of(ids[0], leaves)
    store.count(key, ids[0], top, in_seconds(60))
    unanswered = unanswered_commits(stack, times)
    settled = store.settle(key, Settle("mine", 60, top=top))
    assert_unanswered(stack, unanswered, times)
    assert settled.claimed and settled.chord.claim.token == "mine"
    chord = store.read(key)
    assert chord.claim.token == "mine" and chord.header_done
    # Nobody else takes it: its lease runs, by the server's clock.
    assert store.settle(key, Settle("other", 60)).held
    assert store.read(key).claim.token == "mine"


def test_a_renewal_committed_but_unanswered_still_renews(store, stack) -> None:
    key = _claimed(store, lease=60)
    unanswered = unanswered_commits(stack)
    assert store.renew(key, "mine", 600) is True
    assert_unanswered(stack, unanswered)
    chord = store.read(key)
    assert chord.claim.token == "mine"
    assert (chord.claim.lease_until - chord.read_time).total_seconds() == pytest.approx(600, abs=30)


def test_a_release_committed_but_unanswered_still_releases(store, stack) -> None:
    key = _claimed(store)
    unanswered = unanswered_commits(stack)
    store.release(key, "mine")
    assert_unanswered(stack, unanswered)
    assert store.read(key).claim is None
    assert store.settle(key, Settle("next", 60)).claimed  # a later return completes the chord


def test_an_end_committed_but_unanswered_leaves_the_chord_ended(store, stack) -> None:
    """What the holder then hears is the coordinator's test below (``..._is_cleaned_up``)."""
    key = _claimed(store)
    unanswered = unanswered_commits(stack)
    store.end(key, "mine")
    assert_unanswered(stack, unanswered)
    chord = store.read(key)
    assert chord.done and chord.claim is None
    assert not store.settle(key, Settle("late", 60, force=True)).claimed  # nothing after the end


def test_a_clean_up_whose_deletes_went_unanswered_deletes_everything(store, stack, firestore_docs) -> None:
    key, ids, leaves = open_chord(store, 620)  # two batches of deletes
    counters = chord_tree.initial_counts(ids, leaves)
    for task_id in ids:
        store.count(key, task_id, chord_tree.leaf_of(task_id, leaves), in_seconds(60))
    assert store.settle(key, Settle("mine", 60, force=True)).claimed
    assert store.end(key, "mine") is True
    unanswered = unanswered_commits(stack, times=2)
    store.clean_up(key, ids, counters)
    assert_unanswered(stack, unanswered, 2)
    docs = firestore_docs()
    assert list(docs) == [key] and ended_only(docs)


# -- whole chords, counted by the coordinator in this process ----------------------------------


def _return(app: Any, group_id: str, task_id: str, value: Any) -> None:
    """A header task's return, as a worker stores it."""
    request = types.SimpleNamespace(
        id=task_id, group=group_id, group_index=0, chord={"task": "tests.callback", "options": {"task_id": "cb"}},
        task="tests.part", ignore_result=False,
    )  # fmt: skip
    app.backend.store_result(task_id, value, states.SUCCESS, request=request)


def _commit_unanswered_in(stack: Any, store: ChordStore, name: str) -> list[Rule]:
    """The first commit of the next call of the store's method ``name`` lands unanswered; the rule, once set."""
    method, rules = getattr(store, name), []

    def armed(*args: Any, **kwargs: Any) -> Any:
        setattr(store, name, method)
        rules.append(unanswered_commits(stack))
        return method(*args, **kwargs)

    setattr(store, name, armed)
    return rules


def test_the_last_part_whose_count_went_unanswered_still_completes_the_chord_once(
    app, stack, monkeypatch, firestore_docs
) -> None:
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 3)
    for n, task_id in enumerate(ids[:-1]):
        _return(app, group_id, task_id, n)
    unanswered = unanswered_commits(stack)  # the last part's count
    _return(app, group_id, ids[-1], 2)
    assert_unanswered(stack, unanswered)
    assert published.values == [[0, 1, 2]]
    assert ended_only(firestore_docs())


def test_a_report_to_the_top_counter_that_went_unanswered_still_completes_the_chord_once(
    app, stack, monkeypatch, firestore_docs
) -> None:
    """The part filling a leaf counts the top counter down: that commit lands, its answer is lost.

    The client's retry is refused (the leaf's update time moved on), which
    is also what a report made by a replay looks like.
    """
    published = Published(app, monkeypatch)
    size = chord_tree.FAN_IN + 1  # two leaves below a top counter
    group_id, ids = apply_here(app, size)
    leaves = chord_tree.leaf_count(size)
    assert chord_tree.top_level(leaves) == 1
    # Every part but the one that fills the last leaf to fill, in header order.
    last_of_leaf = {chord_tree.leaf_of(task_id, leaves): task_id for task_id in ids}
    final = last_of_leaf[chord_tree.leaf_of(ids[-1], leaves)]
    for n, task_id in enumerate(ids):
        if task_id != final:
            _return(app, group_id, task_id, n)
    assert published.values == []
    store = app.backend.chords.store
    unanswered = _commit_unanswered_in(stack, store, "report")
    _return(app, group_id, final, ids.index(final))
    assert_unanswered(stack, *unanswered)
    assert published.values == [list(range(size))]
    assert ended_only(firestore_docs())


def test_a_chord_whose_end_went_unanswered_is_cleaned_up(app, stack, monkeypatch, firestore_docs) -> None:
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    _return(app, group_id, ids[0], "a")
    store = app.backend.chords.store
    unanswered = _commit_unanswered_in(stack, store, "end")
    _return(app, group_id, ids[1], "b")
    assert_unanswered(stack, *unanswered)
    assert published.values == [["a", "b"]]
    assert ended_only(firestore_docs())  # parts and counters deleted, not left to the TTL


# -- results in GCS -------------------------------------------------------------------------


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
