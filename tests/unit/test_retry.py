"""One classifier decides what is retried, for the clients and for Celery."""

from __future__ import annotations

import requests
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
