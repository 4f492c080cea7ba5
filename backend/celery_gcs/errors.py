"""Errors raised by celery-gcs.

Hierarchy::

    CeleryGCSError
    ├── ConfigurationError      a bad setting, or no credentials (also celery.exceptions.ImproperlyConfigured)
    │   ├── BucketNotFound          the configured bucket does not exist
    │   ├── DatabaseNotFound        the configured Firestore database does not exist
    │   └── AccessDenied            the worker's identity may not use the bucket or database
    ├── StoreError              (also celery.exceptions.BackendStoreError)
    │   └── ResultTooLarge          an encoded result is over gcs_max_result_bytes
    ├── CorruptResult           a stored object cannot be decoded
    └── TransientError          a retryable failure outlived its retry deadline
        └── TimedOut                ... or the caller's timeout (also celery.exceptions.TimeoutError)

google-api-core and google-auth errors are translated at the store boundary
and re-raised ``from`` the original, so the cause stays in the traceback.
"""

from celery.exceptions import BackendStoreError, ImproperlyConfigured
from celery.exceptions import TimeoutError as CeleryTimeoutError

from .conventions import WORKER_BUCKET_ROLE, WORKER_DATABASE_ROLE

E_BUCKET_MISSING = (
    "GCS bucket {bucket!r} does not exist (project {project}); create it, "
    "or fix the bucket in result_backend / gcs_bucket"
)
#: The project part of E_BUCKET_MISSING when neither gcs_project nor the environment names one.
E_NO_PROJECT = "none: neither gcs_project nor GOOGLE_CLOUD_PROJECT is set"
E_NO_CREDENTIALS = (
    "no Google credentials for {service} ({reason}); log in with "
    "`gcloud auth application-default login` (on GKE: Workload Identity), or, for the local "
    "emulators, set STORAGE_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST, "
    'as `eval "$(celery-gcs dev up)"` does'
)
E_DATABASE_MISSING = (
    "Firestore database {database!r} does not exist in project {project}; create it "
    "(see infra/ or `gcloud firestore databases create --database={database}`), "
    "or fix firestore_database / firestore_project"
)
E_BUCKET_DENIED = (
    "the worker's identity may not {action} gs://{bucket}/{name} ({reason}); check that "
    "result_backend / gcs_bucket names your results bucket, and that the identity has "
    f"{WORKER_BUCKET_ROLE} on it"
)
E_DATABASE_DENIED = (
    "the worker's identity may not use Firestore database {database!r} in project {project} "
    "({reason}); check firestore_project and firestore_database, and that the identity has "
    f"{WORKER_DATABASE_ROLE} on that database"
)
E_RESULT_TOO_LARGE = (
    "result {name} is {size:,} bytes encoded, over the {limit:,}-byte limit "
    "(gcs_max_result_bytes); store large payloads elsewhere and return a reference, "
    "or raise gcs_max_result_bytes"
)
E_CHORD_FIELD = (
    "chord document {path!r} in Firestore database {database!r}: field {field!r} is {value!r}, {problem}; "
    "it was edited by hand or written by something other than celery-gcs"
)
E_TIMED_OUT = "The operation timed out: {what} had no answer within the caller's timeout ({reason})"
E_CORRUPT = (
    "object {name!r} in bucket {bucket!r} is not a result Celery can decode ({reason}); "
    "it was not written by a Celery backend, or was truncated"
)


class CeleryGCSError(Exception):
    """Base class of every error raised by celery-gcs."""


class ConfigurationError(CeleryGCSError, ImproperlyConfigured):
    """A setting is missing, malformed or points at something that does not exist."""


class BucketNotFound(ConfigurationError):
    """The configured bucket does not exist."""


class DatabaseNotFound(ConfigurationError):
    """The configured Firestore database does not exist."""


class AccessDenied(ConfigurationError):
    """The worker's identity may not use the configured bucket or database (HTTP 403, PERMISSION_DENIED)."""


class StoreError(CeleryGCSError, BackendStoreError):
    """A result could not be stored."""


class ResultTooLarge(StoreError):
    """An encoded result is larger than ``gcs_max_result_bytes``."""


class CorruptResult(CeleryGCSError):
    """A stored object is not a result this backend can decode."""


class TransientError(CeleryGCSError):
    """A retryable failure (throttling, 5xx, reset) that outlived the retry deadline."""


class TimedOut(TransientError, CeleryTimeoutError):
    """The caller's timeout (``get(timeout=...)``) ran out before GCS answered: Celery's ``TimeoutError``."""
