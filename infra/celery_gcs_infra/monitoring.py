"""``Monitoring``: the workers scraped, a dashboard and alert policies, built from the metrics' own names.

Google Cloud Managed Service for Prometheus scrapes the workers (and the
queue-length service, where the stack runs one) through ``PodMonitoring``
objects; GKE Autopilot runs its collectors (namespace ``gmp-system``), and the
pods' NetworkPolicies admit them on the metrics port (``network_policy.scrape_ingress``).
The dashboard and the alert policies query the scraped metrics in PromQL, every
metric named from ``celery_gcs.telemetry.names``, the list the worker exports
from: a metric renamed there renames every chart and alert, and
tests/infra checks that no query names anything else.

Thresholds and notification channels are stack config keys (``alert*``);
``monitoring: false`` turns all of it off.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
from celery_gcs.telemetry import names
from celery_gcs.telemetry.names import (
    BACKEND_ERRORS,
    BACKEND_LATENCY,
    BACKEND_REQUESTS,
    CHORD_CALLBACKS_PUBLISHED,
    CHORD_CLAIMS,
    CHORD_OLDEST_OPEN_AGE,
    CHORD_PARTS_COUNTED,
    CHORDS_APPLIED,
    CHORDS_FAILED,
    CHORDS_OPEN,
    QUEUE_LENGTH,
    QUEUE_OLDEST_AGE,
    TASK_RUNTIME,
    TASKS_FAILED,
    TASKS_RECEIVED,
    TASKS_RETRIED,
    TASKS_STARTED,
    TASKS_SUCCEEDED,
)

from . import common

GMP_API = "monitoring.googleapis.com/v1"
#: The port the worker image serves /metrics on (``CELERY_GCS_METRICS_PORT``'s default).
METRICS_PORT = names.DEFAULT_PORT
METRICS_PORT_NAME = "metrics"
#: Managed collection's collectors, which scrape the pods: a DaemonSet in gmp-system on GKE
#: (https://cloud.google.com/stackdriver/docs/managed-prometheus/setup-managed); the pods'
#: NetworkPolicies admit them (network_policy.scrape_ingress).
COLLECTOR_NAMESPACE = "gmp-system"
COLLECTOR_LABELS = {"app.kubernetes.io/name": "collector"}
SCRAPE_INTERVAL = "30s"
#: The PodMonitorings' names, which Managed Service for Prometheus gives as the ``job`` label.
WORKERS_JOB, QUEUE_LENGTH_JOB = "celery-gcs-workers", "celery-gcs-queue-length"
#: GKE's own container metric, in Cloud Monitoring's PromQL naming (not scraped: GKE writes it).
RESTARTS = "kubernetes_io:container_restart_count"
#: Names a query may use besides ``names.SERIES``: GKE's, and the collectors' per-target ``up``.
SYSTEM_SERIES = frozenset({RESTARTS, "up"})
#: The longest chord deadline: a chord document older than its TTL (result_expires) is gone, and no
#: backend keeps results a month; a larger value is a mistake (seconds given for minutes).
MAX_CHORD_OPEN_MINUTES = 30 * 24 * 60
#: A notification channel as Cloud Monitoring names it.
_CHANNEL = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/[0-9]+$")


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """When each alert fires; every one a stack config key (``alert*``)."""

    #: The oldest message of a queue has waited this long.
    backlog_age_seconds: int = 600
    #: Failed tasks, in percent of tasks ended, over 10 minutes.
    failure_percent: int = 5
    #: Restarts of one worker container within 30 minutes (a crash loop).
    restarts: int = 3
    #: GCS and Firestore calls that failed, in percent, over 10 minutes.
    backend_error_percent: int = 1
    #: Minutes a chord callback may stay claimed without being published or failed.
    chord_publish_minutes: int = 30
    #: A chord's deadline: minutes after it was applied that it should have ended by.
    chord_open_minutes: int = 60

    def __post_init__(self) -> None:
        for name in ("backlog_age_seconds", "restarts", "chord_publish_minutes"):
            common.check(getattr(self, name) >= 1, f"alert_{name}", "must be at least 1", "Use a positive number")
        common.check(
            1 <= self.chord_open_minutes <= MAX_CHORD_OPEN_MINUTES,
            "alert_chord_open_minutes",
            f"is {self.chord_open_minutes}, not a number of minutes from 1 to {MAX_CHORD_OPEN_MINUTES} (30 days)",
            "Use the minutes your longest chord may take, such as 60",
        )
        for name in ("failure_percent", "backend_error_percent"):
            value = getattr(self, name)
            common.check(1 <= value <= 100, f"alert_{name}", f"is {value}, not a percentage from 1 to 100", "Use 1 to 100")


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    project: str
    #: The prefix: names the dashboard and the policies.
    name: str
    namespace: pulumi.Input[str]
    worker_selector: dict[str, str]
    #: The queue-length service's pod selector, when the stack runs one.
    queue_length_selector: dict[str, str] | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    #: Cloud Monitoring notification channels (projects/P/notificationChannels/ID).
    notification_channels: tuple[str, ...] = ()
    provider: k8s.Provider | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for channel in self.notification_channels:
            common.check(
                bool(_CHANNEL.match(channel)),
                "alert_notification_channels",
                f"{channel!r} is not a notification channel",
                "Use projects/PROJECT/notificationChannels/ID (gcloud beta monitoring channels list)",
            )


# -- the queries, from the metrics' names --------------------------------------------------


def _in(namespace: str) -> str:
    return f'namespace="{namespace}"'


def queries(namespace: str) -> dict[str, str]:
    """Every PromQL expression the dashboard and alerts use, by what it shows."""
    ns = _in(namespace)
    ended = f"sum(rate({TASKS_SUCCEEDED}{{{ns}}}[10m])) + sum(rate({TASKS_FAILED}{{{ns}}}[10m]))"
    return {
        "received": f"sum by (task) (rate({TASKS_RECEIVED}{{{ns}}}[5m]))",
        "started": f"sum by (task) (rate({TASKS_STARTED}{{{ns}}}[5m]))",
        "succeeded": f"sum by (task) (rate({TASKS_SUCCEEDED}{{{ns}}}[5m]))",
        "failed": f"sum by (task) (rate({TASKS_FAILED}{{{ns}}}[5m]))",
        "retried": f"sum by (task) (rate({TASKS_RETRIED}{{{ns}}}[5m]))",
        "failure_ratio": f"sum(rate({TASKS_FAILED}{{{ns}}}[10m])) / ({ended})",
        **{
            f"runtime_p{q}": f"histogram_quantile(0.{q}, sum by (le) (rate({TASK_RUNTIME.name}_bucket{{{ns}}}[5m])))"
            for q in (50, 95, 99)
        },
        "queue_length": f"max by (queue) ({QUEUE_LENGTH}{{{ns}}})",
        "queue_age": f"max by (queue) ({QUEUE_OLDEST_AGE}{{{ns}}})",
        "workers_up": f'sum(up{{{ns},job="{WORKERS_JOB}"}})',
        "restarts": f'sum by (pod_name) (increase({RESTARTS}{{monitored_resource="k8s_container",namespace_name="{namespace}",container_name="worker"}}[30m]))',
        "backend_p95": f"histogram_quantile(0.95, sum by (le, kind) (rate({BACKEND_LATENCY.name}_bucket{{{ns}}}[5m])))",
        "backend_errors": f"sum by (kind, error) (rate({BACKEND_ERRORS}{{{ns}}}[5m]))",
        "backend_error_ratio": (
            f'sum(rate({BACKEND_REQUESTS}{{{ns},outcome="error"}}[10m])) / sum(rate({BACKEND_REQUESTS}{{{ns}}}[10m]))'
        ),
        "chords_applied": f"sum(rate({CHORDS_APPLIED}{{{ns}}}[5m]))",
        "chord_parts": f"sum(rate({CHORD_PARTS_COUNTED}{{{ns}}}[5m]))",
        "chord_callbacks": f"sum(rate({CHORD_CALLBACKS_PUBLISHED}{{{ns}}}[5m]))",
        "chords_failed": f"sum(rate({CHORDS_FAILED}{{{ns}}}[5m]))",
        "chord_claims": f"sum by (event) (rate({CHORD_CLAIMS}{{{ns}}}[5m]))",
        # Every worker reads the same numbers from Firestore: the max is the stack's.
        "chords_open": f"max({CHORDS_OPEN}{{{ns}}})",
        "chord_oldest_age": f"max({CHORD_OLDEST_OPEN_AGE}{{{ns}}})",
    }


def alert_conditions(namespace: str, t: Thresholds) -> dict[str, tuple[str, str, str]]:
    """Each alert: its title, PromQL condition and how long it must hold, by key."""
    q = queries(namespace)
    ns = _in(namespace)
    unpublished = (
        f'sum(increase({CHORD_CLAIMS}{{{ns},event="taken"}}[{t.chord_publish_minutes * 2}m] offset {t.chord_publish_minutes}m))'
        f" - sum(increase({CHORD_CALLBACKS_PUBLISHED}{{{ns}}}[{t.chord_publish_minutes * 3}m]))"
        f" - sum(increase({CHORDS_FAILED}{{{ns}}}[{t.chord_publish_minutes * 3}m]))"
    )
    return {
        "backlog-age": ("Celery backlog: a queue's oldest task is waiting too long", f"{q['queue_age']} > {t.backlog_age_seconds}", "300s"),
        "failure-ratio": ("Celery tasks failing", f"{q['failure_ratio']} > {t.failure_percent / 100}", "600s"),
        "crash-loop": ("Celery workers restarting (crash loop)", f"{q['restarts']} >= {t.restarts}", "0s"),
        "backend-errors": (
            "celery-gcs: GCS or Firestore calls failing",
            f"{q['backend_error_ratio']} > {t.backend_error_percent / 100}",
            "600s",
        ),
        "chord-unpublished": ("celery-gcs: chord callbacks claimed and never published", f"{unpublished} > 0", "0s"),
        "chord-overdue": (
            "celery-gcs: a chord open past its deadline",
            f"{q['chord_oldest_age']} > {t.chord_open_minutes * 60}",
            "0s",
        ),
    }  # fmt: skip


def dashboard(title: str, namespace: str) -> dict:
    """The dashboard's JSON (Cloud Monitoring's ``mosaicLayout``): one tile per chart, two a row."""
    q = queries(namespace)
    charts = [
        ("Tasks received and started, by task (/s)", ["received", "started"]),
        ("Tasks succeeded, failed and retried (/s)", ["succeeded", "failed", "retried"]),
        ("Failure ratio", ["failure_ratio"]),
        ("Task run time: p50, p95, p99 (s)", ["runtime_p50", "runtime_p95", "runtime_p99"]),
        ("Queue length", ["queue_length"]),
        ("Oldest queued task's age (s)", ["queue_age"]),
        ("Workers up, and restarts in 30 min", ["workers_up", "restarts"]),
        ("GCS and Firestore: p95 latency by kind (s)", ["backend_p95"]),
        ("GCS and Firestore: errors by kind (/s)", ["backend_errors"]),
        ("Chords: applied (by workers), parts counted, callbacks published, failed (/s)",
         ["chords_applied", "chord_parts", "chord_callbacks", "chords_failed"]),
        ("Chord claims: taken, renewed, lost (/s)", ["chord_claims"]),
        ("Open chords", ["chords_open"]),
        ("Oldest open chord's age (s)", ["chord_oldest_age"]),
    ]  # fmt: skip
    tiles = [
        {
            "xPos": 24 * (i % 2),
            "yPos": 16 * (i // 2),
            "width": 24,
            "height": 16,
            "widget": {
                "title": chart,
                "xyChart": {
                    "dataSets": [
                        {"timeSeriesQuery": {"prometheusQuery": q[key]}, "plotType": "LINE", "legendTemplate": key}
                        for key in keys
                    ],
                },
            },
        }
        for i, (chart, keys) in enumerate(charts)
    ]
    return {"displayName": title, "mosaicLayout": {"columns": 48, "tiles": tiles}}


def series_named(promql: str) -> set[str]:
    """The metric names a PromQL expression reads (identifiers before ``{``, ``[`` or a space-free end)."""
    words = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{)", promql))
    return {w for w in words if w not in {"by", "without"}}


def pod_monitoring_spec(selector: dict[str, str], port: str) -> dict:
    """Scrape ``port`` (a container port's name) of the pods ``selector`` matches."""
    return {
        "selector": {"matchLabels": selector},
        "endpoints": [{"port": port, "path": "/metrics", "interval": SCRAPE_INTERVAL}],
    }


class Monitoring(pulumi.ComponentResource):
    """PodMonitorings for the workers (and the queue-length service), a dashboard, alert policies."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(common.token("monitoring", "Monitoring"), name, None, opts)
        self.pod_monitorings = [self._pod_monitoring(f"{name}-workers", args, WORKERS_JOB, args.worker_selector, METRICS_PORT_NAME)]
        if args.queue_length_selector is not None:
            self.pod_monitorings.append(
                self._pod_monitoring(f"{name}-queue-length", args, QUEUE_LENGTH_JOB, args.queue_length_selector, "http")
            )
        self.dashboard = gcp.monitoring.Dashboard(
            f"{name}-dashboard",
            project=args.project,
            dashboard_json=pulumi.Output.from_input(args.namespace).apply(
                lambda ns: json.dumps(dashboard(f"Celery: {args.name}", ns))
            ),
            opts=common.child(self),
        )
        self.alert_policies = [
            self._alert(name, args, key) for key in alert_conditions("NS", args.thresholds)
        ]
        self.register_outputs({"dashboard": self.dashboard.id})

    def _pod_monitoring(
        self, name: str, args: MonitoringArgs, job: str, selector: dict[str, str], port: str
    ) -> k8s.apiextensions.CustomResource:
        """Scrape ``port`` of the pods ``selector`` matches; ``job`` names it (and its series' job label)."""
        return k8s.apiextensions.CustomResource(
            name,
            api_version=GMP_API,
            kind="PodMonitoring",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=job, namespace=args.namespace, labels=selector),
            spec=pod_monitoring_spec(selector, port),
            opts=common.child(self, provider=args.provider),
        )

    def _alert(self, name: str, args: MonitoringArgs, key: str) -> gcp.monitoring.AlertPolicy:
        def condition(namespace: str) -> tuple[str, str, str]:
            return alert_conditions(namespace, args.thresholds)[key]

        spec = pulumi.Output.from_input(args.namespace).apply(condition)
        return gcp.monitoring.AlertPolicy(
            f"{name}-{key}",
            project=args.project,
            display_name=spec.apply(lambda s: f"{s[0]} ({args.name})"),
            combiner="OR",
            conditions=[
                gcp.monitoring.AlertPolicyConditionArgs(
                    display_name=spec.apply(lambda s: s[0]),
                    condition_prometheus_query_language=gcp.monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
                        query=spec.apply(lambda s: s[1]),
                        duration=spec.apply(lambda s: s[2]),
                        evaluation_interval="60s",
                        # The API refuses a condition on a metric it has not seen, and a new stack's
                        # have not been scraped yet (a labelled counter appears at its first event).
                        disable_metric_validation=True,
                    ),
                )
            ],
            notification_channels=list(args.notification_channels),
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                content=f"docs/observability.md, \"Alerts\": {key}. The dashboard: Celery: {args.name}.",
                mime_type="text/markdown",
            ),
            user_labels=args.labels,
            opts=common.child(self),
        )
