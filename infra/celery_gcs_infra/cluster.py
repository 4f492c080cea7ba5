"""Where the workers run: a new GKE Autopilot cluster, or an existing cluster by name.

A new cluster has private nodes, a release channel and Workload Identity (always
on in Autopilot, stated here because the worker's identity depends on it). Its
nodes run as a dedicated service account with only
``roles/container.defaultNodeServiceAccount``, instead of the Compute Engine
default account. Private nodes reach Google APIs through Private Google Access;
anything else on the internet (an external broker, KEDA's images) needs Cloud
NAT, which ``cloud_nat`` adds for the cluster's own subnetwork only: a NAT over
every subnetwork of the region would fail where the network has a NAT already
(each subnetwork range is served by one NAT gateway), and with a second stack.

An existing cluster is read with ``getCluster``; the program stops with an
error if Workload Identity is off there. Its nodes' service account (the
cluster's node config or Autopilot's auto-provisioning default; the Compute
Engine default account when that says ``default``) is offered as
``node_service_account_email``, so the stack can let it pull the built image.

Either way the component offers a Kubernetes provider for that cluster.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from . import common

NODE_ROLE = "roles/container.defaultNodeServiceAccount"
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
E_NO_WORKLOAD_IDENTITY = (
    "cluster {name} in {location} has Workload Identity off (no {project}.svc.id.goog pool); "
    "enable it (gcloud container clusters update {name} --location {location} "
    "--workload-pool={project}.svc.id.goog) or let this stack create a cluster"
)


def workload_pool(project: str) -> str:
    return f"{project}.svc.id.goog"


def kubeconfig(*, name: str, endpoint: str, ca_certificate: str) -> str:
    """A kubeconfig that authenticates with gke-gcloud-auth-plugin (no static credentials)."""
    context = f"gke-{name}"
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": context,
                    "cluster": {
                        "server": f"https://{endpoint}",
                        "certificate-authority-data": ca_certificate,
                    },
                }
            ],
            "users": [
                {
                    "name": context,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "gke-gcloud-auth-plugin",
                            "provideClusterInfo": True,
                            "installHint": "Install gke-gcloud-auth-plugin: "
                            "gcloud components install gke-gcloud-auth-plugin",
                        }
                    },
                }
            ],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
    )


def subnetwork_id(project: str, region: str, subnetwork: str) -> str:
    """``projects/P/regions/R/subnetworks/S`` from a name, a partial path or a URL."""
    if "projects/" in subnetwork:
        return subnetwork[subnetwork.index("projects/") :]
    return f"projects/{project}/regions/{region}/subnetworks/{subnetwork}"


def node_account(result: Any) -> str | None:
    """The service account a looked-up cluster's nodes run as; None for Compute Engine's default."""
    accounts = [c.service_account for c in result.node_configs or []]
    accounts += [
        d.service_account
        for a in result.cluster_autoscalings or []
        for d in a.auto_provisioning_defaults or []
    ]
    return next((a for a in accounts if a and a != "default"), None)


def require_workload_identity(pool: str | None, *, project: str, name: str, location: str) -> None:
    if pool != workload_pool(project):
        raise ValueError(
            E_NO_WORKLOAD_IDENTITY.format(name=name, location=location, project=project)
        )


@dataclass(frozen=True, kw_only=True)
class ClusterArgs:
    project: str
    #: Region (Autopilot clusters are regional) or, for an existing cluster, its location.
    location: str
    name: str
    #: Use the cluster ``name`` that already exists instead of creating one.
    existing: bool = False
    network: str = "default"
    subnetwork: str = ""
    release_channel: str = "REGULAR"
    #: Service account ID for a new cluster's nodes.
    node_account_id: str = ""
    cloud_nat: bool = False
    #: Start (UTC, HH:MM) of the daily window in which GKE may upgrade a new
    #: cluster; upgrades outside it would restart workers at any hour.
    maintenance_start: str = "03:00"
    protect: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        common.project_id(self.project)
        common.dns_label(self.name, "cluster", max_len=40)
        if self.existing:
            return
        common.region(self.location, "region")
        common.check(
            self.release_channel in RELEASE_CHANNELS,
            "release_channel",
            f"{self.release_channel!r} is not a GKE release channel",
            f"Use one of {', '.join(RELEASE_CHANNELS)}",
        )
        common.check(
            bool(_TIME.match(self.maintenance_start)),
            "maintenance_start",
            f"{self.maintenance_start!r} is not a time of day",
            "Use HH:MM in UTC, such as 03:00",
        )
        common.check(
            not self.cloud_nat or bool(self.subnetwork),
            "subnetwork",
            "Cloud NAT needs the cluster's own subnetwork",
            "Set subnetwork to a subnetwork of the region that only this stack uses (the NAT "
            "serves it alone; another NAT on the same range fails), or turn cloudNat off",
        )
        common.check(
            6 <= len(self.node_account_id) <= 30,
            "node_account_id",
            f"{self.node_account_id!r} must be 6-30 characters long",
            "Use a shorter name prefix",
        )


class Cluster(pulumi.ComponentResource):
    #: The cluster this stack created; ``None`` for an existing one.
    cluster: gcp.container.Cluster | None
    name: pulumi.Output[str]
    location: pulumi.Output[str]
    #: ``projects/P/global/networks/N``.
    network: pulumi.Output[str]
    node_service_account_email: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("cluster", "Cluster"), name, None, opts)
        if args.existing:
            self._existing(name, args, common.invoke_options(self, opts))
        else:
            self._autopilot(name, args)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=pulumi.Output.secret(self._kubeconfig),
            opts=common.child(self),
        )
        self.register_outputs(
            {"name": self.name, "location": self.location, "network": self.network}
        )

    def _existing(
        self, name: str, args: ClusterArgs, invoke_opts: pulumi.InvokeOutputOptions
    ) -> None:
        found = gcp.container.get_cluster_output(
            name=args.name,
            location=args.location,
            project=args.project,
            opts=invoke_opts,
        )

        def checked(result) -> str:
            pools = [c.workload_pool for c in result.workload_identity_configs or []]
            require_workload_identity(
                pools[0] if pools else None,
                project=args.project,
                name=args.name,
                location=args.location,
            )
            return result.name

        def nodes(result) -> pulumi.Output[str] | str:
            account = node_account(result)
            if account:
                return account
            project = gcp.organizations.get_project_output(
                project_id=args.project, opts=invoke_opts
            )
            return project.number.apply(lambda n: f"{n}-compute@developer.gserviceaccount.com")

        self.cluster = None
        self.node_service_account_email = found.apply(nodes)
        self.name = found.apply(checked)
        self.location = found.apply(lambda r: r.location or args.location)
        self.network = found.apply(lambda r: common.network_id(args.project, r.network))
        self._kubeconfig = found.apply(
            lambda r: kubeconfig(
                name=r.name,
                endpoint=r.endpoint,
                ca_certificate=r.master_auths[0].cluster_ca_certificate,
            )
        )

    def _autopilot(self, name: str, args: ClusterArgs) -> None:
        network = common.network_id(args.project, args.network)
        nodes = gcp.serviceaccount.Account(
            f"{name}-nodes",
            project=args.project,
            account_id=args.node_account_id,
            display_name="celery-gcs GKE nodes",
            description="Node service account of the celery-gcs Autopilot cluster; no keys.",
            opts=common.child(self),
        )
        node_role = gcp.projects.IAMMember(
            f"{name}-nodes-role",
            project=args.project,
            role=NODE_ROLE,
            member=nodes.email.apply(lambda e: f"serviceAccount:{e}"),
            opts=common.child(self),
        )
        if args.cloud_nat:
            router = gcp.compute.Router(
                f"{name}-router",
                name=f"{args.name}-router",
                project=args.project,
                region=args.location,
                network=network,
                opts=common.child(self),
            )
            gcp.compute.RouterNat(
                f"{name}-nat",
                name=f"{args.name}-nat",
                project=args.project,
                region=args.location,
                router=router.name,
                nat_ip_allocate_option="AUTO_ONLY",
                source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
                subnetworks=[
                    gcp.compute.RouterNatSubnetworkArgs(
                        name=subnetwork_id(args.project, args.location, args.subnetwork),
                        source_ip_ranges_to_nats=["ALL_IP_RANGES"],
                    )
                ],
                log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
                opts=common.child(self),
            )
        self.cluster = gcp.container.Cluster(
            f"{name}-cluster",
            name=args.name,
            project=args.project,
            location=args.location,
            enable_autopilot=True,
            network=network,
            subnetwork=args.subnetwork or None,
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True,
                enable_private_endpoint=False,
            ),
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=args.release_channel),
            maintenance_policy=gcp.container.ClusterMaintenancePolicyArgs(
                daily_maintenance_window=gcp.container.ClusterMaintenancePolicyDailyMaintenanceWindowArgs(
                    start_time=args.maintenance_start
                )
            ),
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=workload_pool(args.project)
            ),
            cluster_autoscaling=gcp.container.ClusterClusterAutoscalingArgs(
                auto_provisioning_defaults=gcp.container.ClusterClusterAutoscalingAutoProvisioningDefaultsArgs(
                    service_account=nodes.email,
                    oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
                )
            ),
            resource_labels={**common.APP_LABEL, **args.labels},
            # The provider's default is true; dev stacks must be destroyable.
            deletion_protection=args.protect,
            opts=common.child(self, depends_on=[node_role], protect=args.protect),
        )
        self.node_service_account_email = nodes.email
        self.name = self.cluster.name
        self.location = self.cluster.location
        self.network = pulumi.Output.from_input(network)
        self._kubeconfig = pulumi.Output.all(
            self.cluster.name,
            self.cluster.endpoint,
            self.cluster.master_auth.cluster_ca_certificate,
        ).apply(lambda v: kubeconfig(name=v[0], endpoint=v[1], ca_certificate=v[2]))
