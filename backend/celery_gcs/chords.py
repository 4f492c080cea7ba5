"""Chords: every part counted once, the callback published once, under every pool and host layout.

The design (docs/chords.md has the failure table):

* **apply**: when Celery applies a chord, its counters are written
  (chord_tree.py): a tree of countdowns over the header's task ids.
* **count**: a returning header task creates its part document and counts its
  leaf down, in one commit that answers with the leaf's new value. The part
  that fills a counter counts its parent down, and so on; the part that fills
  the top one (or counts the last added task) *settles* the chord: a
  transaction on the chord document that claims the callback for a lease
  reckoned in the server's time.
* **complete**: the claim's holder reads every part's result from GCS (its
  own from memory unless a run before it stored one), renews the lease for
  the publish (and looks in GCS whether a holder before it sent the chord's
  outcome already), publishes the callback, records in GCS that it went
  out, and marks the chord done.
* **store**: only then does the part store its own result.

Storing last is what makes a crash harmless: Celery 5.7 replays a killed
task's return (requeued with ``task_reject_on_worker_lost``, else as a
WorkerLostError failure) unless a SUCCESS was stored. The replay's commit is
refused (its part is counted), so it walks up its counters, finishes what the
dead process left, and takes the claim over once the dead holder's lease has
run out by the server's clock. Nothing here looks at hostnames, pids or
``/proc``, and nothing is shared between threads but the Firestore client.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import enum
import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from celery import Celery, states
from celery.canvas import maybe_signature
from celery.exceptions import ChordError
from celery.result import AsyncResult, GroupResult

from . import conventions, deadline, observe
from .errors import CorruptResult
from .keys import part_document_id
from .perprocess import PerProcess
from .stored_results import EncodedState, Extended, StoredResults
from .stores import chord_tree, retry
from .stores.chord_store import Chord, ChordStore, Refused, Settle, Settled
from .stores.chord_tree import Node
from .unstored import Unstored

T = TypeVar("T")
log = logging.getLogger(__name__)

E_HEADER_GONE = (
    "GroupResult {group_id} no longer exists: the chord's saved header was deleted before the chord completed. "
    "It lives as long as result_chord_expires, else result_expires (here {seconds:g}s; gcs_ttl overrides both), "
    "and the bucket's lifecycle deletes it once that has passed: raise result_chord_expires above the longest "
    "a chord's parts can wait in the queue and run"
)

E_RESULTS_EXPIRED = (
    "Dependency {task_id} expired before the chord could join ({count} of its results did): a chord's results "
    "live the longer of result_chord_expires and result_expires (here {seconds:g}s; gcs_ttl overrides both), and "
    "this chord outlasted them (its parts waited, ran or came further apart than that): raise result_chord_expires "
    "above the longest a chord can take"
)

E_GONE_UNTOLD = (
    "Chord {group_id}: its document and its GroupResult are gone, and its callback has no outcome; part "
    "{task_id} is not counted and fails nothing. Either the chord ended (its GroupResult is deleted then) and "
    "this is a late copy of a part, or it was open and both expired (parts further apart than "
    "result_chord_expires, else result_expires: here {seconds:g}s); then it never completes: raise "
    "result_chord_expires above the longest a chord can take"
)

#: A claim is held at least this long before others may take it over.
MIN_LEASE = 10.0
#: What Celery's ``result_chord_join_timeout`` defaults to.
DEFAULT_JOIN_TIMEOUT = 3.0
#: Chord documents each process remembers (size and counters' shape).
_CHORDS_KEPT = 1_000
#: How often a replay waiting for a claim's holder looks again.
_WAIT_STEP = 1.0
#: How many times a part looks again at a chord left to it before it leaves it to its TTL.
_LOOKS = 3
#: What a chord's record of its sent outcome says went out (``_record_sent``).
CALLBACK, ERRBACKS = "callback", "errbacks"
#: The longest a holder waits on for a part counted but not stored, whatever its document says
#: (``_late_parts_wait``): a part document edited by hand holds the claim no longer.
_LATE_WAIT_MAX = 3600.0
#: Added to that wait: the part's own clock measures from before its count to after its store.
_LATE_MARGIN = 0.1
#: Celery's cap on a callback's publish retries when its policy has none.
_PUBLISH_MAX_RETRIES = 3
#: A running chord is kept this many times its age so far from now, at least (``_stretch``).
_STRETCH = 2.0
#: One settle transaction at a time per chord in a process, whatever backends its threads or
#: greenlets have: parts that find a claim's lease run out together (a killed worker's
#: redelivered parts, under threads or gevent) would all read the chord document and commit at
#: once, and transactions that read and write one document only abort each other (on the
#: emulator, which has no wound-wait, each waits out its 10 s lock timeout, again and again:
#: 22 parts of one gevent worker held a chord for over two minutes). Striped by chord key.
_SETTLE_STRIPES = 64
_SETTLING: PerProcess[tuple[threading.Lock, ...]] = PerProcess(
    lambda: tuple(threading.Lock() for _ in range(_SETTLE_STRIPES))
)


class ChordBackend(Protocol):
    """What only Celery's backend class gives the coordinator (``GCSBackend``); results it reads through ``StoredResults``."""

    app: Celery

    def chord_error_from_stack(self, callback: Any, exc: Exception) -> Any:
        """Celery's: fail the callback and call its errbacks."""


class Ending(enum.Enum):
    """How a claim's holder left its chord."""

    #: The callback went out, with this part's value (unless a run before it stored a success).
    PUBLISHED = "published"
    #: Failed through the errbacks, given up to parts in flight, or taken over.
    ENDED = "ended"
    #: Left open, its claim released: its outcome could not be recorded, or its claim was lost while joining.
    LEFT = "left"


class PartsInFlight(Exception):
    """Counted parts whose results are not stored yet."""


class ClaimLost(PartsInFlight):
    """The claim was found not ours any more while waiting for parts."""


@dataclass(frozen=True)
class Part:
    """A header task's return, with its own result still in memory."""

    task_id: str
    group_id: str
    state: str
    value: Any  # as the callback would read it back from storage
    callback: dict[str, Any]
    #: Counted before this return (a rerun, a redelivery, a replay): an
    #: earlier run may have stored a result, which then wins over this one's.
    counted_before: bool = False


@dataclass
class _Holding:
    """The claim a holder keeps while it joins: renewed once a third of its lease has passed.

    Also while a read is under way, however long it takes: reading 1,000
    results, one GCS call stalled past the lease is likely (the soak's 0.5%
    of calls stalled 1-30 s), and a part taking the claim over would then
    meet the same, and the next: nobody would end the chord.
    """

    store: ChordStore
    key: str
    token: str
    lease: float
    renew_at: float = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.renew_at = time.monotonic() + self.lease / 3

    def keep(self) -> None:
        """Renew the claim if it is due; ClaimLost if it is not ours any more."""
        if time.monotonic() < self.renew_at:
            return
        if not self.store.renew(self.key, self.token, self.lease):
            raise ClaimLost("the claim was lost while waiting for parts")
        self.renew_at = time.monotonic() + self.lease / 3

    def read(self, read: Callable[[list[str]], T], ids: list[str]) -> T:
        """``read(ids)`` in a thread of its own (in this context), keeping the claim until it returns."""
        reading = _alongside(partial(read, ids))
        while True:
            try:
                return reading.result(timeout=max(self.renew_at - time.monotonic(), 0.01))
            except TimeoutError:
                self.keep()


