"""Where the workers run: a new GKE Autopilot cluster, or an existing cluster by name.

A new cluster is on the network the ``Network`` component gives it, with
private nodes, a release channel and Workload Identity (always on in Autopilot,
stated here because the worker's identity depends on it). Its nodes run as a
dedicated service account with only ``roles/container.defaultNodeServiceAccount``,
instead of the Compute Engine default account. Private nodes reach Google APIs
through Private Google Access.

The control plane is never open to the internet: its public endpoint accepts
only ``authorized_networks`` (and not "every Google Cloud address"), or, with
``private_endpoint``, it has no public endpoint at all. Private nodes need no
master CIDR: GKE 1.29+ connects them to the control plane with Private Service
Connect. Autopilot enforces NetworkPolicy (GKE Dataplane V2) without any setting.
With a CMEK key, Kubernetes Secrets are encrypted with it (application-layer
secrets encryption), after GKE's service agent is granted the key, and so are
the nodes' boot disks, after Compute Engine's service agent is granted it.

An existing cluster is read with ``getCluster``; the program stops with an
error if Workload Identity is off there, or if it does not enforce
NetworkPolicy (the workers' policy would be silently ignored). Its nodes' service account (the
cluster's node config or Autopilot's auto-provisioning default; the Compute
Engine default account when that says ``default``) is offered as
``node_service_account_email``, so the stack can let it pull the built image.

Either way the component offers a Kubernetes provider for that cluster.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from . import cmek, common

NODE_ROLE = "roles/container.defaultNodeServiceAccount"
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")
#: A new cluster's minimum minor. GKE's channels create 1.34-1.35 clusters now; 1.34 is the
#: newest minor KEDA's matrix covers (keda.KUBERNETES_SUPPORT), and the release channel
#: upgrades from there: bump it with keda.CHART_VERSION.
DEFAULT_KUBERNETES_VERSION = "1.34"
_KUBERNETES_VERSION = re.compile(r"^1\.[0-9]{2}$")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
E_NO_NETWORK_POLICY = (
    "cluster {name} in {location} does not enforce NetworkPolicy, so the workers' policy would "
    "be ignored; enable it (gcloud container clusters update {name} --location {location} "
    "--enable-network-policy, or use a Dataplane V2 or Autopilot cluster)"
)
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


def authorized_networks(value: str, field_name: str = "authorized_networks") -> tuple[str, ...]:
    """Comma-separated CIDR blocks, each a network address (no host bits), none the whole internet."""
    blocks = tuple(b.strip() for b in value.split(",") if b.strip())
    for block in blocks:
        try:
            parsed = ipaddress.ip_network(block, strict=True)
        except ValueError:
            parsed = None
        common.check(
            parsed is not None and parsed.version == 4,
            field_name,
            f"{block!r} is not an IPv4 CIDR block",
            "Use network addresses with a prefix length, such as 203.0.113.0/24 (no host bits)",
        )
        assert parsed is not None
        common.check(
            parsed.prefixlen > 0,
            field_name,
            f"{block} authorizes the whole internet",
            "List only your own ranges (office, VPN or CI egress)",
        )
    common.check(
        len(blocks) <= 50, field_name, f"{len(blocks)} blocks is more than GKE's 50", "List fewer"
    )
    return blocks


def enforces_network_policy(result: Any) -> bool:
    """Autopilot and Dataplane V2 always enforce NetworkPolicy; other clusters only with it enabled."""
    policies = [p for p in result.network_policies or [] if p.enabled]
    return bool(result.enable_autopilot) or result.datapath_provider == "ADVANCED_DATAPATH" or bool(policies)


def node_account(result: Any) -> str | None:
    """The service account a looked-up cluster's nodes run as; None for Compute Engine's default."""
    accounts = [c.service_account for c in result.node_configs or []]
    accounts += [
        d.service_account
        for a in result.cluster_autoscalings or []
        for d in a.auto_provisioning_defaults or []
    ]
    return next((a for a in accounts if a and a != "default"), None)


def node_accounts(result: Any) -> list[str]:
    """Every service account a looked-up cluster's nodes run as, in order, without repeats:
    the default node config, each node pool's, Autopilot's auto-provisioning default
    (``default`` for Compute Engine's default account)."""
    accounts = [c.service_account for c in result.node_configs or []]
    accounts += [c.service_account for p in result.node_pools or [] for c in p.node_configs or []]
    accounts += [
        d.service_account
        for a in result.cluster_autoscalings or []
        for d in a.auto_provisioning_defaults or []
    ]
    return list(dict.fromkeys(a for a in accounts if a))


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
    #: ``projects/P/global/networks/N`` and ``projects/P/regions/R/subnetworks/S`` of a new cluster.
    network: pulumi.Input[str] | None = None
    subnetwork: pulumi.Input[str] | None = None
    #: Secondary range names for pods and services on the stack's own subnetwork.
    pods_range: str | None = None
    services_range: str | None = None
    release_channel: str = "REGULAR"
    #: A new cluster's minimum Kubernetes minor (``minMasterVersion``): what KEDA must support.
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    #: Service account ID for a new cluster's nodes.
    node_account_id: str = ""
    #: CIDR blocks allowed to reach the control plane.
    authorized_networks: tuple[str, ...] = ()
    #: No public endpoint at all: Pulumi then runs from inside the network.
    private_endpoint: bool = False
    #: Cloud KMS key for application-layer Secrets encryption; empty: none.
    kms_key_name: str = ""
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
            bool(_KUBERNETES_VERSION.match(self.kubernetes_version)),
            "kubernetes_version",
            f"{self.kubernetes_version!r} is not a Kubernetes minor version",
            f"Use a minor such as {DEFAULT_KUBERNETES_VERSION} (GKE picks the patch)",
        )
        common.check(
            bool(_TIME.match(self.maintenance_start)),
            "maintenance_start",
            f"{self.maintenance_start!r} is not a time of day",
            "Use HH:MM in UTC, such as 03:00",
        )
        common.check(
            self.private_endpoint or bool(self.authorized_networks),
            "authorized_networks",
            "a new cluster's control plane must not be open to the internet, and no authorized "
            "network is set",
            "Set authorizedNetworks to the CIDR blocks that run pulumi and kubectl (office, VPN "
            "or CI egress, such as 203.0.113.0/24), or privateEndpoint true with a network you "
            "run pulumi from",
        )
        for block in self.authorized_networks:
            authorized_networks(block)
        cmek.key_name(self.kms_key_name)
        cmek.check_location(self.kms_key_name, self.location, "the cluster")
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
    #: Every account the nodes run as (each node pool's): what must be able to pull the image.
    node_service_account_emails: pulumi.Output[list[str]]
    provider: k8s.Provider

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("cluster", "Cluster"), name, None, opts)
        if args.existing:
            self._existing(name, args, common.invoke_options(self, opts))
        else:
            self._autopilot(name, args, common.invoke_options(self, opts))
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
            if not enforces_network_policy(result):
                raise ValueError(E_NO_NETWORK_POLICY.format(name=args.name, location=args.location))
            return result.name

        def nodes(result) -> pulumi.Output[str] | str:
            account = node_account(result)
            if account:
                return account
            project = gcp.organizations.get_project_output(
                project_id=args.project, opts=invoke_opts
            )
            return project.number.apply(lambda n: f"{n}-compute@developer.gserviceaccount.com")

        def all_nodes(result) -> pulumi.Output[list[str]]:
            accounts = node_accounts(result) or ["default"]
            default = gcp.organizations.get_project_output(project_id=args.project, opts=invoke_opts)
            default_email = default.number.apply(lambda n: f"{n}-compute@developer.gserviceaccount.com")
            return pulumi.Output.all(*(default_email if a == "default" else a for a in accounts))

        self.cluster = None
        self.node_service_account_email = found.apply(nodes)
        self.node_service_account_emails = found.apply(all_nodes)
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

    def _autopilot(
        self, name: str, args: ClusterArgs, invoke_opts: pulumi.InvokeOutputOptions
    ) -> None:
        nodes, node_role = self._node_account(name, args)
        after: list[pulumi.Resource] = [node_role]
        after += cmek.grants_before(
            name,
            parent=self,
            project=args.project,
            service="container.googleapis.com",
            key=args.kms_key_name,
            invoke_opts=invoke_opts,
        )
        # The nodes' boot disks are Compute Engine disks: its agent encrypts them.
        after += cmek.grants_before(
            f"{name}-boot-disk",
            parent=self,
            project=args.project,
            service="compute.googleapis.com",
            key=args.kms_key_name,
            invoke_opts=invoke_opts,
        )
        self.cluster = gcp.container.Cluster(
            f"{name}-cluster",
            name=args.name,
            project=args.project,
            location=args.location,
            enable_autopilot=True,
            network=args.network,
            subnetwork=args.subnetwork,
            ip_allocation_policy=ip_allocation(args),
            **control_plane_access(args),
            database_encryption=(
                gcp.container.ClusterDatabaseEncryptionArgs(
                    state="ENCRYPTED", key_name=args.kms_key_name
                )
                if args.kms_key_name
                else None
            ),
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=args.release_channel),
            min_master_version=args.kubernetes_version,
            maintenance_policy=gcp.container.ClusterMaintenancePolicyArgs(
                daily_maintenance_window=gcp.container.ClusterMaintenancePolicyDailyMaintenanceWindowArgs(
                    start_time=args.maintenance_start
                )
            ),
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=workload_pool(args.project)
            ),
            cluster_autoscaling=node_defaults(nodes.email, boot_disk_key=args.kms_key_name),
            resource_labels={**common.APP_LABEL, **args.labels},
            # The provider's default is true; dev stacks must be destroyable.
            deletion_protection=args.protect,
            opts=common.child(self, depends_on=after, protect=args.protect),
        )
        self.node_service_account_email = nodes.email
        self.node_service_account_emails = nodes.email.apply(lambda e: [e])
        self.name = self.cluster.name
        self.location = self.cluster.location
        self.network = pulumi.Output.from_input(args.network)
        self._kubeconfig = pulumi.Output.all(
            self.cluster.name,
            self.cluster.endpoint,
            self.cluster.master_auth.cluster_ca_certificate,
        ).apply(lambda v: kubeconfig(name=v[0], endpoint=v[1], ca_certificate=v[2]))

    def _node_account(
        self, name: str, args: ClusterArgs
    ) -> tuple[gcp.serviceaccount.Account, gcp.projects.IAMMember]:
        """The nodes' own service account, with only the default node role."""
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
            member=common.member(nodes.email),
            opts=common.child(self),
        )
        return nodes, node_role


