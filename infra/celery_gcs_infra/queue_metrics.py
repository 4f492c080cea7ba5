"""The queue lengths KEDA scales on when the broker is Memorystore: a small verified-TLS service in the namespace.

KEDA's Redis scaler (Go) cannot verify Memorystore's certificate, which names
the instance's address only in its CN (docs/security.md), and ``unsafeSsl``
would verify nothing. So on a Memorystore broker the stack runs
``queue_length.py`` (this package's file, shipped in a ConfigMap, run by the
worker image's Python): it verifies the broker's chain and name, and serves
``GET /queues``; the ScaledObject's ``metrics-api`` triggers read it over
plain HTTP inside the cluster. The lengths are not secret; the AUTH string
and the CA stay in the broker Secret, mounted here as in the workers.

Its NetworkPolicy admits only KEDA's namespace, on the service's port, and
lets it reach only DNS and the broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from . import broker as broker_mod
from . import common, keda, network_policy

SCRIPT = Path(__file__).with_name("queue_length.py")
MOUNT = "/opt/celery-gcs-queue-length"
PORT = 8080
#: Where KEDA runs (the stack installs it there; install it there on a cluster you bring):
#: its operator polls the service.
KEDA_NAMESPACE = keda.NAMESPACE
RUN_AS = 10001


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


class QueueMetrics(pulumi.ComponentResource):
    #: What each ScaledObject trigger polls.
    url: str

    def __init__(
        self, name: str, args: QueueMetricsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("queue_metrics", "QueueMetrics"), name, None, opts)
        app = f"{args.instance}-queue-length"
        selector = {
            "app.kubernetes.io/name": "celery-queue-length",
            "app.kubernetes.io/instance": args.instance,
            "app.kubernetes.io/part-of": "celery-gcs",
        }
        labels = {**selector, **args.labels}
        meta = k8s.meta.v1.ObjectMetaArgs(name=app, namespace=args.namespace, labels=labels)
        conn = args.broker

        def child(**kwargs) -> pulumi.ResourceOptions:
            return common.child(self, provider=args.provider, **kwargs)

        script = k8s.core.v1.ConfigMap(
            f"{name}-script",
            metadata=meta,
            data={SCRIPT.name: SCRIPT.read_text()},
            opts=child(),
        )
        env = [
            k8s.core.v1.EnvVarArgs(name="BROKER_HOST", value=conn.host),
            k8s.core.v1.EnvVarArgs(name="BROKER_PORT", value=conn.port.apply(str)),
            k8s.core.v1.EnvVarArgs(name="BROKER_DB", value=str(conn.database)),
            k8s.core.v1.EnvVarArgs(
                name="BROKER_PASSWORD",
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                        name=args.secret_name, key="password"
                    )
                ),
            ),
            k8s.core.v1.EnvVarArgs(
                name="BROKER_CA_FILE", value=f"{broker_mod.CA_DIR}/{broker_mod.CA_FILE}"
            ),
            k8s.core.v1.EnvVarArgs(name="QUEUES", value=",".join(args.queues)),
            k8s.core.v1.EnvVarArgs(name="PORT", value=str(PORT)),
        ]
        probe = k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path="/healthz", port=PORT), period_seconds=20
        )
        resources = {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "100Mi"}
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta,
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        automount_service_account_token=False,
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True,
                            run_as_user=RUN_AS,
                            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                        ),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="queue-length",
                                image=args.image,
                                # tini as PID 1, so SIGTERM stops the server at once.
                                command=["/usr/bin/tini", "--", "python", f"{MOUNT}/{SCRIPT.name}"],
                                env=env,
                                ports=[k8s.core.v1.ContainerPortArgs(container_port=PORT, name="http")],
                                readiness_probe=probe,
                                liveness_probe=probe,
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests=resources, limits=resources
                                ),
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(name="script", mount_path=MOUNT, read_only=True),
                                    k8s.core.v1.VolumeMountArgs(
                                        name="broker-ca", mount_path=broker_mod.CA_DIR, read_only=True
                                    ),
                                ],
                                security_context=k8s.core.v1.SecurityContextArgs(
                                    allow_privilege_escalation=False,
                                    read_only_root_filesystem=True,
                                    run_as_non_root=True,
                                    capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
                                ),
                            )
                        ],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="script",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=app),
                            ),
                            k8s.core.v1.VolumeArgs(
                                name="broker-ca",
                                secret=k8s.core.v1.SecretVolumeSourceArgs(
                                    secret_name=args.secret_name,
                                    items=[
                                        k8s.core.v1.KeyToPathArgs(
                                            key=broker_mod.CA_FILE, path=broker_mod.CA_FILE
                                        )
                                    ],
                                ),
                            ),
                        ],
                    ),
                ),
            ),
            opts=child(depends_on=[script]),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta,
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=selector,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=PORT, target_port=PORT)],
            ),
            opts=child(),
        )
        np = k8s.networking.v1
        self.network_policy = np.NetworkPolicy(
            f"{name}-netpol",
            metadata=meta,
            spec=np.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                policy_types=["Ingress", "Egress"],
                ingress=[
                    np.NetworkPolicyIngressRuleArgs(
                        from_=[
                            np.NetworkPolicyPeerArgs(
                                namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                                    match_labels={"kubernetes.io/metadata.name": args.keda_namespace}
                                )
                            )
                        ],
                        ports=[np.NetworkPolicyPortArgs(port=PORT, protocol="TCP")],
                    )
                ],
                egress=[network_policy.dns_egress(), network_policy.broker_egress(conn)],
            ),
            opts=child(),
        )
        self.url = f"http://{app}.{args.namespace}.svc.cluster.local:{PORT}/queues"
        self.register_outputs({"url": self.url})
