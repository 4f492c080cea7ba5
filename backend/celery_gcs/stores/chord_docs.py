"""Firestore documents that count a chord's parts and guard its callback.

Per chord, in the configured database and collection::

    {collection}/{chord key}                 size, added ids, claim, expires_at
    {collection}/{chord key}/parts/{task}    one per header task that returned

A part is counted by *creating* its own document: a duplicate return (retry,
redelivery, lost-worker replay) finds it already there, so nothing is counted
twice, and no document is written more than once per part, which keeps every
document far below Firestore's sustained one-write-per-second guidance however
large the chord. The count is an aggregation query over ``parts``.

The only module that talks to Firestore.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.api_core import exceptions as api
from google.cloud import firestore

from .. import defaults, retry
from ..errors import E_DATABASE_MISSING, DatabaseNotFound, TransientError
from ..settings import Settings
from .perprocess import PerProcess

T = TypeVar("T")

PARTS = "parts"
_BATCH = 500  # Firestore's limit of writes per commit


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a claim: enough to tell, on the same host, whether it is alive."""

    host: str
    pid: int
    started: str  # the process's start time, so a reused pid is not mistaken for it


@dataclass(frozen=True, slots=True)
class Claim:
    token: str
    holder: Holder
    lease_until: dt.datetime


@dataclass(frozen=True, slots=True)
class Chord:
    size: int | None
    added: tuple[str, ...] = ()
    claim: Claim | None = None

    @property
    def total(self) -> int | None:
        return None if self.size is None else self.size + len(self.added)


