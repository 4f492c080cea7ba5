"""Chord documents edited by hand: a clear error naming the document and field, or handled safely.

The unit tests read documents as Firestore returns them; the end-to-end tests
edit a real chord's documents on the emulator before (or while) real workers
run its header, and check that the chord fails once through its callback's
errbacks, or completes once with the right result, and that no other result
is lost.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery import chord, states
from celery.exceptions import ChordError
from celery_gcs.stores.chord_store import MAX_CHORD_SIZE, chord_from
from google.cloud import firestore

from ..support import tasks
from ..support.chords import callback_runs, errbacks, settle, sig

PATH = "celery/chord-unlock-g1"


@dataclass
class Reference:
    path: str = PATH


@dataclass
class Snapshot:
    """What ``DocumentReference.get()`` returns, for the fields the parser reads."""

    data: dict[str, Any] | None
    reference: Reference = field(default_factory=Reference)

    @property
    def exists(self) -> bool:
        return self.data is not None

    def to_dict(self) -> dict[str, Any] | None:
        return self.data


def _lease(seconds: float = 60) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def _claim(**fields: Any) -> dict[str, Any]:
    return {"token": "t1", "host": "h", "pid": 12, "started": "99", "lease_until": _lease(), **fields}


# -- the parser ------------------------------------------------------------------------


def test_a_document_this_backend_wrote_reads_back() -> None:
    chord = chord_from(Snapshot({"size": 3, "added": ["a"], "claim": _claim()}), "(default)")
    assert chord is not None and chord.problem is None
    assert (chord.size, chord.added, chord.total, chord.claim.token) == (3, ("a",), 4, "t1")
    assert chord_from(Snapshot(None), "(default)") is None
    assert chord_from(Snapshot({"size": 2.0}), "(default)").total == 2  # a whole double is a size


@pytest.mark.parametrize(
    ("fields", "named", "says"),
    [
        ({"size": "100"}, "'size' is '100'", "not a whole number of parts"),
        ({"size": 2.5}, "'size' is 2.5", "not a whole number of parts"),
        ({"size": True}, "'size' is True", "not a whole number of parts"),
        ({"size": {"n": 1}}, "'size' is {'n': 1}", "not a whole number of parts"),
        ({"size": -3}, "'size' is -3", f"outside 0 to {MAX_CHORD_SIZE:,}"),
        ({"size": 10**12}, "'size' is 1000000000000", f"outside 0 to {MAX_CHORD_SIZE:,}"),
        ({"size": 3, "added": "task-1"}, "'added' is 'task-1'", "not a list of task ids"),
        ({"size": 3, "added": ["ok", 7]}, "'added' is ['ok', 7]", "not a list of task ids"),
        ({"size": 3, "added": [""]}, "'added' is ['']", "not a list of task ids"),
    ],
    ids=["size-text", "size-fraction", "size-bool", "size-map", "size-negative", "size-huge",
         "added-text", "added-not-ids", "added-empty-id"],
)  # fmt: skip
def test_a_size_or_ids_this_backend_cannot_have_written_is_a_problem_naming_document_and_field(
    fields: dict[str, Any], named: str, says: str
) -> None:
    chord = chord_from(Snapshot(fields), "chords-db")
    assert chord is not None and chord.problem is not None
    assert f"chord document {PATH!r} in Firestore database 'chords-db'" in chord.problem
    assert named in chord.problem and says in chord.problem
    assert chord.total is None  # never counted towards completion


@pytest.mark.parametrize(
    "claim",
    [
        "garbage",
        ["t1"],
        _claim(token=""),
        _claim(token=7),
        _claim(pid="12"),
        _claim(pid=None),
        _claim(host=None),
        _claim(lease_until="tomorrow"),
        _claim(lease_until=None),
        _claim(lease_until=dt.datetime(2030, 1, 1)),  # no time zone: not one we wrote
    ],
    ids=["text", "list", "empty-token", "number-token", "text-pid", "no-pid", "no-host",
         "text-lease", "no-lease", "naive-lease"],
)  # fmt: skip
def test_a_claim_this_backend_cannot_have_written_counts_as_no_claim(claim: Any, caplog) -> None:
    chord = chord_from(Snapshot({"size": 2, "claim": claim}), "(default)")
    assert chord is not None and chord.problem is None and chord.total == 2
    assert chord.claim is None  # the next claim replaces it
    assert f"{PATH!r}" in caplog.text and "'claim'" in caplog.text and "taken as no claim" in caplog.text


# -- real chords, edited on the emulator -------------------------------------------------------------


def _chord_doc(stack: Any, result: Any) -> firestore.DocumentReference:
    client = firestore.Client(project=stack.stack.project)
    return client.collection("celery").document(f"chord-unlock-{result.parent.id}")


def _header_values(app: Any, result: Any) -> list[Any]:
    metas = [app.backend.get_task_meta(part.id, cache=False) for part in result.parent.results]
    assert {meta["status"] for meta in metas} == {states.SUCCESS}
    return [meta["result"] for meta in metas]


SIZE = 6
EXPECTED = [2 * n for n in range(SIZE)]


def _apply(app: Any) -> Any:
    callback = sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error))
    return chord([sig(app, tasks.add, n, n) for n in range(SIZE)])(callback)


#: Edits that make a chord impossible to complete, and what its error says.
#: The chords run side by side in one worker, with an untouched one.
UNUSABLE = {
    "size-text": ({"size": "six"}, "field 'size' is 'six', not a whole number of parts"),
    "size-negative": ({"size": -6}, "field 'size' is -6, outside 0 to"),
    "size-huge": ({"size": 10**15}, "field 'size' is 1000000000000000, outside 0 to"),
    "added-garbage": ({"added": {"a": 1}}, "field 'added' is {'a': 1}, not a list of task ids"),
}


@pytest.mark.usefixtures("stack")
def test_chords_whose_size_or_ids_were_edited_fail_once_through_their_errbacks(
    app, start_worker, stack, firestore_docs
) -> None:
    untouched = _apply(app)
    edited = {}
    for name, (edit, _) in UNUSABLE.items():
        edited[name] = result = _apply(app)  # no worker yet: the headers wait in the queue
        _chord_doc(stack, result).update(edit)
    start_worker()
    assert untouched.get(timeout=60) == EXPECTED
    for name, result in edited.items():
        with pytest.raises(ChordError) as caught:
            result.get(timeout=60)
        path = _chord_doc(stack, result).path
        assert f"chord document '{path}'" in str(caught.value) and UNUSABLE[name][1] in str(caught.value), name
    settle()
    docs = firestore_docs()
    for name, result in edited.items():
        assert callback_runs(app, result) == 0, name
        called = errbacks(app, result)
        assert len(called) == 1 and "ChordError" in called[0] and f"chord-unlock-{result.parent.id}" in called[0]
        assert _header_values(app, result) == EXPECTED, name  # no part's result lost
        # The chord document is gone; parts that returned after the failure
        # leave their own documents, with the TTL field, as late duplicates do.
        assert f"chord-unlock-{result.parent.id}" not in docs, name
    assert callback_runs(app, untouched) == 1
    assert all("expires_at" in data for data in docs.values())


@pytest.mark.usefixtures("stack")
def test_chords_whose_claim_or_size_was_edited_complete_once_or_wait(app, start_worker, stack, firestore_docs) -> None:
    """Edits that leave a usable chord: each completes once with the right result, or waits.

    A size raised to a plausible number cannot be told from a real one, so
    that chord waits, as with Celery's Redis backend: nothing fires early or
    twice, every result is stored, and its documents carry the TTL field, so
    Firestore's TTL policy removes them.
    """
    completing = {
        "claim-text": {"claim": "garbage"},
        "claim-bad-fields": {"claim": {"token": 5, "lease_until": "soon"}},
        "size-lowered": {"size": 2},
    }
    results = {}
    for name, edit in completing.items():
        results[name] = result = _apply(app)
        _chord_doc(stack, result).update(edit)
    raised = _apply(app)
    raised_doc = _chord_doc(stack, raised)
    raised_doc.update({"size": SIZE + 1})
    start_worker()
    for name, result in results.items():
        assert result.get(timeout=60) == EXPECTED, name
    assert raised.parent.get(timeout=60) == EXPECTED  # every part ran and was stored
    settle()
    for name, result in results.items():
        assert (callback_runs(app, result), errbacks(app, result)) == (1, []), name
    assert callback_runs(app, raised) == 0 and raised.state == states.PENDING
    docs = firestore_docs()
    assert {name.split("/")[0] for name in docs} == {raised_doc.id}
    assert docs[raised_doc.id]["size"] == SIZE + 1
    assert len([name for name in docs if "/parts/" in name]) == SIZE
    assert all("expires_at" in data for data in docs.values())


@pytest.mark.usefixtures("stack")
def test_a_chord_whose_parts_were_deleted_completes_once_when_they_run_again(
    app, start_worker, stack, firestore_docs
) -> None:
    """Deleted part documents are uncounted parts: the chord waits for them, and a re-run counts them once."""
    callback = sig(app, tasks.collect)
    # The last part goes to a queue that only a second worker, started after
    # the edit, consumes: so it returns after the documents were deleted.
    header = [sig(app, tasks.add, n, n) for n in range(SIZE - 1)] + [sig(app, tasks.add, 5, 5, queue="later")]
    result = chord(header)(callback)
    start_worker()
    *quick, last = result.parent.results
    assert [part.get(timeout=60) for part in quick] == EXPECTED[:-1]
    doc = _chord_doc(stack, result)
    for part in quick[:2]:
        doc.collection("parts").document(part.id).delete()
    start_worker(task_default_queue="later")
    assert last.get(timeout=60) == 10  # the last part returned, and found two parts uncounted
    settle()
    assert callback_runs(app, result) == 0
    for index, part in enumerate(quick[:2]):  # as a broker would redeliver them
        app.send_task(
            tasks.add.name, args=(index, index), task_id=part.id, group_id=result.parent.id,
            group_index=index, chord=callback.clone(task_id=result.id),
        )  # fmt: skip
    assert result.get(timeout=60) == EXPECTED
    settle()
    assert callback_runs(app, result) == 1
    assert firestore_docs() == {}
