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
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.cloud import firestore

from .. import contract, retry
from ..errors import (
    E_CHORD_FIELD,
    E_DATABASE_DENIED,
    E_DATABASE_MISSING,
    E_NO_CREDENTIALS,
    AccessDenied,
    ConfigurationError,
    DatabaseNotFound,
    TransientError,
)
from ..settings import Settings
from .perprocess import PerProcess

T = TypeVar("T")
log = logging.getLogger(__name__)

_BATCH = 500  # Firestore's limit of writes per commit
#: A size above this is not one Celery gave us. Far beyond any chord this
#: backend can run: each part's count query reads up to size / 1,000
#: documents, so a chord this large would cost about 5 x 10^10 reads.
MAX_CHORD_SIZE = 10_000_000


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
    #: What makes the document unusable (a size or ids edited by hand), or None.
    #: Such a chord cannot complete: the first part to see it fails it.
    problem: str | None = None

    @property
    def total(self) -> int | None:
        if self.problem is not None or self.size is None:
            return None
        return self.size + len(self.added)


class ChordStore:
    """Chord documents of one backend. No I/O until the first call."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._retry = retry.policy(settings.retry_deadline)
        # Each call's own limit (gcs_timeout); the client's are a minute or more. The
        # transactions' begin and commit take the client's: they accept no timeout.
        self._timeout = settings.timeout
        self._call_options: dict[str, Any] = {"retry": self._retry, "timeout": self._timeout}
        self._client = PerProcess(self._new_client, lambda client: client.close())

    def _new_client(self) -> firestore.Client:
        try:
            return firestore.Client(
                project=self._settings.firestore_project,
                database=self._settings.firestore_database,
            )
        except auth.DefaultCredentialsError as exc:
            raise ConfigurationError(E_NO_CREDENTIALS.format(service="Firestore", reason=exc)) from exc

    def _chord(self, key: str) -> firestore.DocumentReference:
        return self._client.get().collection(self._settings.firestore_collection).document(key)

    def _call(self, what: str, func: Callable[[], Any]) -> Any:
        database = self._settings.firestore_database
        try:
            return func()
        except api.NotFound as exc:
            if _database_missing(exc):
                raise DatabaseNotFound(E_DATABASE_MISSING.format(database=database, project=self._project())) from exc
            raise
        except api.PermissionDenied as exc:
            reason = f"{what}: {exc.message}"
            raise AccessDenied(
                E_DATABASE_DENIED.format(database=database, project=self._project(), reason=reason)
            ) from exc
        except api.RetryError as exc:
            raise TransientError(f"{what} in Firestore database {self._settings.firestore_database}: {exc}") from exc

    # -- sizes ------------------------------------------------------------------

    def set_size(self, key: str, size: int, expires_at: dt.datetime | None) -> None:
        """Record the header's size; a re-applied chord starts with no claim."""
        fields: dict[str, Any] = {"size": size, "claim": firestore.DELETE_FIELD}
        if expires_at:
            fields[contract.FIRESTORE_TTL_FIELD] = expires_at
        self._call("setting a chord size", lambda: self._chord(key).set(fields, merge=True, **self._call_options))

    def add(self, key: str, task_id: str, expires_at: dt.datetime | None) -> None:
        """Grow the chord by one task (``Task.add_to_chord``)."""
        fields: dict[str, Any] = {"added": firestore.ArrayUnion([task_id])}
        if expires_at:
            fields[contract.FIRESTORE_TTL_FIELD] = expires_at
        self._call("adding to a chord", lambda: self._chord(key).set(fields, merge=True, **self._call_options))

    def incr(self, key: str, expires_at: dt.datetime | None) -> int:
        """A plain counter (Celery's ``incr``); chords here do not use it."""
        fields: dict[str, Any] = {"count": firestore.Increment(1)}
        if expires_at:
            fields[contract.FIRESTORE_TTL_FIELD] = expires_at
        ref = self._chord(key)
        # Not idempotent: an increment is never retried blindly.
        result = self._call(
            "incrementing a counter", lambda: ref.set(fields, merge=True, retry=None, timeout=self._timeout)
        )
        return int(result.transform_results[0].integer_value)

    # -- parts ------------------------------------------------------------------

    def count_part(self, key: str, part: str, index: int | None, expires_at: dt.datetime | None) -> bool:
        """Count one part; False when it was counted before. One write."""
        fields: dict[str, Any] = {"index": index}
        if expires_at:
            fields[contract.FIRESTORE_TTL_FIELD] = expires_at
        ref = self._chord(key).collection(contract.FIRESTORE_PARTS_COLLECTION).document(part)
        try:
            # A retried create whose first attempt landed reports a conflict:
            # callers treat "new" and "already counted" the same way.
            self._call("counting a chord part", lambda: ref.create(fields, **self._call_options))
        except api.Conflict:
            return False
        return True

    def counted(self, key: str) -> int:
        """How many parts are counted. One read per thousand parts."""
        query = self._chord(key).collection(contract.FIRESTORE_PARTS_COLLECTION).count()
        results = self._call("counting chord parts", lambda: query.get(**self._call_options))
        return int(results[0][0].value)

    def read(self, key: str) -> Chord | None:
        snapshot = self._call("reading a chord", lambda: self._chord(key).get(**self._call_options))
        return self._chord_from(snapshot)

    # -- the callback's claim --------------------------------------------------------

    def claim(self, key: str, mine: Claim, can_take: Callable[[Claim], bool]) -> Chord | None:
        """Take the claim unless someone else holds a live one; return the chord if taken."""
        ref = self._chord(key)

        def attempt(transaction: firestore.Transaction) -> Chord | None:
            chord = self._chord_from(ref.get(transaction=transaction, timeout=self._timeout))
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
            chord = self._chord_from(ref.get(transaction=transaction, timeout=self._timeout))
            if not _held_by(chord, mine.token):
                return False
            transaction.update(ref, {"claim": _claim_fields(mine)})
            return True

        return self._transact("renewing a chord claim", attempt)

    def release(self, key: str, token: str) -> None:
        """Give up our claim, so that a later return of any part can complete the chord."""
        ref = self._chord(key)

        def attempt(transaction: firestore.Transaction) -> None:
            chord = self._chord_from(ref.get(transaction=transaction, timeout=self._timeout))
            if _held_by(chord, token):
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

        def once() -> T:
            try:
                return run(client.transaction())
            except ValueError as exc:
                # A failed transaction is rolled back, and when the rollback
                # fails too (always, if the transaction never began) the client
                # raises the rollback's error, the real one only its context.
                if isinstance(exc.__context__, Exception):
                    raise exc.__context__ from None
                raise

        policy = self._retry.with_predicate(_transaction_retryable)
        return self._call(what, lambda: policy(once)())

    def finish(self, key: str, parts: Iterable[str]) -> None:
        """Delete the chord document, then its parts' (by id: no reads).

        The chord document goes first: without it nothing can complete the
        chord again, so a part that returns late finds nothing to do.
        """
        client = self._client.get()
        ref = self._chord(key)
        self._call("deleting a chord", lambda: ref.delete(**self._call_options))
        batch, pending = client.batch(), 0
        for part in parts:
            batch.delete(ref.collection(contract.FIRESTORE_PARTS_COLLECTION).document(part))
            pending += 1
            if pending == _BATCH:
                self._call("deleting chord parts", lambda b=batch: b.commit(**self._call_options))
                batch, pending = client.batch(), 0
        if pending:
            self._call("deleting chord parts", lambda: batch.commit(**self._call_options))

    def close(self) -> None:
        self._client.clear()

    def _project(self) -> str:
        return self._settings.firestore_project or self._client.get().project or "not set"

    def _chord_from(self, snapshot: firestore.DocumentSnapshot) -> Chord | None:
        return chord_from(snapshot, self._settings.firestore_database)


