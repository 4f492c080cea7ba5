"""The Celery workers on Kubernetes.

One namespace holds: the Kubernetes service account bound to the worker's
Google service account (Workload Identity), the broker Secret, the Deployment,
a PodDisruptionBudget, and the autoscaler: a KEDA ScaledObject on the length
of each queue's Redis list, or, without KEDA, a CPU HorizontalPodAutoscaler.

Every object is named after ``instance`` (the stack's prefix) and selected by
it, so any number of stacks share a cluster, or even a namespace, without
touching each other's objects. The namespace is created (and deleted with the
stack) unless ``create_namespace`` is off: then it must exist, and the stack
never owns or deletes it.

Pods carry ``cluster-autoscaler.kubernetes.io/safe-to-evict: "false"``: the
cluster autoscaler (and Autopilot's bin packing) would otherwise evict a worker
in the middle of an hour-long task to scale a node down; the grace period only
helps once a pod is asked to stop.

The worker container is configured only through environment variables:
``CELERY_BROKER_URL`` (from the Secret), ``CELERY_RESULT_BACKEND`` (the
``gcs://`` URL), ``CELERY_APP``, ``CELERY_CONCURRENCY``, ``CELERY_QUEUES`` and
``GOOGLE_CLOUD_PROJECT``. ``terminationGracePeriodSeconds`` is the time Celery
gets, after SIGTERM, to finish the tasks it holds (a warm shutdown).

The pods meet the ``restricted`` Pod Security Standard, which the namespace
enforces: the image must run as a numeric non-root user.

A NetworkPolicy selects the stack's worker pods: no ingress at all (a worker
serves nothing; its probes are exec probes), and egress only to cluster DNS,
the GKE metadata server (Workload Identity tokens), the broker's address and
port, and Google APIs on 443 (``google_apis_cidr``: private.googleapis.com on
the stack's own VPC, whose DNS sends every googleapis.com name there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pulumi
import pulumi_kubernetes as k8s

from . import broker as broker_mod
from . import common, monitoring, network_policy, pods, queue_metrics, smoke_test

KEDA_API = "keda.sh/v1alpha1"
WORKLOAD_IDENTITY_ANNOTATION = "iam.gke.io/gcp-service-account"
#: Tells the cluster autoscaler not to evict a pod to scale a node down.
SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"
#: Seconds of low load before the autoscaler removes replicas.
SCALE_DOWN_WINDOW = 300


def deployment_name(instance: str) -> str:
    return f"{instance}-worker"


def broker_secret_name(instance: str) -> str:
    return f"{instance}-broker"


_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
#: Where the image's health step writes its heartbeat (worker_image/, celery_gcs.worker.health).
HEALTH_DIR = "/run/celery-worker"


def _probe(kind: str, *, period: int, failures: int) -> k8s.core.v1.ProbeArgs:
    """An exec probe of ``celery_gcs.worker.probe``: it reads files, never the broker."""
    return k8s.core.v1.ProbeArgs(
        exec_=k8s.core.v1.ExecActionArgs(command=["python", "-m", "celery_gcs.worker.probe", kind]),
        period_seconds=period,
        timeout_seconds=10,
        failure_threshold=failures,
    )


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Variables the stack sets itself; extraEnv may not override them.
STACK_ENV = frozenset(
    {
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "CELERY_APP",
        "CELERY_CONCURRENCY",
        "CELERY_QUEUES",
        "GOOGLE_CLOUD_PROJECT",
        "CELERY_TASK_ACKS_LATE",
        "CELERY_TASK_REJECT_ON_WORKER_LOST",
        "CELERY_BROKER_VISIBILITY_TIMEOUT",
        "REMAP_SIGTERM",
    }
)
_CELERY_APP = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_.]*)?$")
_QUEUE = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """How the workers run: plain values, validated when constructed."""

    #: Name of every object (``INSTANCE-worker``, ``INSTANCE-broker``) and the
    #: ``app.kubernetes.io/instance`` label; empty: CeleryStack uses its prefix.
    instance: str = ""
    #: Empty: CeleryStack uses its prefix.
    namespace: str = ""
    #: Create the namespace (and delete it with the stack); off: it exists already.
    create_namespace: bool = True
    #: Kubernetes service account of the pods; empty: ``INSTANCE-worker``.
    service_account: str = ""
    celery_app: str
    queues: tuple[str, ...] = ("celery",)
    concurrency: int = 4
    cpu: str = "1"
    memory: str = "2Gi"
    min_replicas: int = 1
    max_replicas: int = 10
    termination_grace_period_seconds: int = 600
    #: Scale on queue length with KEDA; CPU HPA if off.
    keda: bool = False
    #: Queued messages per replica KEDA aims for.
    keda_list_length: int = 10
    cpu_utilization: int = 70
    #: Extra labels on every object (the stack name).
    labels: dict[str, str] = field(default_factory=dict)
    #: The app's own environment variables, ``NAME=value`` each (never one the stack sets).
    extra_env: tuple[str, ...] = ()
    #: Arguments appended to ``celery worker`` (after the image's), such as --prefetch-multiplier=1.
    extra_args: tuple[str, ...] = ()
    # Long tasks. The stack passes these to the app as CELERY_TASK_ACKS_LATE,
    # CELERY_TASK_REJECT_ON_WORKER_LOST and CELERY_BROKER_VISIBILITY_TIMEOUT (the
    # example app, worker_image/example_app, applies them; docs/environments.md shows how).
    #: Acknowledge a task when it ends, not when it starts: a killed worker's task is redelivered.
    acks_late: bool = True
    #: With acks_late, requeue the task when its pool process dies (OOM, SIGKILL).
    reject_on_worker_lost: bool = True
    #: Seconds Redis keeps a delivered, unacknowledged task before giving it to another worker:
    #: longer than any task runs, so longer than the grace period.
    visibility_timeout: int = 3600
    #: SIGTERM as a cold shutdown (Celery's REMAP_SIGTERM=SIGQUIT): running tasks are requeued
    #: at once (with acks_late) instead of finishing within the grace period.
    remap_sigterm: bool = False
    #: After every ``pulumi up``, a Job checks as the workers that a result and a chord of 10
    #: go through (smoke_test.py); ``up`` fails when it fails.
    smoke_test: bool = True

    def __post_init__(self) -> None:
        for name in ("instance", "namespace", "service_account"):
            if getattr(self, name):
                common.dns_label(getattr(self, name), name)
        common.check(
            bool(_CELERY_APP.match(self.celery_app)),
            "celery_app",
            f"{self.celery_app!r} is not a Celery app",
            "Use the module path of the Celery app, such as proj.celery:app or proj.worker",
        )
        common.check(
            len(self.queues) > 0 and all(_QUEUE.match(q) for q in self.queues),
            "queues",
            f"{','.join(self.queues)!r} is not a list of queue names",
            "Use comma-separated queue names, such as celery or celery,priority",
        )
        common.check(
            1 <= self.concurrency <= 256,
            "concurrency",
            f"{self.concurrency} is out of range",
            "Use 1-256 (processes per worker pod)",
        )
        for name, value in (("cpu", self.cpu), ("memory", self.memory)):
            common.check(
                bool(_QUANTITY.match(value)),
                name,
                f"{value!r} is not a Kubernetes quantity",
                "Use values such as 500m or 2 (cpu), 512Mi or 2Gi (memory)",
            )
        lowest = 0 if self.keda else 1
        common.check(
            lowest <= self.min_replicas <= self.max_replicas and self.max_replicas >= 1,
            "min_replicas",
            f"replicas {self.min_replicas}..{self.max_replicas} is not a usable range",
            f"Use {lowest} <= minReplicas <= maxReplicas (0 only with KEDA, which can "
            "wake the Deployment up)",
        )
        common.check(
            30 <= self.termination_grace_period_seconds <= 3600,
            "termination_grace_period_seconds",
            f"{self.termination_grace_period_seconds}s is out of range",
            "Use 30-3600 seconds: at least as long as your longest task, so a warm "
            "shutdown can finish it",
        )
        for item in self.extra_env:
            name = item.split("=", 1)[0]
            common.check(
                "=" in item and bool(_ENV_NAME.match(name)),
                "extra_env",
                f"{item!r} is not NAME=value",
                "Use comma-separated NAME=value pairs, such as APP_MODE=batch,TZ=UTC",
            )
            common.check(
                name not in STACK_ENV,
                "extra_env",
                f"{name} is set by the stack",
                "Use the stack's own setting for it (docs/environments.md), not extraEnv",
            )
        common.check(
            self.visibility_timeout > self.termination_grace_period_seconds,
            "visibility_timeout",
            f"{self.visibility_timeout}s is not longer than the grace period "
            f"({self.termination_grace_period_seconds}s): a task still finishing in a warm "
            "shutdown would be given to a second worker",
            "Set visibilityTimeout above terminationGracePeriodSeconds (and above your longest task)",
        )
        common.check(
            self.keda_list_length >= 1,
            "keda_list_length",
            "must be at least 1",
            "Use the number of queued tasks one replica should absorb",
        )


@dataclass(frozen=True, kw_only=True)
class WorkerArgs:
    """The settings plus what other components made: identity, image, URLs."""

    project: str
    settings: WorkerSettings
    #: The Google service account the pods act as.
    google_service_account: pulumi.Input[str]
    #: Image pinned by digest.
    image: pulumi.Input[str]
    #: The ``gcs://`` URL the backend reads.
    result_backend: pulumi.Input[str]
    broker: broker_mod.BrokerConnection = field(repr=False)
    #: Kubernetes provider for the target cluster.
    provider: k8s.Provider
    #: What installs KEDA's CRDs (the stack's KEDA release), when the stack installs it.
    keda: pulumi.Resource | None = None
    #: Where KEDA's operator runs: the only namespace the queue-length service answers.
    keda_namespace: str = queue_metrics.KEDA_NAMESPACE
    #: Where the workers reach Google APIs on 443: private.googleapis.com's range on the
    #: stack's own VPC; anywhere on a network whose DNS the stack does not control.
    google_apis_cidr: str = "0.0.0.0/0"

    def __post_init__(self) -> None:
        common.project_id(self.project)
        for name in ("instance", "namespace", "service_account"):
            common.check(
                bool(getattr(self.settings, name)),
                name,
                "is empty",
                "Name the instance, namespace and service account (CeleryStack derives them "
                "from its prefix)",
            )


def worker_env(args: WorkerArgs) -> list[k8s.core.v1.EnvVarArgs]:
    """The worker container's whole configuration (the image reads nothing else)."""
    cfg = args.settings
    plain: dict[str, pulumi.Input[str]] = {
        "CELERY_RESULT_BACKEND": args.result_backend,
        "CELERY_APP": cfg.celery_app,
        "CELERY_CONCURRENCY": str(cfg.concurrency),
        "CELERY_QUEUES": ",".join(cfg.queues),
        "GOOGLE_CLOUD_PROJECT": args.project,
        **long_task_env(cfg),
        **dict(item.split("=", 1) for item in cfg.extra_env),
    }
    return [
        pods.secret_env("CELERY_BROKER_URL", broker_secret_name(cfg.instance), "url"),
        *(k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in plain.items()),
    ]


