"""The one classifier of retryable failures, and which calls are retried, for GCS, Firestore and Celery.

Used three ways: as the predicate of the retry policy on client calls, by
``GCSBackend.exception_safe_to_retry`` (so ``result_backend_always_retry``
retries the same failures), and by the chord code around Firestore.

Only failures that say nothing about the request itself are retryable; and
by kind of call, as google-cloud-storage's ``ConditionalRetryPolicy``
decides: a read is always retried; a write only when repeating it is
harmless, because it carries a precondition (a generation, a create-only
write, a document's update time) or is idempotent by construction (a
delete, a Firestore transaction run again from its start). Any other write
is made once (``for_write``): a retry after an answer lost on the way back
could overwrite what another writer stored in between.
"""

from __future__ import annotations

import functools
import http.client
import socket
import time
from dataclasses import dataclass

import requests
import urllib3.exceptions
from google.api_core import exceptions as api
from google.api_core.retry import Retry
from google.auth import exceptions as auth
from google.cloud.storage.exceptions import InvalidResponse

from ..errors import E_TIMED_OUT, TimedOut, TransientError

_RETRYABLE_TYPES: tuple[type[BaseException], ...] = (
    api.TooManyRequests,  # 429: rate limits, including Firestore's per-document limit
    api.InternalServerError,  # 500
    api.BadGateway,  # 502
    api.ServiceUnavailable,  # 503, and gRPC UNAVAILABLE
    api.GatewayTimeout,  # 504
    api.DeadlineExceeded,  # gRPC DEADLINE_EXCEEDED
    api.ResourceExhausted,  # gRPC RESOURCE_EXHAUSTED (quota, hot documents)
    api.Aborted,  # gRPC ABORTED: Firestore transaction contention
    api.RetryError,  # the client's own retry ran out; ours may start over
    requests.ConnectionError,  # resets, refused connections, DNS hiccups
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,  # body cut off mid-response
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.PoolError,
    urllib3.exceptions.TimeoutError,
    http.client.BadStatusLine,  # includes RemoteDisconnected
    http.client.IncompleteRead,
    http.client.ResponseNotReady,
    ConnectionError,  # ConnectionResetError, BrokenPipeError, ...
    socket.timeout,
    auth.TransportError,  # token refresh could not reach the metadata server
    TransientError,
)


#: HTTP statuses worth another try, wherever they surface.
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """True when the failure is transient and the same call may succeed later."""
    if isinstance(exc, _RETRYABLE_TYPES):
        return True
    # Uploads and downloads fail with the media layer's InvalidResponse, and a
    # 408 arrives as a plain ClientError: both are judged by their status.
    if isinstance(exc, InvalidResponse):
        return exc.response is not None and exc.response.status_code in _RETRYABLE_STATUS
    if isinstance(exc, api.GoogleAPICallError) and exc.code in _RETRYABLE_STATUS:
        return True
    # google-api-core wraps gRPC errors; the cause carries the real kind.
    cause = exc.__cause__
    return cause is not None and cause is not exc and isinstance(cause, _RETRYABLE_TYPES)


def policy(deadline: float) -> Retry:
    """Exponential backoff with jitter on retryable failures, up to ``deadline`` seconds."""
    return Retry(predicate=is_retryable, initial=0.1, maximum=5.0, multiplier=2.0, timeout=deadline)


def for_write(retry: Retry, *, safe_to_repeat: bool) -> Retry | None:
    """A write's retry: ``retry`` if it carries a precondition or is idempotent by construction, else none."""
    return retry if safe_to_repeat else None


@dataclass(frozen=True, slots=True)
class Limits:
    """One call's retry policy and per-attempt timeout, within the caller's deadline if it has one."""

    retry: Retry
    timeout: float
    #: The caller's deadline comes before ours: running out is the caller's timeout.
    caller_bound: bool = False

    def gave_up(self, what: str, exc: BaseException) -> TransientError:
        """The error for a call whose retries ran out: ``TimedOut`` when the caller's time did."""
        if self.caller_bound:
            return TimedOut(E_TIMED_OUT.format(what=what, reason=exc))
        return TransientError(f"{what}: {exc}")


def limits(retry_deadline: float, timeout: float, caller_deadline: float | None, *, what: str) -> Limits:
    """A call's limits: ``retry_deadline`` and ``timeout``, or the caller's remaining time if less.

    ``caller_deadline`` is ``deadline.current()``; a caller out of time gets
    ``TimedOut`` before any request is made.
    """
    if caller_deadline is None:
        return Limits(_policy(retry_deadline), timeout)
    left = caller_deadline - time.monotonic()
    if left <= 0:
        raise TimedOut(E_TIMED_OUT.format(what=what, reason="no time left before the request"))
    if left >= retry_deadline and left >= timeout:
        return Limits(_policy(retry_deadline), timeout)
    return Limits(policy(min(retry_deadline, left)), min(timeout, left), caller_bound=True)


@functools.lru_cache(maxsize=8)
def _policy(deadline: float) -> Retry:
    """``policy``, built once per deadline: the settings' one is used on every request."""
    return policy(deadline)
