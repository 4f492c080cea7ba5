"""The telemetry seam: what the runtime reports, and the observers that listen.

The stores report each call to Google (``request``), the chord coordinator
its steps (``step``) and events (``event``). Observers are registered by
``celery_gcs.telemetry.metrics`` (prometheus-client) and
``celery_gcs.telemetry.traces`` (OpenTelemetry) when a worker enables them;
the runtime itself imports neither library. With no observer, a report costs
one truth test.

Kinds, steps and events are named below; ``celery_gcs.telemetry.names`` maps them to metrics.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any, Protocol

#: Calls to Google, as the stores report them (``observe.request``).
GCS_READ, GCS_WRITE, GCS_DELETE, GCS_LIST = "gcs.read", "gcs.write", "gcs.delete", "gcs.list"
FIRESTORE_READ, FIRESTORE_COMMIT, FIRESTORE_TRANSACTION, FIRESTORE_QUERY = (
    "firestore.read", "firestore.commit", "firestore.transaction", "firestore.query",
)  # fmt: skip
REQUEST_KINDS = (
    GCS_READ, GCS_WRITE, GCS_DELETE, GCS_LIST, FIRESTORE_READ, FIRESTORE_COMMIT, FIRESTORE_TRANSACTION, FIRESTORE_QUERY,
)  # fmt: skip

#: A chord's steps (``observe.step``): spans in traces.
CHORD_APPLY, CHORD_COUNT, CHORD_SETTLE, CHORD_GATHER, CHORD_PUBLISH = (
    "chord.apply", "chord.count", "chord.settle", "chord.gather", "chord.publish",
)  # fmt: skip

#: A chord's events (``observe.event``).
CHORD_APPLIED = "chord.applied"
PART_COUNTED = "chord.part_counted"
CALLBACK_PUBLISHED = "chord.callback_published"
CHORD_FAILED = "chord.failed"
CLAIM_TAKEN, CLAIM_RENEWED, CLAIM_LOST = "chord.claim_taken", "chord.claim_renewed", "chord.claim_lost"
CHORD_EVENTS = (CHORD_APPLIED, PART_COUNTED, CALLBACK_PUBLISHED, CHORD_FAILED, CLAIM_TAKEN, CLAIM_RENEWED, CLAIM_LOST)

#: What a request or step ended with.
OK, REFUSED, ERROR = "ok", "refused", "error"


class Observer(Protocol):
    def start(self, kind: str) -> Any:
        """A call to Google (``gcs.read``...) or a chord step (``chord.count``...) starts; returns a token."""

    def end(self, token: Any, kind: str, outcome: str, seconds: float, error: BaseException | None) -> None:
        """It ended: ``outcome`` is OK, REFUSED (an answer the caller expects, e.g. a failed precondition) or ERROR."""

    def event(self, name: str) -> None:
        """Something happened once (``chord.part_counted``...)."""


_observers: list[Observer] = []
_NOTHING = nullcontext()


def add(observer: Observer) -> None:
    if observer not in _observers:
        _observers.append(observer)


def remove(observer: Observer) -> None:
    if observer in _observers:
        _observers.remove(observer)


def request(kind: str, refusals: tuple[type[BaseException], ...] = ()) -> AbstractContextManager[Any]:
    """Wraps one call to Google; an exception in ``refusals`` is an expected answer, not an error."""
    return _Timed(kind, refusals) if _observers else _NOTHING


def step(name: str) -> AbstractContextManager[Any]:
    """Wraps one step of a chord."""
    return _Timed(name, ()) if _observers else _NOTHING


def event(name: str) -> None:
    for observer in _observers:
        observer.event(name)


class _Timed:
    __slots__ = ("kind", "refusals", "started", "tokens")

    def __init__(self, kind: str, refusals: tuple[type[BaseException], ...]) -> None:
        self.kind, self.refusals = kind, refusals

    def __enter__(self) -> None:
        self.tokens = [(observer, observer.start(self.kind)) for observer in _observers]
        self.started = time.perf_counter()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        seconds = time.perf_counter() - self.started
        if error is None:
            outcome = OK
        elif isinstance(error, self.refusals):
            outcome = REFUSED
        else:
            outcome = ERROR
        for observer, token in reversed(self.tokens):
            observer.end(token, self.kind, outcome, seconds, error)
