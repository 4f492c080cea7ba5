"""The part holding a chord's callback meets an outage: the chord ends once, and readers read what the callback got.

Issue 26, defects 3, 4 and 5. The chord is applied in-process; its last part
returns while the proxy in front of an emulator fails one kind of request.
When that part's store raises, the test does what Celery's worker does then
without ``result_backend_always_retry``: it records the part's failure
(``mark_as_failure``, which stores it and returns it to the chord).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest
from celery import states
from celery.exceptions import BackendStoreError
from celery_gcs import chords, unstored
from celery_gcs.errors import TransientError
from celery_gcs.local.faults import FIRESTORE_COMMIT

from ..support import gcs
from ..support.chords import Published, apply_here, ended_only, part_request, store_part

pytestmark = pytest.mark.usefixtures("stack")


def returned(app: Any, group_id: str, task_id: str, value: object) -> None:
    """A part returns ``value`` in a worker: stored, or, if storing raised, recorded as failed as Celery does."""
    request = part_request(group_id, task_id)
    try:
        app.backend.store_result(task_id, value, states.SUCCESS, request=request)
    except Exception as exc:  # noqa: BLE001 (what celery.app.trace does with an error from mark_as_done)
        app.backend.mark_as_failure(task_id, exc, request=request, call_errbacks=False)


def commits_aborted(stack: Any) -> None:
    """Every Firestore commit answered ABORTED, until ``stack.firestore.faults.clear()``.

    (UNAVAILABLE would not do: the client retries a transaction's begin on
    its own for a minute, so the holder would simply wait the blip out.)
    """
    stack.firestore.fail(FIRESTORE_COMMIT, grpc.StatusCode.ABORTED, calls=range(1, 10**6))


def outage(stack: Any, *kinds: str) -> None:
    """Every GCS request of these kinds answered 503, until ``stack.gcs.faults.clear()``."""
    stack.gcs.faults.only = frozenset(kinds)
    stack.gcs.faults.error_rate = 1.0


def test_a_failed_join_whose_chord_error_cannot_be_stored_leaves_the_chord_to_end_later(
    make_app, stack, monkeypatch, firestore_docs
) -> None:
    """Defect 4: the join failed (GCS reads out), storing the callback's ChordError failed too; the
    error escaped before the part stored its own SUCCESS, with the chord already marked done. Celery
    then recorded the part as failed and nothing ever stored the callback's outcome: PENDING forever.

    The outage ends once the callback's error has been tried.
    """
    app = make_app(gcs_retry_deadline=0.5)
    published = Published(app, monkeypatch)
    fail_callback = app.backend.chord_error_from_stack

    def then_recover(callback: Any, exc: Exception) -> Any:
        try:
            return fail_callback(callback, exc)
        finally:
            stack.gcs.faults.clear()

    monkeypatch.setattr(app.backend, "chord_error_from_stack", then_recover)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    outage(stack, "object.read", "object.write")
    returned(app, group_id, ids[1], 1)
    assert stack.gcs.injected_snapshot()["status.503"] > 0
    part = app.AsyncResult(ids[1])
    callback = app.AsyncResult("cb")
    outcomes = len(published.values) + (callback.state == states.FAILURE)
    assert outcomes == 1, f"published {published.values}, callback {callback.state}"
    assert published.values in ([], [[0, 1]])
    assert (part.state, part.result) == (states.SUCCESS, 1)
    assert firestore_docs()[app.backend.chords.key(group_id)]["done"] is True


def test_the_callbacks_value_is_what_readers_read_when_the_holders_own_store_fails(
    make_app, stack, monkeypatch
) -> None:
    """Defect 5: the holder published the callback with its value, then failed to store that value;
    Celery recorded the part as failed, so readers read FAILURE while the callback consumed a success.
    """
    app = make_app(gcs_retry_deadline=0.5)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    outage(stack, "object.write")
    with pytest.raises(Exception) as raised:
        store_part(app, group_id, ids[1], 1)  # joins, publishes, then cannot store its own result
    assert published.values == [[0, 1]]
    stack.gcs.faults.clear()
    request = part_request(group_id, ids[1])
    app.backend.mark_as_failure(ids[1], raised.value, request=request, call_errbacks=False)
    part = app.AsyncResult(ids[1])
    assert (part.state, part.result) == (states.SUCCESS, 1)
    assert published.values == [[0, 1]]


@pytest.mark.parametrize("retries", [1, 2])
def test_a_published_value_whose_store_celery_retried_and_gave_up_on_is_stored_not_failed(
    make_app, stack, monkeypatch, retries
) -> None:
    """Review A: under result_backend_always_retry, Celery's retry of the holder's store took the
    published value out of memory and, failing too, lost it: its mark_as_failure once the retries ran
    out stored FAILURE for a part whose SUCCESS the callback consumed.
    """
    app = make_app(
        gcs_retry_deadline=0.5,
        result_backend_always_retry=True,
        result_backend_max_retries=retries,
        result_backend_base_sleep_between_retries_ms=10,
    )
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    outage(stack, "object.write")
    request = part_request(group_id, ids[1])
    # What celery.app.trace does: mark_as_done (store_result, retried by Celery), and, on the
    # BackendStoreError it raises once the retries run out, mark_as_failure.
    with pytest.raises(BackendStoreError) as raised:
        app.backend.store_result(ids[1], 1, states.SUCCESS, request=request)
    assert published.values == [[0, 1]]
    stack.gcs.faults.clear()
    app.backend.mark_as_failure(ids[1], raised.value, request=request, call_errbacks=False)
    part = app.AsyncResult(ids[1])
    assert (part.state, part.result) == (states.SUCCESS, 1)


def test_a_published_value_unstored_through_celerys_record_of_the_failure_is_stored_once_gcs_answers(
    make_app, stack, monkeypatch
) -> None:
    """Review A: the outage lasted into Celery's mark_as_failure too; the published value was dropped
    and nothing stored it again: the part read PENDING for ever. Kept, it is stored in the background."""
    monkeypatch.setattr(unstored, "FIRST_WAIT", 0.1)
    app = make_app(gcs_retry_deadline=0.5)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    outage(stack, "object.write")
    with pytest.raises(TransientError):
        returned(app, group_id, ids[1], 1)  # the store, then Celery's mark_as_failure, both fail
    assert published.values == [[0, 1]]
    part = app.AsyncResult(ids[1])
    assert part.state == states.PENDING  # never FAILURE
    stack.gcs.faults.clear()
    deadline = time.monotonic() + 30
    while part.state == states.PENDING and time.monotonic() < deadline:
        time.sleep(0.05)
        part = app.AsyncResult(ids[1])
    assert (part.state, part.result) == (states.SUCCESS, 1)


#: Seconds Firestore aborts every commit once the callback is published: longer than the
#: claim's lease (``chords.MIN_LEASE``, 10 s, patched to 3 s), shorter than the lease renewed for
#: the publish (7 s here).
BLIP = 5.0


def test_a_firestore_blip_while_the_holder_ends_the_chord_never_publishes_it_twice(
    make_app, stack, monkeypatch, firestore_docs
) -> None:
    """Defect 3: the holder tried to mark the chord done for the claim's lease (10 s), but had renewed
    the claim for the lease plus the publish budget; a copy of a part arriving after it gave up waited
    for the claim to run out, took it over and published the callback a second time.
    """
    monkeypatch.setattr(chords, "MIN_LEASE", 3.0)  # as in production, 10 s, but a shorter test
    app = make_app(
        result_chord_join_timeout=0.5,
        gcs_retry_deadline=1.0,
        task_publish_retry_policy={"max_retries": 0},
        broker_connection_timeout=4,  # the publish budget: the claim is renewed for 3 + 4 s
    )
    published: list[Any] = []
    blip_over = threading.Event()

    def publish(_: Any, value: Any) -> None:
        published.append(value)
        if len(published) == 1:
            commits_aborted(stack)
            threading.Timer(BLIP, lambda: (stack.firestore.faults.clear(), blip_over.set())).start()

    monkeypatch.setattr(app.amqp, "_retry_publish", publish)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    store_part(app, group_id, ids[1], 1)  # holds the claim, publishes, then meets the blip
    assert blip_over.wait(timeout=60)
    assert stack.firestore.injected_snapshot()["status.10"] > 0
    time.sleep(0.2)
    store_part(app, group_id, ids[0], 0)  # a copy of a part (a redelivery): the chord has ended
    assert published == [[0, 1]]
    assert firestore_docs()[app.backend.chords.key(group_id)]["done"] is True


def test_a_holder_stalled_past_its_lease_never_fails_the_chord_a_second_time(
    make_app, stack, monkeypatch, firestore_docs
) -> None:
    """Found by the soak under ``-P threads``: a chord whose results expired before the join had its
    errbacks called twice. The holder checked its claim before publishing a callback, never before
    failing one: a holder whose read stalled past its lease went on to call the errbacks after the
    part that had taken its claim over (a copy of a part, or a slow part looking again) had failed
    the chord already.

    The holder's read of the GroupResult is held by the proxy while a copy of
    its part, in another thread, waits out the lease, takes the claim and
    fails the chord; then the read goes on.
    """
    # A short lease (10 s in production) keeps the test short; the join (0.2 s) ends well before
    # a third of it, when the holder would renew, so nothing but the end checks the claim.
    monkeypatch.setattr(chords, "MIN_LEASE", 3.0)
    app = make_app(result_expires=1, result_chord_join_timeout=0.2)
    published = Published(app, monkeypatch)
    failures: list[Exception] = []
    backend = type(app.backend)  # each thread has its own (Celery's app.backend is per thread)
    fail_callback = backend.chord_error_from_stack

    def recorded(self: Any, callback: Any, exc: Exception) -> Any:
        failures.append(exc)
        return fail_callback(self, callback, exc)

    monkeypatch.setattr(backend, "chord_error_from_stack", recorded)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    expired_by = time.monotonic() + 30
    while app.AsyncResult(ids[0]).state != states.PENDING:  # not expired yet (result_expires=1)
        assert time.monotonic() < expired_by
        time.sleep(0.1)
    stalled = stack.gcs.delay(f"GET /download/storage/v1/b/[^/]+/o/.+celery-taskset-meta-{group_id}", None, calls=1)
    holder = threading.Thread(target=store_part, args=(app, group_id, ids[1], 1), daemon=True)
    holder.start()
    stalled.wait(struck=1)  # the holder claimed the callback; its first read of the join is held
    store_part(app, group_id, ids[1], 1)  # a copy: waits out the lease, takes the claim, fails the chord
    assert len(failures) == 1
    stalled.release()
    holder.join(timeout=60)
    assert not holder.is_alive()
    assert published.values == []
    assert len(failures) == 1, failures
    assert "expired before the chord could join" in str(failures[0])
    assert app.AsyncResult("cb").state == states.FAILURE
    assert firestore_docs()[app.backend.chords.key(group_id)]["done"] is True


def test_a_read_stalled_past_the_lease_keeps_the_claim_and_publishes_once(
    make_app, stack, monkeypatch, firestore_docs
) -> None:
    """Suspected (one read of 20,000 parts' readiness outlasting the lease, no renew inside it), and
    found real by the soak at 1,000 parts: one GCS call of the read stalled past the lease, a part
    looking again took the claim over, met a stall in its own read, and the next; after three looks
    each the parts gave up, and the chord was never ended.

    The holder's read of the other part's result is held by the proxy while a
    copy of its part waits for the claim: the holder renews it meanwhile, so
    the copy leaves the chord to it, and once the read goes on the holder
    publishes, once.
    """
    monkeypatch.setattr(chords, "MIN_LEASE", 3.0)  # as above: the copy would take over after 3 s
    app = make_app(result_chord_join_timeout=0.2)
    publishers: list[str] = []
    monkeypatch.setattr(app.amqp, "_retry_publish", lambda _, value: publishers.append(threading.current_thread().name))
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    stalled = stack.gcs.delay(f"GET /download/storage/v1/b/[^/]+/o/.+{ids[0]}", None, calls=1)
    holder = threading.Thread(target=store_part, args=(app, group_id, ids[1], 1), name="holder", daemon=True)
    holder.start()
    stalled.wait(struck=1)  # the holder's readiness read, held
    store_part(app, group_id, ids[1], 1)  # a copy: waits for the claim, finds it renewed, leaves it
    assert publishers == []
    stalled.release()
    holder.join(timeout=60)
    assert not holder.is_alive()
    assert publishers == ["holder"]
    assert (app.AsyncResult(ids[1]).state, app.AsyncResult(ids[1]).result) == (states.SUCCESS, 1)
    assert firestore_docs()[app.backend.chords.key(group_id)]["done"] is True


#: Copies of a part (redeliveries) returning at once in one process, as a killed worker's do.
COPIES = 12


def test_copies_finding_a_lease_run_out_together_settle_one_at_a_time(make_app, stack, monkeypatch) -> None:
    """Found by CI's kill test under gevent: a killed worker's redelivered parts, 22 in one worker,
    found its claim's lease run out at the same moment and all settled the chord at once. Each
    transaction read the chord document and meant to write it, so they only aborted each other (the
    emulator waits out a 10 s lock timeout each time): no part ended the chord for over two minutes.

    The holder's first read of the join is held by the proxy so its lease runs out while copies of
    its part, in threads of this process, wait for it; they then settle one at a time: each copy
    begins two transactions (finding the claim held, then once it is free), none begins again.
    """
    monkeypatch.setattr(chords, "MIN_LEASE", 3.0)  # the holder renews only after its first read
    app = make_app(result_chord_join_timeout=0.2)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    stalled = stack.gcs.delay(f"GET /download/storage/v1/b/[^/]+/o/.+celery-taskset-meta-{group_id}", None, calls=1)
    holder = threading.Thread(target=store_part, args=(app, group_id, ids[1], 1), daemon=True)
    holder.start()
    stalled.wait(struck=1)  # the holder claimed the callback; its first read of the join is held
    stack.firestore.reset_counts()
    copies = [threading.Thread(target=store_part, args=(app, group_id, ids[1], 1), daemon=True) for _ in range(COPIES)]
    for copy in copies:
        copy.start()
    for copy in copies:
        copy.join(timeout=90)
    assert not any(copy.is_alive() for copy in copies), "copies still settling after 90 s"
    assert published.values == [[0, 1]]
    begun = stack.firestore.snapshot().get("firestore.BeginTransaction", 0)
    # Each copy's two settles, and the new holder's renew before publishing and its end.
    assert begun <= 2 * COPIES + 4, f"{begun} transactions begun for {COPIES} copies: some began again"
    stalled.release()
    holder.join(timeout=60)
    assert not holder.is_alive()
    assert published.values == [[0, 1]]


#: Seconds the claim is renewed for to send the outcome in the tests below: a lease of 3 s
#: (``chords.MIN_LEASE``, patched) and a publish budget of 1 s (no retries, 1 s to connect).
HELD = 4.0


def an_outage_of_firestore_commits_past_the_claim(make_app: Any, stack: Any, monkeypatch: Any) -> tuple[Any, list[str]]:
    """An app whose claim is held ``HELD`` s to send a chord's outcome, and what it was sent with.

    Once it sends one (the callback published, or the errbacks called), every
    Firestore commit is refused, longer than the claim: the holder cannot
    mark the chord done.
    """
    monkeypatch.setattr(chords, "MIN_LEASE", HELD - 1)
    app = make_app(
        result_chord_join_timeout=0.5,
        gcs_retry_deadline=1.0,
        task_publish_retry_policy={"max_retries": 0},
        broker_connection_timeout=1,
    )
    sent: list[str] = []
    fail_callback = app.backend.chord_error_from_stack

    def publish(_: Any, value: Any) -> None:
        sent.append(f"callback {value}")
        commits_aborted(stack)

    def fail(callback: Any, exc: Exception) -> Any:
        sent.append(f"errbacks {exc}")
        try:
            return fail_callback(callback, exc)
        finally:
            commits_aborted(stack)

    monkeypatch.setattr(app.amqp, "_retry_publish", publish)
    monkeypatch.setattr(app.backend, "chord_error_from_stack", fail)
    return app, sent


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["callback", "errbacks"])
def test_firestore_out_past_the_holders_claim_after_it_sent_the_outcome_never_sends_it_twice(
    make_app, stack, monkeypatch, firestore_docs, outcome: str
) -> None:
    """Issue 26, defect 3, the window it left: Firestore out for longer than the claim (the lease
    plus the publish budget) after the holder published the callback, or called the errbacks. The
    holder gave up marking the chord done; a copy of a part arriving later took the expired claim
    over and sent the chord's outcome a second time.

    Now the holder records in GCS that the outcome went out, and the copy finds the record.
    """
    app, sent = an_outage_of_firestore_commits_past_the_claim(make_app, stack, monkeypatch)
    group_id, ids = apply_here(app, 2)
    if outcome == "callback":
        store_part(app, group_id, ids[0], 0)
    else:
        request = part_request(group_id, ids[0])
        app.backend.store_result(ids[0], ValueError("part broke"), states.FAILURE, request=request)
    started = time.monotonic()
    store_part(app, group_id, ids[1], 1)  # holds the claim, sends, cannot mark the chord done
    assert len(sent) == 1 and sent[0].startswith(outcome)
    assert time.monotonic() - started >= HELD - 1, "the holder gave up marking it done before its claim ran out"
    assert stack.firestore.injected_snapshot()["status.10"] > 0
    assert firestore_docs()[app.backend.chords.key(group_id)]["done"] is False
    stack.firestore.faults.clear()
    store_part(app, group_id, ids[1], 1)  # a copy of the holder's part (a redelivery): takes the claim over
    assert len(sent) == 1, sent
    assert firestore_docs()[app.backend.chords.key(group_id)]["done"] is True


BEGIN = "google.firestore.v1.Firestore/BeginTransaction"
#: As in the tests above: a lease of 3 s and a publish budget of 1 s.
HELD = 4.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "copy_of", [0, 1], ids=["copy_of_another_part", "copy_of_the_holders_part"]
)
def test_a_record_write_stalled_past_the_claim_never_gives_a_second_callback(
    make_app, stack, monkeypatch, firestore_docs, copy_of
) -> None:
    """Review of onceout: the holder waited for its record that the callback went out until the claim ran out
    (one GCS write stalled: GCS's timeouts outlast the claim), leaving no time to mark the chord done; with its
    end a moment slow, a copy of a part took the claim over, found no record and published again (copy of the
    holder's part), or the chord was left open (copy of another part). Found by review, reproduced in
    /work/coord/review27/test_record_stall_eats_the_claim.py; both fail on the old code.
    """
    monkeypatch.setattr(chords, "MIN_LEASE", HELD - 1)
    app = make_app(
        result_chord_join_timeout=0.5,
        task_publish_retry_policy={"max_retries": 0},
        broker_connection_timeout=1,
    )
    sent: list[Any] = []
    published = threading.Event()
    record: list[Any] = []

    def publish(_: Any, value: Any) -> None:
        sent.append(value)
        if len(sent) == 1:
            # The holder's next upload is the record that the callback went out: held, never landing.
            record.append(
                stack.gcs.delay(
                    "POST /upload/storage/v1/b/[^/]+/o", None, calls=1, direction="request"
                )
            )
            published.set()

    monkeypatch.setattr(app.amqp, "_retry_publish", publish)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    holder = threading.Thread(target=store_part, args=(app, group_id, ids[1], 1), daemon=True)
    holder.start()
    assert published.wait(30)
    copy = threading.Thread(target=store_part, args=(app, group_id, ids[copy_of], copy_of), daemon=True)
    copy.start()  # a redelivered copy: counted (refused), it finds the claim held and waits for its lease
    # Once the copy waits (its count and settle take well under a second; a copy still counting then
    # arrives later and must find the chord ended), the holder's end is a moment slow.
    time.sleep(1.0)
    stack.firestore.delay(BEGIN, 1.5, calls=1, direction="request")
    copy.join(timeout=60)
    holder.join(timeout=60)
    stack.gcs.faults.clear()
    assert not copy.is_alive() and not holder.is_alive()
    assert record[0].struck == 1
    assert len(sent) == 1, f"published {len(sent)} times: {sent}"
    assert firestore_docs()[app.backend.chords.key(group_id)]["done"] is True, (
        "chord left open after its callback"
    )


@pytest.mark.parametrize("expires", [None, 60])
def test_a_failed_group_result_delete_still_cleans_up_the_chords_documents(
    make_app, stack, monkeypatch, firestore_docs, expires
) -> None:
    """Review of E: the GroupResult's delete and the Firestore clean-up shared one ``try``: a failed GCS
    delete left the parts and counters, for ever with ``result_expires`` None (fails on the old code)."""
    app = make_app(result_expires=expires, gcs_retry_deadline=0.5)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    store_part(app, group_id, ids[0], 0)
    deletes = stack.gcs.fail("DELETE /storage/v1/b/[^/]+/o/.+", 503, calls=range(1, 10**6))
    store_part(app, group_id, ids[1], 1)
    assert deletes.struck > 0
    stack.gcs.faults.clear()
    assert published.values == [[0, 1]]
    key = app.backend.chords.key(group_id)
    docs = {path: data for path, data in firestore_docs().items() if path.startswith(key)}
    assert ended_only(docs), sorted(docs)


@pytest.mark.parametrize("expires", [None, 0, 60])
def test_an_ended_chords_record_that_its_callback_went_out_always_expires(
    make_app, stack, monkeypatch, expires
) -> None:
    """Review of onceout: with results kept for ever the record had no custom time, so the bucket's
    lifecycle never removed it, and nothing else lists or purges it (None and 0 fail on the old code)."""
    app = make_app(result_expires=expires)
    published = Published(app, monkeypatch)
    for _ in range(3):
        group_id, ids = apply_here(app, 2)
        store_part(app, group_id, ids[0], 0)
        store_part(app, group_id, ids[1], 1)
    assert published.values == [[0, 1]] * 3
    base = app.backend.settings.object_name("")
    records = [
        blob
        for blob in gcs.client().bucket(stack.bucket).list_blobs(prefix=base)
        if "~sent" in blob.name
    ]
    assert len(records) == 3
    assert [blob.name for blob in records if blob.custom_time is None] == []


def test_a_gcs_write_outage_while_failing_a_chord_calls_its_errbacks_once(make_app, stack, monkeypatch) -> None:
    """Review of onceout: Celery calls the errbacks before it stores the callback's FAILURE; with GCS writes
    out, that store failed and the chord was left open with no record, so the part's next look called the
    errbacks a second time. The errbacks are now recorded as sent, and the next look stores the failure alone
    (fails on the old code: errbacks called 2 times). Reproduced first in /work/coord/review27/.
    """
    app = make_app(gcs_retry_deadline=0.5, result_chord_join_timeout=0.5)
    published = Published(app, monkeypatch)
    errbacks: list[str] = []
    call_errbacks = app.backend._call_task_errbacks

    def counted(request: Any, exc: Exception, traceback: Any) -> Any:
        errbacks.append(str(exc))
        return call_errbacks(request, exc, traceback)

    monkeypatch.setattr(app.backend, "_call_task_errbacks", counted)
    fail_callback = app.backend.chord_error_from_stack
    tries: list[int] = []

    def then_recover(callback: Any, exc: Exception) -> Any:
        tries.append(1)
        try:
            return fail_callback(callback, exc)
        finally:
            stack.gcs.faults.clear()  # GCS writes answer again once the first failure was tried

    monkeypatch.setattr(app.backend, "chord_error_from_stack", then_recover)
    group_id, ids = apply_here(app, 2)
    app.backend.store_result(ids[0], ValueError("part broke"), states.FAILURE, request=part_request(group_id, ids[0]))
    outage(stack, "object.write")
    returned(app, group_id, ids[1], 1)
    assert stack.gcs.injected_snapshot()["status.503"] > 0
    assert published.values == []
    assert tries == [1]
    assert len(errbacks) == 1, f"errbacks called {len(errbacks)} times: {errbacks}"
    assert app.AsyncResult("cb").state == states.FAILURE
