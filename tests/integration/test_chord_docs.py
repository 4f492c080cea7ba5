"""The Firestore chord documents against the Firestore emulator."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from celery_gcs import chords
from celery_gcs.settings import parse
from celery_gcs.stores.chord_store import ChordStore, Claim, Holder

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
def store(stack) -> ChordStore:
    return ChordStore(parse(f"gcs://{stack.bucket}?gcs_project={stack.stack.project}", {}))


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def test_a_part_is_counted_once_with_one_write(store, stack) -> None:
    key = f"chord-{uuid.uuid4()}"
    stack.firestore.reset_counts()
    assert store.count_part(key, "task-1", 0, _in(60)) is True
    assert stack.firestore.snapshot() == {"firestore.Commit": 1}
    assert store.count_part(key, "task-1", 0, _in(60)) is False
    assert store.count_part(key, "task-2", 1, _in(60)) is True
    assert store.counted(key) == 2


def test_size_and_added_make_the_total(store) -> None:
    key = f"chord-{uuid.uuid4()}"
    assert store.read(key) is None
    store.add(key, "extra-1", None)  # add_to_chord may run before the size is set
    store.set_size(key, 3, _in(60))
    store.add(key, "extra-2", None)
    store.add(key, "extra-2", None)
    chord = store.read(key)
    assert chord is not None and (chord.size, chord.added, chord.total) == (3, ("extra-1", "extra-2"), 5)


def test_one_claim_at_a_time_and_takeover_of_a_dead_holder(store) -> None:
    key = f"chord-{uuid.uuid4()}"
    store.set_size(key, 1, None)
    first = Claim("one", chords.this_holder(), _in(60))
    second = Claim("two", chords.this_holder(), _in(60))
    assert store.claim(key, first, chords.can_take_over) is not None
    assert store.claim(key, second, chords.can_take_over) is None
    assert store.renew(key, first) is True
    assert store.renew(key, second) is False
    store.release(key, "two")  # not ours: nothing happens
    assert store.read(key).claim.token == "one"
    store.release(key, "one")
    assert store.read(key).claim is None
    dead = Claim("dead", Holder("elsewhere", 1, "1"), _in(-1))
    assert store.claim(key, dead, chords.can_take_over) is not None
    assert store.claim(key, second, chords.can_take_over) is not None  # the lease ran out
    assert store.read(key).claim.token == "two"


def test_set_size_drops_a_previous_runs_claim(store) -> None:
    key = f"chord-{uuid.uuid4()}"
    store.set_size(key, 2, None)
    store.claim(key, Claim("old", chords.this_holder(), _in(60)), chords.can_take_over)
    store.set_size(key, 2, None)
    assert store.read(key).claim is None


def test_finish_deletes_the_chord_and_its_parts(store, firestore_docs) -> None:
    key = f"chord-{uuid.uuid4()}"
    store.set_size(key, 3, _in(60))
    parts = [f"p{n}" for n in range(3)]
    for n, part in enumerate(parts):
        store.count_part(key, part, n, _in(60))
    assert len(firestore_docs()) == 4
    assert all(data["expires_at"] for data in firestore_docs().values())
    store.finish(key, parts)
    assert firestore_docs() == {}


def test_finish_deletes_in_batches_over_firestores_limit(store, firestore_docs) -> None:
    key = f"chord-{uuid.uuid4()}"
    parts = [f"p{n}" for n in range(620)]
    store.set_size(key, len(parts), None)
    for n, part in enumerate(parts):
        store.count_part(key, part, n, None)
    assert store.counted(key) == 620
    store.finish(key, parts)
    assert firestore_docs() == {}


def test_incr_counts_up(store) -> None:
    key = f"counter-{uuid.uuid4()}"
    assert [store.incr(key, None) for _ in range(3)] == [1, 2, 3]


def test_chords_live_in_the_configured_database_and_collection(stack, firestore_docs) -> None:
    stack.stack.firestore_databases.add("chords-db")
    store = ChordStore(
        parse(f"gcs://{stack.bucket}?firestore_database=chords-db&firestore_collection=my-chords", {})
    )
    store.set_size("chord-x", 1, None)
    assert list(firestore_docs("my-chords", "chords-db")) == ["chord-x"]
    assert firestore_docs() == {}
