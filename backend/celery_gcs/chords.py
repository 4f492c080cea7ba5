"""Chords: every header task counted once, the callback published once, nothing hangs.

The order of a header task's return is what makes this hold (docs/chords.md):

1. **count** the part: create its Firestore document (a duplicate finds it);
2. **check** whether every part is counted (an aggregation query, plus the
   chord's size, read once per process and chord);
3. if so, **claim** the callback in a transaction, **join** the other parts'
   results from GCS (this part's own is still in memory), **renew** the claim
   and **publish** the callback, then delete the chord's documents;
4. only then **store** this task's own result in GCS.

Because the result is stored last, a process killed anywhere in 1-3 leaves
no SUCCESS behind, so Celery replays the return (redelivery with
``task_reject_on_worker_lost``, or the lost-worker FAILURE) and the replay,
finding the part already counted, repairs whatever was left: it takes over a
claim whose holder is dead and completes the chord. A claim's holder is
known dead when it ran on this host and its process is gone, or when its
lease has run out. An error between the claim and the publish gives the
claim up (a claim this very process holds but is not acting on counts as
given up), so that Celery's retry of the store completes the chord; once the
callback is published, the process remembers it until the chord's documents
are deleted, so a retry never publishes it again.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from celery import Celery, states
from celery.canvas import maybe_signature
from celery.exceptions import ChordError
from celery.result import AsyncResult, GroupResult

from .errors import CorruptResult
from .keys import part_document_id
from .settings import Settings
from .stores.chord_store import Chord, ChordStore, Claim, Holder
from .stores.perprocess import PerProcess

log = logging.getLogger(__name__)

#: A claim is held at least this long before others may take it over.
MIN_LEASE = 10.0
#: What Celery's ``result_chord_join_timeout`` defaults to.
DEFAULT_JOIN_TIMEOUT = 3.0


class ChordBackend(Protocol):
    """What the coordinator needs from the result backend that owns it (``GCSBackend``)."""

    app: Celery
    settings: Settings

    def chord_key(self, group_id: str) -> str:
        """The name of the chord's Firestore document."""

    def chord_expires_at(self) -> dt.datetime | None:
        """When chord documents written now expire."""

    def read_group(self, group_id: str) -> GroupResult | None:
        """The header's saved GroupResult; CorruptResult if it is not one."""

    def read_ready(self, task_ids: Sequence[str]) -> dict[str, tuple[str, Any]]:
        """(state, result) of the stored, ready ones; CorruptResult (with ``task_id``) for junk."""

    def as_stored(self, state: str, result: Any) -> Any:
        """A result as a reader will get it back from storage."""

    def chord_error_from_stack(self, callback: Any, exc: Exception) -> Any:
        """Celery's: fail the callback and call its errbacks."""


class PartsInFlight(Exception):
    """Counted parts whose results are not stored yet."""


@dataclass(frozen=True)
class Part:
    """A header task's return, with its own result still in memory."""

    task_id: str
    group_id: str
    index: int | None
    state: str
    value: Any  # as the callback would read it back from storage
    callback: dict[str, Any]


