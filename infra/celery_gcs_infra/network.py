"""A new cluster's network: the stack's own VPC, or an existing network and subnetwork it is given.

Never ``default``: that network's firewall rules let SSH and RDP in from the
internet. The stack's own VPC is custom-mode with one subnetwork in the region
(Private Google Access on, secondary ranges for pods and services), and a
private Cloud DNS zone that resolves ``*.googleapis.com`` to
``private.googleapis.com`` (:data:`PRIVATE_GOOGLE_APIS`), so the workers'
NetworkPolicy can allow Google APIs by address instead of the whole internet.

Cloud NAT (``cloud_nat``) is only for egress the private nodes cannot do
otherwise (KEDA's images from ghcr.io, a broker on the internet), and serves the
cluster's subnetwork only: a NAT over every subnetwork of the region would fail
where the network has a NAT already, and with a second stack.

With ``connect_mode`` PRIVATE_SERVICE_ACCESS on a VPC the stack makes, it also
makes the private services access connection Memorystore needs (an allocated
range and the peering with servicenetworking.googleapis.com).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from . import common

SUBNET_CIDR = "10.10.0.0/20"
PODS_RANGE = ("pods", "10.16.0.0/14")
SERVICES_RANGE = ("services", "10.20.0.0/20")
#: private.googleapis.com: every Google API, reachable through Private Google Access.
PRIVATE_GOOGLE_APIS = ("199.36.153.8", "199.36.153.9", "199.36.153.10", "199.36.153.11")
PRIVATE_GOOGLE_APIS_CIDR = "199.36.153.8/30"
PSA_PREFIX_LENGTH = 24
#: pulumi_gcp's servicenetworking.Connection deletion policy (provider 10.x; terraform-provider-google
#: issue 16275, magic-modules PR 18476).
PSA_DELETION_POLICY = "REMOVE_PEERING"


def subnetwork_id(project: str, region: str, subnetwork: str) -> str:
    """``projects/P/regions/R/subnetworks/S`` from a name, a partial path or a URL."""
    if "projects/" in subnetwork:
        return subnetwork[subnetwork.index("projects/") :]
    return f"projects/{project}/regions/{region}/subnetworks/{subnetwork}"


def is_default(network: str) -> bool:
    return network.rstrip("/").rsplit("/", 1)[-1] == "default"


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    project: str
    region: str
    #: Name of the VPC and subnetwork the stack makes (the prefix).
    name: str
    #: An existing network (name, path or URL); empty to make the stack's own VPC.
    network: str = ""
    #: The existing network's subnetwork for the cluster; required with ``network``.
    subnetwork: str = ""
    cloud_nat: bool = False
    #: Make the private services access connection Memorystore's PSA mode needs.
    private_service_access: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        common.project_id(self.project)
        common.region(self.region)
        common.dns_label(self.name, "prefix", max_len=40)
        common.check(
            not is_default(self.network),
            "network",
            "the default network's firewall rules let SSH and RDP in from the internet",
            "Leave network empty (the stack makes its own VPC) or name a network you control",
        )
        if self.network:
            common.check(
                bool(self.subnetwork),
                "subnetwork",
                "an existing network needs the subnetwork the cluster uses",
                "Set subnetwork to a subnetwork of that network in the region (with Private "
                "Google Access on), or leave network empty for the stack's own VPC",
            )
            common.check(
                not self.cloud_nat
                or common.network_project(self.network, self.project) == self.project,
                "cloud_nat",
                "the network belongs to another project (a Shared VPC); its NAT is the host "
                "project's",
                "Turn cloudNat off and have the host project's administrators add NAT",
            )
        else:
            common.check(
                not self.subnetwork,
                "subnetwork",
                "a subnetwork is only used with an existing network",
                "Set network too, or remove subnetwork: the stack makes its own VPC and subnetwork",
            )


class Network(pulumi.ComponentResource):
    #: ``projects/P/global/networks/N``.
    network: pulumi.Output[str]
    #: ``projects/P/regions/R/subnetworks/S``.
    subnetwork: pulumi.Output[str]
    #: Secondary range names of the stack's subnetwork; None on an existing one.
    pods_range: str | None
    services_range: str | None
    #: True when the stack made the VPC and its private googleapis.com zone.
    own: bool
    #: What Memorystore's PRIVATE_SERVICE_ACCESS mode waits for; None when not made here.
    private_service_access: pulumi.Resource | None

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("network", "Network"), name, None, opts)
        self.own = not args.network
        self.private_service_access = None
        if self.own:
            self._own(name, args)
        else:
            self.network = pulumi.Output.from_input(common.network_id(args.project, args.network))
            self.subnetwork = pulumi.Output.from_input(
                subnetwork_id(args.project, args.region, args.subnetwork)
            )
            self.pods_range = self.services_range = None
        if args.cloud_nat:
            self._nat(name, args)
        self.register_outputs({"network": self.network, "subnetwork": self.subnetwork})

    def _own(self, name: str, args: NetworkArgs) -> None:
        vpc = gcp.compute.Network(
            f"{name}-vpc",
            name=args.name,
            project=args.project,
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            description="celery-gcs: the cluster's and Memorystore's own network",
            opts=common.child(self),
        )
        subnet = gcp.compute.Subnetwork(
            f"{name}-subnet",
            name=args.name,
            project=args.project,
            region=args.region,
            network=vpc.id,
            ip_cidr_range=SUBNET_CIDR,
            private_ip_google_access=True,
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=n, ip_cidr_range=c)
                for n, c in (PODS_RANGE, SERVICES_RANGE)
            ],
            opts=common.child(self),
        )
        zone = gcp.dns.ManagedZone(
            f"{name}-googleapis",
            name=f"{args.name}-googleapis",
            project=args.project,
            dns_name="googleapis.com.",
            visibility="private",
            description="Google APIs through private.googleapis.com (Private Google Access)",
            private_visibility_config=gcp.dns.ManagedZonePrivateVisibilityConfigArgs(
                networks=[gcp.dns.ManagedZonePrivateVisibilityConfigNetworkArgs(network_url=vpc.id)]
            ),
            labels={**common.APP_LABEL, **args.labels},
            opts=common.child(self),
        )
        for record, kind, data in (
            ("private.googleapis.com.", "A", list(PRIVATE_GOOGLE_APIS)),
            ("*.googleapis.com.", "CNAME", ["private.googleapis.com."]),
        ):
            gcp.dns.RecordSet(
                f"{name}-googleapis-{kind.lower()}",
                project=args.project,
                managed_zone=zone.name,
                name=record,
                type=kind,
                ttl=300,
                rrdatas=data,
                opts=common.child(self),
            )
        if args.private_service_access:
            allocated = gcp.compute.GlobalAddress(
                f"{name}-psa-range",
                name=f"{args.name}-psa",
                project=args.project,
                network=vpc.id,
                purpose="VPC_PEERING",
                address_type="INTERNAL",
                prefix_length=PSA_PREFIX_LENGTH,
                opts=common.child(self),
            )
            self.private_service_access = gcp.servicenetworking.Connection(
                f"{name}-psa",
                network=vpc.id,
                service="servicenetworking.googleapis.com",
                reserved_peering_ranges=[allocated.name],
                # Memorystore holds the connection for minutes after its instance is deleted, so
                # a plain delete fails and leaves the peering that blocks the VPC's deletion;
                # REMOVE_PEERING then removes the peering, and `pulumi destroy` completes.
                deletion_policy=PSA_DELETION_POLICY,
                opts=common.child(self),
            )
        self.network = vpc.id.apply(
            lambda _: f"projects/{args.project}/global/networks/{args.name}"
        )
        self.subnetwork = subnet.id.apply(
            lambda _: subnetwork_id(args.project, args.region, args.name)
        )
        self.pods_range, self.services_range = PODS_RANGE[0], SERVICES_RANGE[0]
        self._vpc = vpc

    def _nat(self, name: str, args: NetworkArgs) -> None:
        router = gcp.compute.Router(
            f"{name}-router",
            name=f"{args.name}-router",
            project=args.project,
            region=args.region,
            network=self._vpc.id if self.own else self.network,
            opts=common.child(self),
        )
        gcp.compute.RouterNat(
            f"{name}-nat",
            name=f"{args.name}-nat",
            project=args.project,
            region=args.region,
            router=router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
            subnetworks=[
                gcp.compute.RouterNatSubnetworkArgs(
                    name=self.subnetwork, source_ip_ranges_to_nats=["ALL_IP_RANGES"]
                )
            ],
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=common.child(self),
        )
