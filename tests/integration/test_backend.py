"""The storage half of the backend against the GCS emulator (through the counting proxy)."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import uuid
from typing import Any

import pytest
from celery import states
from celery.exceptions import ChordError, TimeoutError
from celery.result import AsyncResult, GroupResult
from celery_gcs import BucketNotFound, ConfigurationError, CorruptResult, ResultTooLarge
from celery_gcs.backend import GCSBackend
from google.cloud import storage

from ..support import gcs

pytestmark = pytest.mark.usefixtures("stack")


def _blob(bucket: str, name: str) -> storage.Blob | None:
    return gcs.client().bucket(bucket).get_blob(name)


def test_backend_is_registered_as_the_gcs_scheme(app) -> None:
    assert isinstance(app.backend, GCSBackend)
    assert app.backend.settings.bucket == "celery-results"


def test_constructing_makes_no_request(make_app, stack) -> None:
    backend = make_app("gcs://no-such-bucket-anywhere/x?gcs_project=p").backend
    assert backend.settings.bucket == "no-such-bucket-anywhere"
    assert stack.gcs.snapshot() == {}
    assert stack.firestore.snapshot() == {}


def test_store_and_read_back_every_state(app) -> None:
    backend = app.backend
    backend.store_result("t-ok", {"answer": 42}, states.SUCCESS)
    backend.mark_as_failure("t-bad", ValueError("boom"))
    backend.store_result("t-retry", None, states.RETRY)
    assert AsyncResult("t-ok", app=app).get(timeout=5) == {"answer": 42}
    failed = AsyncResult("t-bad", app=app)
    assert failed.state == states.FAILURE
    assert isinstance(failed.result, ValueError) and str(failed.result) == "boom"
    assert AsyncResult("t-retry", app=app).state == states.RETRY
    assert AsyncResult("t-never", app=app).state == states.PENDING


def test_storing_a_state_is_one_write_and_no_read(app, stack) -> None:
    backend = app.backend
    stack.gcs.reset_counts()
    backend.store_result(str(uuid.uuid4()), "v", states.SUCCESS)
    assert gcs.counts_once_background_reads_landed(stack.gcs, stack.bucket) == {"object.write": 1}


def test_reading_a_missing_result_is_one_read_and_no_bucket_lookup(app, stack) -> None:
    stack.gcs.reset_counts()
    assert app.backend.get_task_meta("never-stored")["status"] == states.PENDING
    assert gcs.counts_once_background_reads_landed(stack.gcs, stack.bucket) == {"object.read": 1}


def test_the_tests_own_client_makes_no_bucket_read_behind_their_back(stack, prefix) -> None:
    """Tests count requests through the proxy after looking at the bucket with ``support.gcs.client``.

    A stock client's background bucket GET landed after a reset once, and
    failed the purge test of tests/cli/test_results.py on a request the
    CLI never made.
    """
    stack.gcs.reset_counts()
    list(gcs.client().list_blobs(stack.bucket, prefix=f"{prefix}/"))
    assert gcs.counts_once_background_reads_landed(stack.gcs, stack.bucket) == {"object.list": 1}


def test_a_second_state_from_the_same_process_is_still_one_write(app, stack) -> None:
    backend = app.backend
    task_id = str(uuid.uuid4())
    backend.store_result(task_id, None, states.STARTED)
    stack.gcs.reset_counts()
    backend.store_result(task_id, 7, states.SUCCESS)
    assert stack.gcs.snapshot() == {"object.write": 1}
    assert AsyncResult(task_id, app=app).get(timeout=5) == 7


def test_a_success_is_never_overwritten_by_a_later_state(make_app) -> None:
    writer, duplicate = make_app().backend, make_app().backend
    task_id = str(uuid.uuid4())
    duplicate.store_result(task_id, None, states.STARTED)
    writer.store_result(task_id, "first", states.SUCCESS)
    duplicate.store_result(task_id, "late", states.FAILURE)
    duplicate.store_result(task_id, None, states.STARTED)
    assert writer.get_task_meta(task_id, cache=False)["result"] == "first"
    assert writer.get_task_meta(task_id, cache=False)["status"] == states.SUCCESS


def test_a_failure_can_still_be_replaced_by_a_success(make_app) -> None:
    first, second = make_app().backend, make_app().backend
    task_id = str(uuid.uuid4())
    first.mark_as_failure(task_id, ValueError("transient"))
    second.store_result(task_id, "recovered", states.SUCCESS)
    assert first.get_task_meta(task_id, cache=False)["result"] == "recovered"


def test_delete_is_one_call_and_tolerates_a_missing_object(app, stack) -> None:
    backend = app.backend
    backend.store_result("t-del", 1, states.SUCCESS)
    stack.gcs.reset_counts()
    AsyncResult("t-del", app=app).forget()
    assert stack.gcs.snapshot() == {"object.delete": 1}
    assert backend.get_task_meta("t-del", cache=False)["status"] == states.PENDING
    backend.delete(backend.get_key_for_task("t-del"))  # already gone: no error


def test_get_many_reads_each_result_once_with_a_reused_pool(app, stack) -> None:
    backend = app.backend
    ids = [str(uuid.uuid4()) for _ in range(40)]
    for n, task_id in enumerate(ids):
        backend.store_result(task_id, n, states.SUCCESS)
    stack.gcs.reset_counts()
    found = dict(backend.get_many(ids, timeout=10))
    assert {task_id: meta["result"] for task_id, meta in found.items()} == {t: n for n, t in enumerate(ids)}
    assert stack.gcs.snapshot() == {"object.read": 40}
    pool = backend.stored.store._pool.get()
    backend.mget([backend.get_key_for_task(task_id) for task_id in ids[:5]])
    assert backend.stored.store._pool.get() is pool
    assert pool._max_workers == backend.settings.threadpool_maxsize


def test_http_connection_pool_matches_the_thread_pool_for_http_endpoints(make_app) -> None:
    backend = make_app(gcs_threadpool_maxsize=7).backend
    backend.get_task_meta("any")
    adapter = backend.stored.store._client.get()._http.get_adapter(os.environ["STORAGE_EMULATOR_HOST"])
    assert adapter._pool_maxsize == 7 and adapter._pool_connections == 7


def test_join_native_gathers_a_group(app) -> None:
    backend = app.backend
    ids = [str(uuid.uuid4()) for _ in range(10)]
    for n, task_id in enumerate(ids):
        backend.store_result(task_id, n * n, states.SUCCESS)
    group = GroupResult(str(uuid.uuid4()), [AsyncResult(task_id, app=app) for task_id in ids], app=app)
    assert group.join_native(timeout=10) == [n * n for n in range(10)]


def test_group_save_restore_and_delete(app) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    group = GroupResult(str(uuid.uuid4()), [AsyncResult(task_id, app=app) for task_id in ids], app=app)
    group.save()
    restored = GroupResult.restore(group.id, app=app)
    assert restored is not None and [r.id for r in restored.results] == ids
    group.delete()
    assert GroupResult.restore(group.id, app=app) is None


def test_a_task_run_again_after_its_success_expired_is_stored(make_app, stack) -> None:
    """Issue 11, defect 9: "never overwrite a SUCCESS" treats an expired SUCCESS as absent."""
    backend = make_app(result_expires=1).backend
    backend.store_result("t-rerun", "first run", states.SUCCESS)
    time.sleep(1.2)
    assert backend.get_task_meta("t-rerun", cache=False)["status"] == states.PENDING  # expired
    backend.store_result("t-rerun", "second run", states.SUCCESS)
    assert backend.get_task_meta("t-rerun", cache=False)["result"] == "second run"
    backend.store_result("t-rerun", "a duplicate", states.SUCCESS)  # a live SUCCESS is still kept
    assert backend.get_task_meta("t-rerun", cache=False)["result"] == "second run"


def test_result_expires_sets_custom_time_and_expired_results_read_as_missing(make_app, stack) -> None:
    app = make_app(result_expires=2)
    backend = app.backend
    before = dt.datetime.now(dt.UTC)
    backend.store_result("t-exp", "soon gone", states.SUCCESS)
    blob = _blob(stack.bucket, backend.settings.object_name("celery-task-meta-t-exp"))
    assert blob is not None and blob.custom_time is not None
    assert before + dt.timedelta(seconds=1) < blob.custom_time < before + dt.timedelta(seconds=4)
    assert backend.get_task_meta("t-exp", cache=False)["result"] == "soon gone"
    time.sleep(2.2)
    assert backend.get_task_meta("t-exp", cache=False)["status"] == states.PENDING
    assert not backend.task_result_exists("t-exp")
    with pytest.raises(TimeoutError):
        dict(backend.get_many(["t-exp"], timeout=0.3, interval=0.1))


def test_gcs_ttl_keeps_its_builtin_meaning(make_app, stack) -> None:
    backend = make_app(gcs_ttl=3600, result_expires=5).backend
    before = dt.datetime.now(dt.UTC)
    backend.store_result("t-ttl", 1, states.SUCCESS)
    blob = _blob(stack.bucket, backend.settings.object_name("celery-task-meta-t-ttl"))
    assert blob is not None
    assert before + dt.timedelta(seconds=3590) < blob.custom_time < before + dt.timedelta(seconds=3610)


def test_no_expiry_means_no_custom_time(make_app, stack) -> None:
    backend = make_app(result_expires=None).backend
    backend.store_result("t-forever", 1, states.SUCCESS)
    blob = _blob(stack.bucket, backend.settings.object_name("celery-task-meta-t-forever"))
    assert blob is not None and blob.custom_time is None
    assert backend.get_task_meta("t-forever")["result"] == 1


def test_failures_expire_after_result_failure_expires(make_app) -> None:
    backend = make_app(result_expires=3600, result_failure_expires=1).backend
    backend.mark_as_failure("t-failed", ValueError("x"))
    backend.store_result("t-fine", 1, states.SUCCESS)
    time.sleep(1.3)
    assert backend.get_task_meta("t-failed", cache=False)["status"] == states.PENDING
    assert backend.get_task_meta("t-fine", cache=False)["status"] == states.SUCCESS


def test_expire_gives_an_existing_result_a_new_expiry(make_app, stack) -> None:
    backend = make_app(result_expires=3600).backend
    backend.store_result("t-short", 1, states.SUCCESS)
    key = backend.get_key_for_task("t-short")
    backend.expire(key, 1)
    blob = _blob(stack.bucket, backend.settings.object_name("celery-task-meta-t-short"))
    assert blob.custom_time < dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    time.sleep(1.3)
    assert backend.get_task_meta("t-short", cache=False)["status"] == states.PENDING
    backend.expire(backend.get_key_for_task("t-missing"), 10)  # nothing to do, no error


@pytest.mark.parametrize("compression", ["zlib", "gzip", "bzip2"])
def test_result_compression(make_app, stack, compression: str) -> None:
    app = make_app(result_compression=compression)
    payload = {"text": "compressible " * 2000}
    app.backend.store_result("t-zip", payload, states.SUCCESS)
    blob = _blob(stack.bucket, app.backend.settings.object_name("celery-task-meta-t-zip"))
    assert blob.size < 2000
    assert make_app().backend.get_task_meta("t-zip")["result"] == payload  # a plain reader reads it too


def test_result_extended_stores_the_request(make_app) -> None:
    from types import SimpleNamespace

    app = make_app(result_extended=True)
    request = SimpleNamespace(
        id="t-ext", task="tasks.add", args=(1, 2), kwargs={"k": 3}, hostname="w1", retries=0,
        delivery_info={"routing_key": "celery"}, ignore_result=False, group=None, parent_id=None,
        root_id=None, properties={}, argsrepr=None, kwargsrepr=None, stamps={}, stamped_headers=[],
    )  # fmt: skip
    app.backend.store_result("t-ext", 3, states.SUCCESS, request=request)
    result = AsyncResult("t-ext", app=app)
    assert (result.name, result.args, result.kwargs, result.worker) == ("tasks.add", [1, 2], {"k": 3}, "w1")


def test_a_result_over_the_limit_is_a_clear_error_and_writes_nothing(make_app, stack) -> None:
    backend = make_app(gcs_max_result_bytes=1000).backend
    with pytest.raises(ResultTooLarge) as caught:
        backend.store_result("t-big", "x" * 5000, states.SUCCESS)
    message = str(caught.value)
    assert "gcs_max_result_bytes" in message and "1,000-byte limit" in message
    assert caught.value.task_id == "t-big" and caught.value.state == states.SUCCESS
    assert _blob(stack.bucket, backend.settings.object_name("celery-task-meta-t-big")) is None


@pytest.mark.parametrize(
    "task_id", ["a/b", "../../outside", "..", "ctl\x01\n\r", "sp ace", "ü", "x" * 2000, "%hash-abc"]
)
def test_hostile_task_ids_are_stored_under_the_prefix_and_read_back(app, stack, task_id: str) -> None:
    backend = app.backend
    backend.store_result(task_id, task_id[:10], states.SUCCESS)
    assert AsyncResult(task_id, app=app).get(timeout=5) == task_id[:10]
    names = [blob.name for blob in gcs.client().list_blobs(stack.bucket)]
    assert len(names) == 1
    assert names[0].startswith(backend.settings.base_path + "/celery-task-meta-")
    assert "/" not in names[0][len(backend.settings.base_path) + 1 :] and len(names[0].encode()) <= 1024


def test_missing_bucket_is_a_clear_error_naming_bucket_and_project(make_app) -> None:
    backend = make_app("gcs://bucket-that-is-not-there?gcs_project=proj-x").backend
    with pytest.raises(BucketNotFound) as on_write:
        backend.store_result("t", 1, states.SUCCESS)
    with pytest.raises(BucketNotFound) as on_read:
        backend.get_task_meta("t")
    for caught in (on_write, on_read):
        message = str(caught.value)
        assert "'bucket-that-is-not-there'" in message and "proj-x" in message
    assert isinstance(on_write.value, ConfigurationError)


def test_a_corrupt_object_is_a_clear_error_and_leaves_others_readable(app, stack) -> None:
    backend = app.backend
    backend.store_result("t-good", "fine", states.SUCCESS)
    bucket = gcs.client().bucket(stack.bucket)
    bucket.blob(backend.settings.object_name("celery-task-meta-t-junk")).upload_from_string(b"\x00\xffnot json")
    with pytest.raises(CorruptResult) as caught:
        backend.get_task_meta("t-junk")
    assert "celery-task-meta-t-junk" in str(caught.value) and stack.bucket in str(caught.value)
    assert backend.get_task_meta("t-good")["result"] == "fine"


def test_clients_are_rebuilt_after_fork(app) -> None:
    backend = app.backend
    backend.store_result("t-fork", "parent", states.SUCCESS)
    parent_client = backend.stored.store._client.get()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            ok = backend.stored.store._client.get() is not parent_client
            ok = ok and backend.get_task_meta("t-fork", cache=False)["result"] == "parent"
            backend.store_result("t-child", "child", states.SUCCESS)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(child, 0)
    assert backend.stored.store._client.get() is parent_client
    assert backend.get_task_meta("t-child")["result"] == "child"


def test_backend_pickles_with_its_url(app) -> None:
    import pickle

    clone: Any = pickle.loads(pickle.dumps(app.backend))
    assert clone.settings == app.backend.settings


class _LandsWhenAsked(GroupResult):
    """A chord header whose failed part's result is stored just as ``ready()`` looks, after the error check."""

    def ready(self) -> bool:
        if self.backend.get_task_meta(self.results[0].id)["status"] not in states.READY_STATES:
            self.backend.mark_as_failure(self.results[0].id, KeyError("the part's own error"))
        return super().ready()


