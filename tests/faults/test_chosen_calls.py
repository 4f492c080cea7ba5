"""Chosen calls failed or held back by the proxies' rules, seen through the real clients.

The Firestore emulator through google-cloud-firestore (gRPC), the GCS
emulator through google-cloud-storage (HTTP/1.1). Each test asserts the
fault happened (the rule's counts, ``Proxy.injected``), what the client
made of it, and what the emulator holds: whether the call landed.
Held traffic waits for ``rule.release()``, so no assertion depends on how
fast the machine is; a timed delay is only checked to be at least as long
as asked.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.api_core import exceptions as api
from google.cloud import firestore, storage

from ..support import gcs

pytestmark = pytest.mark.usefixtures("stack")

COMMIT = "google.firestore.v1.Firestore/Commit"
AGGREGATE = "google.firestore.v1.Firestore/RunAggregationQuery"
BATCH_GET = "google.firestore.v1.Firestore/BatchGetDocuments"
UPLOAD = "POST /upload/storage/v1/b/[^/]+/o"
DOWNLOAD = "GET /download/storage/v1/b/[^/]+/o/.+"


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


@pytest.fixture
def client(stack) -> Iterator[firestore.Client]:
    """A Firestore client already connected: its calls share one connection from here on."""
    client = firestore.Client(project=stack.local_stack.project)
    client.collection("warm-up").document("none").get()
    yield client
    client.close()


@pytest.fixture
def collection(client: firestore.Client) -> firestore.CollectionReference:
    return client.collection(f"chosen-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def bucket(stack) -> storage.Bucket:
    return gcs.client().bucket(stack.bucket)


@firestore.transactional
def set_in_transaction(transaction: firestore.Transaction, ref: firestore.DocumentReference, value: int) -> None:
    ref.get(transaction=transaction)  # a read-write transaction: the emulator locks what it reads
    transaction.set(ref, {"n": value})


def eventually(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{check} still false after {timeout} s"
        time.sleep(0.05)


# -- Firestore: gRPC status answers ------------------------------------------------------


def test_a_commit_aborted_five_times_fails_the_transaction_after_five_attempts(stack, client, collection) -> None:
    ref = collection.document("counter")
    connections = stack.firestore.connections
    rule = stack.firestore.fail(COMMIT, grpc.StatusCode.ABORTED, calls=range(1, 6))
    with pytest.raises(ValueError) as caught:
        set_in_transaction(client.transaction(), ref, 1)
    assert str(caught.value) == "Failed to commit transaction in 5 attempts."
    assert isinstance(caught.value.__cause__, api.Aborted)
    assert caught.value.__cause__.message == "injected by the test proxy"
    assert (rule.seen, rule.struck) == (5, 5)
    assert stack.firestore.injected_snapshot() == {"status.10": 5}
    assert not ref.get().exists  # no commit reached the emulator
    # The rule is spent: the next transaction commits, on the same connection.
    set_in_transaction(client.transaction(), ref, 2)
    assert ref.get().to_dict() == {"n": 2}
    assert stack.firestore.connections == connections


def test_a_commit_aborted_twice_is_retried_by_the_client_and_lands(stack, client, collection) -> None:
    # Each aborted transaction is rolled back on the emulator as Firestore would:
    # left open, its lock on the document would block the retry's commit.
    ref = collection.document("counter")
    rule = stack.firestore.fail(COMMIT, grpc.StatusCode.ABORTED, calls=range(1, 3))
    set_in_transaction(client.transaction(), ref, 7)
    assert ref.get().to_dict() == {"n": 7}
    assert (rule.seen, rule.struck) == (3, 2)
    assert stack.firestore.snapshot()["firestore.Commit"] == 3
    assert stack.firestore.injected_snapshot() == {"status.10": 2}


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (grpc.StatusCode.UNAVAILABLE, api.ServiceUnavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, api.DeadlineExceeded),
        (grpc.StatusCode.ABORTED, api.Aborted),
    ],
)
def test_a_call_answered_by_the_proxy_never_reaches_the_emulator(stack, client, collection, status, error) -> None:
    ref = collection.document("doc")
    connections = stack.firestore.connections
    stack.firestore.fail(COMMIT, status, message="no such luck: 100 % injected")
    with pytest.raises(error) as caught:
        ref.set({"n": 1}, retry=None)
    assert caught.value.message == "no such luck: 100 % injected"
    assert stack.firestore.injected_snapshot() == {f"status.{status.value[0]}": 1}
    assert not ref.get().exists
    ref.set({"n": 2}, retry=None)  # the connection is as good as before
    assert ref.get().to_dict() == {"n": 2}
    assert stack.firestore.connections == connections


def test_a_call_forwarded_lands_though_the_client_sees_the_error(stack, client, collection) -> None:
    ref = collection.document("doc")
    stack.firestore.fail(COMMIT, grpc.StatusCode.UNAVAILABLE, forward=True)
    with pytest.raises(api.ServiceUnavailable):
        ref.set({"n": 1}, retry=None)
    assert stack.firestore.injected_snapshot() == {"replaced.14": 1}
    assert ref.get().to_dict() == {"n": 1}


def test_the_client_retries_unavailable_commits_by_itself(stack, client, collection) -> None:
    ref = collection.document("doc")
    rule = stack.firestore.fail(COMMIT, grpc.StatusCode.UNAVAILABLE, calls=range(1, 3))
    ref.set({"n": 1})
    assert (rule.seen, rule.struck) == (3, 2)
    assert ref.get().to_dict() == {"n": 1}


def test_only_the_ranks_asked_for_are_failed(stack, client, collection) -> None:
    stack.firestore.fail(COMMIT, grpc.StatusCode.ABORTED, calls=2)
    collection.document("first").set({"n": 1}, retry=None)
    with pytest.raises(api.Aborted):
        collection.document("second").set({"n": 2}, retry=None)
    collection.document("third").set({"n": 3}, retry=None)
    assert sorted(doc.id for doc in collection.list_documents()) == ["first", "third"]


# -- Firestore: one call held back, the others flowing --------------------------------


def test_a_held_aggregation_answer_does_not_hold_up_the_connection(
    stack, client, collection, background
) -> None:
    for n in range(3):
        collection.document(f"d{n}").set({"n": n})
    connections = stack.firestore.connections
    rule = stack.firestore.delay(AGGREGATE, None)
    counting: Future[Any] = background.submit(lambda: collection.count().get())
    rule.wait()
    # Other calls on the same channel go on while that answer is held
    # (elsewhere: the query may run after them, and must count the same).
    other = client.collection(f"{collection.id}-other").document("doc")
    other.set({"n": 3})
    assert other.get().to_dict() == {"n": 3}
    assert not counting.done()
    rule.release()
    assert counting.result(timeout=30)[0][0].value == 3
    assert stack.firestore.connections == connections
    assert stack.firestore.injected_snapshot() == {"delay.response": 1}


def test_a_commit_whose_answer_is_held_has_landed(stack, client, collection, background) -> None:
    ref = collection.document("doc")
    rule = stack.firestore.delay(COMMIT, None)
    writing: Future[Any] = background.submit(ref.set, {"n": 1})
    rule.wait()
    eventually(lambda: ref.get().exists)
    assert not writing.done()  # the write is there; the client has not heard
    rule.release()
    writing.result(timeout=30)


def test_an_answer_held_past_the_clients_deadline_comes_to_no_harm(stack, client, collection) -> None:
    ref = collection.document("doc")
    connections = stack.firestore.connections
    rule = stack.firestore.delay(COMMIT, None)
    with pytest.raises(api.DeadlineExceeded):
        ref.set({"n": 1}, retry=None, timeout=0.5)
    rule.release()  # the answer goes to a stream the client has cancelled
    after = collection.document("after")
    after.set({"n": 2}, retry=None, timeout=30)
    assert after.get().to_dict() == {"n": 2}
    assert stack.firestore.connections == connections


def test_a_commit_whose_request_is_held_has_not_landed(stack, client, collection, background) -> None:
    ref = collection.document("doc")
    rule = stack.firestore.delay(COMMIT, None, direction="request")
    writing: Future[Any] = background.submit(ref.set, {"n": 1})
    rule.wait()
    assert not ref.get().exists
    rule.release()
    writing.result(timeout=30)
    assert ref.get().to_dict() == {"n": 1}
    assert stack.firestore.injected_snapshot() == {"delay.request": 1}


def test_a_delayed_answer_comes_no_sooner_than_asked(stack, client, collection) -> None:
    rule = stack.firestore.delay(COMMIT, 1.0)
    started = time.monotonic()
    collection.document("late").set({"n": 1})
    assert time.monotonic() - started >= 1.0
    collection.document("next").set({"n": 2})
    assert (rule.seen, rule.struck) == (2, 1)


def test_clearing_the_faults_lets_held_calls_go(stack, client, collection, background) -> None:
    rule = stack.firestore.delay(COMMIT, None)
    writing: Future[Any] = background.submit(collection.document("doc").set, {"n": 1})
    rule.wait()
    stack.firestore.faults.clear()
    writing.result(timeout=30)
    assert stack.firestore.faults.rules == []


@pytest.mark.parametrize("service", ["firestore", "gcs"])
def test_clearing_the_faults_ends_a_random_stall_at_once(stack, collection, bucket, background, service) -> None:
    """A soak clears its faults at the end: a call stalled up to 30 s must not hold its worker's shutdown."""
    proxy = getattr(stack, service)
    proxy.faults.stall_rate, proxy.faults.stall_seconds = 1.0, (60.0, 60.0)
    if service == "firestore":
        writing: Future[Any] = background.submit(collection.document("doc").set, {"n": 1})
    else:
        writing = background.submit(bucket.blob("stalled").upload_from_string, b"1")
    eventually(lambda: proxy.injected_snapshot().get("delay.response", 0) >= 1)
    proxy.faults.clear()
    writing.result(timeout=30)
    assert proxy.faults.stalls == []


