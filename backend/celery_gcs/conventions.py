"""What the backend, the Pulumi components and ``celery-gcs doctor`` agree on.

Names (URL scheme, collections, key prefixes), numbers (lifecycle days,
default expiry and limits), the bucket's lifecycle rules and the worker's IAM
roles: the backend writes by them, infra provisions by them, doctor checks
by them, so a deployment always matches what the backend does; and the
backend's URL, built here for all of them (``backend_url``). This module
imports nothing but the standard library, so the Pulumi program can load it
cheaply.
"""

import urllib.parse
from typing import Final

#: URL scheme registered through the ``celery.result_backends`` entry point.
URL_SCHEME: Final = "gcs"


def backend_url(bucket: str, base_path: str = "", **settings: str | None) -> str:
    """The ``gcs://BUCKET[/BASE_PATH][?SETTING=VALUE&...]`` URL the backend reads (``result_backend``).

    The one builder of it, for infra, the worker image's env check and the
    CLI; ``settings.parse`` reads it back. ``settings`` are the backend's own
    keys (``gcs_project``, ``firestore_database``, ...); empty ones are left
    out, and ``(default)`` stays readable.
    """
    path = f"/{base_path.strip('/')}" if base_path.strip("/") else ""
    query = urllib.parse.urlencode({key: value for key, value in settings.items() if value}, safe="()")
    return f"{URL_SCHEME}://{bucket}{path}" + (f"?{query}" if query else "")

#: Firestore database used for chord counters when none is configured.
FIRESTORE_DATABASE: Final = "(default)"

#: Firestore collection (and so TTL collection group) holding chord documents.
#: Named for this backend: a shared database may hold other applications'
#: ``celery`` or ``parts`` (the built-in ``gs://`` backend writes
#: ``celery/chord-unlock-*``), and a TTL policy covers a whole collection group.
FIRESTORE_COLLECTION: Final = "celery_gcs_chords"

#: Subcollection of each chord document holding one document per counted part.
FIRESTORE_PARTS_COLLECTION: Final = "celery_gcs_chord_parts"

#: Subcollection of each chord document holding its counters (chords.py).
FIRESTORE_COUNTERS_COLLECTION: Final = "celery_gcs_chord_counters"

#: Timestamp field on every chord document; the Firestore TTL policy is on it.
FIRESTORE_TTL_FIELD: Final = "expires_at"


def chord_collection_groups(collection: str = FIRESTORE_COLLECTION) -> tuple[str, ...]:
    """Every collection group the backend writes chord documents to; each needs a TTL policy.

    ``collection`` is the backend's ``firestore_collection``.
    """
    return tuple(dict.fromkeys((collection, FIRESTORE_PARTS_COLLECTION, FIRESTORE_COUNTERS_COLLECTION)))

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

#: Worker threads (and HTTP connections) for multi-key reads: a chord callback's gather,
#: get_many and join_native. Celery's gs:// uses 10: at a 20 ms read that is 500 results a
#: second; 32 in flight reach about 1,600, where the client's own CPU per read (about
#: 0.7 ms) becomes the limit, so more would add connections and no speed.
THREADPOOL_MAXSIZE: Final = 32


def lifecycle_rules(max_age_days: int = LIFECYCLE_MAX_AGE_DAYS) -> list[dict[str, object]]:
    """The bucket's lifecycle rules, in the JSON API's shape.

    Delete a result once its custom time (its expiry) has passed; delete
    anything after ``max_age_days`` as a backstop (longer than results live).
    """
    return [
        {
            "action": {"type": "Delete"},
            "condition": {"daysSinceCustomTime": LIFECYCLE_DAYS_SINCE_CUSTOM_TIME},
        },
        {"action": {"type": "Delete"}, "condition": {"age": max_age_days}},
    ]


#: The worker's role on the result bucket: read, write, list and delete
#: objects; nothing on the bucket's own settings or IAM.
WORKER_BUCKET_ROLE: Final = "roles/storage.objectUser"
#: What the worker does with objects, all in WORKER_BUCKET_ROLE.
WORKER_BUCKET_PERMISSIONS: Final = ("storage.objects.create", "storage.objects.get", "storage.objects.delete")
#: The worker's role on Firestore, conditioned to the one database.
WORKER_DATABASE_ROLE: Final = "roles/datastore.user"
