"""The Firestore chord documents against the Firestore emulator."""

from __future__ import annotations

import datetime as dt
import time
import types
import uuid

import pytest
from celery_gcs import conventions
from celery_gcs.settings import parse
from celery_gcs.stores import chord_store, chord_tree
from celery_gcs.stores.chord_store import ChordStore, Refused, Settle
from google.cloud import firestore

from ..support.chords import chord_store_on, in_seconds, open_chord

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
def store(stack) -> ChordStore:
    return chord_store_on(stack)




def test_a_part_is_counted_once_in_one_commit_that_reads_nothing(store, stack) -> None:
    key, ids, leaves = open_chord(store, 3)
    leaf = chord_tree.leaf_of(ids[0], leaves)
    stack.firestore.reset_counts()
    counted = store.count(key, ids[0], leaf, in_seconds(60))
    assert counted is not None and counted.remaining == 2
    assert stack.firestore.snapshot() == {"firestore.Commit": 1}
    assert store.count(key, ids[0], leaf, in_seconds(60)) is None  # a duplicate: refused whole
    assert store.read_counter(key, leaf).remaining == 2
    assert store.count(key, ids[1], leaf, in_seconds(60)).remaining == 1


def test_a_part_says_when_it_looks_again_in_its_document_at_no_cost(store, stack) -> None:
    key, ids, leaves = open_chord(store, 3)
    stack.firestore.reset_counts()
    for task_id, seconds in zip(ids, (1.5, None, 10.0), strict=True):
        store.count(key, task_id, chord_tree.leaf_of(task_id, leaves), in_seconds(60), looks_again_after=seconds)
    assert stack.firestore.snapshot() == {"firestore.Commit": 3}  # one commit a part, as before
    parts = firestore.Client(project=stack.local_stack.project).collection(conventions.FIRESTORE_COLLECTION).document(key)
    parts.collection(conventions.FIRESTORE_PARTS_COLLECTION).document(ids[2]).update({"looks_again_after": "soon"})
    found = store.countings(key, [*ids, "never-counted"])
    # In no set order; the edited one is not a number.
    assert sorted(str(counting.looks_again_after) for counting in found) == ["1.5", "None", "None"]
    assert all(counting.written <= counting.read_time for counting in found)


def test_a_part_of_no_counter_is_refused_and_writes_nothing(store, firestore_docs) -> None:
    key, _, _ = open_chord(store, 1)
    before = firestore_docs()
    assert store.count(key, "stranger", chord_tree.Node(0, 7, 1), in_seconds(60)) is None
    assert firestore_docs() == before


def test_a_full_counter_reports_to_its_parent_once(store) -> None:
    key, ids, leaves = open_chord(store, 40)
    assert leaves > 1
    leaf = chord_tree.leaf_of(ids[0], leaves)
    mine = [task_id for task_id in ids if chord_tree.leaf_of(task_id, leaves) == leaf]
    for task_id in mine:
        counted = store.count(key, task_id, leaf, in_seconds(60))
    assert counted.remaining == 0
    parent = chord_tree.parent(leaf)
    before = store.read_counter(key, parent).remaining
    assert store.report(key, leaf, counted.update_time, parent, in_seconds(60)).remaining == before - 1
    # A replay reporting from what it read: the precondition refuses it.
    assert store.report(key, leaf, counted.update_time, parent, in_seconds(60)) is Refused.MOVED
    assert store.read_counter(key, parent).remaining == before - 1
    assert store.read_counter(key, leaf).reported is True


def test_a_report_to_a_parent_gone_is_refused_as_gone_and_writes_nothing(store, stack) -> None:
    key, ids, leaves = open_chord(store, 40)
    leaf = chord_tree.leaf_of(ids[0], leaves)
    counted = store.count(key, ids[0], leaf, in_seconds(60))
    parent = chord_tree.parent(leaf)
    chord = firestore.Client(project=stack.local_stack.project).collection(conventions.FIRESTORE_COLLECTION).document(key)
    chord.collection(conventions.FIRESTORE_COUNTERS_COLLECTION).document(parent.document_id).delete()
    assert store.report(key, leaf, counted.update_time, parent, in_seconds(60)) is Refused.GONE
    assert store.read_counter(key, leaf).reported is False


def test_adding_grows_the_chord_once_per_task(store) -> None:
    key, _, _ = open_chord(store, 1)
    assert store.add(key, "extra-1", "extra-1", None) is True
    assert store.add(key, "extra-1", "extra-1", None) is False
    chord = store.read(key)
    assert chord.added_pending == 1
    assert store.added(key) == ["extra-1"]
    assert store.read_part(key, "extra-1") == chord_store.PartState(added=True, counted=False)