def long_task_env(cfg: WorkerSettings) -> dict[str, str]:
    """What keeps a long task from being lost or run twice, for the app to apply."""
    env = {
        "CELERY_TASK_ACKS_LATE": str(cfg.acks_late).lower(),
        "CELERY_TASK_REJECT_ON_WORKER_LOST": str(cfg.reject_on_worker_lost).lower(),
        "CELERY_BROKER_VISIBILITY_TIMEOUT": str(cfg.visibility_timeout),
    }
    if cfg.remap_sigterm:
        env["REMAP_SIGTERM"] = "SIGQUIT"  # read by Celery itself
    return env


def worker_storage(
    args: WorkerArgs,
) -> tuple[list[k8s.core.v1.VolumeMountArgs], list[k8s.core.v1.VolumeArgs]]:
    """The worker's mounts and volumes.

    The root filesystem is read-only: /tmp, and the directory where the
    worker's health step keeps the files its probes read, are emptyDirs.
    """
    core = k8s.core.v1
    mounts = [
        core.VolumeMountArgs(name="tmp", mount_path="/tmp"),
        core.VolumeMountArgs(name="health", mount_path=HEALTH_DIR),
    ]
    volumes = [
        core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Gi")),
        core.VolumeArgs(name="health", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Mi")),
    ]
    if args.broker.ca_pem is not None:
        mounts.append(pods.broker_ca_mount())
        volumes.append(pods.broker_ca_volume(broker_secret_name(args.settings.instance)))
    return mounts, volumes


def pod_spec(args: WorkerArgs) -> k8s.core.v1.PodSpecArgs:
    """The worker pod: restricted, guaranteed resources, exec probes, the grace period."""
    cfg = args.settings
    mounts, volumes = worker_storage(args)
    resources = {"cpu": cfg.cpu, "memory": cfg.memory, "ephemeral-storage": "1Gi"}
    container = k8s.core.v1.ContainerArgs(
        name="worker",
        image=args.image,
        # The entrypoint's `worker` command appends these to `celery worker`.
        args=["worker", *cfg.extra_args] if cfg.extra_args else None,
        env=worker_env(args),
        resources=pods.guaranteed(resources),
        volume_mounts=mounts,
        # Files the worker writes, not broker pings: no probe
        # adds load on Redis however many pods run.
        startup_probe=_probe("live", period=5, failures=60),
        liveness_probe=_probe("live", period=30, failures=3),
        readiness_probe=_probe("ready", period=15, failures=2),
        security_context=pods.container_security(),
        # The image serves /metrics here (celery_gcs.telemetry.metrics); monitoring.py scrapes it.
        ports=[k8s.core.v1.ContainerPortArgs(container_port=monitoring.METRICS_PORT, name=monitoring.METRICS_PORT_NAME)],
    )
    return k8s.core.v1.PodSpecArgs(
        service_account_name=cfg.service_account,
        # Nothing in the pod calls the Kubernetes API. Workload Identity does not need the token
        # either: the GKE metadata server knows the pod by its address and asks for the
        # service account's token itself (docs/security.md).
        automount_service_account_token=False,
        termination_grace_period_seconds=cfg.termination_grace_period_seconds,
        security_context=pods.pod_security(),
        # Replicas over the region's zones (Autopilot clusters are regional): a zone outage
        # leaves workers running. Soft, so a scale-up is never held back by the spread.
        topology_spread_constraints=[pods.zone_spread(worker_selector(cfg))],
        containers=[container],
        volumes=volumes,
    )


def worker_selector(cfg: WorkerSettings) -> dict[str, str]:
    return pods.selector("celery-worker", cfg.instance)


def worker_labels(cfg: WorkerSettings) -> dict[str, str]:
    """The selector plus the stack's own labels: on every object the component makes."""
    return {**worker_selector(cfg), **cfg.labels}


def deployment_spec(args: WorkerArgs) -> k8s.apps.v1.DeploymentSpecArgs:
    selector = worker_selector(args.settings)
    return k8s.apps.v1.DeploymentSpecArgs(
        # No replicas: the autoscaler owns the count.
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
        strategy=k8s.apps.v1.DeploymentStrategyArgs(
            type="RollingUpdate",
            rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                max_surge="25%", max_unavailable=0
            ),
        ),
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(
                labels=worker_labels(args.settings),
                annotations={SAFE_TO_EVICT_ANNOTATION: "false"},
            ),
            spec=pod_spec(args),
        ),
    )


