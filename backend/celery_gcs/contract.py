"""Names and numbers that the backend and the Pulumi program must agree on.

Both `celery_gcs.settings` and `infra/` import from here, so a deployment's
bucket lifecycle rules and Firestore TTL policy always match what the backend
writes. This module imports nothing, so the Pulumi program can load it cheaply.
"""

from typing import Final

#: URL scheme registered through the ``celery.result_backends`` entry point.
URL_SCHEME: Final = "gcs"

#: Firestore database used for chord counters when none is configured.
FIRESTORE_DATABASE: Final = "(default)"

#: Firestore collection (and so TTL collection group) holding chord documents.
FIRESTORE_COLLECTION: Final = "celery"

#: Timestamp field on every chord document; the Firestore TTL policy is on it.
FIRESTORE_TTL_FIELD: Final = "expires_at"

#: Object key prefixes, as Celery's KeyValueStoreBackend writes them. Our key
#: layout is the built-in ``gs://`` backend's: ``[base_path/]<prefix><id>``.
TASK_KEY_PREFIX: Final = "celery-task-meta-"
GROUP_KEY_PREFIX: Final = "celery-taskset-meta-"
CHORD_KEY_PREFIX: Final = "chord-unlock-"

#: The bucket lifecycle deletes a result once its custom time (set by the
#: backend to the moment the result expires) has passed by this many days.
LIFECYCLE_DAYS_SINCE_CUSTOM_TIME: Final = 0

#: Backstop: objects older than this are deleted even without a custom time
#: (results written with ``result_expires=None``, or by other tools).
LIFECYCLE_MAX_AGE_DAYS: Final = 30

#: Celery's default ``result_expires``: one day.
RESULT_EXPIRES_SECONDS: Final = 86_400

#: Largest encoded result the backend stores, unless configured otherwise.
MAX_RESULT_BYTES: Final = 32 * 1024 * 1024

#: Worker threads (and HTTP connections) for multi-key reads.
THREADPOOL_MAXSIZE: Final = 10
