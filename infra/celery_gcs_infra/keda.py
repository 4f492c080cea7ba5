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

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from . import common

CHART = "keda"
CHART_REPOSITORY = "https://kedacore.github.io/charts"
#: Bump deliberately, after reading KEDA's upgrade notes.
CHART_VERSION = "2.16.1"
NAMESPACE = "keda"


@dataclass(frozen=True, kw_only=True)
class KedaArgs:
    version: str = CHART_VERSION
    namespace: str = NAMESPACE
    #: Kubernetes provider of the cluster KEDA goes into.
    provider: k8s.Provider

    def __post_init__(self) -> None:
        common.dns_label(self.namespace, "keda_namespace")
        common.check(
            bool(self.version) and self.version[0].isdigit(),
            "keda_version",
            f"{self.version!r} is not a pinned chart version",
            "Pin an exact version such as 2.16.1",
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