def disruption_budget_spec(cfg: WorkerSettings) -> k8s.policy.v1.PodDisruptionBudgetSpecArgs:
    return k8s.policy.v1.PodDisruptionBudgetSpecArgs(
        # maxUnavailable, not minAvailable: one replica must still drain.
        max_unavailable=1,
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=worker_selector(cfg)),
    )


def fallback_replicas(cfg: WorkerSettings) -> int:
    """Replicas while KEDA cannot read the queues: never none, at least the minimum."""
    return max(1, cfg.min_replicas)


def scaled_object_spec(cfg: WorkerSettings, triggers: list[dict]) -> dict:
    """KEDA's ScaledObject on the Deployment: queue-length triggers, a slow scale-down."""
    return {
        "scaleTargetRef": {"name": deployment_name(cfg.instance)},
        "minReplicaCount": cfg.min_replicas,
        "maxReplicaCount": cfg.max_replicas,
        "pollingInterval": 15,
        "cooldownPeriod": 300,
        # Scalers failing 3 polls in a row (the broker or the queue-length service unreachable):
        # hold this many replicas instead of scaling on no data, possibly to zero.
        "fallback": {"failureThreshold": 3, "replicas": fallback_replicas(cfg)},
        "advanced": {
            "horizontalPodAutoscalerConfig": {
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW}}
            }
        },
        "triggers": triggers,
    }


