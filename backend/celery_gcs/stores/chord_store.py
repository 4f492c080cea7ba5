"""Firestore documents that count a chord's parts and guard its callback.

Per chord, in the configured database and collection (names in ``conventions``)::

    {collection}/{chord key}                         size, leaves, added_pending, claim, done, opened, refreshes
    {collection}/{chord key}/{counters}/{level-i}    remaining, reported (chord_tree.py)
    {collection}/{chord key}/{parts}/{task}          one per part that returned (or was added)

A part is counted in one commit that *creates* its own document and counts
down its leaf: a duplicate return finds the document there and the whole
commit is refused, so nothing is counted twice. The commit answers with the
leaf's new value, so counting reads nothing. Whatever decides who publishes
the callback is a transaction on the chord document, and a claim's lease is
reckoned in the server's time (the transaction's read time), never a host's.

The only module that talks to Firestore.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from google.api_core import exceptions as api
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from .. import conventions, deadline, observe
from ..errors import (
    E_CHORD_FIELD,
    E_DATABASE_DENIED,
    E_DATABASE_MISSING,
    AccessDenied,
    CeleryGCSError,
    DatabaseNotFound,
    TransientError,
)
from ..observe import FIRESTORE_COMMIT, FIRESTORE_QUERY, FIRESTORE_READ, FIRESTORE_TRANSACTION
from ..perprocess import PerProcess
from ..settings import Settings
from . import google_errors, grpc_runtime, retry
from .chord_tree import Node

T = TypeVar("T")
log = logging.getLogger(__name__)

_BATCH = 500  # Firestore's limit of writes per commit
_PAGE = 1000  # part documents listed per query: each query well within one call's timeout
#: The chord document's field naming who refreshes the chord's expiry, until when (a claim of its own).
_REFRESHING = "refreshing"
#: The chord document's field counting the refreshes done (for ``celery-gcs chords`` and the benchmark).
REFRESHES = "refreshes"
#: Answers a caller expects (a part counted before, a counter gone, a precondition that moved),
#: reported as refused rather than failed.
_REFUSALS = (api.Conflict, api.NotFound, api.FailedPrecondition)
#: How many times taking a chord's refresh reads the chord document again after finding it changed.
_REFRESH_TRIES = 4
#: Seconds before looking again at a refresh whose document kept changing under every try.
_REFRESH_RETRY_AFTER = 1.0
#: A size above this is not one Celery gave us: the chord document could not
#: hold its counters' shape, and no worker fleet runs a header this large.
MAX_CHORD_SIZE = 10_000_000
#: How long an ended chord's document is kept when no expiry is configured
#: (``result_expires`` None or 0): long enough for late copies of its parts
#: to find it ended, and then removed by the TTL policy rather than kept forever.
ENDED_CHORD_KEPT = dt.timedelta(days=1)
#: A part document's field: after how many seconds from its count the part's worker has it look
#: again at its chord if it is not stored by then (``Counting``).
LOOKS_AGAIN_AFTER = "looks_again_after"
#: The document a worker's warm-up reads, and never finds (``warm_up``).
WARM_UP_DOCUMENT = "celery-gcs-warm-up"
#: The chord document's field holding when the chord was applied (the server's time), removed
#: when it ends: ordered on it, a query skips ended chords and finds the oldest open one in one read.
OPENED = "opened"


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """Who publishes the callback, until when (in the server's time)."""

    token: str
    lease_until: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Chord:
    """A chord document, as read at ``read_time`` (the server's clock)."""

    size: int | None
    leaves: int | None
    added: tuple[str, ...] = ()
    added_pending: int = 0
    header_done: bool = False
    done: bool = False
    claim: Claim | None = None
    expires_at: dt.datetime | None = None
    read_time: dt.datetime | None = None
    #: When the chord was applied (the server's time); None once it ended, or written by an older version.
    opened: dt.datetime | None = None
    #: How many times its expiry was pushed back (``end_refresh``).
    refreshes: int = 0
    #: What makes the document unusable (a field edited by hand), or None.
    #: Such a chord cannot complete: the first part to see it fails it.
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.problem is None and self.header_done and self.added_pending <= 0

    def due_by(self, lifetime: float | None) -> dt.datetime | None:
        """When the chord's expiry falls, for a worker whose own writes for it live ``lifetime`` seconds (None: for ever).

        Its expiry, but until its first refresh no later than ``lifetime``
        after it opened: the expiry was then the applying client's, and a
        client keeping results longer than the workers (Celery's default, a
        day) would have no refresh fall due while the workers' results
        expired. A refresh sets the expiry by the refresher's own rule, which
        holds from then on; a chord written by an older version (no
        ``opened``) has only its expiry.
        """
        if self.refreshes or self.opened is None or not lifetime:
            return self.expires_at
        own = self.opened + dt.timedelta(seconds=lifetime)
        return own if self.expires_at is None else min(self.expires_at, own)


@dataclasses.dataclass(frozen=True, slots=True)
class Counted:
    """A counter's value after a write, and the write's time (a precondition for the next)."""

    remaining: int
    update_time: dt.datetime


class Refused(enum.Enum):
    """Why a report did not count its parent down."""

    #: The counter changed since it was read: reported already, or only rewritten (its expiry pushed back).
    MOVED = "moved"
    #: The counter or its parent is not there: the chord ended (its counters deleted), or one was
    #: deleted by hand or removed by its TTL. Reading it again would not bring it back.
    GONE = "gone"


@dataclasses.dataclass(frozen=True, slots=True)
class CounterState:
    remaining: int
    reported: bool
    update_time: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class PartState:
    added: bool
    counted: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Counting:
    """A part counted but not stored yet, as its document says (the server's times)."""

    #: When the document was last written: its count, or later (a refresh pushing back its expiry).
    written: dt.datetime
    read_time: dt.datetime
    #: After how many seconds from its count its worker has it look again if not stored by then; None if
    #: it does not say (written by an older version, or edited).
    looks_again_after: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Settled:
    """What a transaction on the chord document found and did."""

    chord: Chord | None
    #: This caller now holds the claim and publishes.
    claimed: bool = False
    #: Someone else holds a live claim, until ``chord.claim.lease_until``.
    held: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Inspected:
    """A chord document as ``celery-gcs chords`` shows it."""

    key: str
    chord: Chord
    created: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class OpenChords:
    """How many chords are open, and how long ago the oldest was applied (the server's time)."""

    count: int
    #: Seconds; 0 when no chord is open.
    oldest_age: float


@dataclasses.dataclass(frozen=True, slots=True)
class Refresh:
    """What taking a chord's refresh found."""

    #: This caller refreshes the chord, then calls ``end_refresh``.
    started: bool
    #: When the chord's expiry falls, as read (``Chord.due_by``).
    expires_at: dt.datetime | None = None
    #: Another process is refreshing it, for this many more seconds at most.
    busy_for: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Settle:
    """What to record in the chord document's transaction before deciding who publishes."""

    token: str
    lease: float
    #: The top counter filled: the header is complete.
    top: Node | None = None
    #: An added part returned: count it (its document id).
    added_part: str | None = None
    #: Written into a counted added part's document (``LOOKS_AGAIN_AFTER``).
    looks_again_after: float | None = None
    #: Claim even if the chord is not complete (to fail a corrupt chord once).
    force: bool = False
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class ChordStore:
    """Chord documents of one backend. No I/O until the first call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Each call's own limit (gcs_timeout); the client's are a minute or more. The
        # transactions' begin and commit take the client's: they accept no timeout.
        self._timeout = settings.timeout
        self._client = PerProcess(self._new_client, lambda client: client.close())

    def _new_client(self) -> firestore.Client:
        grpc_runtime.prepare()
        with google_errors.mapped(_Database(self, "connecting")):
            return firestore.Client(
                project=self.settings.firestore_project,
                database=self.settings.firestore_database,
            )

    def _chord(self, key: str) -> firestore.DocumentReference:
        return self._client.get().collection(self.settings.firestore_collection).document(key)

    def _counter(self, key: str, node: Node) -> firestore.DocumentReference:
        return (
            self._chord(key)
            .collection(conventions.FIRESTORE_COUNTERS_COLLECTION)
            .document(node.document_id)
        )

    def _part(self, key: str, part: str) -> firestore.DocumentReference:
        return self._chord(key).collection(conventions.FIRESTORE_PARTS_COLLECTION).document(part)

    def _call(self, what: str, func: Callable[[dict[str, Any]], T], kind: str = FIRESTORE_READ) -> T:
        """Every call to Firestore: ``func(options)``, its retry and timeout within the caller's deadline
        (``deadline.current()``), reported (``observe``), its errors translated (``google_errors``)."""
        where = _Database(self, what, deadline.current())
        with google_errors.mapped(where), observe.request(kind, _REFUSALS):
            return func({"retry": where.limits.retry, "timeout": where.limits.timeout})

    def _commit(self, what: str, batch: firestore.WriteBatch) -> list[Any]:
        """Commit a batch, retried: every batch here is safe to repeat, as each caller says why."""
        return self._call(what, lambda options: batch.commit(**options), FIRESTORE_COMMIT)

    def warm_up(self) -> None:
        """Build this process's client and open its channel now: one read of a document never there."""
        ref = self._client.get().collection(self.settings.firestore_collection).document(WARM_UP_DOCUMENT)
        self._call("opening a connection", lambda options: ref.get(**options))

    # -- a chord is applied ------------------------------------------------------------

    def create(
        self,
        key: str,
        size: int,
        leaves: int,
        counts: Mapping[Node, int],
        expires_at: dt.datetime | None,
    ) -> bool:
        """Write the chord's counters, then its document (which makes it countable); False if it is open.

        A group id applied again once its chord ended starts afresh: the part
        documents its last run may have left (a clean-up that failed) are
        listed and deleted first, the header's and those added to it, or its
        parts would read as counted and its added tasks as added to this run;
        also when its chord document expired before them (so they are listed
        at every apply: one query, which finds none for a new chord).
        One applied again while its chord is still open (a frozen chord run
        twice at once) is left as it is: the runs share its parts, counted
        once, and one callback.
        """
        current = self.read(key)
        if current is not None and not current.done and current.problem is None:
            return False
        # Listed whether or not the chord document is there: it may have expired before the part
        # documents a failed clean-up left (Firestore's TTL deletes each document on its own, in no
        # set order). One query a page of names; none found, nothing is committed.
        refs = [self._part(key, part) for part in sorted(self.parts(key))]
        self._commit_in_batches("clearing an ended chord's parts", refs, lambda batch, ref: batch.delete(ref))
        ttl = _ttl(expires_at)
        writes = [
            (self._counter(key, node), {"remaining": remaining, "reported": False, **ttl})
            for node, remaining in sorted(counts.items())
        ]
        chord = {
            "size": size, "leaves": leaves, "added": [], "added_pending": 0,
            "header_done": not counts, "done": False, OPENED: firestore.SERVER_TIMESTAMP, **ttl,
        }  # fmt: skip
        writes.append((self._chord(key), chord))
        # Unconditional sets, yet safe to repeat: no part counts before apply_chord
        # returns (Celery sends the header after it), so a repeat writes the same.
        self._commit_in_batches("creating a chord", writes, lambda batch, write: batch.set(*write))
        return True

    def create_ended(self, key: str, expires_at: dt.datetime | None) -> bool:
        """Write a chord document found gone while its chord was open, as ended; False if one exists again.

        The one caller that writes it fails the chord; every later part finds
        it ended. It expires as an ended chord does.
        """
        now = dt.datetime.now(dt.UTC)
        ended = {
            "size": 0, "leaves": 1, "added": [], "added_pending": 0, "header_done": True, "done": True,
            conventions.FIRESTORE_TTL_FIELD: expires_at or now + ENDED_CHORD_KEPT,
        }  # fmt: skip
        ref = self._chord(key)
        try:
            self._call("marking a chord ended", lambda options: ref.create(ended, **options))
        except api.Conflict:
            return False
        return True

    def add(self, key: str, part: str, task_id: str, expires_at: dt.datetime | None) -> bool:
        """Grow the chord by one task (``Task.add_to_chord``); False if it was added before."""
        batch = self._client.get().batch()
        ttl = _ttl(expires_at)
        # The task's id and when it was added live in its own part document, not in a list in
        # the chord document: that list would grow with every add, in a document each settle reads.
        added = {"added": True, "counted": False, "task_id": task_id, "added_at": firestore.SERVER_TIMESTAMP}
        batch.create(self._part(key, part), {**added, **ttl})
        # The chord document's expiry is left as it is: its refreshes set it (and may have set it further out).
        batch.update(self._chord(key), {"added_pending": firestore.Increment(1)})
        try:
            self._commit("adding to a chord", batch)  # safe to repeat: the part is created, once
        except api.Conflict:
            return False  # a retried commit whose first attempt landed
        return True

    def incr(self, key: str, expires_at: dt.datetime | None) -> int:
        """A plain counter (Celery's ``incr``); chords here do not use it."""
        fields: dict[str, Any] = {"count": firestore.Increment(1), **_ttl(expires_at)}
        ref = self._chord(key)
        # Not idempotent: an increment is never retried blindly.
        result = self._call(
            "incrementing a counter",
            lambda options: ref.set(fields, merge=True, retry=None, timeout=options["timeout"]),
            FIRESTORE_COMMIT,
        )
        return int(result.transform_results[0].integer_value)

    # -- a part returns -------------------------------------------------------------------

    def read(self, key: str) -> Chord | None:
        snapshot = self._call("reading a chord", lambda options: self._chord(key).get(**options))
        return self._chord_from(snapshot)

    def count(
        self,
        key: str,
        part: str,
        leaf: Node,
        expires_at: dt.datetime | None,
        *,
        failed: bool = False,
        looks_again_after: float | None = None,
    ) -> Counted | None:
        """Count one part down its leaf, in one commit; None if refused.

        Refused when the part's document exists (a replay, an added part, or
        a retried commit that landed) or the leaf does not (the chord ended,
        or the task is not in its header): the caller looks at which.
        ``looks_again_after`` goes into the part's document (``Counting``).
        """
        batch = self._client.get().batch()
        ttl = _ttl(expires_at)
        fields = {**ttl, **_looks_again(looks_again_after)}
        # A failed part says so in its document (``celery-gcs chords show`` lists them; no extra write).
        batch.create(self._part(key, part), {**fields, "failed": True} if failed else fields)
        batch.update(self._counter(key, leaf), {"remaining": firestore.Increment(-1), **ttl})
        try:
            results = self._commit("counting a chord part", batch)  # safe to repeat: the part is created, once
        except (api.Conflict, api.NotFound):  # a missing database was raised as DatabaseNotFound
            return None
        observe.event(observe.PART_COUNTED)
        return Counted(int(results[1].transform_results[0].integer_value), results[1].update_time)

    def report(
        self,
        key: str,
        node: Node,
        update_time: dt.datetime,
        parent: Node,
        expires_at: dt.datetime | None,
    ) -> Counted | Refused:
        """A full counter counts down its parent, once; refused if it changed since ``update_time``, or either is gone."""
        client = self._client.get()
        batch = client.batch()
        batch.update(
            self._counter(key, node),
            {"reported": True},
            option=client.write_option(last_update_time=update_time),
        )
        batch.update(
            self._counter(key, parent), {"remaining": firestore.Increment(-1), **_ttl(expires_at)}
        )
        try:
            # Safe to repeat: the counter is marked reported only at the update time read.
            results = self._commit("reporting a full chord counter", batch)
        except api.FailedPrecondition:
            return Refused.MOVED
        except api.NotFound:  # a missing database was raised as DatabaseNotFound
            return Refused.GONE
        return Counted(int(results[1].transform_results[0].integer_value), results[1].update_time)

    def read_counter(self, key: str, node: Node) -> CounterState | None:
        snapshot = self._call(
            "reading a chord counter", lambda options: self._counter(key, node).get(**options)
        )
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        remaining, reported = data.get("remaining"), data.get("reported")
        if not isinstance(remaining, int) or not isinstance(reported, bool):
            log.warning(
                "Chord counter %s holds %r; taken as not full", snapshot.reference.path, data
            )
            return None
        return CounterState(remaining, reported, snapshot.update_time)

    def added(self, key: str, listed: Iterable[str] = ()) -> list[str]:
        """The ids of the tasks added to the chord (``Task.add_to_chord``), in the order they were added.

        One query over the chord's part documents marked added, made by the
        holder once; ``listed`` are ids a chord document written before this
        version lists itself, which come first.
        """
        query = self._chord(key).collection(conventions.FIRESTORE_PARTS_COLLECTION).where(
            filter=firestore.FieldFilter("added", "==", True)
        )
        snapshots = self._call(
            "listing a chord's added tasks", lambda options: list(query.stream(**options))
        )
        found = [
            (data.get("added_at") or _EPOCH, data["task_id"])
            for data in (snapshot.to_dict() or {} for snapshot in snapshots)
            if isinstance(data.get("task_id"), str)
        ]
        ids = list(listed)
        known = set(ids)
        ids += [task_id for _, task_id in sorted(found) if task_id not in known]
        return ids

    def parts(self, key: str) -> set[str]:
        """The ids of the chord's part documents: the parts counted so far, and those added.

        By names only, a page of ``_PAGE`` a query: a chord's refresh rewrites
        the results of these parts and reads no result not stored yet.
        """
        by_name = FieldPath.document_id()
        query = (
            self._chord(key).collection(conventions.FIRESTORE_PARTS_COLLECTION)
            .select([by_name]).order_by(by_name).limit(_PAGE)
        )  # fmt: skip
        found: set[str] = set()
        after: firestore.DocumentSnapshot | None = None
        while True:
            page = query.start_after(after) if after is not None else query
            snapshots = self._call("listing a chord's parts", lambda options, page=page: list(page.stream(**options)))
            found.update(snapshot.id for snapshot in snapshots)
            if len(snapshots) < _PAGE:
                return found
            after = snapshots[-1]

    def read_part(self, key: str, part: str) -> PartState | None:
        snapshot = self._call(
            "reading a chord part", lambda options: self._part(key, part).get(**options)
        )
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        return PartState(added=data.get("added") is True, counted=data.get("counted") is not False)

    def countings(self, key: str, parts: Iterable[str]) -> list[Counting]:
        """What the documents of ``parts`` say of when they were counted: one batched read (a read per document found)."""
        refs = [self._part(key, part) for part in parts]
        client = self._client.get()
        snapshots = self._call("reading parts not stored yet", lambda options: list(client.get_all(refs, **options)))
        return [
            Counting(snapshot.update_time, snapshot.read_time, _seconds((snapshot.to_dict() or {}).get(LOOKS_AGAIN_AFTER)))
            for snapshot in snapshots
            if snapshot.exists and snapshot.update_time is not None and snapshot.read_time is not None
        ]

    # -- who publishes --------------------------------------------------------------------

    def settle(self, key: str, step: Settle) -> Settled:
        """Record ``step`` and, if that completes the chord, claim it; one transaction."""
        chord_ref = self._chord(key)

        def attempt(transaction: firestore.Transaction) -> Settled:
            chord = self._chord_from(chord_ref.get(transaction=transaction, timeout=self._timeout))
            part_ref = self._part(key, step.added_part) if step.added_part else None
            part = (
                part_ref.get(transaction=transaction, timeout=self._timeout) if part_ref else None
            )
            if chord is None or chord.done:
                return Settled(chord)
            updates: dict[str, Any] = dict(step.extra)
            if step.top is not None and not chord.header_done and chord.problem is None:
                updates["header_done"] = True
                transaction.update(self._counter(key, step.top), {"reported": True})
            if (
                part_ref is not None
                and part is not None
                and (part.to_dict() or {}).get("counted") is False
            ):
                updates["added_pending"] = chord.added_pending - 1
                transaction.update(part_ref, {"counted": True, **_looks_again(step.looks_again_after)})
            chord = _with(chord, updates)
            now = chord.read_time
            assert now is not None  # a transaction's read always has one
            claim = chord.claim
            claimable = claim is None or claim.token == step.token or claim.lease_until <= now
            # A chord edited into nonsense is claimed too: its holder fails it, once.
            if (chord.complete or step.force or chord.problem) and claimable:
                mine = Claim(step.token, now + dt.timedelta(seconds=step.lease))
                updates["claim"] = _claim_fields(mine)
                transaction.update(chord_ref, updates)
                return Settled(_with(chord, {"claim": mine}), claimed=True)
            if updates:
                transaction.update(chord_ref, updates)
            return Settled(chord, held=(chord.complete or step.force or bool(chord.problem)) and not claimable)

        settled = self._transact("settling a chord", attempt)
        if settled.claimed:
            observe.event(observe.CLAIM_TAKEN)
        return settled

    def renew(self, key: str, token: str, lease: float) -> bool:
        """Extend our claim's lease to ``lease`` seconds from now (server time); False if it is not ours."""
        ref = self._chord(key)

        def attempt(transaction: firestore.Transaction) -> bool:
            chord = self._chord_from(ref.get(transaction=transaction, timeout=self._timeout))
            if not _held_by(chord, token) or chord is None or chord.read_time is None:
                return False
            mine = Claim(token, chord.read_time + dt.timedelta(seconds=lease))
            transaction.update(ref, {"claim": _claim_fields(mine)})
            return True

        renewed = self._transact("renewing a chord claim", attempt)
        observe.event(observe.CLAIM_RENEWED if renewed else observe.CLAIM_LOST)
        return renewed

    def release(self, key: str, token: str) -> None:
        """Give up our claim, so that a later return of any part can complete the chord."""
        ref = self._chord(key)

        def attempt(transaction: firestore.Transaction) -> None:
            chord = self._chord_from(ref.get(transaction=transaction, timeout=self._timeout))
            if _held_by(chord, token):
                transaction.update(ref, {"claim": firestore.DELETE_FIELD})

        self._transact("releasing a chord claim", attempt)

    def end(self, key: str, token: str) -> bool:
        """Mark the chord done (its callback published, or failed); False if the claim was not ours."""
        ref = self._chord(key)

        def attempt(transaction: firestore.Transaction) -> bool:
            chord = self._chord_from(ref.get(transaction=transaction, timeout=self._timeout))
            if chord is not None and chord.done and chord.claim is None:
                return True  # ended: by this very call, whose first commit's answer was lost
            if not _held_by(chord, token) or chord is None:
                return False
            ended: dict[str, Any] = {"done": True, "claim": firestore.DELETE_FIELD, OPENED: firestore.DELETE_FIELD}
            if chord.expires_at is None and chord.read_time is not None:
                ended[conventions.FIRESTORE_TTL_FIELD] = chord.read_time + ENDED_CHORD_KEPT
            transaction.update(ref, ended)
            return True

        return self._transact("ending a chord", attempt)

    def clean_up(self, key: str, parts: Iterable[str], nodes: Iterable[Node]) -> None:
        """Delete an ended chord's parts and counters (by id: no reads).

        The chord document stays, marked done, until its TTL: a late copy of a
        part finds the chord ended and does nothing.
        """
        refs = [self._part(key, part) for part in parts] + [
            self._counter(key, node) for node in nodes
        ]
        # Deletes: safe to repeat.
        self._commit_in_batches("deleting a chord's parts", refs, lambda batch, ref: batch.delete(ref))

    def _commit_in_batches(
        self, what: str, items: list[T], write: Callable[[firestore.WriteBatch, T], Any]
    ) -> None:
        """``write`` each item into a batch, committing every ``_BATCH`` (Firestore's limit per commit)."""
        client = self._client.get()
        for start in range(0, len(items), _BATCH):
            batch = client.batch()
            for item in items[start : start + _BATCH]:
                write(batch, item)
            self._commit(what, batch)

    def start_refresh(
        self, key: str, due_before: dt.datetime, token: str, lease: float, *, lifetime: float | None
    ) -> Refresh:
        """Take the chord's refresh if its expiry falls before ``due_before``, for ``lease`` seconds.

        Its expiry as a worker whose writes live ``lifetime`` seconds sees it
        (``Chord.due_by``): the same rule as the caller's, so that a chord its
        caller found due is not refused on the client's expiry.

        The new expiry is written only once the refresh is done
        (``end_refresh``): a refresh that fails half-way leaves the chord due,
        and the next part takes it once this lease has run out (or at once,
        if the failed one gave it up).

        A read, then a write on condition that the document is as read (its
        update time), not a transaction: a transaction holds the document
        from its read to its commit, so one process's look held up (a stalled
        call) held up every other process's, each commit refused and retried
        with its part waiting behind it, until the chord's results expired
        (the soak, 1,000 parts: no part returned for 70 s). A read holds nothing.
        """
        ref = self._chord(key)
        for _ in range(_REFRESH_TRIES):
            snapshot = self._call("reading a chord for its refresh", lambda options: ref.get(**options))
            chord = self._chord_from(snapshot)
            expires_at = chord.due_by(lifetime) if chord else None
            if chord is None or chord.done or (expires_at and expires_at >= due_before):
                return Refresh(started=False, expires_at=expires_at)
            now = snapshot.read_time
            busy = _claim_from((snapshot.to_dict() or {}).get(_REFRESHING))
            if busy is not None and busy.token != token and busy.lease_until > now:
                return Refresh(started=False, expires_at=expires_at, busy_for=(busy.lease_until - now).total_seconds())
            fields = {_REFRESHING: _claim_fields(Claim(token, now + dt.timedelta(seconds=lease)))}
            try:
                # Safe to repeat: a write that landed and is retried is refused, and the read
                # after it finds the refresh taken with this token (ours: taken again).
                if not self._update_as_read("taking a chord's refresh", snapshot, fields):
                    continue  # changed since read: read it again
            except api.NotFound:  # a missing database was raised as DatabaseNotFound
                return Refresh(started=False)
            return Refresh(started=True, expires_at=expires_at)
        # Changed under every look: others are at it; look again in a moment.
        return Refresh(started=False, expires_at=expires_at, busy_for=_REFRESH_RETRY_AFTER)

    def renew_refresh(self, key: str, token: str, lease: float) -> bool:
        """Keep the refresh taken with ``token`` for ``lease`` more seconds (the server's time); False once it is not its own.

        Not its own: taken over once its lease ran out, given up, or the
        chord ended or is gone; its refresher stops renewing then. A read,
        then a write on condition that the document is as read, as
        ``start_refresh`` takes it: a renewal costs one of each. Safe to
        repeat: a write that landed and is retried is refused, and the read
        after it finds the lease still its own (renewed again).
        """
        ref = self._chord(key)
        for _ in range(_REFRESH_TRIES):
            snapshot = self._call("reading a chord to renew its refresh", lambda options: ref.get(**options))
            chord = self._chord_from(snapshot)
            lease_held = _claim_from((snapshot.to_dict() or {}).get(_REFRESHING))
            if chord is None or chord.done or lease_held is None or lease_held.token != token:
                return False
            fields = {_REFRESHING: _claim_fields(Claim(token, snapshot.read_time + dt.timedelta(seconds=lease)))}
            try:
                if self._update_as_read("renewing a chord's refresh", snapshot, fields):
                    return True
            except api.NotFound:  # a missing database was raised as DatabaseNotFound
                return False
        return True  # changed under every look, its own as last read: the next renewal tries again

    def end_refresh(self, key: str, token: str, expires_at: dt.datetime | None) -> bool:
        """The refresh taken with ``token`` is done (``expires_at`` set) or given up (None); whether the chord is open still.

        Its lease is removed only while it is still its own, and once it is
        not, the chord's expiry is only pushed back: a refresh slower than its
        lease is taken over, and the one that was late ending it removed its
        successor's lease (a third refresh then ran alongside, each rewriting
        every result) and brought the chord's expiry forward to its own. A
        read, then a write on condition that the document is as read, as
        ``start_refresh`` takes it.
        """
        ref = self._chord(key)
        for _ in range(_REFRESH_TRIES):
            snapshot = self._call("reading a chord to end its refresh", lambda options: ref.get(**options))
            chord = self._chord_from(snapshot)
            if chord is None:
                return False  # the chord document expired meanwhile
            lease = _claim_from((snapshot.to_dict() or {}).get(_REFRESHING))
            ours = lease is not None and lease.token == token
            # The refresh still holding its lease is the latest: its expiry stands, even one sooner than
            # the document's (the applying client's longer result_expires, brought down to the workers').
            later = (
                expires_at is not None and not chord.done
                and (ours or chord.expires_at is None or chord.expires_at < expires_at)
            )  # fmt: skip
            if not ours and not later:
                return not chord.done  # nothing of this refresh's left to write (or its write landed, its answer lost)
            fields: dict[str, Any] = {_REFRESHING: firestore.DELETE_FIELD} if ours else {}
            if later:
                fields[conventions.FIRESTORE_TTL_FIELD] = expires_at
            if expires_at is not None:
                fields[REFRESHES] = firestore.Increment(1)  # in the same write: no request more
            try:
                if not self._update_as_read("ending a chord's refresh", snapshot, fields):
                    continue  # changed since read (or a retried write that landed): read it again
            except api.NotFound:
                return False
            return not chord.done
        # Changed under every look: its lease runs out instead, and the next refresh sets the expiry.
        return True

    def _update_as_read(self, what: str, snapshot: firestore.DocumentSnapshot, fields: dict[str, Any]) -> bool:
        """Write ``fields`` on condition that the document is as ``snapshot`` read it; False if it changed since."""
        option = self._client.get().write_option(last_update_time=snapshot.update_time)
        try:
            self._call(what, lambda options: snapshot.reference.update(fields, option=option, **options), FIRESTORE_COMMIT)
        except api.FailedPrecondition:
            return False
        return True

    def refresh(self, key: str, nodes: Iterable[Node], parts: Iterable[str], expires_at: dt.datetime) -> None:
        """Push back the expiry of a running chord's counters and of its part documents ``parts`` (``parts()``)."""
        refs = [self._counter(key, node) for node in nodes] + [self._part(key, part) for part in parts]
        fields = {conventions.FIRESTORE_TTL_FIELD: expires_at}
        try:
            # Safe to repeat: the same expiry written again.
            self._commit_in_batches("refreshing a chord's expiry", refs, lambda batch, ref: batch.update(ref, fields))
        except api.NotFound:
            pass  # the chord ended meanwhile (a missing database was raised as DatabaseNotFound)

    def left_open(self) -> int:
        """Chord documents of the collection still open, and every part and counter left: what a clean run leaves none of.

        An ended chord's own document stays, marked done, until its TTL: it is
        not counted. Reads every document: for the demo's summary, not for workers.
        """
        groups = (conventions.FIRESTORE_PARTS_COLLECTION, conventions.FIRESTORE_COUNTERS_COLLECTION)

        def count(_options: dict[str, Any]) -> int:
            left = 0
            for ref in self._client.get().collection(self.settings.firestore_collection).list_documents():
                snapshot = ref.get()
                left += snapshot.exists and (snapshot.to_dict() or {}).get("done") is not True
                left += sum(1 for group in groups for _ in ref.collection(group).list_documents())
            return left

        return self._call("counting chord documents", count)

    def _transact(self, what: str, attempt: Callable[[firestore.Transaction], T]) -> T:
        """Run ``attempt`` in a transaction; start the whole transaction over on transient failures.

        The client retries a commit whose answer was lost with the same
        transaction, which Firestore refuses as invalid or closed when the
        first commit did land; a reset mid-transaction leaves it unusable too.
        So the transaction is run again from the start, which is safe because
        each ``attempt`` decides only from what it reads, and treats a claim
        holding its own token as already done.
        """
        client = self._client.get()
        run = firestore.transactional(attempt)
        outer = sys.exc_info()[1]  # what our caller is handling, if anything: never ours to raise

        def once() -> T:
            try:
                return run(client.transaction())
            except ValueError as exc:
                raise _transaction_error(exc, outer) from None

        def run_again(options: dict[str, Any]) -> T:
            return options["retry"].with_predicate(_transaction_retryable)(once)()

        return self._call(what, run_again, FIRESTORE_TRANSACTION)

    def close(self) -> None:
        self._client.clear()

    # -- inspection (celery-gcs chords): reads only ------------------------------------------

    def inspect_all(self, *, open_only: bool = False) -> Iterator[Inspected]:
        """Every chord document, or those not marked done: one query, one read per document it returns."""
        query: Any = self._client.get().collection(self.settings.firestore_collection)
        if open_only:
            query = query.where(filter=firestore.FieldFilter("done", "==", False))
        snapshots = self._call("listing chords", lambda options: list(query.stream(**options)), FIRESTORE_QUERY)
        for snapshot in snapshots:
            chord = self._chord_from(snapshot)
            if chord is not None:
                yield Inspected(snapshot.id, chord, snapshot.create_time)

    def open_chords(self) -> OpenChords:
        """The open chords' number and the oldest one's age: two queries, two reads.

        Counting is an aggregation (one read per 1,000 open chords, at least
        one); the oldest is the first document ordered on ``OPENED``, which an
        ended chord no longer has (one read, found or not). A chord applied by
        a version without the field is counted, but not in the age.
        """
        chords = self._client.get().collection(self.settings.firestore_collection)
        counting = chords.where(filter=firestore.FieldFilter("done", "==", False)).count()
        first = chords.order_by(OPENED).limit(1).select([OPENED])
        counted = self._call("counting open chords", lambda options: counting.get(**options), FIRESTORE_QUERY)
        oldest = self._call("finding the oldest open chord", lambda options: list(first.stream(**options)), FIRESTORE_QUERY)
        opened = oldest[0].get(OPENED) if oldest else None
        age = 0.0
        if isinstance(opened, dt.datetime) and oldest[0].read_time is not None:
            age = max(0.0, (oldest[0].read_time - opened).total_seconds())
        return OpenChords(int(counted[0][0].value), age)

    def inspect(self, key: str) -> Inspected | None:
        """One chord document (one read), or None."""
        snapshot = self._call("reading a chord", lambda options: self._chord(key).get(**options))
        chord = self._chord_from(snapshot)
        return None if chord is None else Inspected(key, chord, snapshot.create_time)

    def counters(self, key: str) -> dict[Node, int]:
        """What each of the chord's counters still waits for: one query, one read per counter."""
        ref = self._chord(key).collection(conventions.FIRESTORE_COUNTERS_COLLECTION)
        snapshots = self._call("reading a chord's counters", lambda options: list(ref.stream(**options)), FIRESTORE_QUERY)
        found = {}
        for snapshot in snapshots:
            remaining = (snapshot.to_dict() or {}).get("remaining")
            try:
                node = Node.from_document_id(snapshot.id)
            except ValueError:
                continue  # not a counter this backend wrote
            if isinstance(remaining, int):
                found[node] = remaining
        return found

    def failed_parts(self, key: str) -> list[str]:
        """Ids of the part documents of parts that failed: one query, one read per failed part (one if none)."""
        ref = self._chord(key).collection(conventions.FIRESTORE_PARTS_COLLECTION)
        query = ref.where(filter=firestore.FieldFilter("failed", "==", True))
        snapshots = self._call("reading a chord's failed parts", lambda options: list(query.stream(**options)), FIRESTORE_QUERY)
        return sorted(snapshot.id for snapshot in snapshots)

    def project(self) -> str:
        """The project of the chord documents, for messages."""
        return self.settings.firestore_project or self._client.get().project or "not set"

    def _chord_from(self, snapshot: firestore.DocumentSnapshot) -> Chord | None:
        return chord_from(snapshot, self.settings.firestore_database)


class _Database:
    """Where a call on the chord documents went, in the words of its errors (``google_errors.Place``)."""

    service = "Firestore"

    def __init__(self, store: ChordStore, what: str, caller: float | None = None) -> None:
        self._store, self._what, self._database = store, what, store.settings.firestore_database
        settings = store.settings
        #: The call's retry and timeout: the settings', within the caller's deadline.
        self.limits = retry.limits(
            settings.retry_deadline, settings.timeout, caller, what=f"{what} in Firestore database {self._database}"
        )

    def missing(self, exc: api.NotFound) -> CeleryGCSError | None:
        if not _database_missing(exc):
            return None  # a document: the caller's to judge
        return DatabaseNotFound(E_DATABASE_MISSING.format(database=self._database, project=self._store.project()))

    def denied(self, exc: api.Forbidden) -> AccessDenied:
        reason = f"{self._what}: {exc.message}"
        return AccessDenied(E_DATABASE_DENIED.format(database=self._database, project=self._store.project(), reason=reason))

    def transient(self, exc: BaseException) -> TransientError:
        """Gave up (``TimedOut`` when the caller's time ran out first)."""
        return self.limits.gave_up(f"{self._what} in Firestore database {self._database}", exc)


def _transaction_error(exc: ValueError, outer: BaseException | None) -> BaseException:
    """The error that ended a transaction, out of the client's wrapping.

    The client raises ``ValueError`` in two ways that hide the real error: when
    its retries of an ABORTED commit run out (the last ABORTED is the cause),
    and when the rollback after a failure fails too (always, if the
    transaction never began: the failure is then only the ValueError's
    context). A context that is the error our caller was already handling
    is not this transaction's.
    """
    found: BaseException = exc
    for _ in range(3):
        inner = found.__cause__ or found.__context__
        if not isinstance(found, ValueError) or inner is None or inner is outer:
            break
        found = inner
    if isinstance(found, ValueError) and "transaction" in str(found).lower():
        return TransientError(f"Firestore transaction: {found}")
    return found


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _ttl(expires_at: dt.datetime | None) -> dict[str, Any]:
    return {conventions.FIRESTORE_TTL_FIELD: expires_at} if expires_at else {}


def _looks_again(seconds: float | None) -> dict[str, Any]:
    return {LOOKS_AGAIN_AFTER: seconds} if seconds is not None else {}


def _seconds(value: Any) -> float | None:
    """A number of seconds a document holds, or None if it holds no such thing."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _with(chord: Chord, updates: Mapping[str, Any]) -> Chord:
    """The chord as it reads after ``updates`` (field writes; the rest, such as the counter's, skipped)."""
    names = {f.name for f in dataclasses.fields(Chord)}
    return dataclasses.replace(
        chord, **{name: value for name, value in updates.items() if name in names}
    )


def _database_missing(exc: api.NotFound) -> bool:
    # Firestore answers NOT_FOUND for a missing document too ("No document to
    # update: projects/p/databases/..."); a missing database (or a project
    # without one) says that it "does not exist".
    message = str(exc.message).lower()
    return "database" in message and "does not exist" in message


def _transaction_retryable(exc: BaseException) -> bool:
    if retry.is_retryable(exc) or isinstance(exc, (TransientError, api.Aborted)):
        return True
    # A transaction already committed, rolled back or expired: the next one may succeed.
    return isinstance(exc, api.InvalidArgument) and "transaction" in str(exc.message).lower()


def _held_by(chord: Chord | None, token: str) -> bool:
    return chord is not None and chord.claim is not None and chord.claim.token == token


def _claim_fields(claim: Claim) -> dict[str, Any]:
    return {"token": claim.token, "lease_until": claim.lease_until}


def chord_from(snapshot: firestore.DocumentSnapshot, database: str) -> Chord | None:
    """The chord a document holds. Never raises on what is in the document.

    A field this backend cannot have written makes the chord's ``problem``,
    naming the document and field. A claim that is not one this backend
    wrote counts as no claim: the next claim replaces it.
    """
    if not snapshot.exists:
        return None
    data = snapshot.to_dict() or {}
    path = snapshot.reference.path

    def bad(name: str, why: str) -> str:
        return E_CHORD_FIELD.format(
            path=path, database=database, field=name, value=data.get(name), problem=why
        )

    problems = []
    size = _whole(data.get("size"))
    if size is None or not 0 <= size <= MAX_CHORD_SIZE:
        problems.append(bad("size", f"not a whole number of parts from 0 to {MAX_CHORD_SIZE:,}"))
    leaves = _whole(data.get("leaves"))
    if leaves is None or not 1 <= leaves <= MAX_CHORD_SIZE:
        problems.append(bad("leaves", "not a whole number of counters"))
    added = data.get("added", [])
    if not (isinstance(added, list) and all(isinstance(i, str) and i for i in added)):
        problems.append(bad("added", "not a list of task ids"))
        added = []
    pending = _whole(data.get("added_pending", 0))
    if pending is None:
        problems.append(bad("added_pending", "not a whole number"))
    flags = {name: data.get(name, False) for name in ("header_done", "done")}
    for name, value in flags.items():
        if not isinstance(value, bool):
            problems.append(bad(name, "not true or false"))
    claim = _claim_from(data.get("claim"))
    if claim is None and data.get("claim") is not None:
        log.warning("%s; taken as no claim", bad("claim", "not a claim this backend wrote"))
    expires_at = data.get(conventions.FIRESTORE_TTL_FIELD)
    opened = data.get(OPENED)
    return Chord(
        size=size,
        leaves=leaves,
        added=tuple(added),
        added_pending=pending or 0,
        header_done=flags["header_done"] is True,
        done=flags["done"] is True,
        claim=claim,
        expires_at=expires_at if isinstance(expires_at, dt.datetime) else None,
        read_time=snapshot.read_time,
        opened=opened if isinstance(opened, dt.datetime) else None,
        refreshes=_whole(data.get(REFRESHES, 0)) or 0,
        problem="; ".join(problems) or None,
    )


def _whole(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a whole number stored as a double is still one
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value


def _claim_from(raw: Any) -> Claim | None:
    if not isinstance(raw, dict):
        return None
    token, lease = raw.get("token"), raw.get("lease_until")
    if (
        not (isinstance(token, str) and token and isinstance(lease, dt.datetime))
        or lease.tzinfo is None
    ):
        return None
    return Claim(token, lease)
