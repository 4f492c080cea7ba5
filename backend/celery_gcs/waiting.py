"""Waiting for results: a poll soon after sending that backs off, a group read about once per result, a failed parent's error first.

Celery's own waiting polls every pending result each interval; on GCS that is
a paid read per result per half second, most finding nothing. Here the
algorithms are on their own, over a ``Reader`` (``GCSBackend`` is one) and a
``Clock``, so they are tested with a fake of each; ``backend.py`` keeps
Celery's hooks, a few lines each. Pure: no I/O of its own.

Every read made while waiting (and every ``on_interval``, which reads
parents) runs within the caller's remaining time (``deadline.within``): with
GCS unreachable, ``get(timeout=T)`` raises Celery's ``TimeoutError`` after
about T seconds, not after a request's whole retry deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from celery import states
from celery.exceptions import TimeoutError
from celery.result import ResultSet

from . import deadline

#: The first poll of a result being waited for; later ones back off to the interval.
FIRST_POLL = 0.02
#: Most results one read of get_many asks for, reading ahead of the earliest pending one.
MAX_READ_AHEAD = 1_000
#: get_many reads a batch of at least this many results its last one first.
TAIL_FIRST = 4
#: get_many waits for about this many results between looks, once it knows their rate: a
#: look costs a read or two that find nothing (the earliest pending result, and tasks
#: still running among those read), so 50 a look keeps them near 1 in 25.
RESULTS_PER_LOOK = 50
#: How long get() on a failed chord waits for an unfinished parent to show its own error.
PARENT_ERROR_GRACE = 10.0
#: A read made while waiting may take at least this long, so that get(timeout=0) on a
#: finished task still reads its result; otherwise the caller's remaining time bounds it.
LEAST_READ_TIME = 1.0

Meta = dict[str, Any]


class Reader(Protocol):
    """What waiting reads through (``GCSBackend``)."""

    def get_task_meta(self, task_id: str) -> Meta:
        """A task's state now; PENDING when none is stored."""

    def read_ready(self, task_ids: list[str], ready_states: Collection[str]) -> dict[str, Meta]:
        """The states of those of ``task_ids`` that are in ``ready_states``, in one read."""


