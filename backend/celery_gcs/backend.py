"""``GCSBackend``: Celery's key/value backend on GCS objects (and Firestore, for chords).

The key layout is the built-in ``gs://`` backend's, so either reads the
other's results. Differences that matter:

* one request per stored state: a create-only PUT, not a GET and then a PUT;
  a state already SUCCESS is still never overwritten (Celery's rule), now
  enforced by a generation precondition instead of a racy read;
* every result carries its expiry: the object's custom time drives the bucket
  lifecycle rule, and an ``expires_at`` field in the stored meta makes a
  result past its expiry read as missing before the lifecycle deletes it;
* no network I/O until first use, and no admin API calls at all;
* chords are counted in Firestore, each part once, with a claim so the
  callback is published once (chords.py);
* one backend per process, shared by its threads and greenlets (Celery makes
  one per thread, under gevent one per task, each connecting anew), and a
  worker connects each process at start (``warm_up``), not on its first task.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any

from celery import current_app, signals, states
from celery.app.backends import by_url
from celery.backends.base import KeyValueStoreBackend
from celery.exceptions import ChordError
from kombu.utils.encoding import bytes_to_str

from . import deadline, meta, settings, waiting
from .chords import ChordCoordinator
from .errors import StoreError
from .perprocess import PerProcess
from .stored_results import KeyPrefixes, Lifetimes, StoredResults
from .stores import grpc_runtime, retry

log = logging.getLogger(__name__)

#: How long a worker process's warm-up may take (``GCSBackend.warm_up``).
WARM_UP_SECONDS = 10.0
E_WARM_UP = "celery-gcs could not connect at worker start (%s); the first task will try again"


class GCSBackend(KeyValueStoreBackend):
    """Celery result backend storing results as GCS objects.

    Celery's hooks, each a few lines over the stored-results layer
    (``stored_results.StoredResults``) and the chord coordinator (``chords``).
    """

    supports_native_join = True
    supports_result_compression = True
    supports_failure_expires = True
    #: Results expire by themselves: a result past its ``expires_at`` reads as
    #: missing, and the bucket's lifecycle deletes it. So beat schedules no
    #: daily ``celery.backend_cleanup`` (which would do nothing here).
    supports_autoexpire = True
    #: The chord algorithm; tests swap in a subclass that injects faults.
    coordinator_class: type[ChordCoordinator] = ChordCoordinator

    def __init__(self, app: Any, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, url=url, **kwargs)
        grpc_runtime.check()
        # Shared by a process's threads (and greenlets): its clients and pools are thread-safe,
        # and one backend per thread (per task under gevent) would connect again for each.
        self.thread_safe = True
        self.settings = settings.parse(url, self.app.conf)
        failure_expires = self.app.conf.get("result_failure_expires")
        self.failure_expires = self.expires if failure_expires is None else self.prepare_expires(failure_expires)
        self.stored = StoredResults(
            self.settings,
            self,
            prefixes=KeyPrefixes(*map(bytes_to_str, (self.task_keyprefix, self.group_keyprefix, self.chord_keyprefix))),
            lifetimes=Lifetimes(self.expires, self.failure_expires, self.chord_expires, self._chord_result_expires),
            content_type=meta.content_type(self.content_type, bool(self.compression)),
        )
        self.chords = self.coordinator_class(self, self.stored)
        # Chord parts this process counted while storing their result, so that
        # Celery's on_chord_part_return that follows does nothing more.
        self._parts_handled: PerProcess[dict[str, bool]] = PerProcess(dict)
        #: Task names of chord callbacks being failed, by task id (chord_error_from_stack).
        self._failing_callbacks: PerProcess[dict[str, str]] = PerProcess(dict)

    # -- keys ---------------------------------------------------------------

    def _get_key_for(self, prefix: bytes, id: Any, key: bytes = b"") -> bytes:
        return self.key_t(self.stored.key(bytes_to_str(prefix), str(id)) + bytes_to_str(key))

    # -- the key/value hooks KeyValueStoreBackend calls ----------------------

    def get(self, key: bytes | str) -> bytes | None:
        found = self.stored.get(bytes_to_str(key))
        return None if found is None else found.data

    def mget(self, keys: Sequence[bytes | str]) -> list[bytes | None]:
        found = self.stored.get_many([bytes_to_str(key) for key in keys])
        return [None if item is None else item.data for item in found]

    def set(self, key: bytes | str, value: bytes) -> None:
        self.stored.put(bytes_to_str(key), value, expires_at=self.stored.expires_at(self.expires))

    def delete(self, key: bytes | str) -> None:
        self.stored.delete(bytes_to_str(key))

    def expire(self, key: bytes | str, value: float | dt.timedelta | None) -> None:
        """Give an existing result a new expiry, ``value`` seconds from now."""
        self.stored.extend(bytes_to_str(key), self.prepare_expires(value))

    # -- waiting (waiting.py) ---------------------------------------------------

    def wait_for(self, task_id, timeout=None, interval=0.5, no_ack=True, on_interval=None):
        """A poll soon after sending, backing off to ``interval`` (``waiting.wait_for``)."""
        self._ensure_not_eager()
        return waiting.wait_for(self, task_id, timeout=timeout, interval=interval, on_interval=on_interval)

    def wait_for_pending(
        self, result, timeout=None, interval=0.5, no_ack=True, on_message=None,
        on_interval=None, callback=None, propagate=True,
    ):  # fmt: skip
        """Celery's, except that a failed header task's own error wins over its chord's ChordError."""
        started = time.monotonic()
        try:
            return super().wait_for_pending(
                result, timeout=timeout, interval=interval, no_ack=no_ack, on_message=on_message,
                on_interval=on_interval, callback=callback, propagate=propagate,
            )  # fmt: skip
        except ChordError:
            waited = time.monotonic() - started
            waiting.parents_fail_first(
                result, on_interval, propagate=propagate, timeout=timeout, waited=waited, interval=interval
            )
            raise

    def iter_native(self, result, timeout=None, interval=0.5, no_ack=True, on_message=None, on_interval=None):
        """Celery's, reading each result about once, ending early after a failed parent (``waiting.iter_native``)."""
        self._ensure_not_eager()
        yield from waiting.iter_native(
            self, result, timeout=timeout, interval=interval, on_message=on_message,
            on_interval=on_interval, known=self._cache,
        )  # fmt: skip

    def get_many(
        self, task_ids, timeout=None, interval=0.5, no_ack=True, on_message=None, on_interval=None,
        max_iterations=None, READY_STATES=states.READY_STATES,
    ):  # fmt: skip
        """Celery's, reading each result about once (``waiting.get_many``)."""
        yield from waiting.get_many(
            self, [bytes_to_str(task_id) for task_id in task_ids], timeout=timeout, interval=interval,
            on_message=on_message, on_interval=on_interval, max_iterations=max_iterations,
            ready_states=READY_STATES, known=self._cache,
        )  # fmt: skip

    def read_ready(self, task_ids: list[str], ready_states: Collection[str]) -> dict[str, dict[str, Any]]:
        """The states of those of ``task_ids`` that are ready, read in one ``mget``, and cached."""
        found = self.stored.ready(task_ids, ready_states)
        self._cache.update(found)
        return found

    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        return retry.is_retryable(exc)

    # -- reads: a result past its expiry is missing ---------------------------

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        return self.stored.task_state(bytes_to_str(task_id))

    def task_result_exists(self, task_id: str) -> bool:
        return self.stored.task_exists(bytes_to_str(task_id))

    def _restore_group(self, group_id: str) -> dict[str, Any] | None:
        return self.stored.group_state(bytes_to_str(group_id))

    # -- writes: one request per state ---------------------------------------

    def _store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        task_id = bytes_to_str(task_id)
        state_meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
        state_meta["task_id"] = task_id
        chord_part = _is_chord_part(request, state)
        try:
            task_name = getattr(request, "task", None) or self._failing_callbacks.get().get(task_id)
            encoded = self.stored.encode_state(task_id, state_meta, state, task_name=task_name, chord_part=chord_part)
            if chord_part:
                # Counted (and maybe the callback fired) before it is stored: chords.py says why.
                self.chords.part_returned(request, state, result, encoded)
                self._parts_handled.get()[task_id] = True
            else:
                self.stored.write_state(encoded)
        except StoreError as exc:
            exc.state, exc.task_id = state, task_id
            raise
        return result

    def on_chord_part_return(self, request, state, result, **kwargs) -> None:
        handled = self._parts_handled.get()
        if handled.pop(bytes_to_str(request.id), None):
            return
        # The result was not stored (ignore_result): the chord still needs it.
        # Encoded as Celery's store_result would: a raw exception is not
        # something every serializer can write.
        self._store_result(request.id, self.encode_result(result, state), state, request=request)
        handled.pop(bytes_to_str(request.id), None)

    def chord_error_from_stack(self, callback, exc=None):
        """Celery's, with the callback's task name stored beside its failure.

        Celery stores the failure without a request, so without a task name
        (and ``celery-gcs results list --name`` would never find it); the name
        is in the callback's signature (a group's, in each of its tasks').
        """
        failing = self._failing_callbacks.get()
        names = {sig.id: sig.task for sig in (callback, *getattr(callback, "tasks", ())) if sig.id and sig.task}
        failing.update(names)
        try:
            return super().chord_error_from_stack(callback, exc)
        finally:
            for task_id in names:
                failing.pop(task_id, None)

    def apply_chord(self, header_result_args, body, **kwargs) -> None:
        """Save the header's GroupResult (the callback reads its structure and ids) and write its counters."""
        self.ensure_chords_allowed()
        header = self.app.GroupResult(*header_result_args)
        self._save_group(header.id, header, expires=self.stored.lifetimes.chord_result)
        self.chords.apply(header.id, header.results)

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        self.chords.check_chord_size(group_id, chord_size)

    def add_to_chord(self, group_id: str, result: Any) -> None:
        self.chords.add(group_id, result.id)

    def incr(self, key: bytes | str) -> int:
        return self.chords.incr(bytes_to_str(key))

    def _save_group(self, group_id: str, result: Any, expires: float | None = None) -> Any:
        self.stored.save_group(bytes_to_str(group_id), result, self.expires if expires is None else expires)
        return result

    def warm_up(self) -> None:
        """Connect to GCS and Firestore now, so that this process's first task does not.

        One read each, of an object and a document never there, within
        ``WARM_UP_SECONDS``. A worker calls it in each process that runs
        tasks, as it starts (``_warm_up_in_background``); a failure is logged,
        and the first task connects as it would have.
        """
        with deadline.within(WARM_UP_SECONDS):
            self.stored.warm_up()
            self.chords.warm_up()

    def close(self) -> None:
        self.stored.close()
        self.chords.close()

    def __reduce__(self, args: tuple = (), kwargs: dict | None = None) -> tuple:
        return super().__reduce__(args, {**(kwargs or {}), "url": self.url})