@dataclass(frozen=True)
class _Hold:
    """The claim, renewed to send the chord's outcome."""

    #: Until when (``time.monotonic()``) the claim is surely ours.
    until: float
    #: What a holder before this one sent (its record found in GCS: ``CALLBACK`` or ``ERRBACKS``), or None.
    #: Sent, nothing is sent again.
    sent: str | None


class ChordCoordinator:
    """Runs the steps above for one backend."""

    def __init__(self, backend: ChordBackend, results: StoredResults) -> None:
        self.backend = backend
        self.results = results
        self.store = ChordStore(results.settings)
        # chord key -> its document as last read: the counters' shape never
        # changes while a chord runs, so parts count without reading it.
        self._chords: PerProcess[OrderedDict[str, Chord]] = PerProcess(OrderedDict)
        # Parts whose value went out with the callback and could not be stored: stored later, never replaced.
        self.unstored = Unstored(results.write_state)
        # group id -> header size, for chords this process applied.
        self._applied: PerProcess[OrderedDict[str, int]] = PerProcess(OrderedDict)

    # -- Celery's chord hooks -------------------------------------------------------

    def key(self, group_id: str) -> str:
        return self.results.chord_key(group_id)

    def apply(self, group_id: str, header: Iterable[Any]) -> None:
        """Write the counters of a chord about to be applied; ``header`` is its GroupResult's results."""
        task_ids = list(leaf_ids(header))
        leaves = chord_tree.leaf_count(len(task_ids))
        counts = chord_tree.initial_counts(task_ids, leaves)
        with observe.step(observe.CHORD_APPLY):
            created = self.store.create(self.key(group_id), len(task_ids), leaves, counts, self._expires_at())
        if not created:
            log.warning("Chord %s applied again while still open: both runs count into it, once", group_id)
        _remember(self._applied.get(), group_id, len(task_ids))
        observe.event(observe.CHORD_APPLIED)

    def check_chord_size(self, group_id: str, size: int) -> None:
        """Celery's ``set_chord_size``: the size is known since ``apply``; say so when they differ."""
        applied = self._applied.get().get(group_id)
        if applied is None:
            log.error(
                "Chord %s: sized without being applied through this backend; it cannot complete",
                group_id,
            )
        elif applied != size:
            log.warning(
                "Chord %s: Celery counts %d parts, its header holds %d", group_id, size, applied
            )

    def add(self, group_id: str, task_id: str) -> None:
        key = self.key(group_id)
        if not self.store.add(key, part_document_id(task_id), task_id, self._expires_at(self._chords.get().get(key))):
            log.info("Chord %s: %s was added before", group_id, task_id)
        self._chords.get().pop(key, None)

    def incr(self, key: str) -> int:
        """Celery's ``incr`` hook, for code that counts chords the key/value way."""
        return self.store.incr(key, self._expires_at())

    # -- a header task returns ---------------------------------------------------------

    def part_returned(self, request: Any, state: str, result: Any, encoded: EncodedState) -> None:
        """A header task returned: count its part, complete the chord if it was the last, then store its state.

        A part so slow from counting to stored that the callback's join may
        have given up on it looks again once stored; so does a part that
        could not end the chord it held (its error could not be recorded).
        A part whose value went out with the callback and could not be
        stored keeps that value (``unstored``): it is stored in the
        background, or when its task's outcome is recorded again (Celery's
        record of the failed store, or its retry), instead of that outcome;
        readers never read another outcome than the one the callback got.
        """
        if self.unstored.store(str(request.id)):
            return
        part = self.part(request, state, result)
        started = time.monotonic()
        self.before_count(part)
        with observe.step(observe.CHORD_COUNT):
            settled, part = self._count(part)
        self.after_count(part)
        ending = None
        if settled is not None and settled.claimed:
            ending = self._complete(part, settled)
        encoded = self._lasting(part, encoded)
        try:
            self.results.write_state(encoded)
        except Exception as exc:
            if ending is Ending.PUBLISHED:
                self.unstored.keep(part.task_id, encoded, exc)
            raise
        if ending is None:
            self._refresh_after_store(part)
        slow = ending is None and time.monotonic() - started > self.slow_part_after()
        if slow or ending is Ending.LEFT:
            self.look_again(part)

    def look_again(self, part: Part) -> None:
        """A part slow to store its result, or one that could not end its chord: it may be left to it."""
        part = dataclasses.replace(part, counted_before=True)
        for _ in range(_LOOKS):
            if self._look(part) is not Ending.LEFT:
                return
        log.error(
            "Chord %s: could not be ended (its outcome cannot be recorded, or its claim kept being lost); "
            "it stays open, its claim released, until a part of it returns again or its documents expire",
            part.group_id,
        )

    def _look(self, part: Part) -> Ending | None:
        # A plain read first: most slow parts find the chord ended, or still counting, and
        # leave its document alone; a transaction each would make it a hot spot again.
        key = self.key(part.group_id)
        chord = self.store.read(key)
        if chord is None or chord.done or (chord.problem is None and not chord.complete):
            return None
        claim = chord.claim
        held = claim is not None and chord.read_time is not None and claim.lease_until > chord.read_time
        if held and not self._free_after_waiting(key, chord):
            return None
        settled = self._settle(part, Settle(uuid.uuid4().hex, self._lease()), may_wait=True)
        if settled is None or not settled.claimed:
            return None
        return self._complete(part, settled)

    def _count(self, part: Part) -> tuple[Settled | None, Part]:
        """Count the part down its counters; what settling found, and the part (marked if counted before)."""
        key = self.key(part.group_id)
        chord = self._chord(key, part)
        if chord is None:
            return None, part
        if chord.problem is not None:
            return self._settle(part, Settle(uuid.uuid4().hex, self._lease(), force=True)), part
        assert chord.leaves is not None
        leaf = chord_tree.leaf_of(part.task_id, chord.leaves)
        counted = self.store.count(
            key, part_document_id(part.task_id), leaf, self._expires_at(chord),
            failed=part.state in states.PROPAGATE_STATES, looks_again_after=self.slow_part_after(),
        )  # fmt: skip
        if counted is None:
            replayed = dataclasses.replace(part, counted_before=True)
            return self._recount(replayed, key, chord), replayed
        node, remaining, update_time = leaf, counted.remaining, counted.update_time
        while remaining == 0:
            if chord_tree.is_top(node, chord.leaves):
                return self._settle(part, Settle(uuid.uuid4().hex, self._lease(), top=node)), part
            parent = chord_tree.parent(node)
            reported = self.store.report(key, node, update_time, parent, self._expires_at(chord))
            if reported is Refused.GONE:
                return self._counter_gone(part, key, chord, node), part
            if reported is Refused.MOVED:
                # The counter changed since it filled: reported (by a replay, or by this
                # very commit whose answer was lost), or only rewritten (its expiry pushed
                # back). Either way, read it and go on from there, as a replay does.
                return self._walk_up(part, key, chord, node, may_wait=False), part
            node, remaining, update_time = parent, reported.remaining, reported.update_time
        if remaining < 0:
            # More returns than parts at this counter (a part document deleted, then its task
            # redelivered): the counters cannot say when the chord is complete, the join can.
            log.warning("Chord %s: counter %s went below zero; the join decides", part.group_id, node.document_id)
            return self._settle(part, Settle(uuid.uuid4().hex, self._lease(), force=True)), part
        return None, part

    def _recount(self, part: Part, key: str, chord: Chord) -> Settled | None:
        """The count was refused: this part was counted before, was added, or is not in the chord."""
        state = self.store.read_part(key, part_document_id(part.task_id))
        if state is not None and state.added:
            step = Settle(
                uuid.uuid4().hex, self._lease(), added_part=part_document_id(part.task_id),
                looks_again_after=self.slow_part_after(),
            )  # fmt: skip
            return self._settle(part, step, may_wait=True)
        if state is None:
            current = self._chord(key, part, fresh=True)
            if current is None or current.done:
                return None  # ended: a late copy has nothing to do
            if current.leaves != chord.leaves:
                return self._count(part)[0]  # the group id was applied again
            leaf = chord_tree.leaf_of(part.task_id, chord.leaves or 1)
            if part.task_id in leaf_ids(self._header(part, current, with_added=False)):
                return self._fail_uncountable(part, key, leaf)  # its counter is gone
            log.error("Chord %s: task %s returned to it but is not one of its parts", part.group_id, part.task_id)
            return None
        # A replay: finish whatever the run before it left undone, counter by counter.
        assert chord.leaves is not None
        return self._walk_up(part, key, chord, chord_tree.leaf_of(part.task_id, chord.leaves), may_wait=True)

    def _walk_up(self, part: Part, key: str, chord: Chord, start: Node, may_wait: bool) -> Settled | None:
        """From ``start`` up: report any full counter not reported yet, and settle if the top is full.

        A report refused by its precondition is not taken for done: the
        counter may only have been rewritten (its expiry pushed back), so it
        is read again until it reads reported. One refused because its
        parent is gone is not tried again: no read brings the parent back.
        """
        assert chord.leaves is not None
        leaves = chord.leaves
        for node in chord_tree.path(start, leaves):
            while True:
                counter = self.store.read_counter(key, node)
                if counter is None or counter.remaining > 0:
                    return None  # not full (or the chord ended): nothing left to finish
                if chord_tree.is_top(node, leaves):
                    step = Settle(uuid.uuid4().hex, self._lease(), top=node)
                    return self._settle(part, step, may_wait=may_wait)
                if counter.reported:
                    break
                reported = self.store.report(
                    key, node, counter.update_time, chord_tree.parent(node), self._expires_at(chord)
                )
                if reported is Refused.GONE:
                    return self._counter_gone(part, key, chord, node)
                if reported is not Refused.MOVED:
                    break
        return None

    def _counter_gone(self, part: Part, key: str, chord: Chord, node: Node) -> Settled | None:
        """Reporting ``node`` found it or its parent gone: the chord ended (its counters deleted), or one went while it is open."""
        current = self._chord(key, part, fresh=True)
        if current is None or current.leaves != chord.leaves:
            return None  # ended, or applied again: these counters are not its own
        gone = node if self.store.read_counter(key, node) is None else chord_tree.parent(node)
        return self._fail_uncountable(part, key, gone)

    def _fail_uncountable(self, part: Part, key: str, node: Node) -> Settled | None:
        """A counter gone while its chord is open: nothing can count the chord, so fail it once."""
        settings = self.results.settings
        path = f"{settings.firestore_collection}/{key}/{conventions.FIRESTORE_COUNTERS_COLLECTION}/{node.document_id}"
        reason = (
            f"Chord {part.group_id}: counter document {path!r} in Firestore database "
            f"{settings.firestore_database!r} is missing while the chord is open (deleted by hand, or removed by "
            "the TTL policy: the chord outlived its expiry); the chord cannot be counted"
        )
        log.error("%s", reason)
        settled = self._settle(part, Settle(uuid.uuid4().hex, self._lease(), force=True))
        if settled is not None and settled.claimed and settled.chord is not None and settled.chord.claim:
            callback = maybe_signature(part.callback, app=self.backend.app)
            try:
                raise ChordError(reason)  # Celery fails the callback from the current stack
            except ChordError as error:
                self._fail(part.group_id, settled.chord.claim.token, callback, error, [], settled.chord)
        return None

    def _fail_gone(self, part: Part, key: str) -> None:
        """The chord document is gone: fail the chord once, if it was open.

        It was, if its GroupResult is still stored (read past its expiry, as
        the join reads it): a chord that ended had its GroupResult deleted
        (``_end``), so a late copy of one of its parts, arriving once its
        document expired, fails nothing, even with its callback's result
        gone (``ignore_result``, or expired). Both gone, an open chord cannot
        be told from an ended one: nothing is failed (docs/chords.md).
        """
        callback = maybe_signature(part.callback, app=self.backend.app)
        if callback is None or not callback.id:
            return
        if self.results.task_state(callback.id)["status"] in states.READY_STATES:
            return  # it ended, and its document expired since: a late copy of a part
        if not self._header_stored(part.group_id):
            log.error(E_GONE_UNTOLD.format(group_id=part.group_id, task_id=part.task_id, seconds=self._lifetime()))
            return
        settings = self.results.settings
        reason = (
            f"Chord {part.group_id}: its document {settings.firestore_collection}/{key} in Firestore "
            f"database {settings.firestore_database!r} is gone while the chord is open (expired: parts "
            "further apart than result_chord_expires, or result_expires; or deleted by hand); "
            f"part {part.task_id} cannot be counted"
        )
        if not self.store.create_ended(key, self._expires_at()):
            return  # another part found it gone first, and failed it
        log.error("%s", reason)
        try:
            raise ChordError(reason)  # Celery fails the callback from the current stack
        except ChordError as error:
            self.backend.chord_error_from_stack(callback, error)
        observe.event(observe.CHORD_FAILED)
        try:
            self.results.delete_group(part.group_id)  # ended: its written-back document expires too
        except Exception:
            log.warning("Chord %s: failed, but its GroupResult could not be deleted", part.group_id, exc_info=True)

    def _header_stored(self, group_id: str) -> bool:
        """Whether the chord's GroupResult is stored, past its expiry too (one that cannot be decoded is)."""
        try:
            return self.results.read_group(group_id) is not None
        except CorruptResult:
            return True

    def _settle(self, part: Part, step: Settle, may_wait: bool = False) -> Settled | None:
        """Settle the chord; a replay waits out a live holder's lease, unless the holder renews it."""
        key = self.key(part.group_id)
        settled = self._settle_once(part, key, step)
        if settled.chord is None or not settled.held or not may_wait:
            return settled
        log.info("Chord %s: held by another process; waiting for it or its lease", part.group_id)
        if not self._free_after_waiting(key, settled.chord):
            return None
        settled = self._settle_once(part, key, step)
        return None if settled.held else settled  # held again: taken by another, which finishes

    def _settle_once(self, part: Part, key: str, step: Settle) -> Settled:
        with _SETTLING.get()[hash(key) % _SETTLE_STRIPES], observe.step(observe.CHORD_SETTLE):
            settled = self.store.settle(key, step)
        if settled.chord is None:
            self._fail_gone(part, key)
        return settled

    def _free_after_waiting(self, key: str, chord: Chord) -> bool:
        """Wait while another process holds the claim; True once it is free to take, False once the holder ended the chord or renewed its claim (it is alive and will finish).

        Looks again every ``_WAIT_STEP`` seconds, by plain reads: no
        transaction on the chord document while it waits, however many wait.
        """
        assert chord.claim is not None and chord.read_time is not None
        seen = chord.claim.lease_until
        while True:
            assert chord.read_time is not None
            time.sleep(min(max((seen - chord.read_time).total_seconds(), 0.0) + 0.05, _WAIT_STEP))
            found = self.store.read(key)
            if found is not None and found.done:
                return False
            if found is None or found.read_time is None:
                return True  # settling says what became of it
            chord, claim = found, found.claim
            if claim is None or claim.lease_until <= found.read_time:
                return True  # released, or run out
            if claim.lease_until > seen:
                return False

    def _complete(self, part: Part, settled: Settled) -> Ending:
        """We hold the claim: gather the results, publish the callback once, mark the chord done."""
        chord = settled.chord
        assert chord is not None and chord.claim is not None
        key, token = self.key(part.group_id), chord.claim.token
        self.after_claim(part)
        callback = maybe_signature(part.callback, app=self.backend.app)
        results: list[Any] = []
        try:
            if chord.problem is not None:
                raise ChordError(chord.problem)
            with self._kept_alive(part, key, chord):
                results = self._header(part, chord)
                with observe.step(observe.CHORD_GATHER):
                    value = rebuild(results, self._gather(part, key, token, list(leaf_ids(results))))
        except ClaimLost as exc:
            # Taken over (its new holder finishes), or lost while a call stalled past the
            # lease and not taken: this part looks again once stored, in case nobody else will.
            log.warning("Chord %s: %s; looking again", part.group_id, exc)
            self._release_quietly(key, token)
            return Ending.LEFT
        except PartsInFlight as exc:
            log.warning("Chord %s: %s; its late parts will complete it", part.group_id, exc)
            self._release_quietly(key, token)
            return Ending.ENDED
        except ChordError as exc:
            log.error("Chord %s failed: %s", part.group_id, exc)
            return self._fail(part.group_id, token, callback, exc, results, chord)
        except Exception as exc:  # a failed join fails the chord, as with Redis; the part stays
            if self._retried_by_celery(exc):
                self._release_quietly(key, token)
                raise  # Celery retries storing this part, which completes the chord then
            log.exception("Chord %s cannot join its parts", part.group_id)
            error = ChordError(f"Chord {part.group_id} cannot join: {exc!r}")
            return self._fail(part.group_id, token, callback, error, results, chord)
        try:
            hold = self._hold_for_outcome(part.group_id, token, chord)
        except Exception:
            self._release_quietly(key, token)
            raise
        if hold is None:
            log.warning("Chord %s: claim lost before publishing; its new holder publishes", part.group_id)
            return Ending.ENDED
        if hold.sent:
            error = ChordError(f"Chord {part.group_id}: its errbacks were called by a holder before this one")
            if hold.sent == ERRBACKS and not self._failure_stored(part.group_id, callback, error):
                self._release_quietly(key, token)
                return Ending.LEFT
            self._end(part.group_id, token, hold.until, results, chord)
            return Ending.ENDED
        self.before_publish(part)
        try:
            with observe.step(observe.CHORD_PUBLISH):
                self.backend.app.amqp._retry_publish(callback.delay, value)
            observe.event(observe.CALLBACK_PUBLISHED)
        except Exception as exc:  # any publish failure fails the chord, as with Redis
            log.exception("Chord %s: callback not published", part.group_id)
            error = ChordError(f"Callback error: {exc!r}")
            return self._fail(part.group_id, token, callback, error, results, chord)
        self._record_sent(part.group_id, chord, hold.until, CALLBACK)
        self.after_publish(part)
        self._end(part.group_id, token, hold.until, results, chord)
        return Ending.PUBLISHED

    def _retried_by_celery(self, exc: Exception) -> bool:
        """Whether Celery will retry the store this failure interrupts (``result_backend_always_retry``)."""
        conf = self.backend.app.conf
        return bool(conf.get("result_backend_always_retry")) and retry.is_retryable(exc)

    def _hold_for_outcome(self, group_id: str, token: str, chord: Chord) -> _Hold | None:
        """Renew the claim to cover sending the chord's outcome, and look whether a holder before sent it; None if lost.

        Checked right before the callback is published or its errbacks are
        called, never before: a holder slowed past its lease (a call stalled
        while it joined) may have been taken over, and its new holder sends
        the outcome. The lease then covers the publish budget too
        (``publish_budget``): errbacks that are not called in-process are
        published as the callback would be.

        A holder before may have sent the outcome and then been unable to
        mark the chord done within its claim (killed, or Firestore out for
        longer): its record in GCS (``_record_sent``) says so, a store apart
        from Firestore. Read alongside the renewal (one GCS read per chord,
        not per part, and no wait added to the publish), within the lease
        alone: what is left of the claim then still covers the publish.
        """
        lease = self._lease() + publish_budget(self.backend.app.conf)
        renewing = time.monotonic()
        sent = _alongside(partial(self._sent_before, group_id, chord))
        if not self.store.renew(self.key(group_id), token, lease):
            return None
        return _Hold(renewing + lease, sent.result())

    def _sent_before(self, group_id: str, chord: Chord) -> str | None:
        """Whether a holder before sent the outcome; not known (GCS not answering), taken as not.

        Taken as sent, an outage of GCS reads would leave every chord ending
        in it open, where today a join failing in it fails the chord once; a
        second outcome now needs both that outage and a holder before that
        could not mark the chord done (docs/chords.md, the failure table).
        """
        try:
            with deadline.within(self._lease()):
                sent = self.results.chord_sent(group_id, chord.opened)
        except Exception:
            log.warning("Chord %s: could not look whether its outcome was sent before", group_id, exc_info=True)
            return None
        if sent:
            log.warning(
                "Chord %s: its outcome was sent by a holder before, which could not mark it done; "
                "marking it done, sending nothing again",
                group_id,
            )
        return sent

    def _record_sent(self, group_id: str, chord: Chord, until: float, outcome: str) -> None:
        """Record in GCS that the chord's outcome went out, waiting for it no longer than half what is left of the claim.

        Before the chord is marked done: a holder killed after this, or one
        that cannot mark the chord done within its claim (Firestore out as
        long), leaves the record to the part that takes the claim over, which
        sends nothing again (``_hold_for_outcome``). A write stalled longer
        (GCS's timeouts outlast the claim) goes on alongside while the chord
        is marked done with the rest of the claim, which makes the record
        moot: waited for to the end of the claim, it left no time to mark
        the chord done, and a copy of a part taking the claim over sent the
        outcome again.
        """
        recording = _alongside(partial(self._write_sent, group_id, chord, until, outcome))
        try:
            recording.result(timeout=max(until - time.monotonic(), 0.0) / 2)
        except TimeoutError:
            log.warning(
                "Chord %s: its %s went out; recording that in GCS is slow, marking the chord done meanwhile",
                group_id,
                outcome,
            )

    def _write_sent(self, group_id: str, chord: Chord, until: float, outcome: str) -> None:
        """The record's write: retried as every write is (``gcs_retry_deadline``), no longer than the claim; logged, never raised."""
        try:
            with deadline.within(until - time.monotonic()):
                self.results.mark_chord_sent(group_id, chord.opened, outcome, at_least=self._stretch(chord))
        except Exception:
            log.exception(
                "Chord %s: its %s went out, but that could not be recorded in GCS; "
                "should it not be marked done either, it may be sent again",
                group_id,
                outcome,
            )

    def _fail(
        self, group_id: str, token: str, callback: Any, error: ChordError, results: list[Any], chord: Chord
    ) -> Ending:
        """Fail the callback through its errbacks, then end the chord; or, if that cannot be recorded, leave it open.

        Ended with its error unrecorded, the chord would be done while its
        callback read PENDING forever; left open (its claim released), the
        next return of any of its parts ends it (this part's, once stored).
        Only while the claim is still ours: a holder taken over leaves the
        failing to its new holder, or it would call the errbacks a second time;
        and only if no holder before sent an outcome.
        """
        key = self.key(group_id)
        try:
            hold = self._hold_for_outcome(group_id, token, chord)
        except Exception:
            log.exception("Chord key %s: its claim could not be renewed to fail it; left open", key)
            self._release_quietly(key, token)
            return Ending.LEFT
        if hold is None:
            log.warning("Chord key %s: claim lost before failing it; its new holder ends it", key)
            return Ending.LEFT
        if hold.sent == ERRBACKS and not self._failure_stored(group_id, callback, error):
            self._release_quietly(key, token)
            return Ending.LEFT
        if not hold.sent:
            try:
                self.backend.chord_error_from_stack(callback, error)
            except Exception:
                # Celery calls the errbacks before it stores the callback's FAILURE: it is the store
                # that failed. Recorded, the next look stores the failure alone (``_failure_stored``).
                log.exception("Chord key %s: its errbacks were called, its error could not be stored; left open", key)
                self._record_sent(group_id, chord, hold.until, ERRBACKS)
                self._release_quietly(key, token)
                return Ending.LEFT
            observe.event(observe.CHORD_FAILED)
            self._record_sent(group_id, chord, hold.until, ERRBACKS)
        self._end(group_id, token, hold.until, results, chord)
        return Ending.ENDED

    def _failure_stored(self, group_id: str, callback: Any, error: ChordError) -> bool:
        """A holder before called the errbacks: store the callback's FAILURE if it could not (no errbacks again).

        False if that store fails too: the chord is left open, and the next
        look tries again, as with a failure that could not be stored at all.
        """
        if callback is None or not callback.id:
            return True
        try:
            if self.results.task_state(callback.id)["status"] in states.READY_STATES:
                return True
            try:
                raise error  # Celery stores a failure from the current stack
            except ChordError:
                self.backend.fail_from_current_stack(callback.id, exc=error)
        except Exception:
            log.exception("Chord %s: its errbacks were called, but its error could not be stored; left open", group_id)
            return False
        observe.event(observe.CHORD_FAILED)
        return True

    def _header(self, part: Part, chord: Chord, with_added: bool = True) -> list[Any]:
        """The header's results in header order, then those added to the chord (one GCS read, one query)."""
        try:
            header = self.results.read_group(part.group_id)
        except CorruptResult as exc:
            raise ChordError(f"GroupResult {part.group_id} cannot be read: {exc}") from exc
        if header is None:
            raise ChordError(E_HEADER_GONE.format(group_id=part.group_id, seconds=self._lifetime()))
        if not with_added:
            return list(header.results)
        added = self.store.added(self.key(part.group_id), chord.added)
        return [*header.results, *(AsyncResult(task_id) for task_id in added)]

    def _gather(self, part: Part, key: str, token: str, ids: list[str]) -> dict[str, Any]:
        """Every part's stored result, once; this part's from memory unless a run before it stored a success.

        Waits up to the join timeout for parts counted but not stored yet,
        then looks one last time, renewing the lease all along (``_Holding``).
        Before giving up on parts still missing, it waits on, once, until
        each has been counted longer than its own worker's threshold for
        looking again (``_late_parts_wait``): a part stored after that looks
        again and completes the chord, whatever the two workers' join timeouts.
        """
        values: dict[str, tuple[str, Any]] = {}
        if not part.counted_before:
            values[part.task_id] = (part.state, part.value)  # a first run: nothing of it is stored
        missing = [task_id for task_id in ids if task_id not in values]
        deadline = time.monotonic() + self._join_timeout()
        holding = _Holding(self.store, key, token, self._lease())
        nap, last, waited_late = 0.02, False, False
        while missing:
            try:
                stored = holding.read(partial(self.results.ready, ready_states=states.READY_STATES), missing)
                values.update((task_id, (meta["status"], meta["result"])) for task_id, meta in stored.items())
            except CorruptResult as exc:
                raise ChordError(
                    f"Dependency {getattr(exc, 'task_id', '?')} cannot be read: {exc}"
                ) from exc
            if part.task_id in missing and values.get(part.task_id, ("",))[0] != states.SUCCESS:
                values[part.task_id] = (part.state, part.value)  # nothing stored before it: its own
            missing = [task_id for task_id in missing if task_id not in values]
            if not missing:
                break
            if last and not waited_late:
                waited_late = True
                more = holding.read(partial(self._late_parts_wait, key), missing)
                if more > 0:
                    deadline, last = time.monotonic() + more, False
            if last:
                gone = holding.read(self.results.expired, missing)
                if gone:
                    # Stored, then expired while the chord waited for a late part: no later
                    # look can read them, so the chord fails now rather than never ending.
                    raise ChordError(
                        E_RESULTS_EXPIRED.format(task_id=gone[0], count=len(gone), seconds=self._lifetime())
                    )
                raise PartsInFlight(
                    f"{len(missing)} counted parts not stored yet, e.g. {missing[0]}"
                )
            holding.keep()
            time.sleep(nap)
            nap = min(nap * 2, 0.5)
            last = time.monotonic() >= deadline
        for task_id in ids:
            state, value = values[task_id]
            if state in states.PROPAGATE_STATES:
                error = ChordError(f"Dependency {task_id} raised {value!r}")
                if isinstance(value, Exception):
                    error.__cause__ = value
                raise error
        return {task_id: value for task_id, (_, value) in values.items()}

    def _late_parts_wait(self, key: str, missing: list[str]) -> float:
        """Seconds until each part in ``missing``, if stored only later, is sure to look again at the chord.

        Each part's worker has it look again when it is slower than its own
        threshold from count to stored (half its ``result_chord_join_timeout``),
        written in its part document at its count; a worker with a longer join
        timeout than this one's would otherwise store a part after this join
        gave up on it, yet too soon to look again, and nobody would end the
        chord. A part saying nothing (an older version) goes by this worker's.
        Reckoned in the server's time: the document's last write against its read.
        """
        own = self.slow_part_after()
        waits = [
            (found.written - found.read_time).total_seconds() + _LATE_MARGIN
            + min(own if found.looks_again_after is None else found.looks_again_after, _LATE_WAIT_MAX)
            for found in self.store.countings(key, map(part_document_id, missing))
        ]  # fmt: skip
        return max(waits, default=0.0)

    def _end(self, group_id: str, token: str, held_until: float, results: list[Any], chord: Chord) -> None:
        """The callback is published, or its errbacks called: mark the chord done, then clean up.

        Its GroupResult is deleted first, as Celery's gs:// and key-value backends delete a
        chord's as it ends: a late copy of a part that finds the chord's
        document gone (removed by its TTL) tells by it that the chord ended,
        and fails nothing (``_fail_gone``). A failure here is logged, never
        raised: the callback went out, and raising would fail a part whose
        value it carries.
        """
        key = self.key(group_id)
        self._chords.get().pop(key, None)
        try:
            if not self._end_within_lease(key, token, held_until):
                log.warning(
                    "Chord key %s: the claim was taken over before the chord was marked done", key
                )
                return
        except Exception:
            log.exception("Chord %s: its outcome went out, but it could not be marked done", group_id)
            return
        # Each clean-up on its own: a GCS failure must not leave the Firestore documents (with
        # result_expires None they have no expiry), nor a Firestore failure the GroupResult.
        try:
            self.results.delete_group(group_id)
        except Exception:
            log.exception(
                "Chord %s: ended, but its GroupResult could not be deleted; its expiry removes it (until then, "
                "a late copy of a part finding the chord's document gone fails it again)",
                group_id,
            )
        try:
            self.store.clean_up(
                key, map(part_document_id, leaf_ids(results)), self._nodes(results, chord)
            )
        except Exception:
            log.exception("Chord %s: ended, but its documents could not be deleted; their TTL removes them", group_id)

    def _end_within_lease(self, key: str, token: str, held_until: float) -> bool:
        """Mark the chord done, trying again until the claim's lease runs out (``held_until``, monotonic).

        Past the lease, a replay could take the claim over and publish again;
        so a failure here is retried for as long as the claim protects it:
        the lease as last renewed (for the publish: the lease plus the publish
        budget), not the lease alone.
        """
        while True:
            try:
                return self.store.end(key, token)
            except Exception:
                if time.monotonic() + _WAIT_STEP >= held_until:
                    raise
                log.warning("Chord key %s: could not mark it done; trying again", key, exc_info=True)
                time.sleep(_WAIT_STEP)

    def _nodes(self, results: list[Any], chord: Chord) -> list[Node]:
        """The chord's counters: over its header's ids, which come first in ``results`` (added tasks have none)."""
        header = list(leaf_ids(results))[: chord.size]
        return sorted(chord_tree.initial_counts(header, chord.leaves or 1))

    def _release_quietly(self, key: str, token: str) -> None:
        try:
            self.store.release(key, token)
        except Exception:  # the claim stays ours until its lease runs out; a replay then takes it
            log.warning("Chord key %s: could not release the claim", key, exc_info=True)

    # -- the chord document, once per process -------------------------------------------

    def _chord(self, key: str, part: Part, fresh: bool = False) -> Chord | None:
        """The chord's document, read once per process; None when it is gone or done.

        Gone while the chord is open (removed by its TTL after a gap between
        parts longer than its expiry, or by hand), the chord cannot be counted:
        the first part to find it so fails it, once.
        """
        chords = self._chords.get()
        if not fresh and key in chords:
            return chords[key]
        chord = self.store.read(key)
        if chord is None:
            self._fail_gone(part, key)
        if chord is None or chord.done:
            chords.pop(key, None)
            return None
        # Remembered with its expiry as this process sees it, when it looks at a refresh next.
        chord = dataclasses.replace(chord, expires_at=chord.due_by(self.results.chord_lifetime))
        _remember(chords, key, chord)
        return chord

    def _refresh_after_store(self, part: Part) -> None:
        """Refresh the chord if it is due, once this part is counted and stored: off its critical path."""
        key = self.key(part.group_id)
        chords = self._chords.get()
        chord = chords.get(key)
        if chord is not None and chord.problem is None:
            looked = self._refresh_if_due(part, key, chord)
            if looked is not chord:
                _remember(chords, key, looked)

    @contextlib.contextmanager
    def _kept_alive(self, part: Part, key: str, chord: Chord) -> Iterator[None]:
        """While its holder joins, the chord is refreshed each time it falls due (``_refresh_if_due``), alongside.

        Only a part returning refreshes a chord, and none may come while its
        holder joins: a join held up (GCS reads stalled, a part counted but
        slow to store) would otherwise outlast the chord's first results,
        which it reads as expired (the soak: parts all within half of
        ``result_expires=90``, a join of 59 s, the chord failed). In a thread
        of its own, so the claim is renewed meanwhile (``_Holding``); the
        same refresh as a part's, by the same rule (at ages 1.5 times apart),
        the holder's idea of the expiry starting from the chord as it settled
        it. A refresh under way when the join ends stops: its results under
        way finish, the rest are skipped (``_refresh_if_due``); a chord ended
        meanwhile is not refreshed (``ChordStore.start_refresh``).
        """
        seen = dataclasses.replace(chord, expires_at=chord.due_by(self.results.chord_lifetime))
        if chord.problem is not None or self._due_at(seen) is None:
            yield
            return

        def keep(joined: threading.Event) -> None:
            looked = seen
            pause = 0.0  # after a look that left it due (refused, failed, another's refresh): a second at least
            while (due := self._due_at(looked)) is not None:
                if joined.wait(max((due - _now()).total_seconds(), pause)):
                    return
                looked, pause = self._refresh_if_due(part, key, looked, joined), _WAIT_STEP

        with _meanwhile(keep, "celery-gcs-refresh"):
            yield

    def _due_at(self, chord: Chord) -> dt.datetime | None:
        """When a chord whose expiry this process takes to be ``chord.expires_at`` falls due for a refresh; None: never.

        Due once less than half of what a refresh would then give it is
        left: half of the longer of its lifetime and twice its age
        (``_stretch``), so the sooner of half its lifetime before its expiry
        and half-way from its opening to its expiry.
        """
        lifetime = self.results.chord_lifetime
        if chord.expires_at is None or not lifetime:
            return None
        due = chord.expires_at - dt.timedelta(seconds=lifetime / 2)
        if chord.opened is not None:
            due = min(due, chord.opened + (chord.expires_at - chord.opened) / 2)
        return due

    def _refresh_if_due(self, part: Part, key: str, chord: Chord, joined: threading.Event | None = None) -> Chord:
        """A chord running past half its expiry gets its expiry pushed back, as Celery's backends do.

        One process takes the refresh (a lease in the chord document) and
        pushes back the counters, the GroupResult and the results of the
        parts counted so far (its part documents, listed by name: no result
        not stored yet is read), then the chord document's own expiry, last:
        a refresh that fails half-way leaves the chord due, and the next part
        past the lease takes it over. Each process looks again only when its
        own idea of the chord's expiry falls due: at first the chord
        document's, but no later than this process's own lifetime after the
        chord opened while it was never refreshed (``Chord.due_by``: the
        document's expiry is the applying client's, whose ``result_expires``
        may be longer than the workers'), then what its look found.

        Pushed back by twice the chord's age (``_stretch``), at least its
        expiry, and due once less than half of that is left: the refreshes
        come at ages 1.5 times apart, so the results they rewrite add up to
        a few times the chord's parts, whatever its size (docs/chords.md,
        "Cost"), and each has the chord's age so far to do its work in.

        A refresh no longer needed stops: its holder's join ended (``joined``,
        for a holder's refresh while it joins: ``_kept_alive``), or its
        lease's renewal found it taken over or the chord ended. Results under
        way finish, the rest are skipped, and it gives its lease up without
        the new expiry, as a refresh failing half-way: the chord stays due.

        Returns the chord with its expiry as this look left it, for the next
        look (``chord`` itself when it was not due).
        """
        now, due = _now(), self._due_at(chord)
        if due is None or now < due:
            return chord
        stretch = self._stretch(chord)
        new = self.results.chord_expires_at(at_least=stretch)
        assert new is not None  # due: it has a lifetime
        half = (new - now) / 2
        token, lease = uuid.uuid4().hex, max(MIN_LEASE, half.total_seconds() / 2)
        started, begun = False, time.monotonic()
        try:
            taken = self.store.start_refresh(key, now + half, token, lease, lifetime=self.results.chord_lifetime)
            started = taken.started
            if started:
                waited, lost = time.monotonic() - begun, threading.Event()

                def unneeded() -> str | None:
                    if joined is not None and joined.is_set():
                        return "its holder's join ended"
                    return "its lease was taken over, or the chord ended" if lost.is_set() else None

                with self._refresh_renewed(key, token, lease, lost):
                    results = self._header(part, chord)
                    listed = self.store.parts(key)
                    # The part documents too: the next refresh finds the parts counted by them.
                    self.store.refresh(key, self._nodes(results, chord), sorted(listed), new)
                    counted = [task_id for task_id in leaf_ids(results) if part_document_id(task_id) in listed]
                    met = self.results.refresh_chord(part.group_id, counted, at_least=stretch, stop=unneeded)
                stopped = unneeded() if met[Extended.SKIPPED] else None
                if stopped is None:
                    still_open = self.store.end_refresh(key, token, new)
                    seen = new
                else:
                    self._give_up_refresh(key, token)
                    still_open, seen = False, now + half + dt.timedelta(seconds=_WAIT_STEP)
                took = time.monotonic() - begun
                _log_refresh(part.group_id, chord, now, new, met, waited, took, stopped=stopped, still_open=still_open)
            elif taken.busy_for:
                # Look again once the other refresh's lease runs out, should it fail; but no later than
                # this refresh would have made it due: a lease (10 s at least) longer than half the
                # expiry would otherwise put the next look past the expiry the other refresh sets.
                seen = min(new, now + half + dt.timedelta(seconds=taken.busy_for))
            else:
                seen = taken.expires_at or new
        except Exception:  # counting goes on; a later part tries again
            took = time.monotonic() - begun
            log.warning(
                "Chord %s: could not push back its expiry (gave up after %.1fs)", part.group_id, took, exc_info=True
            )
            if started:
                self._give_up_refresh(key, token)
            seen = now + half + dt.timedelta(seconds=_WAIT_STEP)  # at most once a second per process
        return dataclasses.replace(chord, expires_at=seen)

    def _refresh_renewed(
        self, key: str, token: str, lease: float, lost: threading.Event
    ) -> contextlib.AbstractContextManager[None]:
        """The refresh taken with ``token`` keeps its lease while the block runs: renewed every third of it; ``lost`` set once not its own.

        A refresh rewrites every counted part's result: at 1,000 parts under
        the soak's stalls it took about 30 s against a lease of about 22 s,
        and was taken over, so that two (even three) full refreshes ran at
        once, each rewriting every result. Renewed from a thread of its own,
        a stalled GCS call of the refresh's is covered as well as its stages.
        A renewal that fails is logged and the refresh goes on (its lease may
        run out: a second refresh alongside costs requests, nothing more);
        one that finds the lease taken over, or the chord ended, stops
        renewing and sets ``lost``: the refresh stops too.
        """

        def renew(ended: threading.Event) -> None:
            while not ended.wait(lease / 3):
                try:
                    if not self.store.renew_refresh(key, token, lease):
                        lost.set()
                        return
                except Exception:  # the next renewal tries again
                    log.warning("Chord key %s: could not renew its refresh's lease", key, exc_info=True)

        return _meanwhile(renew, "celery-gcs-refresh-lease")

    def _stretch(self, chord: Chord) -> float:
        """Seconds from now a running chord's documents and results are kept at least: twice its age so far.

        Pushed back by a fixed ``result_expires``, a chord lasting longer
        with its size was refreshed more often, and each refresh rewrote
        every result stored so far: per part, a cost growing with the chord.
        A chord written by an older version (no ``opened``) keeps that rule.
        """
        if chord.opened is None:
            return 0.0
        return max(0.0, _STRETCH * (_now() - chord.opened).total_seconds())

    def _lasting(self, part: Part, encoded: EncodedState) -> EncodedState:
        """A part's result, kept at least as long as a refresh of its chord now would keep it (``_stretch``).

        So a result stored between two refreshes lives until the next one
        rewrites it, however far apart they come; a chord ended (no longer
        remembered here) keeps the result's own expiry.
        """
        chord = self._chords.get().get(self.key(part.group_id))
        if chord is None or chord.expires_at is None:
            return encoded
        return self.results.lasting(encoded, self._stretch(chord))

    def _give_up_refresh(self, key: str, token: str) -> None:
        try:
            self.store.end_refresh(key, token, None)
        except Exception:  # its lease runs out instead
            log.warning("Chord key %s: could not give up its refresh", key, exc_info=True)

    # -- helpers ----------------------------------------------------------------------

    def slow_part_after(self) -> float:
        """A part slower than this from counting to stored looks again for a chord left to it."""
        return self._join_timeout() / 2

    def part(self, request: Any, state: str, result: Any) -> Part:
        # The value as the callback will see it: through the serializer, like
        # the other parts' values read back from GCS.
        return Part(
            task_id=str(request.id),
            group_id=str(request.group),
            state=state,
            value=self.results.as_stored(state, result),
            callback=request.chord,
        )

    def _lifetime(self) -> float:
        """Seconds a chord's header results and GroupResult live, for messages."""
        return self.results.settings.ttl or self.results.lifetimes.chord_result or 0

    def _expires_at(self, chord: Chord | None = None) -> dt.datetime | None:
        """When chord documents written now expire; those of a running ``chord`` no sooner than a refresh would keep it.

        A count or report never shortens what a refresh gave (``_stretch``).
        """
        return self.results.chord_expires_at(at_least=self._stretch(chord) if chord is not None else 0.0)

    def _join_timeout(self) -> float:
        timeout = self.backend.app.conf.get("result_chord_join_timeout")
        return float(timeout) if timeout is not None else DEFAULT_JOIN_TIMEOUT

    def _lease(self) -> float:
        return max(MIN_LEASE, 2 * self._join_timeout())

    def warm_up(self) -> None:
        """Connect to Firestore now (``ChordStore.warm_up``)."""
        self.store.warm_up()

    def close(self) -> None:
        self.store.close()

    # Test seams: fault-injection tests override these to kill the process.
    def before_count(self, part: Part) -> None:
        """Called after the task body returned, before its part is counted."""

    def after_count(self, part: Part) -> None:
        """Called right after the part is counted."""

    def after_claim(self, part: Part) -> None:
        """Called right after this process claimed the callback."""

    def before_publish(self, part: Part) -> None:
        """Called after the claim was renewed for the publish, right before publishing."""

    def after_publish(self, part: Part) -> None:
        """Called once the callback was published and that recorded in GCS, before the chord is marked done."""


