"""``GCSBackend``: Celery's key/value backend on GCS objects (and Firestore, for chords).

The key layout is the built-in ``gs://`` backend's, so either reads the
other's results. Differences that matter:

* one request per stored state: a create-only PUT, not a GET and then a PUT;
  a state already SUCCESS is still never overwritten (Celery's rule), now
  enforced by a generation precondition instead of a racy read;
* every result carries its expiry: the object's custom time drives the bucket
  lifecycle rule, and an ``expires_at`` field in the stored meta makes a
  result past its expiry read as missing before the lifecycle deletes it;
* no network I/O until first use, and no admin API calls at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from celery import states
from celery.backends.base import KeyValueStoreBackend
from celery.exceptions import TimeoutError
from celery.result import result_from_tuple
from kombu.utils.encoding import bytes_to_str

from . import retry, settings
from .errors import E_CORRUPT, E_RESULT_TOO_LARGE, CorruptResult, ResultTooLarge, StoreError
from .stores.objects import GenerationMismatch, ObjectStore, StoredObject
from .stores.perprocess import PerProcess

#: Field added to every stored meta: when the result expires (ISO 8601, UTC).
EXPIRES_FIELD = "expires_at"

# Ids made of these characters (and without "..") are used as they are, so
# object names match the built-in backend's; anything else is %-encoded.
_VERBATIM_ID = re.compile(r"^[A-Za-z0-9_.:@+=,-]+$")
# Longest id kept readable in an object name; longer ones are hashed. GCS
# allows 1024 bytes per name, which must also hold the base path and prefix.
_MAX_ID_BYTES = 512
# How many (key -> generation) of this process's unfinished states to remember.
_GENERATIONS_KEPT = 10_000
# The first poll of a result being waited for; later ones back off to the interval.
_FIRST_POLL = 0.02
# Writers racing on one key: how many precondition failures to ride out.
_MAX_CONFLICTS = 8


def encode_id(task_id: str) -> str:
    """A task or group id as it appears in an object name.

    Injective: verbatim ids contain no ``%``; %-encoded ones always do; hashed
    ones start with ``%hash-``, which %-encoding never produces.
    """
    if _VERBATIM_ID.match(task_id) and ".." not in task_id and len(task_id) <= _MAX_ID_BYTES:
        return task_id
    encoded = "".join(
        char if char.isascii() and (char.isalnum() or char in "_-") else urllib.parse.quote(char, safe="")
        for char in task_id
    )
    # quote() leaves nothing in "._~" escaped; escape them ourselves.
    encoded = encoded.replace(".", "%2E").replace("~", "%7E")
    if len(encoded.encode()) > _MAX_ID_BYTES:
        return "%hash-" + hashlib.sha256(task_id.encode()).hexdigest()
    return encoded


class GCSBackend(KeyValueStoreBackend):
    """Celery result backend storing results as GCS objects."""

    supports_native_join = True
    supports_result_compression = True
    supports_failure_expires = True

    def __init__(self, app: Any, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, url=url, **kwargs)
        self.settings = settings.parse(url, self.app.conf)
        self.objects = ObjectStore(self.settings)
        failure_expires = self.app.conf.get("result_failure_expires")
        self.failure_expires = self.expires if failure_expires is None else self.prepare_expires(failure_expires)
        # Generations this process wrote for unfinished states (STARTED, RETRY),
        # so the next state of the same task is one conditional PUT.
        self._generations: PerProcess[OrderedDict[str, int]] = PerProcess(OrderedDict)

    # -- keys ---------------------------------------------------------------

    def _get_key_for(self, prefix: bytes, id: Any, key: bytes = b"") -> bytes:
        return super()._get_key_for(prefix, encode_id(str(id)), key)

    # -- the key/value hooks KeyValueStoreBackend calls ----------------------

    def get(self, key: bytes | str) -> bytes | None:
        found = self.objects.get(bytes_to_str(key))
        return None if found is None else found.data

    def mget(self, keys: Sequence[bytes | str]) -> list[bytes | None]:
        found = self.objects.get_many([bytes_to_str(key) for key in keys])
        return [None if item is None else item.data for item in found]

    def set(self, key: bytes | str, value: bytes) -> None:
        self._put(bytes_to_str(key), value, expires_at=self._expiry(self.expires))

    def delete(self, key: bytes | str) -> None:
        self.objects.delete(bytes_to_str(key))

    def expire(self, key: bytes | str, value: float | dt.timedelta | None) -> None:
        """Give an existing result a new expiry, ``value`` seconds from now."""
        name = bytes_to_str(key)
        for _ in range(_MAX_CONFLICTS):
            found = self.objects.get(name)
            if found is None:
                return
            meta = self._decode(name, found.data)
            expires_at = self._expiry(self.prepare_expires(value))
            meta[EXPIRES_FIELD] = _isoformat(expires_at)
            try:
                self._put(name, self.encode(meta), expires_at=expires_at, if_generation_match=found.generation)
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

    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        return retry.is_retryable(exc)

    # -- reads: a result past its expiry is missing ---------------------------

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        meta = self._read_meta(bytes_to_str(self.get_key_for_task(task_id)))
        return {"status": states.PENDING, "result": None} if meta is None else self.meta_from_decoded(meta)

    def task_result_exists(self, task_id: str) -> bool:
        return self._read_meta(bytes_to_str(self.get_key_for_task(task_id))) is not None

    def _restore_group(self, group_id: str) -> dict[str, Any] | None:
        meta = self._read_meta(bytes_to_str(self.get_key_for_group(group_id)))
        if meta is not None:
            meta["result"] = result_from_tuple(meta["result"], self.app)
        return meta

    def _filter_ready(self, values, READY_STATES=states.READY_STATES):  # noqa: N803 (Celery's name)
        for k, value in values:
            if value is None:
                continue
            meta = self._decode(str(k), value)
            if not _expired(meta) and meta["status"] in READY_STATES:
                yield k, self.meta_from_decoded(meta)

    def _read_meta(self, name: str) -> dict[str, Any] | None:
        found = self.objects.get(name)
        if found is None:
            return None
        meta = self._decode(name, found.data)
        return None if _expired(meta) else meta

    def _decode(self, name: str, payload: bytes) -> dict[str, Any]:
        try:
            meta = self.decode(payload)
        except Exception as exc:  # any decoder's error: the object is not ours to read
            raise CorruptResult(E_CORRUPT.format(name=name, bucket=self.settings.bucket, reason=exc)) from exc
        if not isinstance(meta, dict) or ("status" not in meta and "result" not in meta):
            reason = f"decoded to {type(meta).__name__}, not a result"
            raise CorruptResult(E_CORRUPT.format(name=name, bucket=self.settings.bucket, reason=reason))
        return meta

    # -- writes: one request per state ---------------------------------------

    def _store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
        meta["task_id"] = bytes_to_str(task_id)
        expires = self.failure_expires if state in states.EXCEPTION_STATES else self.expires
        expires_at = self._expiry(expires)
        meta[EXPIRES_FIELD] = _isoformat(expires_at)
        name = bytes_to_str(self.get_key_for_task(task_id))
        try:
            self._write_state(name, self.encode(meta), state, expires_at)
        except StoreError as exc:
            exc.state, exc.task_id = state, bytes_to_str(task_id)
            raise
        return result

    def _write_state(self, name: str, payload: bytes, state: str, expires_at: dt.datetime | None) -> None:
        generations = self._generations.get()
        expected = generations.pop(name, 0)
        for _ in range(_MAX_CONFLICTS):
            try:
                generation = self._put(name, payload, expires_at=expires_at, if_generation_match=expected)
            except GenerationMismatch:
                current = self.objects.get(name)
                if current is None:
                    expected = 0
                    continue
                if self._decode(name, current.data).get("status") == states.SUCCESS:
                    return  # a duplicate run never overwrites a success (Celery's rule)
                expected = current.generation
                continue
            if state not in states.READY_STATES:
                generations[name] = generation
                while len(generations) > _GENERATIONS_KEPT:
                    generations.popitem(last=False)
            return
        raise StoreError(f"could not store {name}: other writers kept replacing it")

    def _save_group(self, group_id: str, result: Any) -> Any:
        expires_at = self._expiry(self.expires)
        meta = {"result": result.as_tuple(), EXPIRES_FIELD: _isoformat(expires_at)}
        self._put(bytes_to_str(self.get_key_for_group(group_id)), self.encode(meta), expires_at=expires_at)
        return result

    def _put(
        self, name: str, payload: bytes, *, expires_at: dt.datetime | None, if_generation_match: int | None = None
    ) -> int:
        limit = self.settings.max_result_bytes
        if len(payload) > limit:
            task_id = name.rsplit("/", 1)[-1]
            raise ResultTooLarge(E_RESULT_TOO_LARGE.format(task_id=task_id, size=len(payload), limit=limit))
        return self.objects.put(name, payload, expires_at=expires_at, if_generation_match=if_generation_match)

    def _expiry(self, seconds: float | None) -> dt.datetime | None:
        """When a result written now expires: ``gcs_ttl`` if set, else ``seconds``."""
        ttl = self.settings.ttl or seconds
        if not ttl:
            return None
        return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=float(ttl))

    def close(self) -> None:
        self.objects.close()

    def __reduce__(self, args: tuple = (), kwargs: dict | None = None) -> tuple:
        return super().__reduce__(args, {**(kwargs or {}), "url": self.url})


def _isoformat(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _expired(meta: dict[str, Any]) -> bool:
    expires_at = meta.get(EXPIRES_FIELD)
    if not expires_at:
        return False
    try:
        when = dt.datetime.fromisoformat(expires_at)
    except (TypeError, ValueError):
        return False  # not ours to judge; the lifecycle rule still applies
    return when <= dt.datetime.now(dt.timezone.utc)