class ChordCoordinator:
    """Runs the steps above for one backend."""

    def __init__(self, backend: ChordBackend) -> None:
        self.backend = backend
        self.store = ChordStore(backend.settings)
        # chord key -> total parts, once read: totals only grow (add_to_chord),
        # so "counted < a total read earlier" still proves "not complete".
        self._totals: PerProcess[dict[str, int]] = PerProcess(dict)
        # Tokens of the claims this process is acting on. Any other claim held
        # by this process was abandoned when an error cut its attempt short.
        self._acting: PerProcess[set[str]] = PerProcess(set)
        # chord key -> part ids, for chords this process published (or failed)
        # but could not clean up: a retry cleans up, and never publishes again.
        self._done: PerProcess[dict[str, list[str]]] = PerProcess(dict)

    # -- Celery's chord hooks -------------------------------------------------------

    def key(self, group_id: str) -> str:
        return self.backend.chord_key(group_id)

    def set_size(self, group_id: str, size: int) -> None:
        self.store.set_size(self.key(group_id), size, self._expires_at())

    def add(self, group_id: str, task_id: str) -> None:
        self.store.add(self.key(group_id), task_id, self._expires_at())

    def incr(self, key: str) -> int:
        """Celery's ``incr`` hook, for code that counts chords the key/value way."""
        return self.store.incr(key, self._expires_at())

    # -- a header task returns ---------------------------------------------------------

    def part_ready(self, request: Any, state: str, result: Any) -> float:
        """Steps 1-3 for a header task; returns when it was counted (monotonic)."""
        part = self.part(request, state, result)
        key = self.key(part.group_id)
        self.before_count(part)
        new = self.store.count_part(key, self._part_id(part.task_id), part.index, self._expires_at())
        counted_at = time.monotonic()
        self.after_count(part)
        self.complete_if_done(part, may_wait=not new)
        return counted_at

    def complete_if_done(self, part: Part, may_wait: bool = False) -> None:
        key = self.key(part.group_id)
        if key in self._done.get():
            self._finish(key, self._done.get()[key])  # ended here; only the clean-up failed
            return
        counted = self.store.counted(key)
        total = self._totals.get().get(key)
        if total is None or counted >= total:
            chord = self.store.read(key)
            if chord is not None and chord.problem:
                self._fire(part, key, may_wait)  # to fail it, once
                return
            if chord is None or chord.total is None:
                return  # the size is not known yet; the last part will see it
            total = self._totals.get()[key] = chord.total
        if counted >= total:
            self._fire(part, key, may_wait)

    def _fire(self, part: Part, key: str, may_wait: bool) -> None:
        mine = Claim(uuid.uuid4().hex, this_holder(), _now_plus(self._lease()))
        acting = self._acting.get()
        acting.add(mine.token)
        try:
            chord = self._take_claim(key, mine, may_wait)
            if chord is not None:
                self._fire_claimed(part, key, mine, chord)
        finally:
            acting.discard(mine.token)

    def _fire_claimed(self, part: Part, key: str, mine: Claim, chord: Chord) -> None:
        self.after_claim(part)
        callback = maybe_signature(part.callback, app=self.backend.app)
        ids: list[str] = list(chord.added)  # the header's ids join them once read
        try:
            if chord.problem:
                ids = list(_leaf_ids(self._shape(part, chord)))  # what to clean up
                raise ChordError(chord.problem)
            if chord.total is None or self.store.counted(key) < chord.total:
                raise PartsInFlight("the chord grew after its last part was counted")
            shape = self._shape(part, chord)
            ids = list(_leaf_ids(shape))
            value = _rebuild(shape, self._gather(part, ids))
        except PartsInFlight as exc:
            log.warning("Chord %s: %s; its late parts will complete it", part.group_id, exc)
            self.store.release(key, mine.token)
            return
        except ChordError as exc:
            if self.store.renew(key, mine):
                log.error("Chord %s failed: %s", part.group_id, exc)
                try:
                    self.backend.chord_error_from_stack(callback, exc)
                finally:
                    self._end(key, ids)
            return
        except Exception:
            # Nothing is published: give the claim up for the retry of this store.
            self._release_quietly(key, mine.token)
            raise
        publish_budget = self._publish_budget()
        try:
            renewed = self.store.renew(key, Claim(mine.token, mine.holder, _now_plus(self._lease() + publish_budget)))
        except Exception:
            self._release_quietly(key, mine.token)
            raise
        if not renewed:
            log.warning("Chord %s: claim lost before publishing; its holder publishes", part.group_id)
            return
        try:
            self.backend.app.amqp._retry_publish(callback.delay, value)
        except Exception as exc:  # any publish failure fails the chord, as with Redis
            log.exception("Chord %s: callback not published", part.group_id)
            self.backend.chord_error_from_stack(callback, ChordError(f"Callback error: {exc!r}"))
        finally:
            self._end(key, ids)

    def _take_claim(self, key: str, mine: Claim, may_wait: bool) -> Chord | None:
        """Claim the callback. A replayed return may wait out a remote holder's lease."""
        while True:
            chord = self.store.claim(key, mine, can_take=self._can_take)
            if chord is not None:
                return chord
            if not may_wait:
                return None
            current = self.store.read(key)
            if current is None:
                return None  # the holder finished and deleted the chord: nothing left to do
            if current.claim is None:
                continue  # released meanwhile: claim it
            if current.claim.holder.host == this_holder().host:
                return None  # alive here: it will finish
            wait = (current.claim.lease_until - _now()).total_seconds()
            time.sleep(min(max(wait, 0.05), 1.0))

    def _shape(self, part: Part, chord: Chord) -> list[Any]:
        """The header's results in header order, then those added to the chord: one GCS read."""
        try:
            header = self.backend.read_group(part.group_id)
        except CorruptResult as exc:
            raise ChordError(f"GroupResult {part.group_id} cannot be read: {exc}") from exc
        if header is None:
            raise ChordError(f"GroupResult {part.group_id} no longer exists")
        return [*header.results, *(AsyncResult(task_id) for task_id in chord.added)]

    def _gather(self, part: Part, ids: list[str]) -> dict[str, Any]:
        """Read every other part's result once; wait briefly for ones being stored."""
        values: dict[str, Any] = {part.task_id: (part.state, part.value)}
        missing = [task_id for task_id in ids if task_id not in values]
        deadline = time.monotonic() + self._join_timeout()
        nap = 0.02
        while missing:
            try:
                values.update(self.backend.read_ready(missing))
            except CorruptResult as exc:
                task_id = getattr(exc, "task_id", "?")
                raise ChordError(f"Dependency {task_id} cannot be read: {exc}") from exc
            missing = [task_id for task_id in missing if task_id not in values]
            if missing and time.monotonic() >= deadline:
                raise PartsInFlight(f"{len(missing)} counted parts not stored yet, e.g. {missing[0]}")
            if missing:
                time.sleep(nap)
                nap = min(nap * 2, 0.5)
        for task_id in ids:
            state, value = values[task_id]
            if state in states.PROPAGATE_STATES:
                error = ChordError(f"Dependency {task_id} raised {value!r}")
                if isinstance(value, Exception):
                    error.__cause__ = value
                raise error
        return {task_id: value for task_id, (_, value) in values.items()}

    def _end(self, key: str, ids: list[str]) -> None:
        """The callback is published, or its errbacks called: remember that, then clean up."""
        self._done.get()[key] = ids
        self._finish(key, ids)

    def _finish(self, key: str, ids: Iterable[str]) -> None:
        self.store.finish(key, (self._part_id(task_id) for task_id in ids))
        self._totals.get().pop(key, None)
        self._done.get().pop(key, None)

    def _can_take(self, claim: Claim) -> bool:
        if can_take_over(claim):
            return True
        # Held by this very process, which is not acting on it: abandoned.
        return claim.holder == this_holder() and claim.token not in self._acting.get()

    def _release_quietly(self, key: str, token: str) -> None:
        try:
            self.store.release(key, token)
        except Exception:  # the claim stays ours; _can_take lets this process take it again
            log.warning("Chord key %s: could not release the claim", key, exc_info=True)

    # -- helpers ----------------------------------------------------------------------

    def slow_part_after(self) -> float:
        """A part slower than this between counted and stored looks for completion again."""
        return self._join_timeout()

    def part(self, request: Any, state: str, result: Any) -> Part:
        # The value as the callback will see it: through the serializer, like
        # the other parts' values read back from GCS.
        value = self.backend.as_stored(state, result)
        return Part(
            task_id=str(request.id),
            group_id=str(request.group),
            index=getattr(request, "group_index", None),
            state=state,
            value=value,
            callback=request.chord,
        )

    def _part_id(self, task_id: str) -> str:
        return part_document_id(task_id)

    def _expires_at(self) -> dt.datetime | None:
        return self.backend.chord_expires_at()

    def _join_timeout(self) -> float:
        timeout = self.backend.app.conf.get("result_chord_join_timeout")
        return float(timeout) if timeout is not None else DEFAULT_JOIN_TIMEOUT

    def _lease(self) -> float:
        return max(MIN_LEASE, 2 * self._join_timeout())

    def _publish_budget(self) -> float:
        policy = self.backend.app.conf.get("broker_transport_options", {}).get("max_retries")
        return 30.0 if policy is None else float(policy) * 2

    def close(self) -> None:
        self.store.close()

    # Test seams: fault-injection tests override these to kill the process.
    def before_count(self, part: Part) -> None:
        """Called after the task body returned, before its part is counted."""

    def after_count(self, part: Part) -> None:
        """Called right after the part is counted."""

    def after_claim(self, part: Part) -> None:
        """Called right after this process claimed the callback."""