def publish_budget(conf: Mapping[str, Any]) -> float:
    """The longest a callback's publish may take under ``task_publish_retry_policy``.

    Celery retries a callback's publish on its own as the policy says (three
    times when the policy sets no limit), each attempt connecting within
    ``broker_connection_timeout``: the claim must outlast all of it, or a
    replay could take it over and publish again.
    """
    policy = dict(conf.get("task_publish_retry_policy") or {})
    retries = policy.get("max_retries")
    retries = _PUBLISH_MAX_RETRIES if retries is None else int(retries)
    start, step = float(policy.get("interval_start", 0)), float(policy.get("interval_step", 0.2))
    ceiling = float(policy.get("interval_max", 1))
    waits = sum(min(start + step * attempt, ceiling) for attempt in range(retries))
    connect = float(conf.get("broker_connection_timeout") or 4)
    return waits + (retries + 1) * connect


def leaf_ids(results: Iterable[Any]) -> Iterable[str]:
    for result in results:
        if isinstance(result, GroupResult):
            yield from leaf_ids(result.results)
        else:
            yield result.id


def rebuild(shape: Iterable[Any], values: dict[str, Any]) -> list[Any]:
    return [
        rebuild(result.results, values) if isinstance(result, GroupResult) else values[result.id]
        for result in shape
    ]


