"""KEDA, installed with its Helm chart on a cluster this stack creates.

The ScaledObject and TriggerAuthentication kinds only exist once KEDA's CRDs
do; the chart installs them (``skip_crds`` off), and the worker's KEDA objects
wait for this release. The chart's version is pinned: an unpinned chart would
move under a running stack on the next ``pulumi up``.

A cluster the stack does not create may be shared: KEDA goes there once per
cluster, not once per stack (two releases would fight over the same CRDs), so
the stack only uses it (``kedaInstalled``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from . import common

CHART = "keda"
CHART_REPOSITORY = "https://kedacore.github.io/charts"
#: Bump deliberately, after reading KEDA's upgrade notes, together with the cluster's
#: ``kubernetesVersion``: :func:`check_supported` refuses a pair KEDA does not support.
CHART_VERSION = "2.19.0"
NAMESPACE = "keda"
#: What GKE's control plane must reach on KEDA's pods: its metrics API server on 6443 (KEDA's
#: "Firewall" table: on Google Cloud the control plane calls port 6443 on the Pod range,
#: https://keda.sh/docs/2.20/operate/cluster/#firewall) and its admission webhooks on 9443.
#: A private cluster's nodes admit only 443 and 10250 from the control plane
#: (https://cloud.google.com/kubernetes-engine/docs/how-to/private-clusters#add_firewall_rules),
#: and GKE's API server calls an API service's or webhook's pod address, not its Service
#: (kedacore/keda#1642, kubernetes/kubernetes#79739).
CONTROL_PLANE_PORTS = ("6443", "9443")
#: The Kubernetes minors each KEDA minor is tested on, from KEDA's compatibility matrix
#: (https://keda.sh/docs/2.20/operate/cluster/#kubernetes-compatibility, kedacore/keda-docs
#: content/docs/2.20/operate/cluster.md; v2.20's row is still "TBD" there).
KUBERNETES_SUPPORT: dict[str, tuple[str, str]] = {
    "2.19": ("1.32", "1.34"),
    "2.18": ("1.31", "1.33"),
    "2.17": ("1.30", "1.32"),
    "2.16": ("1.29", "1.31"),
}
_MINOR = re.compile(r"^(\d+)\.(\d+)")


def minor(version: str) -> tuple[int, int]:
    """``(1, 34)`` from ``1.34``, ``1.34.1-gke.3720000`` or ``2.19.0``."""
    match = _MINOR.match(version)
    if not match:
        raise ValueError(f"{version!r} is not a version")
    return int(match.group(1)), int(match.group(2))


def supports(keda_version: str, kubernetes_version: str) -> bool:
    """Whether KEDA's matrix lists ``kubernetes_version``'s minor for ``keda_version``'s minor."""
    span = KUBERNETES_SUPPORT.get("{}.{}".format(*minor(keda_version)))
    return span is not None and minor(span[0]) <= minor(kubernetes_version) <= minor(span[1])


def check_supported(keda_version: str, kubernetes_version: str) -> None:
    span = KUBERNETES_SUPPORT.get("{}.{}".format(*minor(keda_version)))
    tested = f"tested on Kubernetes {span[0]}-{span[1]}" if span else "not in KEDA's matrix here"
    common.check(
        supports(keda_version, kubernetes_version),
        "keda_version",
        f"KEDA {keda_version} is {tested}, and the cluster runs {kubernetes_version}",
        "Pin a KEDA release whose compatibility row covers kubernetesVersion "
        f"(https://keda.sh/docs/latest/operate/cluster/; {CHART_VERSION} covers "
        f"{KUBERNETES_SUPPORT['{}.{}'.format(*minor(CHART_VERSION))][0]}-"
        f"{KUBERNETES_SUPPORT['{}.{}'.format(*minor(CHART_VERSION))][1]}), or set kubernetesVersion "
        "within the pinned release's range",
    )


@dataclass(frozen=True, kw_only=True)
class KedaArgs:
    version: str = CHART_VERSION
    namespace: str = NAMESPACE
    #: The cluster's Kubernetes minor (its minimum master version), which KEDA must support.
    kubernetes_version: str
    #: Kubernetes provider of the cluster KEDA goes into.
    provider: k8s.Provider | None = None

    def __post_init__(self) -> None:
        common.dns_label(self.namespace, "keda_namespace")
        common.check(
            bool(re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", self.version)),
            "keda_version",
            f"{self.version!r} is not a pinned chart version",
            f"Pin an exact version such as {CHART_VERSION}",
        )
        check_supported(self.version, self.kubernetes_version)


def control_plane_firewall(
    name: str, parent: pulumi.Resource, net: Any, gke: Any
) -> gcp.compute.Firewall:
    """Let the control plane reach KEDA's metrics server and webhooks on the stack's own VPC.

    The source is the control plane's private endpoint (Private Service Connect, GKE 1.29+);
    the targets are the nodes' service account only.
    """
    return gcp.compute.Firewall(
        f"{name}-control-plane",
        project=gke.cluster.project,
        network=net.network,
        direction="INGRESS",
        description="celery-gcs: GKE's control plane to KEDA's metrics API server and webhooks",
        source_ranges=[gke.cluster.private_cluster_config.private_endpoint.apply(lambda ip: f"{ip}/32")],
        target_service_accounts=[gke.node_service_account_email],
        allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=list(CONTROL_PLANE_PORTS))],
        opts=common.child(parent),
    )


class Keda(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(
        self, name: str, args: KedaArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("keda", "Keda"), name, None, opts)
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=CHART,
            chart=CHART,
            version=args.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
            namespace=args.namespace,
            create_namespace=True,
            # The CRDs are what the worker's ScaledObject needs first.
            skip_crds=False,
            atomic=True,
            opts=common.child(self, provider=args.provider),
        )
        self.register_outputs({"version": self.release.version})
