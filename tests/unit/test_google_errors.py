"""stores/google_errors.py: the one table from Google's exceptions to the project's, on a fake place."""

from __future__ import annotations

import pytest
from celery_gcs.errors import (
    AccessDenied,
    CeleryGCSError,
    ConfigurationError,
    DatabaseNotFound,
    TransientError,
)
from celery_gcs.stores import google_errors
from google.api_core import exceptions as api
from google.auth import exceptions as auth


class Place:
    """A store's words for its errors; its container is missing when a 404 says "database"."""

    service = "Testing"

    def missing(self, exc: api.NotFound) -> CeleryGCSError | None:
        return DatabaseNotFound("no database") if "database" in str(exc) else None

    def denied(self, exc: api.Forbidden) -> AccessDenied:
        return AccessDenied(f"denied: {exc.message}")

    def transient(self, exc: BaseException) -> TransientError:
        return TransientError(f"gave up: {exc}")


@pytest.mark.parametrize(
    ("google", "expected"),
    [
        (auth.DefaultCredentialsError("no ADC"), ConfigurationError),
        (api.NotFound("database does not exist"), DatabaseNotFound),
        (api.Forbidden("403"), AccessDenied),
        (api.PermissionDenied("PERMISSION_DENIED"), AccessDenied),
        (api.RetryError("deadline", cause=api.ServiceUnavailable("503")), TransientError),
        (api.ServiceUnavailable("503, made once"), TransientError),
        (ConnectionResetError("reset"), TransientError),
    ],
)
def test_the_table_names_the_projects_error(google: BaseException, expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught, google_errors.mapped(Place()):
        raise google
    assert caught.value.__cause__ is google


@pytest.mark.parametrize(
    "google",
    [api.NotFound("No such object"), api.Conflict("exists"), api.PreconditionFailed("412"), api.BadRequest("400")],
)
def test_what_the_table_does_not_name_goes_through_for_the_store(google: BaseException) -> None:
    with pytest.raises(type(google)) as caught, google_errors.mapped(Place()):
        raise google
    assert caught.value is google


def test_the_credentials_message_names_the_service() -> None:
    error = google_errors.translate(Place(), auth.DefaultCredentialsError("no ADC"))
    assert error is not None and "no Google credentials for Testing (no ADC)" in str(error)


def test_the_projects_own_errors_go_through() -> None:
    error = TransientError("already ours")
    assert google_errors.translate(Place(), error) is None