def _alongside(work: Callable[[], T]) -> Future[T]:
    """``work()`` in a thread of its own, in this context (its deadline), while the caller goes on.

    Left behind (its caller gone on without it), it ends on its own.
    """
    runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="celery-gcs-chord")
    try:
        return runner.submit(contextvars.copy_context().run, work)
    finally:
        runner.shutdown(wait=False)


@contextlib.contextmanager
def _meanwhile(work: Callable[[threading.Event], None], name: str) -> Iterator[None]:
    """``work(ended)`` in a daemon thread of its own (in this context) while the block runs; ``ended`` set as it ends.

    ``work`` waits on ``ended`` between its steps; a step under way when the block ends finishes on its own.
    """
    ended = threading.Event()
    thread = threading.Thread(target=contextvars.copy_context().run, args=(work, ended), name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        ended.set()


def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CHORDS_KEPT:
        cache.popitem(last=False)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _log_refresh(
    group_id: str,
    chord: Chord,
    now: dt.datetime,
    new: dt.datetime,
    met: Counter[Extended],
    waited: float,
    took: float,
    *,
    stopped: str | None,
    still_open: bool,
) -> None:
    """One line per refresh, enough to tell from a worker's log why a chord's results expired.

    Its age, its expiry before (as this process saw it: ``Chord.due_by``)
    and after, how long taking the refresh waited (the chord document
    locked, or its calls retried) and the whole refresh took, and what it
    met of the parts' results; a warning when some had expired already and
    the chord is still open (once it ended, its results are no longer its
    own: its holder's, stored last, lives ``result_expires``). A refresh
    that stopped says why and what it skipped, and warns of nothing: the
    join, or the refresh that took it over, meets what it met.
    """
    age = f"{(now - chord.opened).total_seconds():.0f}s" if chord.opened is not None else "unknown"
    before = chord.expires_at.isoformat(timespec="seconds") if chord.expires_at else "never"
    expired = met[Extended.EXPIRED]
    cannot = bool(expired) and still_open
    after = new.isoformat(timespec="seconds")
    if stopped is None:
        what, args = "expiry pushed back at age %s from %s to %s", (age, before, after)
    else:
        what, args = "refresh stopped at age %s (%s): expiry left at %s, not pushed to %s", (age, stopped, before, after)
    log.log(
        logging.WARNING if cannot else logging.INFO,
        "Chord %s: " + what + " (taken after %.1fs, done in %.1fs): "
        "%d results rewritten, %d kept as long already, %d not stored yet, %d expired%s, %d skipped",
        group_id, *args, waited, took,
        met[Extended.REWRITTEN], met[Extended.KEPT], met[Extended.MISSING], expired,
        " before it reached them: the chord cannot complete" if cannot else "", met[Extended.SKIPPED],
    )  # fmt: skip
