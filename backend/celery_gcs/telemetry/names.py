"""Every metric the workers and the queue-length service export: the one source of their names.

``celery_gcs.telemetry.metrics`` builds its prometheus-client objects from
these, and the stack's dashboard and alert policies (``celery_gcs_infra.monitoring``)
build their queries from them, so a renamed metric cannot leave a dead chart.
docs/observability.md has the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..observe import (
    CALLBACK_PUBLISHED,
    CHORD_APPLIED,
    CHORD_FAILED,
    CLAIM_LOST,
    CLAIM_RENEWED,
    CLAIM_TAKEN,
    PART_COUNTED,
)


@dataclass(frozen=True)
class Metric:
    """One metric family as prometheus-client declares it (a counter without its ``_total``)."""

    name: str
    type: Literal["counter", "histogram", "gauge"]
    help: str
    labels: tuple[str, ...] = ()
    #: Who exports it: every worker, or the stack's one queue-length service.
    source: Literal["worker", "queue-length"] = "worker"

    @property
    def series(self) -> tuple[str, ...]:
        """The names its samples carry in the exposition format (what a query names)."""
        if self.type == "counter":
            return (f"{self.name}_total",)
        if self.type == "histogram":
            return tuple(f"{self.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        return (self.name,)

    def __str__(self) -> str:
        return self.series[0]


TASKS_RECEIVED = Metric("celery_tasks_received", "counter", "Tasks the worker took from the broker.", ("task",))
TASKS_STARTED = Metric("celery_tasks_started", "counter", "Tasks that started running.", ("task",))
TASKS_SUCCEEDED = Metric("celery_tasks_succeeded", "counter", "Tasks that returned.", ("task",))
TASKS_FAILED = Metric("celery_tasks_failed", "counter", "Tasks that raised.", ("task",))
TASKS_RETRIED = Metric("celery_tasks_retried", "counter", "Tasks that asked to be retried.", ("task",))
TASK_RUNTIME = Metric(
    "celery_task_runtime_seconds", "histogram", "Time from a task's start to its end, result stored.", ("task",)
)
BACKEND_REQUESTS = Metric(
    "celery_gcs_backend_requests",
    "counter",
    "Calls to GCS and Firestore by kind, and how they ended (ok, refused: an expected precondition "
    "failure or conflict; error).",
    ("kind", "outcome"),
)
BACKEND_LATENCY = Metric(
    "celery_gcs_backend_request_seconds", "histogram", "Time of each call to GCS or Firestore, retries included.", ("kind",)
)
BACKEND_ERRORS = Metric(
    "celery_gcs_backend_errors", "counter", "Calls to GCS and Firestore that failed, by kind and error.", ("kind", "error")
)
CHORDS_APPLIED = Metric("celery_gcs_chords_applied", "counter", "Chords whose counters were written.")
CHORD_PARTS_COUNTED = Metric("celery_gcs_chord_parts_counted", "counter", "Chord parts counted (each once).")
CHORD_CALLBACKS_PUBLISHED = Metric(
    "celery_gcs_chord_callbacks_published", "counter", "Chord callbacks published."
)
CHORDS_FAILED = Metric("celery_gcs_chords_failed", "counter", "Chords failed (their callback's errbacks called).")
CHORD_CLAIMS = Metric(
    "celery_gcs_chord_claims", "counter", "Chord callback claims taken, renewed and lost.", ("event",)
)
CHORDS_OPEN = Metric(
    "celery_gcs_chords_open", "gauge", "Chords applied and not ended, read from Firestore at each scrape."
)
CHORD_OLDEST_OPEN_AGE = Metric(
    "celery_gcs_chord_oldest_open_age_seconds",
    "gauge",
    "How long ago the oldest open chord was applied, in Firestore's time (0 when none is open).",
)
QUEUE_LENGTH = Metric(
    "celery_queue_length", "gauge", "Messages waiting in a queue, its priority lists included.", ("queue",),
    source="queue-length",
)  # fmt: skip
QUEUE_OLDEST_AGE = Metric(
    "celery_queue_oldest_message_age_seconds",
    "gauge",
    "How long the queue's oldest message has been waiting, as seen by the service's polls (0 when empty).",
    ("queue",),
    source="queue-length",
)

ALL: tuple[Metric, ...] = (
    TASKS_RECEIVED, TASKS_STARTED, TASKS_SUCCEEDED, TASKS_FAILED, TASKS_RETRIED, TASK_RUNTIME,
    BACKEND_REQUESTS, BACKEND_LATENCY, BACKEND_ERRORS,
    CHORDS_APPLIED, CHORD_PARTS_COUNTED, CHORD_CALLBACKS_PUBLISHED, CHORDS_FAILED, CHORD_CLAIMS,
    CHORDS_OPEN, CHORD_OLDEST_OPEN_AGE,
    QUEUE_LENGTH, QUEUE_OLDEST_AGE,
)  # fmt: skip

#: Every sample name a scrape may carry.
SERIES: frozenset[str] = frozenset(series for metric in ALL for series in metric.series)

#: The chord events each counter counts (CHORD_CLAIMS by its ``event`` label).
EVENT_METRICS: dict[str, tuple[Metric, dict[str, str]]] = {
    CHORD_APPLIED: (CHORDS_APPLIED, {}),
    PART_COUNTED: (CHORD_PARTS_COUNTED, {}),
    CALLBACK_PUBLISHED: (CHORD_CALLBACKS_PUBLISHED, {}),
    CHORD_FAILED: (CHORDS_FAILED, {}),
    CLAIM_TAKEN: (CHORD_CLAIMS, {"event": "taken"}),
    CLAIM_RENEWED: (CHORD_CLAIMS, {"event": "renewed"}),
    CLAIM_LOST: (CHORD_CLAIMS, {"event": "lost"}),
}

#: The module a worker includes to serve its metrics.
MODULE = "celery_gcs.telemetry.metrics"
#: The worker's metrics port, in the image and on the local stack.
DEFAULT_PORT = 9808
#: Where a worker reads its metrics settings.
PORT_ENV, ADDRESS_ENV = "CELERY_GCS_METRICS_PORT", "CELERY_GCS_METRICS_ADDRESS"
#: prometheus-client's multiprocess directory (prefork's children write there).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
