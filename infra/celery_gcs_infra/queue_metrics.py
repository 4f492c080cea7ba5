"""The queue lengths KEDA scales on when the broker is Memorystore: a small verified-TLS service in the namespace.

KEDA's Redis scaler (Go) cannot verify Memorystore's certificate, which names
the instance's address only in its CN (docs/security.md), and ``unsafeSsl``
would verify nothing. So on a Memorystore broker the stack runs
``queue_length.py`` (this package's file, shipped in a ConfigMap, run by the
worker image's Python): it verifies the broker's chain and name, and serves
``GET /queues``; the ScaledObject's ``metrics-api`` triggers read it over
plain HTTP inside the cluster. The lengths are not secret; the AUTH string
and the CA stay in the broker Secret, mounted here as in the workers.

Its NetworkPolicy admits only KEDA's namespace (``kedaNamespace``), on the
service's port, and lets it reach only DNS and the broker. Two replicas, spread
over zones, with a PodDisruptionBudget: one lost pod never leaves KEDA blind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from . import broker as broker_mod
from . import common, keda, network_policy, pods

SCRIPT = Path(__file__).with_name("queue_length.py")
MOUNT = "/opt/celery-gcs-queue-length"
PORT = 8080
#: Where KEDA runs by default (``kedaNamespace``): its operator polls the service.
KEDA_NAMESPACE = keda.NAMESPACE
RUN_AS = 10001
#: Two replicas and a PodDisruptionBudget: a drained node or an upgrade never leaves KEDA blind.
REPLICAS = 2


def value_location(queue: str) -> str:
    """The GJSON path of one queue's length in the service's JSON (a '.' in a name is escaped)."""
    return queue.replace(".", "\\.")


@dataclass(frozen=True, kw_only=True)
class QueueMetricsArgs:
    #: Names every object ``INSTANCE-queue-length``.
    instance: str
    namespace: str
    labels: dict[str, str]
    image: pulumi.Input[str]
    queues: tuple[str, ...]
    #: The broker Secret the workers use (password and CA).
    secret_name: str
    broker: broker_mod.BrokerConnection = field(repr=False)
    provider: k8s.Provider
    keda_namespace: str = KEDA_NAMESPACE


def queue_metrics_env(args: QueueMetricsArgs) -> list[k8s.core.v1.EnvVarArgs]:
    conn = args.broker
    plain: dict[str, pulumi.Input[str]] = {
        "BROKER_HOST": conn.host,
        "BROKER_PORT": conn.port.apply(str),
        "BROKER_DB": str(conn.database),
    }
    after = {
        "BROKER_CA_FILE": f"{broker_mod.CA_DIR}/{broker_mod.CA_FILE}",
        "QUEUES": ",".join(args.queues),
        "PORT": str(PORT),
    }
    return [
        *(k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in plain.items()),
        pods.secret_env("BROKER_PASSWORD", args.secret_name, "password"),
        *(k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in after.items()),
    ]


def pod_spec(args: QueueMetricsArgs) -> k8s.core.v1.PodSpecArgs:
    """The service's pod: the worker image's Python running the mounted script, no token."""
    core = k8s.core.v1
    probe = core.ProbeArgs(
        http_get=core.HTTPGetActionArgs(path="/healthz", port=PORT), period_seconds=20
    )
    container = core.ContainerArgs(
        name="queue-length",
        image=args.image,
        # tini as PID 1, so SIGTERM stops the server at once.
        command=["/usr/bin/tini", "--", "python", f"{MOUNT}/{SCRIPT.name}"],
        env=queue_metrics_env(args),
        ports=[core.ContainerPortArgs(container_port=PORT, name="http")],
        readiness_probe=probe,
        liveness_probe=probe,
        resources=pods.guaranteed({"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "100Mi"}),
        volume_mounts=[
            core.VolumeMountArgs(name="script", mount_path=MOUNT, read_only=True),
            pods.broker_ca_mount(),
        ],
        security_context=pods.container_security(),
    )
    return core.PodSpecArgs(
        automount_service_account_token=False,
        security_context=pods.pod_security(run_as_user=RUN_AS),
        # The replicas in different zones where the cluster has them.
        topology_spread_constraints=[pods.zone_spread(selector(args))],
        containers=[container],
        volumes=[
            core.VolumeArgs(
                name="script", config_map=core.ConfigMapVolumeSourceArgs(name=app_name(args))
            ),
            pods.broker_ca_volume(args.secret_name),
        ],
    )


def network_policy_spec(args: QueueMetricsArgs) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """Ingress only from KEDA's namespace and the metrics collectors on the service's port; egress to DNS and the broker."""
    np = k8s.networking.v1
    keda_namespace = k8s.meta.v1.LabelSelectorArgs(
        match_labels={"kubernetes.io/metadata.name": args.keda_namespace}
    )
    return np.NetworkPolicySpecArgs(
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(args)),
        policy_types=["Ingress", "Egress"],
        ingress=[
            np.NetworkPolicyIngressRuleArgs(
                from_=[np.NetworkPolicyPeerArgs(namespace_selector=keda_namespace)],
                ports=[np.NetworkPolicyPortArgs(port=PORT, protocol="TCP")],
            ),
            network_policy.scrape_ingress(PORT),  # /metrics, for Managed Service for Prometheus
        ],
        egress=[network_policy.dns_egress(), network_policy.broker_egress(args.broker)],
    )


def app_name(args: QueueMetricsArgs) -> str:
    return f"{args.instance}-queue-length"


def selector(args: QueueMetricsArgs) -> dict[str, str]:
    return pods.selector("celery-queue-length", args.instance)


class QueueMetrics(pulumi.ComponentResource):
    #: What each ScaledObject trigger polls.
    url: str

    def __init__(
        self, name: str, args: QueueMetricsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("queue_metrics", "QueueMetrics"), name, None, opts)
        app = app_name(args)
        labels = {**selector(args), **args.labels}
        meta = k8s.meta.v1.ObjectMetaArgs(name=app, namespace=args.namespace, labels=labels)

        def child(**kwargs) -> pulumi.ResourceOptions:
            return common.child(self, provider=args.provider, **kwargs)

        script = k8s.core.v1.ConfigMap(
            f"{name}-script", metadata=meta, data={SCRIPT.name: SCRIPT.read_text()}, opts=child()
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta,
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=REPLICAS,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(args)),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels), spec=pod_spec(args)
                ),
            ),
            opts=child(depends_on=[script]),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta,
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=selector(args),
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=PORT, target_port=PORT)],
            ),
            opts=child(),
        )
        self.disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta,
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(args)),
            ),
            opts=child(),
        )
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=meta, spec=network_policy_spec(args), opts=child()
        )
        self.url = f"http://{app}.{args.namespace}.svc.cluster.local:{PORT}/queues"
        self.register_outputs({"url": self.url})
