"""Chords and results past their expiry: what Firestore's TTL policy and GCS's lifecycle remove.

Issue 26, the suspected defects. The emulators delete nothing by TTL, so a
test deletes what the TTL policy would (by the Firestore client, as the
policy does), then lets the chord's parts return in-process. The last test
fails the clean-up of an ended chord through the proxy instead.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from typing import Any

import grpc
import pytest
from celery import states
from celery_gcs import conventions
from celery_gcs.keys import part_document_id
from celery_gcs.local.faults import FIRESTORE_COMMIT
from celery_gcs.stores import chord_tree
from celery_gcs.stores.chord_store import OPENED, REFRESHES
from google.cloud import firestore

from ..support import gcs
from ..support.chords import Published, apply_here, part_request, store_part

pytestmark = pytest.mark.usefixtures("stack")


def chord_document(app: Any, stack: Any, group_id: str) -> firestore.DocumentReference:
    client = firestore.Client(project=stack.local_stack.project)
    return client.collection(conventions.FIRESTORE_COLLECTION).document(
        app.backend.chords.key(group_id)
    )


def test_a_chord_whose_document_expired_while_open_fails_once(make_app, stack, monkeypatch) -> None:
    """Suspected: a gap between parts longer than the expiry let the TTL policy remove the chord
    document; the next parts were not counted and nothing failed the chord: it hung, silent.
    """
    app = make_app()
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 3)
    store_part(app, group_id, ids[0], 0)
    chord_document(app, stack, group_id).delete()  # as the TTL policy does
    store_part(app, group_id, ids[1], 1)
    store_part(app, group_id, ids[2], 2)
    callback = app.AsyncResult("cb")
    assert published.values == []
    assert callback.state == states.FAILURE
    assert "expired" in str(callback.result) and group_id in str(callback.result)


def errbacks_called(app: Any, monkeypatch: pytest.MonkeyPatch) -> list[Exception]:
    """The errors the backend fails chord callbacks with, from now on."""
    failed: list[Exception] = []
    backend = type(app.backend)
    fail_callback = backend.chord_error_from_stack

    def recorded(self: Any, callback: Any, exc: Exception) -> Any:
        failed.append(exc)
        return fail_callback(self, callback, exc)

    monkeypatch.setattr(backend, "chord_error_from_stack", recorded)
    return failed


def test_a_late_copy_of_a_part_after_a_completed_chords_document_expired_fails_nothing(
    make_app, stack, monkeypatch
) -> None:
    """Review E: the chord completed, its callback stored no result (``ignore_result``; or it expired),
    its document was removed by the TTL policy; a late copy of a part (redelivered, its own SUCCESS
    expired) took the chord for one whose document expired while open, wrote it back as ended, called
    the errbacks and stored FAILURE for the callback that had run.
    """
    app = make_app()
    published = Published(app, monkeypatch)  # the callback is not run here: its result reads PENDING
    failed = errbacks_called(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    store_part(app, group_id, ids[1], 1)
    assert published.values == [[0, 1]]
    document = chord_document(app, stack, group_id)
    assert document.get().to_dict()["done"] is True
    document.delete()  # as the TTL policy does, past its expiry
    app.backend.forget(ids[0])  # its SUCCESS expired too
    store_part(app, group_id, ids[0], 0)  # the late copy
    assert failed == []
    assert app.AsyncResult("cb").state == states.PENDING
    assert published.values == [[0, 1]]
    assert not document.get().exists


def test_an_open_chord_whose_document_and_group_result_both_expired_is_logged_not_failed(
    make_app, stack, monkeypatch, caplog
) -> None:
    """What cannot be told from a completed chord's late copy (docs/chords.md): an open chord whose
    GroupResult the bucket's lifecycle removed as well as its document. Nothing is failed; an error
    names the chord and the setting to raise."""
    app = make_app()
    Published(app, monkeypatch)
    failed = errbacks_called(app, monkeypatch)
    group_id, ids = apply_here(app, 3)
    store_part(app, group_id, ids[0], 0)
    chord_document(app, stack, group_id).delete()  # as the TTL policy does
    app.backend.stored.delete_group(group_id)  # as the bucket's lifecycle does
    store_part(app, group_id, ids[1], 1)
    store_part(app, group_id, ids[2], 2)  # fills the chord: settling finds its document gone
    assert failed == []
    assert app.AsyncResult("cb").state == states.PENDING
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and group_id in r.getMessage()]
    assert logged and "result_chord_expires" in logged[0] and "late copy" in logged[0]


def test_a_chord_whose_parent_counter_expired_while_open_fails_once_naming_it(
    make_app, stack, monkeypatch, caplog
) -> None:
    """Review defect C: the part filling a leaf whose parent counter is gone (the TTL policy removes a
    chord's documents in no set order, or a counter was deleted by hand) retried its report for ever,
    thousands of Firestore requests a second; each report refused as "not found" is now taken for
    gone, and the chord fails once, naming the counter.
    """
    app = make_app()
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 20)
    leaves = chord_tree.leaf_count(len(ids))
    by_leaf = sorted(ids, key=lambda task_id: chord_tree.leaf_of(task_id, leaves).index)
    top = chord_tree.parent(chord_tree.leaf_of(by_leaf[0], leaves))
    assert leaves == 2 and chord_tree.is_top(top, leaves)
    counters = chord_document(app, stack, group_id).collection(conventions.FIRESTORE_COUNTERS_COLLECTION)
    counters.document(top.document_id).delete()  # as the TTL policy does
    returning = threading.Thread(
        target=lambda: [store_part(app, group_id, task_id, 0) for task_id in by_leaf], daemon=True
    )
    returning.start()
    returning.join(timeout=60)  # a bound only: it takes a few seconds
    assert not returning.is_alive(), f"still reporting: {sum(stack.firestore.snapshot().values())} Firestore requests"
    callback = app.AsyncResult("cb")
    assert published.values == []
    assert callback.state == states.FAILURE
    assert f"{conventions.FIRESTORE_COUNTERS_COLLECTION}/{top.document_id}" in str(callback.result)
    failures = [r for r in caplog.records if "is missing while the chord is open" in r.getMessage()]
    assert len(failures) == 1  # the other leaf's report finds the chord ended


def test_a_replay_after_its_part_document_expired_still_completes_the_chord_once(
    make_app, stack, monkeypatch
) -> None:
    """Suspected, ruled out: a replay whose part document the TTL policy removed counts its leaf down
    a second time; the leaf fills one part early, the join waits for the missing part and gives the
    chord up to it, and that part, going below zero, completes it.
    """
    app = make_app(result_chord_join_timeout=0.5)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 3)
    store_part(app, group_id, ids[0], 0)
    parts = chord_document(app, stack, group_id).collection(conventions.FIRESTORE_PARTS_COLLECTION)
    parts.document(part_document_id(ids[0])).delete()  # as the TTL policy does
    store_part(app, group_id, ids[0], 0)  # a replay: counted again
    store_part(app, group_id, ids[1], 1)
    assert published.values == []
    store_part(app, group_id, ids[2], 2)
    assert published.values == [[0, 1, 2]]


def test_refreshing_an_expired_result_does_not_revive_it(make_app) -> None:
    """Suspected: ``expire()`` gave a result that had already expired (read as PENDING) a new expiry."""
    app = make_app(result_expires=1)
    app.backend.store_result("t-expired", 1, states.SUCCESS)
    time.sleep(1.3)
    assert app.AsyncResult("t-expired").state == states.PENDING
    app.backend.expire(app.backend.get_key_for_task("t-expired"), 60)
    assert app.AsyncResult("t-expired").state == states.PENDING


@pytest.mark.parametrize("expires", [None, 0])
def test_an_ended_chord_document_expires_without_result_expires(
    make_app, stack, monkeypatch, expires
) -> None:
    """Suspected: with ``result_expires`` None or 0 no chord document got ``expires_at``, so ended
    chords' documents were never deleted.
    """
    app = make_app(result_expires=expires)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    store_part(app, group_id, ids[1], 1)
    assert published.values == [[0, 1]]
    ended = chord_document(app, stack, group_id).get().to_dict()
    assert ended["done"] is True
    assert conventions.FIRESTORE_TTL_FIELD in ended


def test_a_group_applied_again_after_a_failed_clean_up_completes_again(
    make_app, stack, monkeypatch
) -> None:
    """Suspected: the clean-up of an ended chord failed, leaving its part documents; the same group
    applied again (a frozen chord re-run) found them, took its parts for replays, and never counted them.

    The clean-up is the fifth commit of a one-part chord's last part (count, settle, renew, end, clean-up).
    """
    app = make_app(gcs_retry_deadline=0.5)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 1)
    clean_up = stack.firestore.fail(
        FIRESTORE_COMMIT, grpc.StatusCode.UNAVAILABLE, calls=range(5, 10**6)
    )
    store_part(app, group_id, ids[0], 0)
    assert clean_up.struck > 0
    stack.firestore.faults.clear()
    assert published.values == [[0]]
    app.backend.apply_chord(
        (group_id, [app.AsyncResult(ids[0])]), None
    )  # the same chord, run again
    app.backend.forget(ids[0])
    store_part(app, group_id, ids[0], 1)
    assert published.values == [[0], [1]]


def test_a_group_applied_again_after_its_ended_document_expired_before_its_parts_completes_again(
    make_app, stack, monkeypatch
) -> None:
    """Review finding: the leftover part documents were looked for only when the chord document was
    still there; Firestore's TTL deletes each document on its own (the part documents expire later than
    the chord's), so with the chord document gone the new run's part read as a replay and nothing ended it.
    """
    app = make_app(gcs_retry_deadline=0.5)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 1)
    stack.firestore.fail(FIRESTORE_COMMIT, grpc.StatusCode.UNAVAILABLE, calls=range(5, 10**6))
    store_part(app, group_id, ids[0], 0)
    stack.firestore.faults.clear()
    assert published.values == [[0]]
    chord_document(app, stack, group_id).delete()  # removed by its TTL before the part documents
    app.backend.apply_chord((group_id, [app.AsyncResult(ids[0])]), None)  # the same chord, run again
    app.backend.forget(ids[0])
    store_part(app, group_id, ids[0], 1)
    assert published.values == [[0], [1]]


def test_a_group_applied_again_after_a_failed_clean_up_gets_none_of_the_last_runs_added_tasks(
    make_app, stack, monkeypatch
) -> None:
    """Review defect D: applied again, the chord deleted only its header's leftover part documents; those
    of the tasks added to the last run stayed, and the new run's holder listed them as added to it: its
    callback got the last run's added values ([1, 'a'] for [1]).

    The clean-up is the second commit after the callback's publish (end, clean-up).
    """
    app = make_app(gcs_retry_deadline=0.5)
    published: list[Any] = []

    def publish(_: Any, value: Any) -> None:
        published.append(value)
        if len(published) == 1:
            stack.firestore.fail(FIRESTORE_COMMIT, grpc.StatusCode.UNAVAILABLE, calls=range(2, 10**6))

    monkeypatch.setattr(app.amqp, "_retry_publish", publish)
    group_id, ids = apply_here(app, 1)
    app.backend.add_to_chord(group_id, app.AsyncResult("added-1"))
    store_part(app, group_id, ids[0], 0)
    app.backend.store_result("added-1", "a", states.SUCCESS, request=part_request(group_id, "added-1"))
    assert published == [[0, "a"]]
    assert stack.firestore.injected_snapshot()  # the clean-up failed
    stack.firestore.faults.clear()
    app.backend.apply_chord((group_id, [app.AsyncResult(ids[0])]), None)  # the same chord, run again
    app.backend.forget(ids[0])
    store_part(app, group_id, ids[0], 1)
    assert published == [[0, "a"], [1]]


def expire_now(app: Any, stack: Any, task_id: str) -> None:
    """Rewrite a stored result as one stored longer ago than its expiry (GCS keeps it until its lifecycle rule)."""
    blob = gcs.client().bucket(stack.bucket).blob(app.backend.settings.object_name(f"celery-task-meta-{task_id}"))
    stored = json.loads(blob.download_as_bytes())
    stored["expires_at"] = "2000-01-01T00:00:00+00:00"
    blob.upload_from_string(json.dumps(stored).encode(), content_type="application/json")


def test_a_chord_whose_stored_results_expired_before_the_join_fails_once(make_app, stack, monkeypatch) -> None:
    """Found by the soak: a part stalled longer than ``result_expires``; the others' results expired
    meanwhile, the join waited for them as if still to come, gave the chord up to them, and nothing
    ever came back to it: no callback, no error.
    """
    app = make_app(result_chord_join_timeout=0.5)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    expire_now(app, stack, ids[0])
    store_part(app, group_id, ids[1], 1)
    callback = app.AsyncResult("cb")
    assert published.values == []
    assert callback.state == states.FAILURE
    assert f"Dependency {ids[0]} expired before the chord could join" in str(callback.result)


#: ``result_expires`` of the test below: its chord falls due for a refresh at half of it, its first results expire at it.
JOIN_HELD_LIFETIME = 4


def test_a_holder_whose_join_is_held_up_past_its_first_results_expiry_keeps_them_and_completes_once(
    make_app, stack, monkeypatch
) -> None:
    """Found by the 50 x 1,000 prefork soak (``result_expires=90``): a chord's parts all ran within half
    its expiry, the last became the holder, and its join was held up (GCS reads stalled) past the expiry
    of the first results. Only a part returning refreshed a chord, and none was left to: the join found
    those results expired and failed the chord ("expired before the chord could join"). Now the holder
    refreshes its chord when it falls due while it joins.

    Both other parts are stored at once; the join's read of the first one's result is held until that
    result, as it was stored, has expired (its answer then reads expired, as a stalled read's does).
    """
    app = make_app(result_expires=JOIN_HELD_LIFETIME, result_chord_join_timeout=0.5)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 3)
    store_part(app, group_id, ids[0], 0)
    store_part(app, group_id, ids[1], 1)
    expires = stored_expiry(app, stack, ids[0])
    read = stack.gcs.delay(f"GET /download/storage/v1/b/[^/]+/o/.+celery-task-meta-{re.escape(ids[0])}", None)
    holder = threading.Thread(target=store_part, args=(app, group_id, ids[2], 2), daemon=True)
    holder.start()
    read.wait()  # the join's read of the first result, held
    while time.time() <= expires + 0.1:  # a bound only: what it waits for is the clock
        time.sleep(0.05)
    read.release()
    holder.join(timeout=60)  # a bound only: it ends a moment after the release
    assert not holder.is_alive()
    assert published.values == [[0, 1, 2]]
    assert app.AsyncResult("cb").state == states.PENDING  # no ChordError stored for it
    assert refreshes(chord_document(app, stack, group_id)) >= 1  # by the holder: at ages 2 s, 3 s, 4.5 s...
    assert app.AsyncResult(ids[0]).result == 0  # kept for readers too


# -- a long-running chord's expiry (issue 26's cost: refreshes constant per part) ----------------------------


def as_if_running_for(app: Any, stack: Any, group_id: str, seconds: float, expires_in: float) -> float:
    """Make a chord just applied look as if applied ``seconds`` ago, its expiry ``expires_in`` from now; now (epoch s)."""
    now = dt.datetime.now(dt.UTC)
    chord_document(app, stack, group_id).update({
        OPENED: now - dt.timedelta(seconds=seconds),
        conventions.FIRESTORE_TTL_FIELD: now + dt.timedelta(seconds=expires_in),
    })  # fmt: skip
    return now.timestamp()


def stored_expiry(app: Any, stack: Any, task_id: str, prefix: str = "celery-task-meta-") -> float:
    """When a stored result (or with ``prefix``, a saved group) expires, as its own ``expires_at`` says (epoch s)."""
    blob = gcs.client().bucket(stack.bucket).blob(app.backend.settings.object_name(f"{prefix}{task_id}"))
    return dt.datetime.fromisoformat(json.loads(blob.download_as_bytes())["expires_at"]).timestamp()


def document_expiry(document: firestore.DocumentReference) -> float:
    return document.get().get(conventions.FIRESTORE_TTL_FIELD).timestamp()


def test_a_chord_running_long_is_kept_twice_its_age_not_result_expires(make_app, stack, monkeypatch) -> None:
    """Issue 26's cost: a refresh pushed a chord's expiry back by ``result_expires`` alone, so a chord
    lasting longer with its size was refreshed more often, each refresh rewriting every result stored
    so far (per part, a cost growing with the chord). Now by twice its age so far: its documents, the
    results stored so far and those stored from then on, and a count never brings that forward.

    The chord is made to look 100 s old, its expiry 20 s off (due, by either rule).
    """
    app = make_app(result_expires=60)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 3)
    now = as_if_running_for(app, stack, group_id, 100, expires_in=20)
    store_part(app, group_id, ids[0], 0)  # counted, stored, then refreshes the chord
    kept = now + 190  # twice its age, less the time this takes; result_expires alone: now + 60 and a bit
    document = chord_document(app, stack, group_id)
    assert document.get().get(REFRESHES) == 1
    assert document_expiry(document) >= kept
    parts = document.collection(conventions.FIRESTORE_PARTS_COLLECTION)
    counters = list(document.collection(conventions.FIRESTORE_COUNTERS_COLLECTION).stream())
    assert counters and all(counter.get(conventions.FIRESTORE_TTL_FIELD).timestamp() >= kept for counter in counters)
    assert stored_expiry(app, stack, ids[0]) >= kept
    store_part(app, group_id, ids[1], 1)  # after the refresh: counted and stored to last as long
    assert document_expiry(parts.document(part_document_id(ids[1]))) >= kept
    assert stored_expiry(app, stack, ids[1]) >= kept
    assert document.get().get(REFRESHES) == 1  # not due again
    store_part(app, group_id, ids[2], 2)
    assert published.values == [[0, 1, 2]]


def test_a_refresh_reads_no_result_not_stored_yet(make_app, stack) -> None:
    """Issue 26's cost: a refresh read every header result, stored or not (a 404 each): a chord of
    20,000 read 20,000 results per refresh. Now only those of the parts counted so far.
    """
    app = make_app(result_expires=60)
    group_id, ids = apply_here(app, 10)
    as_if_running_for(app, stack, group_id, 100, expires_in=20)
    reads = stack.gcs.delay("GET /download/storage/v1/b/[^/]+/o/.+celery-task-meta-.+", 0, calls=range(1, 10**6))
    store_part(app, group_id, ids[0], 0)  # the one part counted: its result is the one read
    assert chord_document(app, stack, group_id).get().get(REFRESHES) == 1
    assert reads.seen == 1


def test_add_to_chord_never_brings_a_refreshed_chords_expiry_forward(make_app, stack) -> None:
    """Adding a task wrote the chord document's expiry as ``result_expires`` from now, undoing a
    refresh that had pushed it further out (twice the chord's age)."""
    app = make_app(result_expires=60)
    group_id, ids = apply_here(app, 3)
    now = as_if_running_for(app, stack, group_id, 100, expires_in=20)
    store_part(app, group_id, ids[0], 0)  # refreshes it
    document = chord_document(app, stack, group_id)
    app.backend.add_to_chord(group_id, app.AsyncResult("added-1"))
    assert document.get().get("added_pending") == 1
    assert document_expiry(document) >= now + 190


def refreshes(document: firestore.DocumentReference) -> int:
    return (document.get().to_dict() or {}).get(REFRESHES, 0)


@pytest.mark.parametrize(
    "client_expires", [86400, None, 20], ids=["celerys-default-a-day", "for-ever", "shorter-than-the-workers"]
)
def test_a_chord_applied_with_a_longer_result_expires_is_refreshed_by_the_workers_own(
    make_app, stack, monkeypatch, client_expires
) -> None:
    """Found by the soak (50 chords of 1,000 under prefork, 39 failed with their results expired): the
    chord document's expiry, written by the applying client (Celery's default ``result_expires``, a
    day), alone said when a refresh was due, while the workers kept their results 90 s; none fell due
    and the results expired. Now, until its first refresh, a worker also takes the chord as due by its
    own lifetime from when it opened; once refreshed, by the refresher's expiry (no refresh per part).

    The chord is made to look 100 s old, its document's expiry left as the client wrote it.
    """
    client, worker = make_app(result_expires=client_expires), make_app(result_expires=60)
    published = Published(worker, monkeypatch)
    group_id, ids = apply_here(client, 3)
    document = chord_document(client, stack, group_id)
    now = dt.datetime.now(dt.UTC)
    document.update({OPENED: now - dt.timedelta(seconds=100)})
    store_part(worker, group_id, ids[0], 0)  # counted, stored, then refreshes the chord
    kept = now.timestamp() + 190  # twice its age, less the time this takes
    assert refreshes(document) == 1
    assert document_expiry(document) >= kept
    assert stored_expiry(worker, stack, ids[0]) >= kept
    looks = ("firestore.BatchGetDocuments", "firestore.BeginTransaction")
    before = {kind: stack.firestore.snapshot().get(kind, 0) for kind in looks}
    store_part(worker, group_id, ids[1], 1)  # not due again: not even a look at the chord document
    assert {kind: stack.firestore.snapshot().get(kind, 0) for kind in looks} == before
    assert refreshes(document) == 1
    store_part(worker, group_id, ids[2], 2)
    assert published.values == [[0, 1, 2]]


def test_a_refresh_never_brings_an_expiry_forward(make_app, stack) -> None:
    """A refresh set the GroupResult's expiry, and each counted part's, to the refreshing worker's rule
    from now, even where it was later: the GroupResult a client on Celery's default saved for a day, and
    a failed part's result kept ``result_failure_expires``, were cut to minutes.
    """
    client = make_app()  # Celery's default result_expires: a day
    worker = make_app(result_expires=60, result_failure_expires=7 * 86400)
    group_id, ids = apply_here(client, 3)
    chord_document(client, stack, group_id).update({OPENED: dt.datetime.now(dt.UTC) - dt.timedelta(seconds=100)})
    day = time.time() + 86400 - 60
    week = time.time() + 7 * 86400 - 60
    failed = ValueError("a failed part")
    worker.backend.store_result(ids[0], failed, states.FAILURE, request=part_request(group_id, ids[0]))
    store_part(worker, group_id, ids[1], 1)  # refreshes the chord: its GroupResult and the two results
    assert refreshes(chord_document(client, stack, group_id)) == 1
    assert stored_expiry(client, stack, group_id, prefix="celery-taskset-meta-") >= day
    assert stored_expiry(worker, stack, ids[0]) >= week
