"""The caller's deadline: ``get(timeout=T)`` bounds every request made while it waits, retries included.

A request's own limits (``gcs_timeout`` per attempt, ``gcs_retry_deadline``
for its retries) suit a worker storing a result, not a client that said how
long it will wait: with GCS unreachable, one read would retry for two minutes
past a ``get(timeout=10)``. Waiting marks how long its caller has left;
the stores take the smaller of that and their own limits. A context variable
carries it, so the layers between (Celery's hooks, the stored results) need
not pass it along, and each thread or greenlet has its own. Pure: standard
library only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("celery_gcs_caller_deadline", default=None)


@contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Requests made inside finish, or give up, within ``seconds`` (None: no bound of the caller's).

    Nested, the nearer deadline wins.
    """
    if seconds is None:
        yield
        return
    ends = time.monotonic() + max(0.0, seconds)
    outer = _deadline.get()
    token = _deadline.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _deadline.reset(token)


def current() -> float | None:
    """When (``time.monotonic()``) the caller gives up, if it said; read it in the caller's thread."""
    return _deadline.get()