@dataclass(frozen=True)
class Clock:
    """Time as waiting sees it; tests pass a fake one."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


REAL_CLOCK = Clock()


def wait_for(
    reader: Reader,
    task_id: str,
    *,
    timeout: float | None,
    interval: float,
    on_interval: Callable[[], Any] | None = None,
    clock: Clock = REAL_CLOCK,
) -> Meta:
    """Wait for a result, polling soon after sending and backing off to ``interval``.

    Most tasks finish in milliseconds; a fixed half-second poll would add a
    quarter second to every ``get()`` on average. The first look comes after
    20 ms and the wait doubles, so a long task costs only a few more reads
    than with Celery's fixed interval.
    """
    started = clock.monotonic()
    nap = min(FIRST_POLL, interval)
    while True:
        with _remaining(timeout, started, clock):
            meta = reader.get_task_meta(task_id)
        if meta["status"] in states.READY_STATES:
            return meta
        if on_interval:
            with _remaining(timeout, started, clock):
                on_interval()
        elapsed = clock.monotonic() - started
        if timeout is not None and elapsed >= timeout:
            raise TimeoutError("The operation timed out.")
        clock.sleep(nap if timeout is None else max(0.0, min(nap, timeout - elapsed)))
        nap = min(nap * 2, interval)


def get_many(
    reader: Reader,
    task_ids: Sequence[str],
    *,
    timeout: float | None = None,
    interval: float | None = 0.5,
    on_message: Callable[[Meta], Any] | None = None,
    on_interval: Callable[[], Any] | None = None,
    max_iterations: int | None = None,
    ready_states: Collection[str] = states.READY_STATES,
    known: Mapping[str, Meta] | None = None,
    clock: Clock = REAL_CLOCK,
) -> Iterator[tuple[str, Meta]]:
    """Celery's ``get_many``, reading each result about once; ``known`` holds states already read.

    Celery reads every pending result again each interval: most reads find
    nothing. Here the first read is of the last result: when it is ready, all
    are read at once (with up to ``gcs_threadpool_maxsize`` reads in flight).
    Otherwise only the earliest pending result (in the order given) is
    looked at while nothing is ready, backing off from 20 ms to ``interval``,
    and once results come, waiting about as long as 50 of them take at the
    rate seen (never past ``interval``). Each look first reads as many
    results as that rate says became ready since the last look, then batches
    twice as large until one is not all ready. A batch's last result is read
    first: when it is not ready the look ends (or, before any result was
    found in it, the batch is halved). Tasks of a group mostly finish in
    order, so a result is read about once, a look costs a read or two that
    find nothing, and reading takes a round trip per batch rather than per
    result.
    """
    interval = 0.5 if interval is None else interval

    def read(ids: list[str]) -> dict[str, Meta]:
        with _remaining(timeout, started, clock):
            return dict(reader.read_ready(ids, ready_states))

    pending = list(dict.fromkeys(task_ids))
    for task_id in list(pending):
        cached = (known or {}).get(task_id)
        if cached is not None and cached["status"] in ready_states:
            pending.remove(task_id)
            yield task_id, cached
    started = last_look = clock.monotonic()
    # The first read probes the last of them all: a group joined once finished (or a
    # chord's header gathered) is then read in two round trips, not in ten doubling ones.
    window, nap, looks = min(len(pending), MAX_READ_AHEAD) or 1, min(FIRST_POLL, interval), 0
    probing = True
    gathered, caught_up = 0, 0.0  # results found since get_many first caught up, and when
    progressed = False  # this look has found results
    while pending:
        batch = pending[:window]
        if len(batch) >= TAIL_FIRST:
            # Its last result first: results come about in order, so if that one is not
            # ready many before it may not be either. Past results found in this look,
            # that is where the unfinished begin: wait. Before, try half as many.
            found = read(batch[-1:])
            if not found and not progressed:
                # Not all ready: from the earliest on, as results come (the probe cost one read).
                window = 1 if probing else len(batch) // 2
                probing = False
                continue
            probing = False
            if found:
                found.update(read(batch[:-1]))
        else:
            found = read(batch)
            probing = False
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
            window = min(window * 2, MAX_READ_AHEAD)
            continue
        # Results still to come: wait for more of them rather than chase each one.
        progressed = False
        elapsed = clock.monotonic() - started
        if timeout is not None and elapsed >= timeout:
            raise TimeoutError(f"Operation timed out ({timeout})")
        if on_interval:
            with _remaining(timeout, started, clock):
                on_interval()
        clock.sleep(nap if timeout is None else max(0.0, min(nap, timeout - elapsed)))
        looks += 1
        if max_iterations and looks >= max_iterations:
            break
        # Read first about as many as became ready since the last look, at the rate seen so far.
        now = clock.monotonic()
        if not caught_up:
            caught_up, gathered = last_look, 0  # the first wait: what came before was a backlog
        rate = gathered / (now - caught_up) if now > caught_up else 0.0
        window = min(max(1, int(rate * (now - last_look))), MAX_READ_AHEAD)
        last_look = now
        nap = _next_nap(nap, interval, rate, len(pending))


def iter_native(
    reader: Reader,
    result: ResultSet,
    *,
    timeout: float | None,
    interval: float,
    on_message: Callable[[Meta], Any] | None = None,
    on_interval: Callable[[], Any] | None = None,
    known: Mapping[str, Meta] | None = None,
    clock: Clock = REAL_CLOCK,
) -> Iterator[tuple[str, Any]]:
    """Celery's, except that a group after a failed task of its chain ends with that task's error.

    Such a group never runs, so ``GroupResult.get()`` would wait for results
    that never come until its timeout (or forever). Its parents are looked at
    before waiting and on every poll; once one has failed, each member not
    yet ready is given the parent's failure, as Celery marks a failed chain's
    later tasks: ``get()`` raises it, and with ``propagate=False`` returns it.
    """
    members = _in_order(reader, result, timeout, interval, on_message, known, clock)
    ancestors = _ancestors(result)
    if not ancestors:
        yield from members(on_interval)
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
        with _remaining(timeout, clock.monotonic(), clock):
            check_parents()
        for task_id, meta in members(check_parents):
            done.add(task_id)
            yield task_id, meta
    except _ParentFailed as failure:
        for task_id in (r.id for r in result.results if r.id not in done):
            yield task_id, failure.meta


def parents_fail_first(
    result: Any,
    on_interval: Any,
    *,
    propagate: bool,
    timeout: float | None,
    waited: float,
    interval: float,
    clock: Clock = REAL_CLOCK,
) -> None:
    """Before a chord's ChordError is raised: let an unfinished parent's own error be raised first.

    ``AsyncResult.get`` raises a failed parent's error through
    ``on_interval``, before waiting and on every poll. With Redis it also
    looks once more after the result arrived, so ``get()`` on a chord whose
    header task failed raises that task's exception, not the callback's
    ChordError; here too. A header task stores its own result only after it
    counted itself and failed the chord (chords.py), so while a parent is
    unfinished its error may be moments away: the parents are polled until
    all are finished, for at most ``PARENT_ERROR_GRACE`` seconds and never
    past ``timeout`` (of which ``waited`` seconds are gone).
    """
    ancestors = _ancestors(result)
    # Celery passes an empty promise when get() does not follow parents.
    follows_parents = getattr(on_interval, "fun", on_interval) is not None
    if not (propagate and on_interval and follows_parents and ancestors):
        return
    grace = PARENT_ERROR_GRACE if timeout is None else min(PARENT_ERROR_GRACE, timeout - waited)
    deadline_at = clock.monotonic() + grace
    nap = min(FIRST_POLL, interval)
    while True:
        # Readiness first: a parent that fails between the two looks is then
        # still seen by on_interval (a finished state is cached, never unread).
        with deadline.within(max(deadline_at - clock.monotonic(), LEAST_READ_TIME)):
            finished = all(node.ready() for node in ancestors)
            on_interval()
        if finished or clock.monotonic() >= deadline_at:
            return
        clock.sleep(min(nap, max(0.0, deadline_at - clock.monotonic())))
        nap = min(nap * 2, interval)


def _remaining(timeout: float | None, started: float, clock: Clock) -> AbstractContextManager[None]:
    """The reads inside take no longer than what is left of ``timeout`` (at least ``LEAST_READ_TIME``)."""
    if timeout is None:
        return deadline.within(None)
    return deadline.within(max(timeout - (clock.monotonic() - started), LEAST_READ_TIME))


def _in_order(
    reader: Reader,
    result: ResultSet,
    timeout: float | None,
    interval: float,
    on_message: Callable[[Meta], Any] | None,
    known: Mapping[str, Meta] | None,
    clock: Clock,
) -> Callable[[Callable[[], Any] | None], Iterator[tuple[str, Any]]]:
    """Celery's ``iter_native`` body, handing ``get_many`` the members in order (Celery makes a set of them)."""

    def members(on_interval: Callable[[], Any] | None) -> Iterator[tuple[str, Any]]:
        task_ids = []
        for member in result.results:
            if isinstance(member, ResultSet):
                yield member.id, member.results
            else:
                task_ids.append(member.id)
        if task_ids:
            yield from get_many(
                reader, task_ids, timeout=timeout, interval=interval, on_message=on_message,
                on_interval=on_interval, known=known, clock=clock,
            )  # fmt: skip

    return members


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

    def __init__(self, meta: Meta) -> None:
        super().__init__(meta["result"])
        self.meta = meta


def _failed(ancestors: list[Any]) -> Meta | None:
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
    ``RESULTS_PER_LOOK`` of them take at their rate (or the rest, at the end), within ``interval``."""
    if rate <= 0:
        return min(nap * 2, interval)
    return min(interval, max(FIRST_POLL, min(RESULTS_PER_LOOK, pending) / rate))
