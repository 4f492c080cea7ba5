"""Chord documents edited by hand: a clear error naming the document and field, or handled safely.

The unit tests read documents as Firestore returns them; the end-to-end tests
edit a real chord's documents (the chord document, its counters, its parts)
on the emulator before real workers run its header, and check that the chord
fails once through its callback's errbacks, completes once with the right
result, or waits without firing, and that no part's result is lost.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery import chord, states
from celery.exceptions import ChordError
from celery_gcs import conventions
from celery_gcs.stores import chord_tree
from celery_gcs.stores.chord_store import MAX_CHORD_SIZE, chord_from
from google.cloud import firestore

from ..support import tasks
from ..support.chords import callback_runs, ended_only, errbacks, settle, sig

PATH = f"{conventions.FIRESTORE_COLLECTION}/chord-unlock-g1"


@dataclass
class Reference:
    path: str = PATH


@dataclass
class Snapshot:
    """What ``DocumentReference.get()`` returns, for the fields the parser reads."""

    data: dict[str, Any] | None
    reference: Reference = field(default_factory=Reference)
    read_time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def exists(self) -> bool:
        return self.data is not None

    def to_dict(self) -> dict[str, Any] | None:
        return self.data


def _lease(seconds: float = 60) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def _claim(**fields: Any) -> dict[str, Any]:
    return {"token": "t1", "lease_until": _lease(), **fields}


def _document(**fields: Any) -> dict[str, Any]:
    """A chord document as ``apply`` writes it for six parts, with ``fields`` changed."""
    written = {
        "size": 6, "leaves": 1, "added": [], "added_pending": 0, "header_done": False, "done": False,
        "expires_at": _lease(3600),
    }  # fmt: skip
    return {**written, **fields}


# -- the parser ------------------------------------------------------------------------


def test_a_document_this_backend_wrote_reads_back() -> None:
    lease, expires = _lease(), _lease(3600)
    data = _document(
        added=["a"], added_pending=1, header_done=True, claim=_claim(lease_until=lease), expires_at=expires
    )
    chord = chord_from(Snapshot(data), "(default)")
    assert chord is not None and chord.problem is None
    assert (chord.size, chord.leaves, chord.added, chord.added_pending) == (6, 1, ("a",), 1)
    assert (chord.header_done, chord.done, chord.expires_at) == (True, False, expires)
    assert (chord.claim.token, chord.claim.lease_until) == ("t1", lease)
    assert not chord.complete  # an added part is still pending
    assert chord_from(Snapshot(_document(header_done=True)), "(default)").complete
    assert chord_from(Snapshot(None), "(default)") is None


def test_whole_numbers_stored_as_doubles_are_still_whole_numbers() -> None:
    chord = chord_from(Snapshot(_document(size=6.0, leaves=1.0, added_pending=0.0)), "(default)")
    assert chord.problem is None and (chord.size, chord.leaves, chord.added_pending) == (6, 1, 0)


@pytest.mark.parametrize(
    ("fields", "named", "says"),
    [
        ({"size": "100"}, "'size' is '100'", "not a whole number of parts"),
        ({"size": 2.5}, "'size' is 2.5", "not a whole number of parts"),
        ({"size": True}, "'size' is True", "not a whole number of parts"),
        ({"size": {"n": 1}}, "'size' is {'n': 1}", "not a whole number of parts"),
        ({"size": None}, "'size' is None", "not a whole number of parts"),
        ({"size": -3}, "'size' is -3", f"from 0 to {MAX_CHORD_SIZE:,}"),
        ({"size": 10**12}, "'size' is 1000000000000", f"from 0 to {MAX_CHORD_SIZE:,}"),
        ({"leaves": "one"}, "'leaves' is 'one'", "not a whole number of counters"),
        ({"leaves": 0}, "'leaves' is 0", "not a whole number of counters"),
        ({"leaves": -1}, "'leaves' is -1", "not a whole number of counters"),
        ({"leaves": 10**12}, "'leaves' is 1000000000000", "not a whole number of counters"),
        ({"leaves": None}, "'leaves' is None", "not a whole number of counters"),
        ({"added": "task-1"}, "'added' is 'task-1'", "not a list of task ids"),
        ({"added": ["ok", 7]}, "'added' is ['ok', 7]", "not a list of task ids"),
        ({"added": [""]}, "'added' is ['']", "not a list of task ids"),
        ({"added_pending": "1"}, "'added_pending' is '1'", "not a whole number"),
        ({"added_pending": 0.5}, "'added_pending' is 0.5", "not a whole number"),
        ({"added_pending": False}, "'added_pending' is False", "not a whole number"),
        ({"header_done": "yes"}, "'header_done' is 'yes'", "not true or false"),
        ({"header_done": 1}, "'header_done' is 1", "not true or false"),
        ({"done": "no"}, "'done' is 'no'", "not true or false"),
        ({"done": None}, "'done' is None", "not true or false"),
    ],
    ids=["size-text", "size-fraction", "size-bool", "size-map", "size-null", "size-negative", "size-huge",
         "leaves-text", "leaves-zero", "leaves-negative", "leaves-huge", "leaves-null",
         "added-text", "added-not-ids", "added-empty-id",
         "added_pending-text", "added_pending-fraction", "added_pending-bool",
         "header_done-text", "header_done-number", "done-text", "done-null"],
)  # fmt: skip
def test_a_field_this_backend_cannot_have_written_is_a_problem_naming_document_and_field(
    fields: dict[str, Any], named: str, says: str
) -> None:
    chord = chord_from(Snapshot(_document(**fields)), "chords-db")
    assert chord is not None and chord.problem is not None
    assert f"chord document {PATH!r} in Firestore database 'chords-db'" in chord.problem
    assert named in chord.problem and says in chord.problem
    assert "edited by hand" in chord.problem
    assert not chord.complete  # such a chord is never completed: it is failed


def test_every_bad_field_is_named() -> None:
    chord = chord_from(Snapshot(_document(size="six", done="no")), "(default)")
    assert "'size' is 'six'" in chord.problem and "'done' is 'no'" in chord.problem


@pytest.mark.parametrize(
    "claim",
    [
        "garbage",
        ["t1"],
        {},
        _claim(token=""),
        _claim(token=7),
        _claim(token=None),
        _claim(lease_until="tomorrow"),
        _claim(lease_until=1_900_000_000),
        _claim(lease_until=None),
        _claim(lease_until=dt.datetime(2030, 1, 1)),  # no time zone: not one we wrote
    ],
    ids=["text", "list", "empty-map", "empty-token", "number-token", "no-token",
         "text-lease", "number-lease", "no-lease", "naive-lease"],
)  # fmt: skip
def test_a_claim_this_backend_cannot_have_written_counts_as_no_claim(claim: Any, caplog) -> None:
    chord = chord_from(Snapshot(_document(header_done=True, claim=claim)), "(default)")
    assert chord is not None and chord.problem is None and chord.complete
    assert chord.claim is None  # the next claim replaces it
    assert f"{PATH!r}" in caplog.text and "'claim'" in caplog.text and "taken as no claim" in caplog.text


# -- real chords, edited on the emulator -------------------------------------------------------------

SIZE = 6
EXPECTED = [2 * n for n in range(SIZE)]


def _chord_doc(app: Any, result: Any) -> firestore.DocumentReference:
    client = firestore.Client(project=app.backend.settings.firestore_project or None)
    return client.collection(conventions.FIRESTORE_COLLECTION).document(app.backend.chords.key(result.parent.id))


def _counter_id(result: Any) -> str:
    """The id of the one counter of a chord of ``SIZE`` parts: its only leaf, which is also its top."""
    leaves = chord_tree.leaf_count(SIZE)
    assert leaves == 1
    return chord_tree.leaf_of(result.parent.results[0].id, leaves).document_id


def _counter_doc(app: Any, result: Any) -> firestore.DocumentReference:
    return _chord_doc(app, result).collection(conventions.FIRESTORE_COUNTERS_COLLECTION).document(_counter_id(result))


def _part_doc(app: Any, result: Any, part: Any) -> firestore.DocumentReference:
    return _chord_doc(app, result).collection(conventions.FIRESTORE_PARTS_COLLECTION).document(part.id)


def _header_values(app: Any, result: Any) -> list[Any]:
    metas = [app.backend.get_task_meta(part.id, cache=False) for part in result.parent.results]
    assert {meta["status"] for meta in metas} == {states.SUCCESS}
    return [meta["result"] for meta in metas]


def _apply(app: Any, last_queue: str | None = None) -> Any:
    """A chord of ``SIZE`` adds with an errback; ``last_queue`` holds its last part back in that queue."""
    callback = sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error))
    header = [sig(app, tasks.add, n, n) for n in range(SIZE)]
    if last_queue:
        header[-1] = sig(app, tasks.add, SIZE - 1, SIZE - 1, queue=last_queue)
    return chord(header)(callback)


def _wait_for_header(app: Any, result: Any, timeout: float = 60) -> None:
    """Until every header part has stored its result."""
    deadline = time.monotonic() + timeout
    while not all(part.ready() for part in result.parent.results):
        assert time.monotonic() < deadline, "the header parts did not all run"
        time.sleep(0.2)


def _in_docs(docs: dict[str, Any], app: Any, result: Any) -> dict[str, Any]:
    key = app.backend.chords.key(result.parent.id)
    return {path: data for path, data in docs.items() if path.split("/")[0] == key}


#: Edits that make a chord impossible to complete, and what its error says.
#: The chords run side by side in one worker, with an untouched one.
UNUSABLE = {
    "size-text": ({"size": "six"}, "field 'size' is 'six', not a whole number of parts"),
    "size-negative": ({"size": -6}, "field 'size' is -6, not a whole number of parts from 0 to"),
    "size-huge": ({"size": 10**15}, "field 'size' is 1000000000000000, not a whole number of parts"),
    "leaves-text": ({"leaves": "one"}, "field 'leaves' is 'one', not a whole number of counters"),
    "leaves-zero": ({"leaves": 0}, "field 'leaves' is 0, not a whole number of counters"),
    "added-garbage": ({"added": {"a": 1}}, "field 'added' is {'a': 1}, not a list of task ids"),
    "added_pending-text": ({"added_pending": "none"}, "field 'added_pending' is 'none', not a whole number"),
    "header_done-text": ({"header_done": "no"}, "field 'header_done' is 'no', not true or false"),
    "done-number": ({"done": 0}, "field 'done' is 0, not true or false"),
}


@pytest.mark.usefixtures("stack")
def test_chords_whose_fields_were_edited_into_nonsense_fail_once_through_their_errbacks(
    app, start_worker, firestore_docs
) -> None:
    untouched = _apply(app)
    edited = {}
    for name, (edit, _) in UNUSABLE.items():
        edited[name] = result = _apply(app)  # no worker yet: the headers wait in the queue
        _chord_doc(app, result).update(edit)
    start_worker()
    assert untouched.get(timeout=60) == EXPECTED
    for name, result in edited.items():
        with pytest.raises(ChordError) as caught:
            result.get(timeout=60)
        path = _chord_doc(app, result).path
        message = str(caught.value)
        assert f"chord document '{path}' in Firestore database '(default)'" in message, name
        assert UNUSABLE[name][1] in message and "edited by hand" in message, name
    settle()
    docs = firestore_docs()
    for name, result in edited.items():
        assert callback_runs(app, result) == 0, name
        called = errbacks(app, result)
        assert len(called) == 1 and "ChordError" in called[0] and f"field '{name.split('-')[0]}'" in called[0], name
        assert _header_values(app, result) == EXPECTED, name  # no part's result lost
        mine = _in_docs(docs, app, result)
        assert mine[app.backend.chords.key(result.parent.id)]["done"] is True, name  # ended, until its TTL
        assert not [path for path in mine if "/parts/" in path], name  # no part was counted
    assert callback_runs(app, untouched) == 1
    assert all("expires_at" in data for data in docs.values())  # the TTL policy removes what is left


@pytest.mark.usefixtures("stack")
def test_chords_whose_claim_size_or_expiry_was_edited_complete_once(app, start_worker, firestore_docs) -> None:
    """Edits that leave a usable chord: each completes once with the right result.

    A claim this backend cannot have written counts as none, and so does a
    well-formed one whose lease has run out by the server's clock; the size
    is not what counts the parts (the counters are), and an early
    ``header_done`` cannot fire the callback: only the part that fills the
    top counter settles the chord, and its join needs every part's result.
    """
    completing = {
        "claim-text": {"claim": "garbage"},
        "claim-bad-fields": {"claim": {"token": 5, "lease_until": "soon"}},
        "claim-lease-ran-out": {"claim": {"token": "gone", "lease_until": _lease(-60)}},
        "size-lowered": {"size": 2},
        "size-raised": {"size": SIZE + 1},
        "header_done-early": {"header_done": True},
        "added_pending-negative": {"added_pending": -3},
        "expires_at-text": {"expires_at": "tomorrow"},
    }
    results = {}
    for name, edit in completing.items():
        results[name] = result = _apply(app)
        _chord_doc(app, result).update(edit)
    start_worker()
    for name, result in results.items():
        assert result.get(timeout=60) == EXPECTED, name
    settle()
    docs = firestore_docs()
    for name, result in results.items():
        assert (callback_runs(app, result), errbacks(app, result)) == (1, []), name
        assert ended_only(_in_docs(docs, app, result)), name


@pytest.mark.usefixtures("stack")
def test_chords_edited_to_values_that_cannot_be_told_from_real_ones_wait_and_fire_nothing(
    app, start_worker, firestore_docs
) -> None:
    """A plausible value is taken at its word, as Celery's Redis backend takes an edited counter.

    Each chord waits: nothing fires early or twice, every part's result is
    stored, and every document carries ``expires_at``, so Firestore's TTL
    policy removes them.
    """
    waiting = {
        "added_pending-raised": lambda result: _chord_doc(app, result).update({"added_pending": 1}),
        "done-set": lambda result: _chord_doc(app, result).update({"done": True}),
        "claim-live": lambda result: _chord_doc(app, result).update(
            {"claim": {"token": "someone", "lease_until": _lease(3600)}}
        ),
        "counter-raised": lambda result: _counter_doc(app, result).update({"remaining": SIZE + 1}),
    }
    results = {}
    for name, edit in waiting.items():
        results[name] = result = _apply(app)
        edit(result)
    start_worker()
    for result in results.values():
        _wait_for_header(app, result)
    settle(3)
    docs = firestore_docs()
    for name, result in results.items():
        assert _header_values(app, result) == EXPECTED, name
        assert (callback_runs(app, result), errbacks(app, result)) == (0, []), name
        assert result.state == states.PENDING, name
        mine = _in_docs(docs, app, result)
        assert mine and all("expires_at" in data for data in mine.values()), name


#: Counter edits that leave the chord's counting wrong.
COUNTER_EDITS = {
    # Filled by the first part: its join finds the last part missing and
    # gives the claim back; the last part then counts it below zero.
    "lowered": lambda counter: counter.update({"remaining": 1}),
    # Firestore's increment of a value that is not a number sets it to -1.
    "text": lambda counter: counter.update({"remaining": "six"}),
    "deleted": lambda counter: counter.delete(),
}

def _wait_until_finished(worker: Any, task_ids: list[str], runs: int = 1, timeout: float = 60) -> None:
    """Until the worker has logged each task done ``runs`` times: its return handled, look-agains included."""
    deadline = time.monotonic() + timeout
    while any(worker.log().count(f"[{task_id}] succeeded in ") < runs for task_id in task_ids):
        assert time.monotonic() < deadline, "the tasks did not all finish"
        time.sleep(0.2)


@pytest.mark.usefixtures("stack")
def test_chords_whose_counter_was_edited_end_once_not_hang(app, start_worker) -> None:
    """Each completes once with every result (its join reads them all) or fails once naming its counter.

    Their last parts wait in the queue "later" until the others have run and,
    where the counter filled early, the join has given up on the last part.
    """
    results = {}
    for name, edit in COUNTER_EDITS.items():
        results[name] = result = _apply(app, last_queue="later")
        edit(_counter_doc(app, result))
    first = start_worker()
    for result in results.values():
        _wait_until_finished(first, [part.id for part in result.parent.results[:-1]])
        assert "claim" not in _chord_doc(app, result).get().to_dict()  # none, or given back
    start_worker(task_default_queue="later")
    for result in results.values():
        assert result.parent.results[-1].get(timeout=60) == EXPECTED[-1]
    deadline = time.monotonic() + 20
    for name, result in results.items():
        try:
            assert result.get(timeout=max(deadline - time.monotonic(), 1)) == EXPECTED, name
        except ChordError as exc:
            assert f"{conventions.FIRESTORE_COUNTERS_COLLECTION}/{_counter_id(result)}" in str(exc), name
    settle()
    for name, result in results.items():
        assert callback_runs(app, result) + len(errbacks(app, result)) == 1, name


@pytest.mark.usefixtures("stack")
def test_a_chord_document_edited_into_nonsense_while_the_chord_runs_fails_once(app, start_worker) -> None:
    """The process that counts the last part read the chord document before the edit, and keeps it.

    One pool process runs the whole header; the last part waits for its
    countdown meanwhile, and fills the counter after the edit: the
    transaction settling the chord reads the edited document.
    """
    callback = sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error))
    header = [sig(app, tasks.add, n, n) for n in range(SIZE - 1)]
    result = chord([*header, sig(app, tasks.add, SIZE - 1, SIZE - 1, countdown=8)])(callback)
    start_worker(concurrency=1)
    *quick, last = result.parent.results
    assert [part.get(timeout=60) for part in quick] == EXPECTED[:-1]
    _chord_doc(app, result).update({"size": "six"})
    assert not last.ready(), "the last part ran before the edit: raise its countdown"
    assert last.get(timeout=60) == EXPECTED[-1]
    with pytest.raises(ChordError) as caught:
        result.get(timeout=15)
    assert "field 'size' is 'six'" in str(caught.value)
    settle()
    assert (callback_runs(app, result), len(errbacks(app, result))) == (0, 1)


@pytest.mark.usefixtures("stack")
def test_a_part_whose_document_was_deleted_and_is_redelivered_still_completes_the_chord_once(
    app, start_worker, firestore_docs
) -> None:
    """A part document is what makes a second copy of a part a duplicate; without it the copy counts again.

    Five parts are counted, two of their documents are deleted (by hand, or
    by the TTL policy in a chord running past its expiry), and one of them
    is delivered again before the last part returns: the counter fills one
    part early. The callback must still run once, with every result.
    """
    result = _apply(app, last_queue="later")
    callback = sig(app, tasks.collect, task_id=result.id).on_error(sig(app, tasks.on_chord_error))
    first = start_worker()
    *quick, last = result.parent.results
    assert [part.get(timeout=60) for part in quick] == EXPECTED[:-1]
    for part in quick[:2]:
        _part_doc(app, result, part).delete()
    app.send_task(
        tasks.add.name, args=(0, 0), task_id=quick[0].id, group_id=result.parent.id,
        group_index=0, chord=callback,
    )  # fmt: skip
    _wait_until_finished(first, [quick[0].id], runs=2)  # the copy filled the counter
    assert "claim" not in _chord_doc(app, result).get().to_dict()  # its join gave up on the last part
    assert callback_runs(app, result) == 0  # never without the last part
    later = start_worker(task_default_queue="later")
    assert last.get(timeout=60) == 10
    assert result.get(timeout=20) == EXPECTED
    settle()
    assert callback_runs(app, result) == 1
    assert ended_only(firestore_docs())
    # The copy counted twice: the counter went below zero, and the join decided.
    assert "went below zero; the join decides" in first.log() + later.log()