class ChordStore:
    """Chord documents of one backend. No I/O until the first call."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._retry = retry.policy(settings.retry_deadline)
        self._client = PerProcess(self._new_client, lambda client: client.close())

    def _new_client(self) -> firestore.Client:
        return firestore.Client(
            project=self._settings.firestore_project,
            database=self._settings.firestore_database,
        )

    def _chord(self, key: str) -> firestore.DocumentReference:
        return self._client.get().collection(self._settings.firestore_collection).document(key)

    def _call(self, what: str, func: Callable[[], Any]) -> Any:
        try:
            return func()
        except api.NotFound as exc:
            if "database" in str(exc.message).lower():
                project = self._settings.firestore_project or self._client.get().project
                database = self._settings.firestore_database
                raise DatabaseNotFound(E_DATABASE_MISSING.format(database=database, project=project)) from exc
            raise
        except api.RetryError as exc:
            raise TransientError(f"{what} in Firestore database {self._settings.firestore_database}: {exc}") from exc

    # -- sizes ------------------------------------------------------------------

    def set_size(self, key: str, size: int, expires_at: dt.datetime | None) -> None:
        """Record the header's size; a re-applied chord starts with no claim."""
        fields: dict[str, Any] = {"size": size, "claim": firestore.DELETE_FIELD}
        if expires_at:
            fields[defaults.FIRESTORE_TTL_FIELD] = expires_at
        self._call("setting a chord size", lambda: self._chord(key).set(fields, merge=True, retry=self._retry))

    def add(self, key: str, task_id: str, expires_at: dt.datetime | None) -> None:
        """Grow the chord by one task (``Task.add_to_chord``)."""
        fields: dict[str, Any] = {"added": firestore.ArrayUnion([task_id])}
        if expires_at:
            fields[defaults.FIRESTORE_TTL_FIELD] = expires_at
        self._call("adding to a chord", lambda: self._chord(key).set(fields, merge=True, retry=self._retry))

    def incr(self, key: str, expires_at: dt.datetime | None) -> int:
        """A plain counter (Celery's ``incr``); chords here do not use it."""
        fields: dict[str, Any] = {"count": firestore.Increment(1)}
        if expires_at:
            fields[defaults.FIRESTORE_TTL_FIELD] = expires_at
        ref = self._chord(key)
        # Not idempotent: an increment is never retried blindly.
        result = self._call("incrementing a counter", lambda: ref.set(fields, merge=True, retry=None))
        return int(result.transform_results[0].integer_value)

    # -- parts ------------------------------------------------------------------

    def count_part(self, key: str, part: str, index: int | None, expires_at: dt.datetime | None) -> bool:
        """Count one part; False when it was counted before. One write."""
        fields: dict[str, Any] = {"index": index}
        if expires_at:
            fields[defaults.FIRESTORE_TTL_FIELD] = expires_at
        ref = self._chord(key).collection(PARTS).document(part)
        try:
            # A retried create whose first attempt landed reports a conflict:
            # callers treat "new" and "already counted" the same way.
            self._call("counting a chord part", lambda: ref.create(fields, retry=self._retry))
        except api.Conflict:
            return False
        return True

    def counted(self, key: str) -> int:
        """How many parts are counted. One read per thousand parts."""
        query = self._chord(key).collection(PARTS).count()
        results = self._call("counting chord parts", lambda: query.get(retry=self._retry))
        return int(results[0][0].value)

    def read(self, key: str) -> Chord | None:
        snapshot = self._call("reading a chord", lambda: self._chord(key).get(retry=self._retry))
        return _chord_from(snapshot)

    # -- the callback's claim --------------------------------------------------------

    def claim(self, key: str, mine: Claim, can_take: Callable[[Claim], bool]) -> Chord | None:
        """Take the claim unless someone else holds a live one; return the chord if taken."""
        ref = self._chord(key)

        def attempt(transaction: firestore.Transaction) -> Chord | None:
            chord = _chord_from(ref.get(transaction=transaction))
            if chord is None:
                return None
            if chord.claim is not None and chord.claim.token == mine.token:
                return chord  # taken by an earlier attempt whose answer was lost
            if chord.claim is not None and not can_take(chord.claim):
                return None
            transaction.update(ref, {"claim": _claim_fields(mine)})
            return chord

        return self._transact("claiming a chord", attempt)

    def renew(self, key: str, mine: Claim) -> bool:
        """Extend our claim's lease; False if it is no longer ours."""
        ref = self._chord(key)

        def attempt(transaction: firestore.Transaction) -> bool:
            chord = _chord_from(ref.get(transaction=transaction))
            if chord is None or chord.claim is None or chord.claim.token != mine.token:
                return False
            transaction.update(ref, {"claim": _claim_fields(mine)})
            return True

        return self._transact("renewing a chord claim", attempt)

    def release(self, key: str, token: str) -> None:
        """Give up our claim, so that a later return of any part can complete the chord."""
        ref = self._chord(key)

        def attempt(transaction: firestore.Transaction) -> None:
            chord = _chord_from(ref.get(transaction=transaction))
            if chord is not None and chord.claim is not None and chord.claim.token == token:
                transaction.update(ref, {"claim": firestore.DELETE_FIELD})

        self._transact("releasing a chord claim", attempt)

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
        policy = self._retry.with_predicate(_transaction_retryable)
        return self._call(what, lambda: policy(lambda: run(client.transaction()))())

    def finish(self, key: str, parts: Iterable[str]) -> None:
        """Delete the chord document, then its parts' (by id: no reads).

        The chord document goes first: without it nothing can complete the
        chord again, so a part that returns late finds nothing to do.
        """
        client = self._client.get()
        ref = self._chord(key)
        self._call("deleting a chord", lambda: ref.delete(retry=self._retry))
        batch, pending = client.batch(), 0
        for part in parts:
            batch.delete(ref.collection(PARTS).document(part))
            pending += 1
            if pending == _BATCH:
                self._call("deleting chord parts", lambda b=batch: b.commit(retry=self._retry))
                batch, pending = client.batch(), 0
        if pending:
            self._call("deleting chord parts", lambda: batch.commit(retry=self._retry))

    def close(self) -> None:
        self._client.clear()


def _transaction_retryable(exc: BaseException) -> bool:
    if retry.is_retryable(exc):
        return True
    # A transaction already committed, rolled back or expired: the next one may succeed.
    return isinstance(exc, api.InvalidArgument) and "transaction" in str(exc.message).lower()


def _claim_fields(claim: Claim) -> dict[str, Any]:
    holder = claim.holder
    return {
        "token": claim.token,
        "host": holder.host,
        "pid": holder.pid,
        "started": holder.started,
        "lease_until": claim.lease_until,
    }


def _chord_from(snapshot: firestore.DocumentSnapshot) -> Chord | None:
    if not snapshot.exists:
        return None
    data = snapshot.to_dict() or {}
    claim = None
    raw = data.get("claim")
    if isinstance(raw, dict) and raw.get("token"):
        holder = Holder(str(raw.get("host", "")), int(raw.get("pid", 0)), str(raw.get("started", "")))
        lease = raw.get("lease_until") or dt.datetime.min.replace(tzinfo=dt.UTC)
        claim = Claim(str(raw["token"]), holder, lease)
    size = data.get("size")
    added = tuple(str(task_id) for task_id in data.get("added") or ())
    return Chord(size=int(size) if size is not None else None, added=added, claim=claim)
