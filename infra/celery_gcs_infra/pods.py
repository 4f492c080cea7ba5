"""What every pod the stack runs shares: its labels, the restricted security contexts, the broker's CA.

The workers and the queue-length service both meet the ``restricted`` Pod
Security Standard, run with guaranteed resources (requests equal limits) and
mount the broker Secret's CA file at the same path; one definition here keeps
them from drifting apart.
"""

from __future__ import annotations

import pulumi_kubernetes as k8s

from . import broker as broker_mod

core = k8s.core.v1


def selector(app: str, instance: str) -> dict[str, str]:
    """The labels that select one stack's pods of one kind (``app``)."""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/part-of": "celery-gcs",
    }


def pod_security(run_as_user: int | None = None) -> k8s.core.v1.PodSecurityContextArgs:
    return core.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=run_as_user,
        seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
    )


def container_security() -> k8s.core.v1.SecurityContextArgs:
    return core.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=core.CapabilitiesArgs(drop=["ALL"]),
    )


def guaranteed(resources: dict[str, str]) -> k8s.core.v1.ResourceRequirementsArgs:
    """Requests equal to limits: the Guaranteed QoS class, evicted last."""
    return core.ResourceRequirementsArgs(requests=resources, limits=resources)


def broker_ca_volume(secret_name: str) -> k8s.core.v1.VolumeArgs:
    """The broker Secret's CA file, alone, as the volume ``broker-ca``."""
    return core.VolumeArgs(
        name="broker-ca",
        secret=core.SecretVolumeSourceArgs(
            secret_name=secret_name,
            items=[core.KeyToPathArgs(key=broker_mod.CA_FILE, path=broker_mod.CA_FILE)],
        ),
    )


def broker_ca_mount() -> k8s.core.v1.VolumeMountArgs:
    return core.VolumeMountArgs(name="broker-ca", mount_path=broker_mod.CA_DIR, read_only=True)


def secret_env(name: str, secret_name: str, key: str) -> k8s.core.v1.EnvVarArgs:
    """An environment variable read from one key of a Secret (never a plain value)."""
    return core.EnvVarArgs(
        name=name,
        value_from=core.EnvVarSourceArgs(
            secret_key_ref=core.SecretKeySelectorArgs(name=secret_name, key=key)
        ),
    )


def zone_spread(selector: dict[str, str]) -> k8s.core.v1.TopologySpreadConstraintArgs:
    """Spread the selected pods over zones where the cluster has them, never blocking scheduling."""
    return core.TopologySpreadConstraintArgs(
        max_skew=1,
        topology_key="topology.kubernetes.io/zone",
        when_unsatisfiable="ScheduleAnyway",
        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
    )