def this_holder() -> Holder:
    pid = os.getpid()
    return Holder(socket.gethostname(), pid, _start_time(pid))


def can_take_over(claim: Claim) -> bool:
    """A claim may be taken when its lease ran out or its holder here is gone."""
    if claim.lease_until <= _now():
        return True
    if claim.holder.host != socket.gethostname():
        return False
    return not _alive(claim.holder)


def _alive(holder: Holder) -> bool:
    started = _start_time(holder.pid)
    if started == "gone":
        return False
    if holder.started and started and started != holder.started:
        return False  # the pid was reused by another process
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot; "gone" for a zombie or no process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return "gone"
    except OSError:
        return ""  # no /proc here: fall back to kill(pid, 0)
    return "gone" if fields[0] in ("Z", "X") else fields[19]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _now_plus(seconds: float) -> dt.datetime:
    return _now() + dt.timedelta(seconds=seconds)


def _leaf_ids(results: Iterable[Any]) -> Iterable[str]:
    for result in results:
        if isinstance(result, GroupResult):
            yield from _leaf_ids(result.results)
        else:
            yield result.id


def _rebuild(shape: Iterable[Any], values: dict[str, Any]) -> list[Any]:
    return [
        _rebuild(result.results, values) if isinstance(result, GroupResult) else values[result.id]
        for result in shape
    ]
