"""GCS objects: get, put, delete, and many gets at once, one request each.

The only module that talks to Cloud Storage. It sizes the HTTP connection
pool to the thread pool, disables the client's background bucket look-ups,
turns google-api-core errors into ``celery_gcs.errors``, and keeps every
request within its caller's deadline (``deadline.within``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import requests
import requests.adapters
import requests.utils
from google.api_core import exceptions as api
from google.auth import environment_vars
from google.auth import exceptions as auth
from google.cloud import storage

from .. import deadline, observe, retry
from ..errors import (
    E_BUCKET_DENIED,
    E_BUCKET_MISSING,
    E_NO_CREDENTIALS,
    E_NO_PROJECT,
    AccessDenied,
    BucketNotFound,
    ConfigurationError,
)
from ..observe import GCS_DELETE, GCS_LIST, GCS_READ, GCS_WRITE
from ..perprocess import PerProcess
from ..settings import Settings


class GenerationMismatch(Exception):
    """A precondition on the object's generation did not hold."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    data: bytes
    generation: int


@dataclass(frozen=True, slots=True)
class Listed:
    """An object as a listing shows it: no read of its content."""

    name: str  # without the base path
    metadata: Mapping[str, str]
    updated: dt.datetime | None
    size: int
    #: When the object expires (the backend sets its custom time to that), if it does.
    custom_time: dt.datetime | None = None


#: Answers a caller expects, reported as refused rather than failed: a missing object, a generation that moved.
_REFUSALS = (api.NotFound, api.PreconditionFailed)

#: Objects per listing request: GCS's largest page.
LIST_PAGE = 1000