def test_adding_keeps_the_chord_document_the_same_size_and_the_added_in_order(store, stack) -> None:
    """Issue 26: the chord document listed every added id, so the 28,335th add hit Firestore's 1 MiB limit,
    and every settle read the whole list."""
    key, _, _ = open_chord(store, 1)
    client = firestore.Client(project=stack.local_stack.project)
    document = client.collection(conventions.FIRESTORE_COLLECTION).document(key)
    store.add(key, "extra-0", "extra-0", None)
    once = document.get().to_dict()
    for n in range(1, 30):
        store.add(key, f"extra-{n}", f"extra-{n}", None)
    after = document.get().to_dict()
    assert {**after, "added_pending": 1} == once  # nothing but the count of pending added tasks changed
    assert after["added_pending"] == 30
    assert store.added(key) == [f"extra-{n}" for n in range(30)]


def test_one_claim_at_a_time_with_a_lease_in_server_time(store) -> None:
    key, ids, leaves = open_chord(store, 1)
    top = chord_tree.leaf_of(ids[0], leaves)
    store.count(key, ids[0], top, None)
    first = store.settle(key, Settle("one", 60, top=top))
    assert first.claimed and first.chord.claim.token == "one"
    lease = (first.chord.claim.lease_until - first.chord.read_time).total_seconds()
    assert lease == pytest.approx(60)
    second = store.settle(key, Settle("two", 60))
    assert second.held and not second.claimed
    assert store.renew(key, "one", 60) is True
    assert store.renew(key, "two", 60) is False
    store.release(key, "two")  # not ours: nothing happens
    assert store.read(key).claim.token == "one"
    store.release(key, "one")
    assert store.read(key).claim is None
    assert store.settle(key, Settle("short", 0.5)).claimed
    assert store.settle(key, Settle("two", 60)).held
    time.sleep(0.7)
    assert store.settle(key, Settle("two", 60)).claimed  # the lease ran out
    assert store.read(key).claim.token == "two"


def test_a_lease_never_depends_on_a_hosts_clock(store, monkeypatch) -> None:
    """Issue 11, suspected: leases compared across hosts' wall clocks; a skew over the lease let a live claim go."""

    class Clock(type):
        def __instancecheck__(cls, value: object) -> bool:
            return isinstance(value, dt.datetime)

    class Skewed(dt.datetime, metaclass=Clock):
        @classmethod
        def now(cls, tz=None):  # a host an hour ahead
            return dt.datetime.now(tz) + dt.timedelta(hours=1)

    key, ids, leaves = open_chord(store, 1)
    top = chord_tree.leaf_of(ids[0], leaves)
    store.count(key, ids[0], top, None)
    assert store.settle(key, Settle("holder", 60, top=top)).claimed
    monkeypatch.setattr(
        chord_store,
        "dt",
        types.SimpleNamespace(datetime=Skewed, timedelta=dt.timedelta, UTC=dt.UTC),
    )
    assert store.settle(key, Settle("skewed-host", 60)).held  # still live by the server's clock


def test_an_incomplete_chord_is_not_claimed(store) -> None:
    key, _, _ = open_chord(store, 2)
    settled = store.settle(key, Settle("early", 60))
    assert not settled.claimed and not settled.held
    assert store.read(key).claim is None


def test_end_marks_the_chord_done_and_clean_up_deletes_in_batches(store, firestore_docs) -> None:
    key, ids, leaves = open_chord(store, 620)
    counts = chord_tree.initial_counts(ids, leaves)
    for task_id in ids:
        store.count(key, task_id, chord_tree.leaf_of(task_id, leaves), in_seconds(60))
    assert len(firestore_docs()) == 1 + 620 + len(counts)
    assert all(data["expires_at"] for data in firestore_docs().values())
    assert store.settle(key, Settle("t", 60, force=True)).claimed
    assert store.end(key, "someone-else") is False
    assert store.end(key, "t") is True
    store.clean_up(key, ids, counts)
    docs = firestore_docs()
    assert list(docs) == [key] and docs[key]["done"] is True and "claim" not in docs[key]
    # A settle after the end does nothing.
    assert store.settle(key, Settle("late", 60, force=True)).chord.done


def test_incr_counts_up(store) -> None:
    key = f"counter-{uuid.uuid4()}"
    assert [store.incr(key, None) for _ in range(3)] == [1, 2, 3]


def test_chords_live_in_the_configured_database_and_collection(stack, firestore_docs) -> None:
    stack.local_stack.firestore_databases.add("chords-db")
    store = ChordStore(
        parse(
            f"gcs://{stack.bucket}?firestore_database=chords-db&firestore_collection=my-chords", {}
        )
    )
    store.create("chord-x", 1, 1, {chord_tree.Node(0, 0, 1): 1}, None)
    assert set(firestore_docs("my-chords", "chords-db")) == {"chord-x", "chord-x/counters/0-0-of-1"}
    assert firestore_docs() == {}


