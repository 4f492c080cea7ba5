"""GCS objects: get, put, delete, and many gets at once, one request each.

The only module that talks to Cloud Storage. It sizes the HTTP connection
pool to the thread pool, disables the client's background bucket look-ups,
turns google-api-core errors into ``celery_gcs.errors`` (through
``google_errors``' one table), and keeps every request within its caller's
deadline (``deadline.within``). Reads and deletes are retried; a write only
with a generation precondition, or when its caller says it is idempotent
(``retry.for_write``).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import requests
import requests.adapters
import requests.utils
from google.api_core import exceptions as api
from google.auth import environment_vars
from google.cloud import storage

from .. import deadline, observe
from ..errors import (
    E_BUCKET_DENIED,
    E_BUCKET_MISSING,
    E_NO_PROJECT,
    AccessDenied,
    BucketNotFound,
    CeleryGCSError,
    TransientError,
)
from ..observe import GCS_DELETE, GCS_LIST, GCS_READ, GCS_WRITE
from ..perprocess import PerProcess
from ..settings import Settings
from . import google_errors, retry

T = TypeVar("T")


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
#: The object a worker's warm-up looks for, and never finds (``warm_up``).
WARM_UP_OBJECT = "celery-gcs-warm-up"


class ResultStore:
    """The bucket of one backend. No I/O until the first call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = PerProcess(self._new_client, lambda client: client.close())
        self._pool = PerProcess(self._new_pool, lambda pool: pool.shutdown(wait=False))

    def _new_client(self) -> storage.Client:
        with google_errors.mapped(_Bucket(self, "connect to", "")):
            return new_client(self.settings)

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.settings.threadpool_maxsize, thread_name_prefix="celery-gcs")

    def _blob(self, name: str) -> storage.Blob:
        bucket = self._client.get().bucket(self.settings.bucket)
        return bucket.blob(self.settings.object_name(name))

    def limits(self, caller: float | None, what: str) -> retry.Limits:
        """A call's retry and timeout: the settings', within the caller's deadline (``deadline.current()``)."""
        return retry.limits(self.settings.retry_deadline, self.settings.timeout, caller, what=what)

    def get(self, name: str) -> StoredObject | None:
        return self._get(name, deadline.current())

    def _get(self, name: str, caller: float | None) -> StoredObject | None:
        blob = self._blob(name)
        where = _Bucket(self, "read", blob.name, caller=caller)
        try:
            with google_errors.mapped(where), observe.request(GCS_READ, _REFUSALS):
                data = blob.download_as_bytes(retry=where.limits.retry, timeout=where.limits.timeout)
        except api.NotFound:
            return None  # the object (a missing bucket was raised as BucketNotFound)
        return StoredObject(data, int(blob.generation or 0))

    def get_many(self, names: Sequence[str]) -> list[StoredObject | None]:
        caller = deadline.current()  # the pool's threads do not see the caller's context
        if len(names) <= 1:
            return [self._get(name, caller) for name in names]
        return list(self._pool.get().map(partial(self._get, caller=caller), names))

    def each(self, work: Callable[[str], T], names: Sequence[str]) -> list[T]:
        """``work(name)`` for every name, as many at once as ``get_many`` reads (``gcs_threadpool_maxsize``); what each returned.

        For work of a request or two per object over many objects (a chord's
        refresh: a read and a write each), which one after another takes
        minutes at 20,000. Each runs in a copy of the caller's context (its
        deadline); the first error is raised once every one has ended.
        """
        pool = self._pool.get()
        running = [pool.submit(contextvars.copy_context().run, work, name) for name in names]
        wait(running)
        return [done.result() for done in running]

    def warm_up(self) -> None:
        """Build this process's client and open a connection now, fetching its token: one metadata read.

        Of an object never there (a 404), so a worker's first task finds them ready.
        """
        blob = self._blob(WARM_UP_OBJECT)
        where = _Bucket(self, "read", blob.name, caller=deadline.current())
        with google_errors.mapped(where), observe.request(GCS_READ, _REFUSALS):
            blob.exists(retry=where.limits.retry, timeout=where.limits.timeout)

    def put(
        self,
        name: str,
        data: bytes,
        *,
        expires_at: dt.datetime | None,
        if_generation_match: int | None = None,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> int:
        """Write one object in one request; return its new generation.

        ``if_generation_match=0`` creates only; any other number replaces only
        that generation. Either makes the write safe to retry; without one it
        is retried only if the caller says repeating it is harmless
        (``idempotent``), else made once.
        """
        blob = self._blob(name)
        blob.custom_time = expires_at
        blob.metadata = dict(metadata) if metadata else None
        safe = if_generation_match is not None or idempotent
        where = _Bucket(self, "write", blob.name, caller=deadline.current(), any_404_is_the_bucket=True)
        try:
            with google_errors.mapped(where), observe.request(GCS_WRITE, _REFUSALS):
                blob.upload_from_string(
                    data,
                    content_type=content_type,
                    if_generation_match=if_generation_match,
                    retry=retry.for_write(where.limits.retry, safe_to_repeat=safe),
                    timeout=where.limits.timeout,
                )
        except api.PreconditionFailed as exc:
            raise GenerationMismatch(name) from exc
        return int(blob.generation or 0)

    def delete(self, name: str) -> None:
        """Delete in one request; a missing object is already deleted."""
        self.remove(name)

    def remove(self, name: str) -> bool:
        """Delete in one request (retried: idempotent); False when there was nothing to delete."""
        return self._remove(name, deadline.current())

    def _remove(self, name: str, caller: float | None) -> bool:
        blob = self._blob(name)
        where = _Bucket(self, "delete", blob.name, caller=caller)
        try:
            with google_errors.mapped(where), observe.request(GCS_DELETE, _REFUSALS):
                blob.delete(retry=where.limits.retry, timeout=where.limits.timeout)
        except api.NotFound:
            return False  # the object (a missing bucket was raised as BucketNotFound)
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
        base = self.settings.object_name("")
        where = _Bucket(self, "list", base + prefix, caller=deadline.current(), any_404_is_the_bucket=True)
        pages = self._client.get().list_blobs(
            self.settings.bucket,
            prefix=base + prefix,
            page_size=LIST_PAGE,
            retry=where.limits.retry,
            timeout=where.limits.timeout,
        )
        with google_errors.mapped(where):
            for page in _observed_pages(pages.pages):
                for blob in page:
                    yield Listed(
                        blob.name[len(base) :], blob.metadata or {}, blob.updated, int(blob.size or 0), blob.custom_time
                    )

    def close(self) -> None:
        self._pool.clear()
        self._client.clear()

    def project_used(self) -> str:
        """The client's project and where it came from, for messages."""
        project = self._client.get().project
        if not project:
            return E_NO_PROJECT
        source = self.settings.sources.get("gcs_project") if self.settings.project else None
        return f"{project}, from {source or environment_vars.PROJECT}"


def _observed_pages(pages: Iterator[Any]) -> Iterator[Any]:
    """Each page of a listing, its request reported (the iterator sends one as each page is asked for)."""
    while True:
        with observe.request(GCS_LIST):
            page = next(pages, None)
        if page is None:
            return
        yield page


def new_client(settings: Settings, *, environment_once: bool = True) -> storage.Client:
    """A storage client as ``ResultStore`` uses it (``environment_once=False``: requests' environment look-ups left on)."""
    # An explicit project=None would stop the client reading GOOGLE_CLOUD_PROJECT.
    client = without_bucket_reads(storage.Client(project=settings.project or _environment_project()))
    # One connection per pool thread, for https and for http:// emulators;
    # retries are ours (retry.policy), not urllib3's.
    size = settings.threadpool_maxsize
    adapter = requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size, max_retries=0)
    for scheme in ("https://", "http://"):
        client._http.mount(scheme, adapter)
    if environment_once:
        read_environment_once(client._http, client.api_endpoint)
    return client