# -- GCS: HTTP statuses and delays -------------------------------------------------------


def test_an_upload_answered_503_by_the_proxy_is_not_stored(stack, bucket) -> None:
    rule = stack.gcs.fail(UPLOAD, 503, calls=2)
    bucket.blob("first").upload_from_string(b"1", retry=None)
    with pytest.raises(api.ServiceUnavailable) as caught:
        bucket.blob("second").upload_from_string(b"2", retry=None)
    assert "injected by the test proxy" in str(caught.value)
    assert (rule.seen, rule.struck) == (2, 1)
    assert stack.gcs.injected_snapshot() == {"status.503": 1}
    assert [blob.name for blob in bucket.list_blobs()] == ["first"]


def test_an_upload_forwarded_is_stored_though_the_client_sees_the_error(stack, bucket) -> None:
    stack.gcs.fail(UPLOAD, 500, forward=True)
    with pytest.raises(api.InternalServerError):
        bucket.blob("landed").upload_from_string(b"1", retry=None)
    assert stack.gcs.injected_snapshot() == {"replaced.500": 1}
    assert bucket.blob("landed").download_as_bytes() == b"1"


def test_a_held_download_does_not_hold_up_other_requests(stack, bucket, background) -> None:
    bucket.blob("slow").upload_from_string(b"slow")
    bucket.blob("quick").upload_from_string(b"quick")
    rule = stack.gcs.delay(DOWNLOAD, None)
    reading: Future[bytes] = background.submit(bucket.blob("slow").download_as_bytes)
    rule.wait()
    assert bucket.blob("quick").download_as_bytes() == b"quick"
    assert not reading.done()
    rule.release()
    assert reading.result(timeout=30) == b"slow"
    assert stack.gcs.injected_snapshot() == {"delay.response": 1}


