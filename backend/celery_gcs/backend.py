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
  callback is published once (chords.py).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

from celery import states
from celery.backends.base import KeyValueStoreBackend
from celery.exceptions import ChordError, TimeoutError
from celery.result import GroupResult, ResultSet, result_from_tuple
from kombu.utils.encoding import bytes_to_str

from . import meta as stored
from . import retry, settings
from .chords import ChordCoordinator
from .errors import CorruptResult, StoreError
from .keys import encode_id
from .meta import EXPIRES_FIELD
from .stores import grpc_runtime
from .stores.perprocess import PerProcess
from .stores.result_store import GenerationMismatch, ResultStore

# How many (key -> generation) of this process's unfinished states to remember.
_GENERATIONS_KEPT = 10_000
# The first poll of a result being waited for; later ones back off to the interval.
_FIRST_POLL = 0.02
# Writers racing on one key: how many precondition failures to ride out.
_MAX_CONFLICTS = 8
# Most results one read of get_many asks for, reading ahead of the earliest pending one.
_MAX_READ_AHEAD = 1_000
# get_many reads a batch of at least this many results its last one first.
_TAIL_FIRST = 4
# get_many waits for about this many results between looks, once it knows their rate: a
# look costs a read or two that find nothing (the earliest pending result, and tasks
# still running among those read), so 50 a look keeps them near 1 in 25.
_RESULTS_PER_LOOK = 50
# How long get() on a failed chord waits for an unfinished parent to show its own error.
_PARENT_ERROR_GRACE = 10.0