def ip_allocation(args: ClusterArgs) -> gcp.container.ClusterIpAllocationPolicyArgs | None:
    """Pods and services in the stack's own subnetwork's secondary ranges (none given: GKE's)."""
    if not args.pods_range:
        return None
    return gcp.container.ClusterIpAllocationPolicyArgs(
        cluster_secondary_range_name=args.pods_range,
        services_secondary_range_name=args.services_range,
    )


def control_plane_access(args: ClusterArgs) -> dict[str, Any]:
    """Private nodes; the control plane reached only from ``authorized_networks`` (or privately)."""
    gke = gcp.container
    return {
        "private_cluster_config": gke.ClusterPrivateClusterConfigArgs(
            enable_private_nodes=True,
            enable_private_endpoint=args.private_endpoint,
        ),
        "master_authorized_networks_config": gke.ClusterMasterAuthorizedNetworksConfigArgs(
            cidr_blocks=[
                gke.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                    cidr_block=block, display_name=f"authorized-{i}"
                )
                for i, block in enumerate(args.authorized_networks)
            ],
            gcp_public_cidrs_access_enabled=False,
        ),
    }


def node_defaults(
    email: pulumi.Input[str], *, boot_disk_key: str = ""
) -> gcp.container.ClusterClusterAutoscalingArgs:
    """Autopilot's nodes run as ``email`` (not the Compute Engine default account), their boot
    disks encrypted with ``boot_disk_key`` when the stack has one.

    These three are the node settings an Autopilot cluster takes (``gcloud container clusters
    create-auto`` --service-account, --scopes, --boot-disk-kms-key); GKE manages the rest.
    """
    gke = gcp.container
    return gke.ClusterClusterAutoscalingArgs(
        auto_provisioning_defaults=gke.ClusterClusterAutoscalingAutoProvisioningDefaultsArgs(
            service_account=email,
            oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
            boot_disk_kms_key=boot_disk_key or None,
        )
    )