def test_get_on_a_failed_chord_raises_the_parts_error_when_it_lands_between_the_checks(app) -> None:
    """The part's error wins even if it lands after the error check and before the readiness check.

    Celery's integration suite (test_error_propagates_to_chord_from_chain_tail)
    caught this once under load: get() raised the callback's ChordError.
    """
    part, body = str(uuid.uuid4()), str(uuid.uuid4())
    header = _LandsWhenAsked(str(uuid.uuid4()), [AsyncResult(part, app=app)], app=app)
    app.backend.mark_as_failure(body, ChordError(f"Dependency {part} raised KeyError"))
    with pytest.raises(KeyError, match="the part's own error"):
        AsyncResult(body, parent=header, app=app).get(timeout=5, interval=0.05)


def test_get_many_reads_a_backlog_once_without_reading_far_past_it(app, stack) -> None:
    """Half the results stored before get_many starts, the rest while it waits.

    Reading the backlog in doubling batches used to read the last batch whole:
    up to half of it results not stored yet (105 wasted reads here).
    """
    backend = app.backend
    ids = [str(uuid.uuid4()) for _ in range(300)]
    for n, task_id in enumerate(ids[:150]):
        backend.store_result(task_id, n, states.SUCCESS)

    def store_the_rest() -> None:
        for n, task_id in enumerate(ids[150:], start=150):
            backend.store_result(task_id, n, states.SUCCESS)

    writer = threading.Thread(target=store_the_rest)
    stack.gcs.reset_counts()
    writer.start()
    try:
        found = dict(backend.get_many(ids, timeout=60, interval=0.1))
    finally:
        writer.join()
    assert [found[task_id]["result"] for task_id in ids] == list(range(300))
    reads = stack.gcs.snapshot().get("object.read", 0)
    assert 300 <= reads <= 330