def test_an_upload_whose_request_is_held_is_not_stored_yet(stack, bucket, background) -> None:
    rule = stack.gcs.delay(UPLOAD, None, direction="request")
    writing: Future[Any] = background.submit(bucket.blob("later").upload_from_string, b"1")
    rule.wait()
    assert not bucket.blob("later").exists()
    rule.release()
    writing.result(timeout=30)
    assert bucket.blob("later").exists()


def test_a_delayed_gcs_answer_comes_no_sooner_than_asked(stack, bucket) -> None:
    bucket.blob("late").upload_from_string(b"late")
    rule = stack.gcs.delay(DOWNLOAD, 1.0)
    started = time.monotonic()
    assert bucket.blob("late").download_as_bytes() == b"late"
    assert time.monotonic() - started >= 1.0
    assert rule.struck == 1


# -- Firestore: flow control kept right ----------------------------------------------


def test_requests_answered_by_the_proxy_give_their_window_back(stack, client, collection) -> None:
    # Each dropped request spent the client's connection window; unless the proxy
    # gives it back, 3.5 MB of them (the emulator allows 1 MiB) stall the connection.
    big = b"x" * 700_000
    rule = stack.firestore.fail(COMMIT, grpc.StatusCode.UNAVAILABLE, calls=range(1, 6))
    for n in range(5):
        with pytest.raises(api.ServiceUnavailable):
            collection.document(f"d{n}").set({"blob": big}, retry=None, timeout=30)
    assert rule.struck == 5
    collection.document("after").set({"blob": big}, retry=None, timeout=30)
    assert collection.document("after").get().to_dict() == {"blob": big}


def test_answers_replaced_by_the_proxy_give_their_window_back(stack, client, collection) -> None:
    # The emulator spent its window on answers the client never got: 4.9 MB,
    # more than the 4 MiB the client's connection window starts with.
    big = b"x" * 700_000
    ref = collection.document("big")
    ref.set({"blob": big})
    rule = stack.firestore.fail(BATCH_GET, grpc.StatusCode.UNAVAILABLE, forward=True, calls=range(1, 8))
    for _ in range(7):
        with pytest.raises(api.ServiceUnavailable):
            ref.get(retry=None, timeout=30)
    assert rule.struck == 7
    assert ref.get(retry=None, timeout=30).to_dict() == {"blob": big}