def hpa_spec(cfg: WorkerSettings) -> k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs:
    """Without KEDA: a CPU HorizontalPodAutoscaler with the same slow scale-down."""
    hpa = k8s.autoscaling.v2
    return hpa.HorizontalPodAutoscalerSpecArgs(
        scale_target_ref=hpa.CrossVersionObjectReferenceArgs(
            api_version="apps/v1", kind="Deployment", name=deployment_name(cfg.instance)
        ),
        min_replicas=cfg.min_replicas,
        max_replicas=cfg.max_replicas,
        metrics=[
            hpa.MetricSpecArgs(
                type="Resource",
                resource=hpa.ResourceMetricSourceArgs(
                    name="cpu",
                    target=hpa.MetricTargetArgs(
                        type="Utilization", average_utilization=cfg.cpu_utilization
                    ),
                ),
            )
        ],
        behavior=hpa.HorizontalPodAutoscalerBehaviorArgs(
            scale_down=hpa.HPAScalingRulesArgs(stabilization_window_seconds=SCALE_DOWN_WINDOW)
        ),
    )


def redis_triggers(cfg: WorkerSettings, conn: broker_mod.BrokerConnection) -> list[dict]:
    """KEDA's Redis scaler on each queue's list, authenticated by the broker Secret."""
    return [
        {
            "type": "redis",
            "metadata": {
                "listName": queue,
                "listLength": str(cfg.keda_list_length),
                "databaseIndex": str(conn.database),
            },
            "authenticationRef": {"name": broker_secret_name(cfg.instance)},
        }
        for queue in cfg.queues
    ]


