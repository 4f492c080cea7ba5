"""A stored state: encoded, trimmed to fit, decoded and checked. Pure: no I/O.

The backend hands in Celery's codec (``encode``/``decode`` follow the app's
serializer and compression); what comes back is either bytes to store or a
decoded dict Celery can take, never a half-read object: anything else is a
:class:`~celery_gcs.errors.CorruptResult` naming the object and the bucket.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from celery import states

from .errors import E_CORRUPT, E_RESULT_TOO_LARGE, CorruptResult, ResultTooLarge

#: Field added to every stored meta: when the result expires (ISO 8601, UTC).
EXPIRES_FIELD = "expires_at"
#: What starts a failure's traceback that was cut to fit ``gcs_max_result_bytes``.
TRACEBACK_CUT = "[start of traceback cut to fit gcs_max_result_bytes]\n"

#: Custom metadata on each task result object, written in the same PUT, so a
#: listing of the bucket says what each result is without reading it.
META_STATE = "celery-state"
META_TASK = "celery-task"
META_DATE_DONE = "celery-date-done"
#: What a compressed result is stored as: never ``Content-Encoding: gzip``, which
#: would make GCS decompress it for readers that expect Celery's own bytes.
COMPRESSED_CONTENT_TYPE = "application/octet-stream"
# GCS allows 8 KiB of custom metadata per object; a task name longer than this is cut.
_MAX_TASK_NAME = 1024

Encode = Callable[[Any], bytes]
Decode = Callable[[bytes], Any]


def isoformat(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def expired(meta: Mapping[str, Any], now: dt.datetime | None = None) -> bool:
    """True when the meta's own expiry has passed; a meta without one never expires here."""
    expires_at = meta.get(EXPIRES_FIELD)
    if not expires_at:
        return False
    try:
        when = dt.datetime.fromisoformat(expires_at)
    except (TypeError, ValueError):
        return False  # not ours to judge; the lifecycle rule still applies
    return when <= (now or dt.datetime.now(dt.UTC))


def check_payload_size(name: str, payload: bytes, limit: int) -> None:
    if len(payload) > limit:
        raise ResultTooLarge(E_RESULT_TOO_LARGE.format(name=name, size=len(payload), limit=limit))


def encode_state(meta: dict[str, Any], state: str, *, encode: Encode, limit: int) -> bytes:
    """Encode a state; a failure over ``limit`` loses the start of its traceback, not its error.

    Otherwise a long traceback (deep recursion, a small gcs_max_result_bytes)
    would replace the task's real error with a ResultTooLarge about it.
    ``meta`` is changed in place when its traceback is cut.
    """
    payload = encode(meta)
    traceback = meta.get("traceback")
    if len(payload) <= limit or state not in states.EXCEPTION_STATES or not traceback:
        return payload
    meta["traceback"] = TRACEBACK_CUT
    bare = encode(meta)
    if len(bare) > limit:
        return bare  # too large even so: check_payload_size names it
    # Keep as much of the end as fits, guessing from the bytes per character so far.
    per_char = max(len(payload) - len(bare), 1) / len(traceback)
    keep = int((limit - len(bare)) / per_char)
    while keep > 0:
        meta["traceback"] = TRACEBACK_CUT + traceback[len(traceback) - keep :]
        payload = encode(meta)
        if len(payload) <= limit:
            return payload
        keep = keep * 9 // 10
    meta["traceback"] = TRACEBACK_CUT
    return bare


def corrupt(name: str, bucket: str, reason: object) -> CorruptResult:
    return CorruptResult(E_CORRUPT.format(name=name, bucket=bucket, reason=reason))


def decode(name: str, payload: bytes, *, decode: Decode, bucket: str) -> dict[str, Any]:
    """The stored meta, as a dict that looks like a result; CorruptResult if it is not one."""
    try:
        meta = decode(payload)
    except Exception as exc:  # any decoder's error: the object is not ours to read
        raise corrupt(name, bucket, exc) from exc
    if not isinstance(meta, dict) or ("status" not in meta and "result" not in meta):
        raise corrupt(name, bucket, f"decoded to {type(meta).__name__}, not a result")
    return meta


def task_state(
    name: str, meta: dict[str, Any], *, rebuild: Callable[[dict[str, Any]], dict[str, Any]], bucket: str
) -> dict[str, Any]:
    """A decoded task state, checked and rebuilt by Celery (``rebuild``); CorruptResult if it is not one.

    Only what Celery would trip over is checked: custom states (any string)
    are fine, as are fields this backend does not know.
    """
    problem = task_state_problem(meta)
    if problem is not None:
        raise corrupt(name, bucket, problem)
    try:
        return rebuild(meta)
    except Exception as exc:  # any shape Celery cannot rebuild
        raise corrupt(name, bucket, f"Celery cannot rebuild its result ({exc!r})") from exc


def task_state_problem(meta: Mapping[str, Any]) -> str | None:
    """What makes a decoded meta unusable as a task state, or None."""
    status, result, children = meta.get("status"), meta.get("result"), meta.get("children")
    if not isinstance(status, str):
        return f"its status is {status!r}, not a state"
    if "result" not in meta:
        return "it has no result"
    if status in states.EXCEPTION_STATES and not isinstance(result, dict | BaseException | None):
        return f"a {status} whose result is {type(result).__name__}, not an exception"
    if children is not None and not isinstance(children, list):
        return f"its children are {type(children).__name__}, not a list"
    return None


def object_metadata(meta: Mapping[str, Any], task_name: str | None) -> dict[str, str]:
    """The custom metadata of a task state's object: its state, task name and when it was done."""
    metadata = {META_STATE: str(meta.get("status"))}
    if task_name:
        metadata[META_TASK] = task_name[:_MAX_TASK_NAME]
    date_done = meta.get("date_done")
    if date_done:
        metadata[META_DATE_DONE] = date_done.isoformat() if isinstance(date_done, dt.datetime) else str(date_done)
    return metadata


def content_type(serializer_type: str, compressed: bool) -> str:
    """The Content-Type of a stored state: the serializer's, unless the bytes are compressed."""
    return COMPRESSED_CONTENT_TYPE if compressed else serializer_type
