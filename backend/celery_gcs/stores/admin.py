"""A deployment's own settings as ``celery-gcs doctor`` reads them: the bucket, the caller's permissions, the database, its TTL policies, the caller.

The backend never needs these (it holds no admin role, and makes no admin
call); the doctor does, and like every call to Google they are made here.
A refusal the doctor judges by its kind comes out as one of the kinds below
(``Missing``, ``Denied``, ...), raised ``from`` Google's error and saying what
it says; anything else (an unreachable host, a retry that gave up) goes
through as Google raised it, and ``first_line`` words it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import google.auth
import google.auth.transport.requests
import grpc
from google.api_core import exceptions as api
from google.api_core.retry import Retry
from google.auth import impersonated_credentials
from google.cloud import firestore, firestore_admin_v1, storage
from google.cloud.firestore_admin_v1.services.firestore_admin.transports import (
    FirestoreAdminGrpcTransport,
)

#: The scope the doctor's credentials ask for.
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


class Refused(Exception):
    """Google refused a doctor's read for a reason the doctor judges by its kind; ``__cause__`` is Google's error."""


class Missing(Refused):
    """404 / NOT_FOUND: the bucket or database (or, for a database, the project's) does not exist."""


class Denied(Refused):
    """403 / PERMISSION_DENIED: the caller may not make that call."""


class WrongMode(Refused):
    """FAILED_PRECONDITION: the database cannot serve the call (a database in Datastore mode)."""


class NotOffered(Refused):
    """UNIMPLEMENTED: the API is not served there (the Firestore emulator's admin API)."""


#: Google's exception -> the kind of refusal, first match wins (api.PermissionDenied is a Forbidden).
KINDS: tuple[tuple[type[api.GoogleAPICallError], type[Refused]], ...] = (
    (api.NotFound, Missing),
    (api.Forbidden, Denied),
    (api.FailedPrecondition, WrongMode),
    (api.MethodNotImplemented, NotOffered),
)


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except api.GoogleAPICallError as exc:
        kind = next((kind for google, kind in KINDS if isinstance(exc, google)), None)
        if kind is None:
            raise
        raise kind(str(exc)) from exc


def first_line(exc: BaseException) -> str:
    """The first line of what an error says; a retry that gave up says what it last met."""
    prefix = ""
    if isinstance(exc, api.RetryError) and exc.cause is not None:
        prefix, exc = "gave up retrying: ", exc.cause
    text = str(exc).strip() or type(exc).__name__
    return prefix + text.splitlines()[0][:300]


def load_credentials(impersonate: str | None) -> Any:
    """Application Default Credentials, or a service account acting through them."""
    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
    if impersonate:
        credentials = impersonated_credentials.Credentials(
            source_credentials=credentials, target_principal=impersonate, target_scopes=[CLOUD_PLATFORM]
        )
    return credentials


def identity_of(credentials: Any, timeout: float) -> str | None:
    """The service account's email, or the user's, asking Google if need be; None if nobody says.

    Raises what refreshing the credentials or asking raises.
    """
    if isinstance(credentials, impersonated_credentials.Credentials):
        return f"{credentials.service_account_email} (impersonated)"
    email = getattr(credentials, "service_account_email", None)
    if email and email != "default":  # a GCE/GKE identity says "default" until refreshed
        return str(email)
    request = google.auth.transport.requests.Request()
    credentials.refresh(request)
    email = getattr(credentials, "service_account_email", None)
    if email and email != "default":
        return str(email)
    if getattr(credentials, "account", None):
        return str(credentials.account)
    # User credentials from `gcloud auth application-default login` carry the
    # userinfo.email scope: the token says whose it is.
    response = request(
        f"https://oauth2.googleapis.com/tokeninfo?access_token={credentials.token}", method="GET", timeout=timeout
    )
    found = json.loads(response.data or b"{}").get("email")
    return str(found) if found else None


class BucketReader:
    """A bucket's settings and the caller's permissions on it."""

    def __init__(self, client: storage.Client, *, timeout: float, retry: Retry) -> None:
        self._client, self._timeout, self._retry = client, timeout, retry

    @classmethod
    def connect(cls, project: str | None, credentials: Any, *, timeout: float, retry: Retry) -> BucketReader:
        """On GCS with ``credentials``, or (None) on the emulator ``STORAGE_EMULATOR_HOST`` names."""
        if credentials is None:
            return cls(storage.Client(project=project), timeout=timeout, retry=retry)
        return cls(storage.Client(project=project, credentials=credentials), timeout=timeout, retry=retry)

    def bucket(self, name: str) -> storage.Bucket:
        """The bucket with its settings (storage.buckets.get)."""
        with _refusals():
            return self._client.get_bucket(name, timeout=self._timeout, retry=self._retry)

    def permissions(self, name: str, wanted: Sequence[str]) -> set[str]:
        """Which of ``wanted`` the caller holds on the bucket (testIamPermissions)."""
        with _refusals():
            granted = self._client.bucket(name).test_iam_permissions(
                list(wanted), timeout=self._timeout, retry=self._retry
            )
        return set(granted)

    def close(self) -> None:
        self._client.close()


class DatabaseReader:
    """A Firestore database: one query on the chord collection."""

    def __init__(self, project: str | None, database: str, credentials: Any, *, timeout: float, retry: Retry) -> None:
        self._client = firestore.Client(project=project, database=database, credentials=credentials)
        self._timeout, self._retry = timeout, retry

    def query(self, collection: str) -> None:
        """Read at most one document of ``collection``: the database exists and answers."""
        with _refusals():
            self._client.collection(collection).limit(1).get(timeout=self._timeout, retry=self._retry)

    def close(self) -> None:
        self._client.close()


class TtlReader:
    """The TTL policies of a Firestore database, through the admin API."""

    def __init__(
        self, project: str | None, database: str, credentials: Any, *, emulator: str | None, timeout: float, retry: Retry
    ) -> None:
        self._database = f"projects/{project}/databases/{database}"
        self._timeout, self._retry = timeout, retry
        if emulator:
            # The admin client ignores FIRESTORE_EMULATOR_HOST; ask the emulator itself.
            transport = FirestoreAdminGrpcTransport(channel=grpc.insecure_channel(emulator))
            self._client = firestore_admin_v1.FirestoreAdminClient(transport=transport)
        else:
            self._client = firestore_admin_v1.FirestoreAdminClient(credentials=credentials)

    def state(self, group: str, field: str) -> str | None:
        """The state of the TTL policy on ``group``'s ``field`` (ACTIVE, CREATING, ...), None without one."""
        name = f"{self._database}/collectionGroups/{group}/fields/{field}"
        with _refusals():
            found = self._client.get_field(name=name, timeout=self._timeout, retry=self._retry)
        if "ttl_config" not in found:
            return None
        return firestore_admin_v1.Field.TtlConfig.State(found.ttl_config.state).name
