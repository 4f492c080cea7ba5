"""The one map from google-api-core and google-auth exceptions to ``celery_gcs.errors``, for every store.

A store says where its calls go (a ``Place``: how to word a missing bucket or
database, a refusal, a failure that outlived its retries); the table below
says which of Google's exceptions is which, written once, as httpx's
``map_exceptions`` does for transport errors. The project's error is raised
``from`` Google's, so the cause stays in the traceback; an exception the
table does not name (a missing object, a conflict, a precondition) goes
through unchanged, for the store to handle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from google.api_core import exceptions as api
from google.auth import exceptions as auth

from ..errors import (
    E_NO_CREDENTIALS,
    AccessDenied,
    CeleryGCSError,
    ConfigurationError,
    TransientError,
)
from . import retry


class Place(Protocol):
    """Where a store's call went, in the words of its errors."""

    #: The service, as the credentials message names it ("Cloud Storage", "Firestore").
    service: str

    def missing(self, exc: api.NotFound) -> CeleryGCSError | None:
        """The error when the bucket or database itself is missing; None for a missing object or document."""

    def denied(self, exc: api.Forbidden) -> AccessDenied:
        """The refusal (HTTP 403, gRPC PERMISSION_DENIED), naming what was refused and the role to grant."""

    def transient(self, exc: BaseException) -> TransientError:
        """A transient failure that outlived its retries, or a call not to be retried that failed so."""


Translate = Callable[[Place, Any], BaseException | None]


def _no_credentials(place: Place, exc: auth.DefaultCredentialsError) -> ConfigurationError:
    return ConfigurationError(E_NO_CREDENTIALS.format(service=place.service, reason=exc))


#: Google's exception -> the project's, first match wins; None leaves Google's as it is.
TABLE: tuple[tuple[type[BaseException] | Callable[[BaseException], bool], Translate], ...] = (
    (auth.DefaultCredentialsError, _no_credentials),
    (api.NotFound, lambda place, exc: place.missing(exc)),
    (api.Forbidden, lambda place, exc: place.denied(exc)),  # api.PermissionDenied is one too
    (api.RetryError, lambda place, exc: place.transient(exc)),
    # A transient failure of a call made without retries (a write with no precondition).
    (retry.is_retryable, lambda place, exc: place.transient(exc)),
)


def translate(place: Place, exc: BaseException) -> BaseException | None:
    """The project's error for ``exc`` at ``place``, or None when ``exc`` is to go through as it is."""
    if isinstance(exc, CeleryGCSError):
        return None
    for kind, make in TABLE:
        matches = isinstance(exc, kind) if isinstance(kind, type) else kind(exc)
        if matches:
            return make(place, exc)
    return None


@contextmanager
def mapped(place: Place) -> Iterator[None]:
    """Raise the project's error for any of Google's the table names, ``from`` it."""
    try:
        yield
    except Exception as exc:
        error = translate(place, exc)
        if error is None:
            raise
        raise error from exc