class GCSBackend(KeyValueStoreBackend):
    """Celery result backend storing results as GCS objects.

    Besides Celery's hooks it offers the coordinator what it reads through
    (``chords.ChordBackend``): ``chord_key``, ``chord_expires_at``,
    ``read_group``, ``read_ready``, ``as_stored`` and ``refresh_chord_results``.
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
        self.settings = settings.parse(url, self.app.conf)
        self.results = ResultStore(self.settings)
        failure_expires = self.app.conf.get("result_failure_expires")
        self.failure_expires = self.expires if failure_expires is None else self.prepare_expires(failure_expires)
        # Generations this process wrote for unfinished states (STARTED, RETRY),
        # so the next state of the same task is one conditional PUT.
        self._generations: PerProcess[OrderedDict[str, int]] = PerProcess(OrderedDict)
        self.chords = self.coordinator_class(self)
        # Chord parts this process counted while storing their result, so that
        # Celery's on_chord_part_return that follows does nothing more.
        self._parts_handled: PerProcess[dict[str, bool]] = PerProcess(dict)

    # -- keys ---------------------------------------------------------------

    def _get_key_for(self, prefix: bytes, id: Any, key: bytes = b"") -> bytes:
        return super()._get_key_for(prefix, encode_id(str(id)), key)

    # -- the key/value hooks KeyValueStoreBackend calls ----------------------

    def get(self, key: bytes | str) -> bytes | None:
        found = self.results.get(bytes_to_str(key))
        return None if found is None else found.data

    def mget(self, keys: Sequence[bytes | str]) -> list[bytes | None]:
        found = self.results.get_many([bytes_to_str(key) for key in keys])
        return [None if item is None else item.data for item in found]

    def set(self, key: bytes | str, value: bytes) -> None:
        self._put(bytes_to_str(key), value, expires_at=self._expiry(self.expires))

    def delete(self, key: bytes | str) -> None:
        self.results.delete(bytes_to_str(key))

    def expire(self, key: bytes | str, value: float | dt.timedelta | None) -> None:
        """Give an existing result a new expiry, ``value`` seconds from now."""
        name = bytes_to_str(key)
        for _ in range(_MAX_CONFLICTS):
            found = self.results.get(name)
            if found is None:
                return
            meta = self._decode(name, found.data)
            expires_at = self._expiry(self.prepare_expires(value))
            meta[EXPIRES_FIELD] = stored.isoformat(expires_at)
            metadata = stored.object_metadata(meta, meta.get("name")) if "status" in meta else None
            try:
                self._put(
                    name,
                    self.encode(meta),
                    expires_at=expires_at,
                    if_generation_match=found.generation,
                    metadata=metadata,
                )
                return
            except GenerationMismatch:
                continue
        raise StoreError(f"could not set the expiry of {name}: it kept changing under us")

    def wait_for(self, task_id, timeout=None, interval=0.5, no_ack=True, on_interval=None):
        """Wait for a result, polling soon after sending and backing off to ``interval``.

        Most tasks finish in milliseconds; a fixed half-second poll would add
        a quarter second to every ``get()`` on average. The first look comes
        after 20 ms and the wait doubles, so a long task costs only a few
        more reads than with Celery's fixed interval.
        """
        self._ensure_not_eager()
        started = time.monotonic()
        nap = min(_FIRST_POLL, interval)
        while True:
            meta = self.get_task_meta(task_id)
            if meta["status"] in states.READY_STATES:
                return meta
            if on_interval:
                on_interval()
            elapsed = time.monotonic() - started
            if timeout is not None and elapsed >= timeout:
                raise TimeoutError("The operation timed out.")
            time.sleep(nap if timeout is None else max(0.0, min(nap, timeout - elapsed)))
            nap = min(nap * 2, interval)

    def wait_for_pending(
        self, result, timeout=None, interval=0.5, no_ack=True, on_message=None,
        on_interval=None, callback=None, propagate=True,
    ):  # fmt: skip
        """Celery's, except that a failed header task's own error wins over its chord's ChordError.

        ``AsyncResult.get`` raises a failed parent's error through
        ``on_interval``, before waiting and on every poll. With Redis it also
        looks once more after the result arrived, so ``get()`` on a chord whose
        header task failed raises that task's exception, not the callback's
        ChordError; here too. A header task stores its own result only after
        it counted itself and failed the chord (chords.py, step 4), so while a
        parent is unfinished its error may be moments away: the parents are
        polled until all are finished, for at most ``_PARENT_ERROR_GRACE``
        seconds and never past ``timeout``.
        """
        started = time.monotonic()
        try:
            return super().wait_for_pending(
                result, timeout=timeout, interval=interval, no_ack=no_ack, on_message=on_message,
                on_interval=on_interval, callback=callback, propagate=propagate,
            )  # fmt: skip
        except ChordError:
            ancestors = _ancestors(result)
            # Celery passes an empty promise when get() does not follow parents.
            follows_parents = getattr(on_interval, "fun", on_interval) is not None
            if propagate and on_interval and follows_parents and ancestors:
                grace = _PARENT_ERROR_GRACE
                if timeout is not None:
                    grace = min(grace, timeout - (time.monotonic() - started))
                _poll_parents(ancestors, on_interval, grace, interval)
            raise

    def iter_native(self, result, timeout=None, interval=0.5, no_ack=True, on_message=None, on_interval=None):
        """Celery's, except that a group after a failed task of its chain ends with that task's error.

        Such a group never runs, so ``GroupResult.get()`` would wait for
        results that never come until its timeout (or forever). Its parents
        are looked at before waiting and on every poll; once one has failed,
        each member not yet ready is given the parent's failure, as Celery
        marks a failed chain's later tasks: ``get()`` raises it, and with
        ``propagate=False`` returns it.
        """
        ancestors = _ancestors(result)
        if not ancestors:
            yield from self._iter_in_order(result, timeout, interval, on_message, on_interval)
            return
        outer = on_interval

        def check_parents() -> None:
            failed = _failed(ancestors)
            if failed is not None:
                raise _ParentFailed(failed)
            if outer:
                outer()

        done: set[str] = set()
        try:
            check_parents()
            for task_id, meta in self._iter_in_order(result, timeout, interval, on_message, check_parents):
                done.add(task_id)
                yield task_id, meta
        except _ParentFailed as failure:
            for task_id in (r.id for r in result.results if r.id not in done):
                yield task_id, failure.meta

    def _iter_in_order(self, result, timeout, interval, on_message, on_interval):
        """Celery's ``iter_native``, handing ``get_many`` the members in order (Celery makes a set of them)."""
        self._ensure_not_eager()
        task_ids = []
        for member in result.results:
            if isinstance(member, ResultSet):
                yield member.id, member.results
            else:
                task_ids.append(member.id)
        if task_ids:
            yield from self.get_many(
                task_ids, timeout=timeout, interval=interval, on_message=on_message, on_interval=on_interval
            )

    def get_many(
        self, task_ids, timeout=None, interval=0.5, no_ack=True, on_message=None, on_interval=None,
        max_iterations=None, READY_STATES=states.READY_STATES,
    ):  # fmt: skip
        """Celery's, reading each result about once.

        Celery reads every pending result again each interval: most reads find
        nothing. Here only the earliest pending result (in the order given) is
        looked at while nothing is ready, backing off from 20 ms to
        ``interval``, and once results come, waiting about as long as 50 of
        them take at the rate seen (never past ``interval``). Each look first
        reads as many results as that rate says became ready since the last
        look, then batches twice as large until one is not all ready. A
        batch's last result is read first: when it is not ready the look ends
        (or, before any result was found in it, the batch is halved). Tasks of
        a group mostly finish in order, so a result is read about once, a look
        costs a read or two that find nothing, and reading takes a round trip
        per batch rather than per result.
        """
        interval = 0.5 if interval is None else interval
        pending = list(dict.fromkeys(bytes_to_str(task_id) for task_id in task_ids))
        for task_id in list(pending):
            cached = self._cache.get(task_id)
            if cached is not None and cached["status"] in READY_STATES:
                pending.remove(task_id)
                yield task_id, cached
        started = last_look = time.monotonic()
        window, nap, looks = 1, min(_FIRST_POLL, interval), 0
        gathered, caught_up = 0, 0.0  # results found since get_many first caught up, and when
        progressed = False  # this look has found results
        while pending:
            batch = pending[:window]
            if len(batch) >= _TAIL_FIRST:
                # Its last result first: results come about in order, so if that one is not
                # ready many before it may not be either. Past results found in this look,
                # that is where the unfinished begin: wait. Before, try half as many.
                found = self._read_ready(batch[-1:], READY_STATES)
                if not found and not progressed:
                    window = len(batch) // 2
                    continue
                if found:
                    found.update(self._read_ready(batch[:-1], READY_STATES))
            else:
                found = self._read_ready(batch, READY_STATES)
            for task_id in batch:
                if task_id in found:
                    if on_message is not None:
                        on_message(found[task_id])
                    yield task_id, found[task_id]
            if found:
                pending = [task_id for task_id in pending if task_id not in found]
                gathered += len(found) if caught_up else 0
                progressed = True
            if found and len(found) == len(batch):
                # All ready: read on, twice as many at once (a round trip each, not a result each).
                window = min(window * 2, _MAX_READ_AHEAD)
                continue
            # Results still to come: wait for more of them rather than chase each one.
            progressed = False
            elapsed = time.monotonic() - started
            if timeout is not None and elapsed >= timeout:
                raise TimeoutError(f"Operation timed out ({timeout})")
            if on_interval:
                on_interval()
            time.sleep(nap if timeout is None else max(0.0, min(nap, timeout - elapsed)))
            looks += 1
            if max_iterations and looks >= max_iterations:
                break
            # Read first about as many as became ready since the last look, at the rate seen so far.
            now = time.monotonic()
            if not caught_up:
                caught_up, gathered = last_look, 0  # the first wait: what came before was a backlog
            rate = gathered / (now - caught_up) if now > caught_up else 0.0
            window = min(max(1, int(rate * (now - last_look))), _MAX_READ_AHEAD)
            last_look = now
            nap = _next_nap(nap, interval, rate, len(pending))

    def _read_ready(self, task_ids: list[str], ready_states: frozenset[str]) -> dict[str, dict[str, Any]]:
        """The metas of those of ``task_ids`` that are ready, read in one ``mget``, and cached."""
        keys = [self.get_key_for_task(task_id) for task_id in task_ids]
        found = self._mget_to_results(self.mget(keys), task_ids, ready_states)
        self._cache.update(found)
        return found

    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        return retry.is_retryable(exc)

    # -- reads: a result past its expiry is missing ---------------------------

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        name = bytes_to_str(self.get_key_for_task(task_id))
        meta = self._read_meta(name)
        return {"status": states.PENDING, "result": None} if meta is None else self._task_meta(name, meta)

    def task_result_exists(self, task_id: str) -> bool:
        return self._read_meta(bytes_to_str(self.get_key_for_task(task_id))) is not None

    def _restore_group(self, group_id: str) -> dict[str, Any] | None:
        name = bytes_to_str(self.get_key_for_group(group_id))
        meta = self._read_meta(name)
        if meta is not None:
            try:
                meta["result"] = result_from_tuple(meta["result"], self.app)
            except Exception as exc:  # any shape result_from_tuple cannot take
                raise stored.corrupt(name, self.settings.bucket, f"not a group of results ({exc!r})") from exc
        return meta

    def _mget_to_results(self, values, keys, READY_STATES=states.READY_STATES):
        # Celery's passes list positions on to _filter_ready; the task ids name the objects.
        return dict(self._filter_ready(zip(map(bytes_to_str, keys), values), READY_STATES))

    def _filter_ready(self, values, READY_STATES=states.READY_STATES):
        for k, value in values:
            if value is None:
                continue
            name = bytes_to_str(self.get_key_for_task(k))
            meta = self._decode(name, value)
            if not stored.expired(meta):
                meta = self._task_meta(name, meta)
                if meta["status"] in READY_STATES:
                    yield k, meta

    def _read_meta(self, name: str) -> dict[str, Any] | None:
        found = self.results.get(name)
        if found is None:
            return None
        meta = self._decode(name, found.data)
        return None if stored.expired(meta) else meta

    def _task_meta(self, name: str, meta: dict[str, Any]) -> dict[str, Any]:
        return stored.task_state(name, meta, rebuild=self.meta_from_decoded, bucket=self.settings.bucket)

    def _decode(self, name: str, payload: bytes) -> dict[str, Any]:
        return stored.decode(name, payload, decode=self.decode, bucket=self.settings.bucket)

    # -- what the chord coordinator reads through (chords.ChordBackend) ---------

    def chord_key(self, group_id: str) -> str:
        return bytes_to_str(self.get_key_for_chord(group_id))

    def chord_expires_at(self) -> dt.datetime | None:
        return self._expiry(self.chord_expires)

    def read_group(self, group_id: str) -> GroupResult | None:
        """The saved GroupResult of a group, or None; CorruptResult if it is not one."""
        meta = self._restore_group(group_id)
        return None if meta is None else meta["result"]

    def read_ready(self, task_ids: Sequence[str]) -> dict[str, tuple[str, Any]]:
        """(state, result) of those of ``task_ids`` whose results are stored and ready.

        A stored object that is not a result raises CorruptResult with the
        task's id as ``task_id``.
        """
        keys = [bytes_to_str(self.get_key_for_task(task_id)) for task_id in task_ids]
        ready: dict[str, tuple[str, Any]] = {}
        for task_id, key, raw in zip(task_ids, keys, self.mget(keys)):
            if raw is None:
                continue
            try:
                decoded = self._decode(key, raw)
                if stored.expired(decoded):
                    continue  # an expired result is absent, for the chord as for everyone
                meta = self._task_meta(key, decoded)
            except CorruptResult as exc:
                exc.task_id = task_id
                raise
            if meta["status"] in states.READY_STATES:
                ready[task_id] = (meta["status"], meta["result"])
        return ready

    def refresh_chord_results(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Push back the expiry of a running chord's GroupResult and of its header results stored so far."""
        expires = self._chord_result_expires
        self.expire(self.get_key_for_group(group_id), expires)
        for task_id in task_ids:
            self.expire(self.get_key_for_task(task_id), expires)

    def as_stored(self, state: str, result: Any) -> Any:
        """A result as a reader gets it back: through the serializer and Celery's rebuilding."""
        encoded = self.encode({"result": self.encode_result(result, state), "status": state})
        return self.meta_from_decoded(self.decode(encoded))["result"]

    # -- writes: one request per state ---------------------------------------

    def _store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
        meta["task_id"] = bytes_to_str(task_id)
        expires = self.failure_expires if state in states.EXCEPTION_STATES else self.expires
        if _is_chord_part(request, state) and expires:
            # Its chord's callback reads it: kept as long as the chord, as Celery does.
            expires = max(expires, self._chord_result_expires)
        expires_at = self._expiry(expires)
        meta[EXPIRES_FIELD] = stored.isoformat(expires_at)
        name = bytes_to_str(self.get_key_for_task(task_id))
        payload = stored.encode_state(meta, state, encode=self.encode, limit=self.settings.max_result_bytes)
        try:
            stored.check_size(name, payload, self.settings.max_result_bytes)
            counted_at = None
            if _is_chord_part(request, state):
                # Count (and maybe fire the callback) before the result is
                # stored: see chords.py for why this order never hangs.
                counted_at = self.chords.part_ready(request, state, result)
                self._parts_handled.get()[bytes_to_str(task_id)] = True
            task_name = getattr(request, "task", None) or meta.get("name")
            self._write_state(name, payload, state, expires_at, stored.object_metadata(meta, task_name))
        except StoreError as exc:
            exc.state, exc.task_id = state, bytes_to_str(task_id)
            raise
        if counted_at is not None and time.monotonic() - counted_at > self.chords.slow_part_after():
            # So slow that the callback's join may have given up on us: look again.
            self.chords.look_again(self.chords.part(request, state, result))
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

    def apply_chord(self, header_result_args, body, **kwargs) -> None:
        """Save the header's GroupResult (the callback reads its structure and ids) and write its counters."""
        self.ensure_chords_allowed()
        header = self.app.GroupResult(*header_result_args)
        self._save_group(header.id, header, expires=self._chord_result_expires)
        self.chords.apply(header.id, header.results)

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        self.chords.check_size(group_id, chord_size)

    def add_to_chord(self, group_id: str, result: Any) -> None:
        self.chords.add(group_id, result.id)

    def incr(self, key: bytes | str) -> int:
        return self.chords.incr(bytes_to_str(key))

    def _write_state(
        self, name: str, payload: bytes, state: str, expires_at: dt.datetime | None, metadata: dict[str, str]
    ) -> None:
        generations = self._generations.get()
        expected = generations.pop(name, 0)
        for _ in range(_MAX_CONFLICTS):
            try:
                generation = self._put(
                    name, payload, expires_at=expires_at, if_generation_match=expected, metadata=metadata
                )
            except GenerationMismatch:
                current = self.results.get(name)
                if current is None:
                    expected = 0
                    continue
                try:
                    previous = self._decode(name, current.data)
                except CorruptResult:
                    previous = {}  # something else's bytes in this task's place: replaced
                if previous.get("status") == states.SUCCESS and not stored.expired(previous):
                    # A duplicate run never overwrites a success (Celery's rule); an
                    # expired one reads as absent, so a re-run after it is stored.
                    return
                expected = current.generation
                continue
            if state not in states.READY_STATES:
                generations[name] = generation
                while len(generations) > _GENERATIONS_KEPT:
                    generations.popitem(last=False)
            return
        raise StoreError(f"could not store {name}: other writers kept replacing it")

    def _save_group(self, group_id: str, result: Any, expires: float | None = None) -> Any:
        expires_at = self._expiry(self.expires if expires is None else expires)
        meta = {"result": result.as_tuple(), EXPIRES_FIELD: stored.isoformat(expires_at)}
        self._put(bytes_to_str(self.get_key_for_group(group_id)), self.encode(meta), expires_at=expires_at)
        return result

    def _put(
        self,
        name: str,
        payload: bytes,
        *,
        expires_at: dt.datetime | None,
        if_generation_match: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> int:
        stored.check_size(name, payload, self.settings.max_result_bytes)
        return self.results.put(
            name,
            payload,
            expires_at=expires_at,
            if_generation_match=if_generation_match,
            content_type=stored.content_type(self.content_type, bool(self.compression)),
            metadata=metadata,
        )

    def _expiry(self, seconds: float | None) -> dt.datetime | None:
        """When a result written now expires: ``gcs_ttl`` if set, else ``seconds``."""
        ttl = self.settings.ttl or seconds
        if not ttl:
            return None
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=float(ttl))

    def close(self) -> None:
        self.results.close()
        self.chords.close()

    def __reduce__(self, args: tuple = (), kwargs: dict | None = None) -> tuple:
        return super().__reduce__(args, {**(kwargs or {}), "url": self.url})


def _ancestors(result: Any) -> list[Any]:
    """A result's parents, nearest first."""
    found = []
    node = getattr(result, "parent", None)
    while node is not None:
        found.append(node)
        node = node.parent
    return found


class _ParentFailed(Exception):
    """A parent of the group being waited for failed; ``meta`` is its failure."""

    def __init__(self, meta: dict[str, Any]) -> None:
        super().__init__(meta["result"])
        self.meta = meta


def _failed(ancestors: list[Any]) -> dict[str, Any] | None:
    """The failure of the earliest failed one, as ``AsyncResult.get`` would raise it, or None.

    A group among them (a chain of a chord and a group) failed when one of its members did.
    """
    for node in reversed(ancestors):
        for task in _tasks(node):
            if task.state in states.PROPAGATE_STATES:
                return {"status": task.state, "result": task.result, "traceback": task.traceback, "task_id": task.id}
    return None


def _tasks(node: Any) -> Iterator[Any]:
    """A parent's task results: itself, or a group's members in order, as ``GroupResult.maybe_throw`` takes them.

    A chain such as ``add | group(...) | tsum | group(...)`` has a group among
    the later group's parents, and a group has no state of its own.
    """
    if isinstance(node, ResultSet):
        for member in node.results:
            yield from _tasks(member)
    else:
        yield node


def _next_nap(nap: float, interval: float, rate: float, pending: int) -> float:
    """get_many's next wait: backing off to ``interval`` until results come; then as long as
    ``_RESULTS_PER_LOOK`` of them take at their rate (or the rest, at the end), within ``interval``."""
    if rate <= 0:
        return min(nap * 2, interval)
    return min(interval, max(_FIRST_POLL, min(_RESULTS_PER_LOOK, pending) / rate))


def _poll_parents(ancestors: list[Any], on_interval: Any, seconds: float, interval: float) -> None:
    """Call ``on_interval`` (which raises a failed parent's error) until every parent is finished."""
    deadline = time.monotonic() + seconds
    nap = min(_FIRST_POLL, interval)
    while True:
        # Readiness first: a parent that fails between the two looks is then
        # still seen by on_interval (a finished state is cached, never unread).
        finished = all(node.ready() for node in ancestors)
        on_interval()
        if finished or time.monotonic() >= deadline:
            return
        time.sleep(min(nap, max(0.0, deadline - time.monotonic())))
        nap = min(nap * 2, interval)


def _is_chord_part(request: Any, state: str) -> bool:
    return (
        state in states.READY_STATES
        and request is not None
        and bool(getattr(request, "chord", None))
        and bool(getattr(request, "group", None))
    )