def metrics_api_triggers(cfg: WorkerSettings, url: str) -> list[dict]:
    """KEDA's metrics-api scaler on each queue's length, as the queue-length service serves it."""
    return [
        {
            "type": "metrics-api",
            "metadata": {
                "url": url,
                "valueLocation": queue_metrics.value_location(queue),
                "targetValue": str(cfg.keda_list_length),
            },
        }
        for queue in cfg.queues
    ]


class Worker(pulumi.ComponentResource):
    #: The namespace this stack created; ``None`` when it uses an existing one.
    namespace: k8s.core.v1.Namespace | None
    namespace_name: pulumi.Output[str]
    deployment: k8s.apps.v1.Deployment

    def __init__(
        self,
        name: str,
        args: WorkerArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(common.token("worker", "Worker"), name, None, opts)
        cfg = args.settings
        self._name, self._args = name, args
        self._labels = worker_labels(cfg)
        #: The queue-length service, when KEDA polls one (a Memorystore broker).
        self.queue_metrics: queue_metrics.QueueMetrics | None = None
        in_ns = self._namespace()
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-ksa",
            metadata=self._meta(
                cfg.service_account,
                annotations={WORKLOAD_IDENTITY_ANNOTATION: args.google_service_account},
            ),
            opts=self._child(depends_on=in_ns),
        )
        self.secret = k8s.core.v1.Secret(
            f"{name}-broker",
            metadata=self._meta(broker_secret_name(cfg.instance)),
            type="Opaque",
            string_data=pulumi.Output.secret(broker_secret_data(args.broker)),
            opts=self._child(depends_on=in_ns),
        )
        app = deployment_name(cfg.instance)
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=self._meta(app),
            spec=deployment_spec(args),
            opts=self._child(depends_on=[*in_ns, self.service_account, self.secret]),
        )
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata=self._meta(app),
            spec=network_policy.workers(worker_selector(cfg), args.broker, args.google_apis_cidr),
            opts=self._child(depends_on=in_ns),
        )
        self.disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=self._meta(app),
            spec=disruption_budget_spec(cfg),
            opts=self._child(depends_on=in_ns),
        )
        self.autoscaler: pulumi.Resource = (
            self._scaled_object(in_ns)
            if cfg.keda
            else k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa",
                metadata=self._meta(app),
                spec=hpa_spec(cfg),
                opts=self._child(depends_on=[self.deployment]),
            )
        )
        #: What monitoring watches (the workers and the queue-length service), without the smoke test.
        self.watched: list[pulumi.Resource] = [self.deployment, self.network_policy]
        if self.queue_metrics is not None:
            self.watched.append(self.queue_metrics)
        #: The post-deploy check (smoke_test.py), after the workers are ready and scalable.
        self.smoke_test: k8s.batch.v1.Job | None = self._smoke_test(in_ns) if cfg.smoke_test else None
        self.register_outputs(
            {"namespace": self.namespace_name, "deployment": self.deployment.metadata.name}
        )

    def _smoke_test(self, in_ns: list[pulumi.Resource]) -> k8s.batch.v1.Job:
        args, cfg = self._args, self._args.settings
        job = smoke_test.name(cfg.instance)
        policy = k8s.networking.v1.NetworkPolicy(
            f"{self._name}-smoke-test-netpol",
            metadata=self._meta(job),
            # The workers' rules: the Job reaches what a worker reaches, nothing more.
            spec=network_policy.workers(smoke_test.selector(cfg.instance), args.broker, args.google_apis_cidr),
            opts=self._child(depends_on=in_ns),
        )
        mounts, volumes = worker_storage(args)
        return k8s.batch.v1.Job(
            f"{self._name}-smoke-test",
            metadata=self._meta(job),
            spec=smoke_test.job_spec(
                instance=cfg.instance,
                labels=cfg.labels,
                service_account=cfg.service_account,
                image=args.image,
                env=worker_env(args),
                mounts=mounts,
                volumes=volumes,
                run=datetime.now(UTC).isoformat(timespec="seconds"),
            ),
            # Its name is fixed, so a new run replaces the last by deleting it first.
            opts=self._child(
                depends_on=[self.deployment, self.autoscaler, self.network_policy, policy],
                delete_before_replace=True,
                # Past the Job's own deadline, so the Job's failure, not a timeout, is what `up` reports.
                custom_timeouts=pulumi.CustomTimeouts(create=smoke_test.AWAIT, update=smoke_test.AWAIT),
            ),
        )

    def _child(self, **kwargs) -> pulumi.ResourceOptions:
        return common.child(self, provider=self._args.provider, **kwargs)

    def _meta(self, name: str, **kwargs) -> k8s.meta.v1.ObjectMetaArgs:
        return k8s.meta.v1.ObjectMetaArgs(
            name=name, namespace=self._args.settings.namespace, labels=self._labels, **kwargs
        )

    def _namespace(self) -> list[pulumi.Resource]:
        """The namespace, created (restricted Pod Security) unless it exists: what the rest waits for."""
        cfg = self._args.settings
        if not cfg.create_namespace:
            self.namespace = None
            self.namespace_name = pulumi.Output.from_input(cfg.namespace)
            return []
        self.namespace = k8s.core.v1.Namespace(
            f"{self._name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=cfg.namespace,
                labels={
                    **self._labels,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            ),
            opts=self._child(),
        )
        self.namespace_name = self.namespace.metadata.name
        return [self.namespace]

    def _scaled_object(self, in_ns: list[pulumi.Resource]) -> pulumi.Resource:
        args = self._args
        after_keda = [args.keda] if args.keda is not None else []
        triggers, waits = self._keda_triggers([*in_ns, *after_keda])
        return k8s.apiextensions.CustomResource(
            f"{self._name}-scaledobject",
            api_version=KEDA_API,
            kind="ScaledObject",
            metadata=self._meta(deployment_name(args.settings.instance)),
            spec=scaled_object_spec(args.settings, triggers),
            opts=self._child(depends_on=[self.deployment, *waits, *after_keda]),
        )

    def _keda_triggers(
        self, waits: list[pulumi.Resource]
    ) -> tuple[list[dict], list[pulumi.Resource]]:
        """KEDA triggers on each queue's length, and what they need to exist first.

        Memorystore (a CA of its own, a certificate KEDA's Go TLS cannot verify): the
        ``metrics-api`` scaler on the stack's verified queue-length service. Any other
        broker: KEDA's Redis scaler, verifying with the system roots, never ``unsafeSsl``.
        """
        args, name = self._args, self._name
        cfg, conn = args.settings, args.broker
        secret_name = broker_secret_name(cfg.instance)
        opts = self._child(depends_on=[*waits, self.secret])
        if conn.ca_pem is not None:
            service = queue_metrics.QueueMetrics(
                f"{name}-queue-length",
                queue_metrics.QueueMetricsArgs(
                    instance=cfg.instance,
                    namespace=cfg.namespace,
                    labels=cfg.labels,
                    image=args.image,
                    queues=cfg.queues,
                    secret_name=secret_name,
                    broker=conn,
                    provider=args.provider,
                    keda_namespace=args.keda_namespace,
                ),
                opts=opts,
            )
            self.queue_metrics = service
            return metrics_api_triggers(cfg, service.url), [service]
        auth = k8s.apiextensions.CustomResource(
            f"{name}-keda-auth",
            api_version=KEDA_API,
            kind="TriggerAuthentication",
            metadata=self._meta(secret_name),
            spec={"secretTargetRef": keda_auth_refs(secret_name, conn)},
            opts=opts,
        )
        return redis_triggers(cfg, conn), [auth]


def broker_secret_data(conn: broker_mod.BrokerConnection) -> dict[str, pulumi.Input[str]]:
    """The broker Secret's keys: the URL, KEDA's address/password/tls, and the CA file."""
    data: dict[str, pulumi.Input[str]] = {
        "url": conn.url,
        "address": conn.address,
        "password": conn.password,
    }
    if conn.tls:
        data["tls"] = "enable"
    if conn.ca_pem is not None:
        data[broker_mod.CA_FILE] = conn.ca_pem
    return data


def keda_auth_refs(secret_name: str, conn: broker_mod.BrokerConnection) -> list[dict[str, str]]:
    """KEDA's TriggerAuthentication parameters, each read from the broker Secret."""
    keys = ["address", "password", *(["tls"] if conn.tls else [])]
    return [{"parameter": key, "name": secret_name, "key": key} for key in keys]
