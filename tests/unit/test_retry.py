"""One classifier decides what is retried, for the clients and for Celery."""

from __future__ import annotations

import time

import pytest
import requests
from celery_gcs import deadline
from celery_gcs.errors import CorruptResult, ResultTooLarge, TransientError
from celery_gcs.stores import retry
from google.api_core import exceptions as api
from google.cloud.storage.exceptions import InvalidResponse


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def test_transient_failures_are_retryable() -> None:
    transient = [
        api.TooManyRequests("slow down"),
        api.InternalServerError("oops"),
        api.BadGateway("bad gateway"),
        api.ServiceUnavailable("unavailable"),
        api.GatewayTimeout("timeout"),
        api.DeadlineExceeded("deadline"),
        api.Aborted("contention"),
        api.ResourceExhausted("quota"),
        api.from_http_status(408, "request timeout"),
        requests.ConnectionError("reset"),
        requests.Timeout("timeout"),
        ConnectionResetError(),
        InvalidResponse(_Response(503), "503"),
        TransientError("gave up for now"),
    ]
    assert [exc for exc in transient if not retry.is_retryable(exc)] == []


def test_permanent_failures_are_not_retryable() -> None:
    permanent = [
        api.NotFound("missing"),
        api.Forbidden("denied"),
        api.BadRequest("bad"),
        api.PreconditionFailed("changed"),
        api.Unauthorized("who"),
        InvalidResponse(_Response(404), "404"),
        ResultTooLarge("too big"),
        CorruptResult("garbage"),
        ValueError("a bug"),
    ]
    assert [exc for exc in permanent if retry.is_retryable(exc)] == []


def test_a_wrapped_transient_cause_is_retryable() -> None:
    try:
        try:
            raise ConnectionResetError()
        except ConnectionResetError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert retry.is_retryable(wrapped)


def test_policy_uses_the_classifier_and_the_deadline() -> None:
    policy = retry.policy(7.5)
    assert policy._predicate is retry.is_retryable
    assert policy._timeout == 7.5


def test_the_callers_remaining_time_bounds_a_calls_retries_and_timeout() -> None:
    from celery.exceptions import TimeoutError as CeleryTimeoutError
    from celery_gcs.errors import TimedOut

    own = retry.limits(120.0, 60.0, None, what="reading x")
    assert (own.timeout, own.retry.timeout, own.caller_bound) == (60.0, 120.0, False)
    with deadline.within(2.0):
        bounded = retry.limits(120.0, 60.0, deadline.current(), what="reading x")
        with deadline.within(30.0):  # nested: the nearer deadline wins
            assert deadline.current() == pytest.approx(time.monotonic() + 2.0, abs=0.5)
    assert bounded.caller_bound and bounded.timeout <= 2.0 and bounded.retry.timeout <= 2.0
    assert deadline.current() is None
    gave_up = bounded.gave_up("reading x", api.RetryError("Timeout of 2.0s exceeded", None))
    assert isinstance(gave_up, TimedOut) and isinstance(gave_up, CeleryTimeoutError)
    assert isinstance(gave_up, TransientError) and "reading x had no answer" in str(gave_up)
    assert type(own.gave_up("reading x", api.RetryError("Timeout", None))) is TransientError
    with pytest.raises(TimedOut) as caught:
        retry.limits(120.0, 60.0, time.monotonic() - 1, what="reading y")
    assert "reading y" in str(caught.value)
