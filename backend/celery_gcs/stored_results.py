"""The stored-results layer: task and group results as GCS objects, encoded, expiring, written conditionally, read back checked.

Under both the backend's hooks and the chord coordinator: neither encodes,
decodes or writes a result object any other way. It holds:

* **names**: a task's, group's or chord's key, Celery's prefix and the id
  as ``keys.encode_id`` writes it;
* **expiry**: every result carries its own (``meta.EXPIRES_FIELD``, and the
  object's custom time, which the bucket's lifecycle rule reads); a result past
  it reads as missing;
* **conditional writes**: a task's state is written create-only, or over the
  generation this process wrote last; a SUCCESS is never overwritten
  (Celery's rule), a precondition failure is ridden out a few times;
* **checked reads**: a stored object that is not a result is a
  ``CorruptResult`` naming it, never half a result.

What only Celery's backend class can give (its serializer, its rebuilding of
exceptions, its app) comes in as a ``Codec``; the bytes go through
``stores.result_store.ResultStore``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from celery import Celery, states
from celery.result import GroupResult, result_from_tuple

from . import meta
from .errors import CorruptResult, StoreError
from .keys import encode_id
from .perprocess import PerProcess
from .settings import Settings
from .stores.result_store import GenerationMismatch, ResultStore, StoredObject

# How many (key -> generation) of this process's unfinished states to remember.
_GENERATIONS_KEPT = 10_000
# Writers racing on one key: how many precondition failures to ride out.
_MAX_CONFLICTS = 8
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# How long a chord's record that its outcome went out is kept at least (results kept for ever).
_SENT_RECORD_KEPT = 86_400.0


class Extended(enum.Enum):
    """What giving a result a new expiry did (``StoredResults.extend``)."""

    REWRITTEN = "rewritten"
    #: Kept as long already (or for ever): left as it is.
    KEPT = "kept"
    #: Not stored (yet, for a chord part counted but not stored).
    MISSING = "missing"
    #: Past its expiry already: readers saw it gone, so it stays gone.
    EXPIRED = "expired"
    #: Not reached: its chord's refresh stopped, no longer needed (``refresh_chord``'s ``stop``).
    SKIPPED = "skipped"


class Codec(Protocol):
    """What only Celery's backend class gives the stored results (``GCSBackend``)."""

    app: Celery

    def encode(self, data: Any) -> bytes:
        """Celery's serializer, with its compression."""

    def decode(self, payload: bytes) -> Any:
        """Celery's deserializer, whatever the payload's compression."""

    def meta_from_decoded(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Celery's rebuilding of a decoded state (exceptions from their stored form)."""

    def encode_result(self, result: Any, state: str) -> Any:
        """Celery's form of a result before encoding (exceptions prepared)."""


@dataclass(frozen=True, slots=True)
class KeyPrefixes:
    """Celery's key prefixes (``global_keyprefix`` included) for tasks, groups and chords."""

    task: str
    group: str
    chord: str


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long what is written lives, in seconds, as Celery's settings say; None or 0: for ever.

    ``gcs_ttl`` (``Settings.ttl``), when set, replaces all of them.
    """

    result: float | None  # result_expires
    failure: float | None  # result_failure_expires, else result_expires
    chord: float | None  # result_chord_expires, else result_expires: chord documents
    chord_result: float | None  # a chord's GroupResult and header results: the longer of the two


@dataclass(frozen=True, slots=True)
class EncodedState:
    """A task state ready to write: its object's name, bytes, custom metadata and expiry."""

    name: str
    payload: bytes
    state: str
    expires_at: dt.datetime | None
    metadata: dict[str, str]


class StoredResults:
    """Result objects of one backend. No I/O until the first call."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        *,
        prefixes: KeyPrefixes,
        lifetimes: Lifetimes,
        content_type: str,
        store: ResultStore | None = None,
    ) -> None:
        self.settings = settings
        self.prefixes = prefixes
        self.lifetimes = lifetimes
        self.store = store or ResultStore(settings)
        self._codec = codec
        self._content_type = content_type
        # Generations this process wrote for unfinished states (STARTED, RETRY),
        # so the next state of the same task is one conditional PUT.
        self._generations: PerProcess[OrderedDict[str, int]] = PerProcess(OrderedDict)

    def warm_up(self) -> None:
        """Connect to GCS now (``ResultStore.warm_up``)."""
        self.store.warm_up()

    # -- names ------------------------------------------------------------------

    def key(self, prefix: str, id: str) -> str:
        """The object name (under the base path) of ``id`` under one of Celery's ``prefix``."""
        return prefix + encode_id(str(id))

    def task_key(self, task_id: str) -> str:
        return self.key(self.prefixes.task, task_id)

    def group_key(self, group_id: str) -> str:
        return self.key(self.prefixes.group, group_id)

    def chord_key(self, group_id: str) -> str:
        """The name of the chord's Firestore document."""
        return self.key(self.prefixes.chord, group_id)

    def chord_sent_key(self, group_id: str, opened: dt.datetime | None) -> str:
        """The object saying a chord's outcome went out (``mark_chord_sent``): its chord key and run.

        The run is when the chord was applied (``opened``, the server's time;
        None for a chord written by an older version): a group id applied
        again once its chord ended is a new run, with its own outcome.
        ``~`` never appears in an encoded id (``keys.encode_id``), so no two
        chords' runs share a name; and the name is outside the task prefix,
        so ``celery-gcs results`` neither lists nor purges it.
        """
        run = "" if opened is None else str((opened - _EPOCH) // dt.timedelta(microseconds=1))
        return f"{self.chord_key(group_id)}~sent{run}"

    # -- expiry -------------------------------------------------------------------

    def expires_at(self, seconds: float | None, *, at_least: float = 0.0) -> dt.datetime | None:
        """When something written now expires: ``gcs_ttl`` if set, else ``seconds``; no sooner than ``at_least`` seconds from now.

        ``at_least``: a long-running chord's (chords.py, ``_stretch``); nothing
        set to expire never does.
        """
        ttl = self.settings.ttl or seconds
        if not ttl:
            return None
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=max(float(ttl), at_least))

    @property
    def chord_lifetime(self) -> float | None:
        """Seconds chord documents live (``gcs_ttl``, else ``result_chord_expires``, else ``result_expires``); None: for ever.

        Its parts' results live as long at least (the longer of this and
        ``result_expires``): the soonest anything written now for a chord expires.
        """
        return self.settings.ttl or self.lifetimes.chord or None

    def chord_expires_at(self, *, at_least: float = 0.0) -> dt.datetime | None:
        """When chord documents written now expire."""
        return self.expires_at(self.chord_lifetime, at_least=at_least)

    def state_expires_at(self, state: str, *, chord_part: bool) -> dt.datetime | None:
        """When a task state written now expires; a chord part's lives as long as its chord, as Celery keeps it."""
        seconds = self.lifetimes.failure if state in states.EXCEPTION_STATES else self.lifetimes.result
        if chord_part and seconds:
            seconds = max(seconds, self.lifetimes.chord_result or 0)
        return self.expires_at(seconds)

    # -- reads: a result past its expiry is missing ---------------------------------

    def get(self, name: str) -> StoredObject | None:
        return self.store.get(name)

    def get_many(self, names: Sequence[str]) -> list[StoredObject | None]:
        return self.store.get_many(names)

    def read(self, name: str, *, expired_too: bool = False) -> dict[str, Any] | None:
        """The decoded meta stored under ``name``, unless missing or (but with ``expired_too``) expired."""
        found = self.store.get(name)
        if found is None:
            return None
        decoded = self._decode(name, found.data)
        return None if meta.expired(decoded) and not expired_too else decoded

    def task_state(self, task_id: str) -> dict[str, Any]:
        """A task's state as Celery's ``get_task_meta`` returns it; PENDING when none is stored."""
        name = self.task_key(task_id)
        decoded = self.read(name)
        return {"status": states.PENDING, "result": None} if decoded is None else self._task_meta(name, decoded)

    def task_exists(self, task_id: str) -> bool:
        return self.read(self.task_key(task_id)) is not None

    def group_state(self, group_id: str, *, expired_too: bool = False) -> dict[str, Any] | None:
        """A saved group's meta, its ``result`` a GroupResult; CorruptResult if it is not one."""
        name = self.group_key(group_id)
        decoded = self.read(name, expired_too=expired_too)
        if decoded is not None:
            try:
                decoded["result"] = result_from_tuple(decoded["result"], self._codec.app)
            except Exception as exc:  # any shape result_from_tuple cannot take
                raise meta.corrupt(name, self.settings.bucket, f"not a group of results ({exc!r})") from exc
        return decoded

    def delete_group(self, group_id: str) -> None:
        """Delete a saved group (a chord's, as it ends); one already gone is deleted."""
        self.delete(self.group_key(group_id))

    def read_group(self, group_id: str) -> GroupResult | None:
        """A chord's saved header GroupResult, or None; CorruptResult if it is not one.

        Read even past its expiry, as long as it is stored: the chord's own
        documents say whether the chord is alive, and a header whose parts
        waited in the queue longer than results live still lists them
        (Redis's backend counts without it, so such a chord completes there).
        """
        found = self.group_state(group_id, expired_too=True)
        return None if found is None else found["result"]

    def ready(self, task_ids: Sequence[str], ready_states: Collection[str]) -> dict[str, dict[str, Any]]:
        """The states of those of ``task_ids`` stored, unexpired and in ``ready_states``, in one read.

        A stored object that is not a result raises CorruptResult with the
        task's id as ``task_id``.
        """
        names = [self.task_key(task_id) for task_id in task_ids]
        found: dict[str, dict[str, Any]] = {}
        for task_id, name, stored in zip(task_ids, names, self.store.get_many(names)):
            if stored is None:
                continue
            try:
                decoded = self._decode(name, stored.data)
                if meta.expired(decoded):
                    continue  # an expired result is absent, for a chord as for everyone
                state = self._task_meta(name, decoded)
            except CorruptResult as exc:
                exc.task_id = task_id
                raise
            if state["status"] in ready_states:
                found[task_id] = state
        return found

    def expired(self, task_ids: Sequence[str]) -> list[str]:
        """Those of ``task_ids`` whose results were stored and have expired since, in one read."""
        names = [self.task_key(task_id) for task_id in task_ids]
        gone = []
        for task_id, name, stored in zip(task_ids, names, self.store.get_many(names)):
            if stored is None:
                continue
            try:
                if meta.expired(self._decode(name, stored.data)):
                    gone.append(task_id)
            except CorruptResult:
                continue  # not a result: the reads that need it say so
        return gone

    def chord_sent(self, group_id: str, opened: dt.datetime | None) -> str | None:
        """What of this run of the chord went out already (``mark_chord_sent``'s ``outcome``), or None: one read.

        Found past its expiry, it still says so: the run it names is this one.
        One that cannot be read says ``callback``: sent, and nothing to store.
        """
        name = self.chord_sent_key(group_id, opened)
        found = self.store.get(name)
        if found is None:
            return None
        try:
            decoded = self._codec.decode(found.data)
        except Exception:  # noqa: BLE001 (any decoder's error: not ours to read, taken as sent)
            decoded = None
        outcome = decoded.get("outcome") if isinstance(decoded, dict) else None
        return outcome if isinstance(outcome, str) else "callback"

    def as_stored(self, state: str, result: Any) -> Any:
        """A result as a reader gets it back: through the serializer and Celery's rebuilding."""
        codec = self._codec
        encoded = codec.encode({"result": codec.encode_result(result, state), "status": state})
        return codec.meta_from_decoded(codec.decode(encoded))["result"]

    def _task_meta(self, name: str, decoded: dict[str, Any]) -> dict[str, Any]:
        return meta.task_state(name, decoded, rebuild=self._codec.meta_from_decoded, bucket=self.settings.bucket)

    def _decode(self, name: str, payload: bytes) -> dict[str, Any]:
        return meta.decode(name, payload, decode=self._codec.decode, bucket=self.settings.bucket)

    # -- writes -----------------------------------------------------------------------

    def encode_state(
        self, task_id: str, state_meta: dict[str, Any], state: str, *, task_name: str | None, chord_part: bool
    ) -> EncodedState:
        """A task's state, with its expiry, encoded to fit ``gcs_max_result_bytes`` (else ResultTooLarge)."""
        expires_at = self.state_expires_at(state, chord_part=chord_part)
        state_meta[meta.EXPIRES_FIELD] = meta.isoformat(expires_at)
        name = self.task_key(task_id)
        limit = self.settings.max_result_bytes
        payload = meta.encode_state(state_meta, state, encode=self._codec.encode, limit=limit)
        meta.check_payload_size(name, payload, limit)
        metadata = meta.object_metadata(state_meta, task_name or state_meta.get("name"))
        return EncodedState(name, payload, state, expires_at, metadata)

    def write_state(self, encoded: EncodedState) -> None:
        """Store a task's state: create-only or over our last generation; never over a SUCCESS."""
        name = encoded.name
        generations = self._generations.get()
        expected = generations.pop(name, 0)
        for _ in range(_MAX_CONFLICTS):
            try:
                generation = self.put(
                    name,
                    encoded.payload,
                    expires_at=encoded.expires_at,
                    if_generation_match=expected,
                    metadata=encoded.metadata,
                )
            except GenerationMismatch:
                current = self.store.get(name)
                if current is None:
                    expected = 0
                    continue
                try:
                    previous = self._decode(name, current.data)
                except CorruptResult:
                    previous = {}  # something else's bytes in this task's place: replaced
                if previous.get("status") == states.SUCCESS and not meta.expired(previous):
                    # A duplicate run never overwrites a success (Celery's rule); an
                    # expired one reads as absent, so a re-run after it is stored.
                    return
                expected = current.generation
                continue
            if encoded.state not in states.READY_STATES:
                generations[name] = generation
                while len(generations) > _GENERATIONS_KEPT:
                    generations.popitem(last=False)
            return
        raise StoreError(f"could not store {name}: other writers kept replacing it")

    def save_group(self, group_id: str, result: Any, seconds: float | None) -> None:
        """Save a GroupResult's structure, expiring ``seconds`` from now.

        Written without a precondition (saving a group again replaces it, as
        in Celery), and retried all the same: idempotent by construction, as
        a group id names one structure, whoever saves it.
        """
        expires_at = self.expires_at(seconds)
        saved = {"result": result.as_tuple(), meta.EXPIRES_FIELD: meta.isoformat(expires_at)}
        self.put(self.group_key(group_id), self._codec.encode(saved), expires_at=expires_at, idempotent=True)

    def mark_chord_sent(self, group_id: str, opened: dt.datetime | None, outcome: str, *, at_least: float = 0.0) -> None:
        """Record that a chord's outcome (``callback`` or ``errbacks``) went out, once: a create-only write.

        Kept as long as the chord's results (``at_least``: a running chord's,
        chords.py ``_stretch``), so the bucket's lifecycle removes it with them;
        with results kept for ever, ``_SENT_RECORD_KEPT`` at least: nothing lists
        or purges it (``celery-gcs results`` shows task results only), so it must
        expire. Found there already, it was written by this very call (a retried
        write whose first answer was lost) or by a holder before: nothing to do.
        """
        expires_at = self.expires_at(self.lifetimes.chord_result, at_least=at_least) or (
            dt.datetime.now(dt.UTC) + dt.timedelta(seconds=max(at_least, _SENT_RECORD_KEPT))
        )
        sent = {
            "group_id": group_id, "outcome": outcome, "date_done": meta.isoformat(dt.datetime.now(dt.UTC)),
            meta.EXPIRES_FIELD: meta.isoformat(expires_at),
        }  # fmt: skip
        try:
            self.put(
                self.chord_sent_key(group_id, opened), self._codec.encode(sent), expires_at=expires_at, if_generation_match=0
            )
        except GenerationMismatch:
            pass

    def lasting(self, encoded: EncodedState, at_least: float) -> EncodedState:
        """``encoded``, encoded again to expire no sooner than ``at_least`` seconds from now if it would (a long chord's part)."""
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=at_least)
        if encoded.expires_at is None or later <= encoded.expires_at:
            return encoded  # kept for ever, or long enough already
        decoded = self._decode(encoded.name, encoded.payload)
        decoded[meta.EXPIRES_FIELD] = meta.isoformat(later)
        payload = self._codec.encode(decoded)
        meta.check_payload_size(encoded.name, payload, self.settings.max_result_bytes)
        return replace(encoded, payload=payload, expires_at=later)

    def extend(self, name: str, seconds: float | None, *, at_least: float = 0.0, later_only: bool = False) -> Extended:
        """Give an existing result a new expiry, ``seconds`` from now (at least ``at_least``); nothing if it is missing or expired,
        or, ``later_only``, kept as long already (or for ever).

        An expired result reads as absent (PENDING); giving it a new expiry
        would bring back what readers already saw gone.
        """
        for _ in range(_MAX_CONFLICTS):
            found = self.store.get(name)
            if found is None:
                return Extended.MISSING
            decoded = self._decode(name, found.data)
            if meta.expired(decoded):
                return Extended.EXPIRED
            expires_at = self.expires_at(seconds, at_least=at_least)
            if later_only and (expires_at is None or not meta.expired(decoded, now=expires_at)):
                return Extended.KEPT
            decoded[meta.EXPIRES_FIELD] = meta.isoformat(expires_at)
            metadata = meta.object_metadata(decoded, decoded.get("name")) if "status" in decoded else None
            try:
                self.put(
                    name,
                    self._codec.encode(decoded),
                    expires_at=expires_at,
                    if_generation_match=found.generation,
                    metadata=metadata,
                )
                return Extended.REWRITTEN
            except GenerationMismatch:
                continue
        raise StoreError(f"could not set the expiry of {name}: it kept changing under us")

    def refresh_chord(
        self, group_id: str, task_ids: Sequence[str], *, at_least: float = 0.0, stop: Callable[[], object] = lambda: False
    ) -> Counter[Extended]:
        """Push back the expiry of a running chord's GroupResult and of the results of ``task_ids``, many at once;
        how many of those results met each outcome (``Extended``), for the refresh's log line.

        Never forward: the GroupResult of a client keeping it longer than
        this worker would (Celery's default, a day), or a failed part's
        result kept ``result_failure_expires``, keeps its own. Once ``stop()``
        is true, what is not begun yet is skipped (``SKIPPED``): those under
        way finish.
        """
        names = [self.group_key(group_id), *(self.task_key(task_id) for task_id in task_ids)]
        extend = partial(self.extend, seconds=self.lifetimes.chord_result, at_least=at_least, later_only=True)
        return Counter(self.store.each(lambda name: Extended.SKIPPED if stop() else extend(name), names)[1:])

    def put(
        self,
        name: str,
        payload: bytes,
        *,
        expires_at: dt.datetime | None,
        if_generation_match: int | None = None,
        metadata: dict[str, str] | None = None,
        idempotent: bool = False,
    ) -> int:
        """Write one object as a result: checked against ``gcs_max_result_bytes``, typed as Celery's bytes.

        Retried only with ``if_generation_match`` or when ``idempotent``
        (``ResultStore.put``): Celery's plain ``set`` is made once.
        """
        meta.check_payload_size(name, payload, self.settings.max_result_bytes)
        return self.store.put(
            name,
            payload,
            expires_at=expires_at,
            if_generation_match=if_generation_match,
            content_type=self._content_type,
            metadata=metadata,
            idempotent=idempotent,
        )

    def delete(self, name: str) -> None:
        self.store.delete(name)

    def close(self) -> None:
        self.store.close()