@signals.worker_process_init.connect(weak=False, dispatch_uid="celery_gcs.warm_up.pool_process")
def _warm_pool_process(**_kwargs: Any) -> None:
    """A prefork pool process has started: connect it before its first task."""
    _warm_up_in_background(current_app._get_current_object())


@signals.worker_ready.connect(weak=False, dispatch_uid="celery_gcs.warm_up.worker")
def _warm_worker(sender: Any = None, **_kwargs: Any) -> None:
    """A worker is ready: under threads, gevent or solo its tasks run in this process; connect it.

    Never a prefork parent: it runs no task, and gRPC's channels must not
    cross the forks of the children it starts later.
    """
    from celery.concurrency.prefork import TaskPool as Prefork

    if sender is not None and not isinstance(getattr(sender, "pool", None), Prefork):
        _warm_up_in_background(sender.app)


def _warm_up_in_background(app: Any) -> None:
    """``GCSBackend.warm_up`` beside the worker's start, never holding it up (a pool child has seconds to report).

    Only for an app whose backend is this one: the class is looked up, no backend built for that.
    """
    try:
        configured, _url = by_url(app.backend_cls or app.conf.result_backend, app.loader)
    except Exception:  # noqa: BLE001 (the worker reports a bad backend setting itself)
        return
    if not (isinstance(configured, type) and issubclass(configured, GCSBackend)):
        return

    def warm_up() -> None:
        try:
            backend = app.backend
            if backend.settings.warm_up:
                backend.warm_up()
        except Exception as exc:  # noqa: BLE001 (best effort: the first task meets the same error and reports it)
            log.warning(E_WARM_UP, exc)

    threading.Thread(target=warm_up, name="celery-gcs-warm-up", daemon=True).start()


def _is_chord_part(request: Any, state: str) -> bool:
    return (
        state in states.READY_STATES
        and request is not None
        and bool(getattr(request, "chord", None))
        and bool(getattr(request, "group", None))
    )