class ResultStore:
    """The bucket of one backend. No I/O until the first call."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client = PerProcess(self._new_client, lambda client: client.close())
        self._pool = PerProcess(self._new_pool, lambda pool: pool.shutdown(wait=False))

    def _new_client(self) -> storage.Client:
        try:
            # An explicit project=None would stop the client reading GOOGLE_CLOUD_PROJECT.
            client = storage.Client(project=self._settings.project or _environment_project())
        except auth.DefaultCredentialsError as exc:
            raise ConfigurationError(E_NO_CREDENTIALS.format(service="Cloud Storage", reason=exc)) from exc
        # google-cloud-storage 3.x fetches bucket metadata in a background
        # thread for its tracing attributes: a bucket GET on first use and
        # another after every 404, i.e. after every read of a pending result.
        # Those requests cost money and need storage.buckets.get, which the
        # worker's least-privilege role does not grant.
        client._bucket_metadata_cache = None
        # One connection per pool thread, for https and for http:// emulators;
        # retries are ours (retry.policy), not urllib3's.
        size = self._settings.threadpool_maxsize
        adapter = requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size, max_retries=0)
        for scheme in ("https://", "http://"):
            client._http.mount(scheme, adapter)
        read_environment_once(client._http, client.api_endpoint)
        return client

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self._settings.threadpool_maxsize, thread_name_prefix="celery-gcs")

    def _blob(self, name: str) -> storage.Blob:
        bucket = self._client.get().bucket(self._settings.bucket)
        return bucket.blob(self._settings.object_name(name))

    def _limits(self, caller: float | None, what: str) -> retry.Limits:
        return retry.limits(self._settings.retry_deadline, self._settings.timeout, caller, what=what)

    def _where(self, blob_name: str) -> str:
        return f"gs://{self._settings.bucket}/{blob_name}"

    def get(self, name: str) -> StoredObject | None:
        return self._get(name, deadline.current())

    def _get(self, name: str, caller: float | None) -> StoredObject | None:
        blob = self._blob(name)
        what = f"reading {self._where(blob.name)}"
        limits = self._limits(caller, what)
        try:
            with observe.request(GCS_READ, _REFUSALS):
                data = blob.download_as_bytes(retry=limits.retry, timeout=limits.timeout)
        except api.NotFound as exc:
            if _bucket_missing(exc):
                raise self._bucket_not_found() from exc
            return None
        except api.Forbidden as exc:
            raise self._denied("read", blob.name, exc) from exc
        except api.RetryError as exc:
            raise limits.gave_up(what, exc) from exc
        return StoredObject(data, int(blob.generation or 0))

    def get_many(self, names: Sequence[str]) -> list[StoredObject | None]:
        caller = deadline.current()  # the pool's threads do not see the caller's context
        if len(names) <= 1:
            return [self._get(name, caller) for name in names]
        return list(self._pool.get().map(partial(self._get, caller=caller), names))

    def put(
        self,
        name: str,
        data: bytes,
        *,
        expires_at: dt.datetime | None,
        if_generation_match: int | None = None,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """Write one object in one request; return its new generation.

        ``if_generation_match=0`` creates only; any other number replaces only
        that generation. Either makes the write safe to retry.
        """
        blob = self._blob(name)
        blob.custom_time = expires_at
        blob.metadata = dict(metadata) if metadata else None
        what = f"writing {self._where(blob.name)}"
        limits = self._limits(deadline.current(), what)
        try:
            with observe.request(GCS_WRITE, _REFUSALS):
                blob.upload_from_string(
                    data,
                    content_type=content_type,
                    if_generation_match=if_generation_match,
                    retry=limits.retry,
                    timeout=limits.timeout,
                )
        except api.PreconditionFailed as exc:
            raise GenerationMismatch(name) from exc
        except api.NotFound as exc:
            raise self._bucket_not_found() from exc
        except api.Forbidden as exc:
            raise self._denied("write", blob.name, exc) from exc
        except api.RetryError as exc:
            raise limits.gave_up(what, exc) from exc
        return int(blob.generation or 0)

    def delete(self, name: str) -> None:
        """Delete in one request; a missing object is already deleted."""
        self.remove(name)

    def remove(self, name: str) -> bool:
        """Delete in one request; False when there was nothing to delete."""
        return self._remove(name, deadline.current())

    def _remove(self, name: str, caller: float | None) -> bool:
        blob = self._blob(name)
        what = f"deleting {self._where(blob.name)}"
        limits = self._limits(caller, what)
        try:
            with observe.request(GCS_DELETE, _REFUSALS):
                blob.delete(retry=limits.retry, timeout=limits.timeout)
        except api.NotFound as exc:
            if _bucket_missing(exc):
                raise self._bucket_not_found() from exc
            return False
        except api.Forbidden as exc:
            raise self._denied("delete", blob.name, exc) from exc
        except api.RetryError as exc:
            raise limits.gave_up(what, exc) from exc
        return True

    def remove_many(self, names: Sequence[str]) -> list[bool]:
        """``remove`` each, in parallel on the pool: one request per object."""
        caller = deadline.current()
        if len(names) <= 1:
            return [self._remove(name, caller) for name in names]
        return list(self._pool.get().map(partial(self._remove, caller=caller), names))

    def list(self, prefix: str = "") -> Iterator[Listed]:
        """Objects whose names start with ``prefix`` (under the base path), in name order.

        One request per page of 1,000, each object with its custom metadata:
        nothing is read or downloaded.
        """
        base = self._settings.object_name("")
        what = f"listing {self._where(base + prefix)}"
        limits = self._limits(deadline.current(), what)
        pages = self._client.get().list_blobs(
            self._settings.bucket,
            prefix=base + prefix,
            page_size=LIST_PAGE,
            retry=limits.retry,
            timeout=limits.timeout,
        )
        try:
            for page in _observed_pages(pages.pages):
                for blob in page:
                    yield Listed(
                        blob.name[len(base) :], blob.metadata or {}, blob.updated, int(blob.size or 0), blob.custom_time
                    )
        except api.NotFound as exc:
            raise self._bucket_not_found() from exc
        except api.Forbidden as exc:
            raise self._denied("list", base + prefix, exc) from exc
        except api.RetryError as exc:
            raise limits.gave_up(what, exc) from exc

    def close(self) -> None:
        self._pool.clear()
        self._client.clear()

    def _denied(self, action: str, name: str, exc: api.Forbidden) -> AccessDenied:
        return AccessDenied(
            E_BUCKET_DENIED.format(action=action, bucket=self._settings.bucket, name=name, reason=exc.message)
        )

    def _bucket_not_found(self) -> BucketNotFound:
        return BucketNotFound(E_BUCKET_MISSING.format(bucket=self._settings.bucket, project=self._project_used()))

    def _project_used(self) -> str:
        """The client's project and where it came from, for messages."""
        project = self._client.get().project
        if not project:
            return E_NO_PROJECT
        source = self._settings.sources.get("gcs_project") if self._settings.project else None
        return f"{project}, from {source or environment_vars.PROJECT}"


def _observed_pages(pages: Iterator[Any]) -> Iterator[Any]:
    """Each page of a listing, its request reported (the iterator sends one as each page is asked for)."""
    while True:
        with observe.request(GCS_LIST):
            page = next(pages, None)
        if page is None:
            return
        yield page


def read_environment_once(session: requests.Session, endpoint: str) -> None:
    """Settle what requests would read from the environment on every request, now.

    A session that trusts the environment looks up the proxy variables for
    each request, which walks all of ``os.environ`` twice (a third of a GET's
    or PUT's CPU in this process, more under Kubernetes' service variables),
    and ``~/.netrc`` three times. Every request of this client goes to
    ``endpoint``, so one look-up gives the same proxies; the CA bundle
    variables are read once too. A ``.netrc`` entry is no longer applied:
    requests would have put its basic auth over the bearer token.
    """
    session.proxies.update(requests.utils.get_environ_proxies(endpoint))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


def _environment_project() -> str | None:
    return os.environ.get(environment_vars.PROJECT) or os.environ.get(environment_vars.LEGACY_PROJECT)


def _bucket_missing(exc: api.NotFound) -> bool:
    # GCS answers 404 for a missing object and for a missing bucket alike;
    # only the message tells them apart.
    return "bucket does not exist" in str(exc.message).lower()