def _database_missing(exc: api.NotFound) -> bool:
    # Firestore answers NOT_FOUND for a missing document too ("No document to
    # update: projects/p/databases/..."); a missing database (or a project
    # without one) says that it "does not exist".
    message = str(exc.message).lower()
    return "database" in message and "does not exist" in message


def _transaction_retryable(exc: BaseException) -> bool:
    if retry.is_retryable(exc):
        return True
    # A transaction already committed, rolled back or expired: the next one may succeed.
    return isinstance(exc, api.InvalidArgument) and "transaction" in str(exc.message).lower()


def _held_by(chord: Chord | None, token: str) -> bool:
    return chord is not None and chord.claim is not None and chord.claim.token == token


def _claim_fields(claim: Claim) -> dict[str, Any]:
    holder = claim.holder
    return {
        "token": claim.token,
        "host": holder.host,
        "pid": holder.pid,
        "started": holder.started,
        "lease_until": claim.lease_until,
    }


def chord_from(snapshot: firestore.DocumentSnapshot, database: str) -> Chord | None:
    """The chord a document holds. Never raises on what is in the document.

    A size or list of added ids that this backend cannot have written makes
    the chord's ``problem``, naming the document and field. A claim that is
    not one this backend wrote counts as no claim: the next claim replaces it.
    """
    if not snapshot.exists:
        return None
    data = snapshot.to_dict() or {}
    path = snapshot.reference.path

    def bad(field: str, why: str) -> str:
        return E_CHORD_FIELD.format(path=path, database=database, field=field, value=data.get(field), problem=why)

    problems = []
    size = data.get("size")
    if size is not None:
        if isinstance(size, float) and size.is_integer():
            size = int(size)  # a whole number stored as a double is still a size
        if not isinstance(size, int) or isinstance(size, bool):
            problems.append(bad("size", "not a whole number of parts"))
        elif not 0 <= size <= MAX_CHORD_SIZE:
            problems.append(bad("size", f"outside 0 to {MAX_CHORD_SIZE:,}"))
    added = data.get("added")
    if added is not None and not (isinstance(added, list) and all(isinstance(i, str) and i for i in added)):
        problems.append(bad("added", "not a list of task ids"))
    claim = _claim_from(data.get("claim"))
    if claim is None and data.get("claim") is not None:
        log.warning("%s; taken as no claim", bad("claim", "not a claim this backend wrote"))
    if problems:
        return Chord(size=None, claim=claim, problem="; ".join(problems))
    return Chord(size=size, added=tuple(added or ()), claim=claim)


def _claim_from(raw: Any) -> Claim | None:
    if not isinstance(raw, dict):
        return None
    token, host, pid = raw.get("token"), raw.get("host", ""), raw.get("pid", 0)
    started, lease = raw.get("started", ""), raw.get("lease_until")
    if not (isinstance(token, str) and token and isinstance(host, str) and isinstance(started, str)):
        return None
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(lease, dt.datetime):
        return None
    if lease.tzinfo is None:
        return None
    return Claim(token, Holder(host, pid, started), lease)