def test_a_group_id_applied_again_while_open_keeps_its_claim_and_starts_afresh_once_ended(store) -> None:
    """Issue 11, suspected: re-applying a chord (set_size) deleted a live claim."""
    key, ids, leaves = open_chord(store, 1)
    top = chord_tree.leaf_of(ids[0], leaves)
    store.count(key, ids[0], top, None)
    assert store.settle(key, Settle("holder", 60, top=top)).claimed
    assert store.create(key, 1, leaves, chord_tree.initial_counts(ids, leaves), in_seconds(60)) is False
    assert store.read(key).claim.token == "holder" and store.read(key).header_done
    assert store.end(key, "holder")
    assert store.create(key, 1, leaves, chord_tree.initial_counts(ids, leaves), in_seconds(60)) is True
    fresh = store.read(key)
    assert (fresh.done, fresh.header_done, fresh.claim) == (False, False, None)


def test_a_refresh_renews_its_own_lease_in_a_read_and_a_write_and_never_one_taken_over(store, stack) -> None:
    """A refresh slower than its lease was taken over, and a second full refresh ran alongside (the
    prefork soak: 14 chords of 19); its refresher now renews the lease while it runs."""
    key, _, _ = open_chord(store, 1)
    due = in_seconds(3600)
    assert store.start_refresh(key, due, "a", 1.0, lifetime=None).started
    stack.firestore.reset_counts()
    assert store.renew_refresh(key, "a", 60)
    assert stack.firestore.snapshot() == {"firestore.BatchGetDocuments": 1, "firestore.Commit": 1}
    busy = store.start_refresh(key, due, "b", 60, lifetime=None)
    assert not busy.started and busy.busy_for > 50  # renewed for a minute from its 1 s
    assert store.renew_refresh(key, "a", 0.5)
    time.sleep(0.7)
    assert store.start_refresh(key, due, "b", 60, lifetime=None).started  # a's lease ran out: taken over
    assert not store.renew_refresh(key, "a", 3600)
    third = store.start_refresh(key, due, "c", 60, lifetime=None)
    assert not third.started and 50 < third.busy_for <= 60  # b's lease, as b took it
    store.end_refresh(key, "b", in_seconds(600))
    assert not store.renew_refresh(key, "b", 3600)  # ended: no lease written back
    assert store.start_refresh(key, due, "d", 60, lifetime=None).started


def test_a_refresh_ended_after_its_lease_ran_out_leaves_its_successors_lease_and_later_expiry(store) -> None:
    """The prefork soak's log: a refresh slower than its lease was taken over, and ending it removed its
    successor's lease, so a third process took a refresh alongside (each rewriting every stored result),
    and the last to end brought the chord's expiry forward to its own."""
    key, _, _ = open_chord(store, 1)
    due = in_seconds(3600)

    def taken_over(slow: str, successor: str) -> None:
        assert store.start_refresh(key, due, slow, 0.5, lifetime=None).started
        time.sleep(0.7)
        assert store.start_refresh(key, due, successor, 60, lifetime=None).started  # the slow one's lease ran out

    taken_over("a", "b")
    store.end_refresh(key, "a", in_seconds(300))
    third = store.start_refresh(key, due, "third", 60, lifetime=None)
    assert not third.started and third.busy_for > 50  # the lease is still the successor's
    b_sets = in_seconds(600)
    store.end_refresh(key, "b", b_sets)
    assert store.read(key).expires_at == b_sets
    taken_over("c", "d")
    d_sets = in_seconds(900)
    store.end_refresh(key, "d", d_sets)
    store.end_refresh(key, "c", in_seconds(800))  # the slow one ends last, with a sooner expiry
    chord = store.read(key)
    assert chord.expires_at == d_sets  # never brought forward by a refresh taken over
    assert chord.refreshes == 3  # a, b and d: c wrote nothing
    # The refresh holding its lease sets the expiry, sooner or not: the applying client's longer
    # result_expires is brought down to the workers' by their first refresh.
    assert store.start_refresh(key, due, "e", 60, lifetime=None).started
    e_sets = in_seconds(100)
    store.end_refresh(key, "e", e_sets)
    assert store.read(key).expires_at == e_sets


def test_ending_a_refresh_says_whether_its_chord_is_still_open(store) -> None:
    """A refresh warns of results it found expired only while its chord is open: ending it says, from the
    read it makes anyway (the holder's own result, stored once the chord ended, lives ``result_expires``)."""
    key, ids, leaves = open_chord(store, 1)
    due = in_seconds(3600)
    assert store.start_refresh(key, due, "a", 60, lifetime=None).started
    assert store.end_refresh(key, "a", in_seconds(600)) is True
    assert store.start_refresh(key, due, "b", 60, lifetime=None).started
    top = chord_tree.leaf_of(ids[0], leaves)
    store.count(key, ids[0], top, None)
    assert store.settle(key, Settle("holder", 60, top=top)).claimed
    assert store.end(key, "holder")
    assert store.end_refresh(key, "b", in_seconds(900)) is False
    assert store.end_refresh(key, "b", None) is False
    assert store.end_refresh(f"{key}-gone", "c", None) is False