def without_bucket_reads(client: storage.Client) -> storage.Client:
    """``client``, making only the requests its callers ask for: no bucket GET of its own.

    google-cloud-storage 3.x fetches bucket metadata in a background
    thread for its tracing attributes: a bucket GET on first use and
    another after every 404, i.e. after every read of a pending result.
    Those requests cost money and need storage.buckets.get, which the
    worker's least-privilege role does not grant.
    """
    client._bucket_metadata_cache = None
    return client


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


#: How a failure's message says what was being done.
_GERUNDS = {"read": "reading", "write": "writing", "delete": "deleting", "list": "listing"}


class _Bucket:
    """Where a call on the bucket went, and its limits, in the words of its errors (``google_errors.Place``)."""

    service = "Cloud Storage"

    def __init__(
        self,
        store: ResultStore,
        action: str,
        name: str,
        *,
        caller: float | None = None,
        any_404_is_the_bucket: bool = False,
    ) -> None:
        self._store, self._bucket, self._action, self._name = store, store.settings.bucket, action, name
        self.what = f"{_GERUNDS.get(action, action)} gs://{self._bucket}/{name}"
        self.limits = store.limits(caller, self.what) if action in _GERUNDS else None
        # An upload or a listing has no object to miss: its 404 is the bucket's.
        self._any_404_is_the_bucket = any_404_is_the_bucket

    def missing(self, exc: api.NotFound) -> CeleryGCSError | None:
        if not (self._any_404_is_the_bucket or _bucket_missing(exc)):
            return None
        return BucketNotFound(E_BUCKET_MISSING.format(bucket=self._bucket, project=self._store.project_used()))

    def denied(self, exc: api.Forbidden) -> AccessDenied:
        reason = exc.message
        return AccessDenied(E_BUCKET_DENIED.format(action=self._action, bucket=self._bucket, name=self._name, reason=reason))

    def transient(self, exc: BaseException) -> TransientError:
        """Gave up (``TimedOut`` when the caller's time ran out first)."""
        if self.limits is None:
            return TransientError(f"{self.what}: {exc}")
        return self.limits.gave_up(self.what, exc)


def _environment_project() -> str | None:
    return os.environ.get(environment_vars.PROJECT) or os.environ.get(environment_vars.LEGACY_PROJECT)


def _bucket_missing(exc: api.NotFound) -> bool:
    # GCS answers 404 for a missing object and for a missing bucket alike;
    # only the message tells them apart.
    return "bucket does not exist" in str(exc.message).lower()
