"""The NetworkPolicies of the stack's pods: nothing in, and out only where each pod must go.

Workers accept ingress only from the metrics collectors of Managed Service
for Prometheus, on the metrics port (their probes are exec probes), and reach only cluster DNS (kube-dns pods, or the node-local resolvers
of Cloud DNS and NodeLocal DNSCache, which only an ipBlock can admit), the GKE metadata server (Workload Identity
tokens), the broker's address and port, and Google APIs on 443
(private.googleapis.com on the stack's own VPC, whose DNS sends every
googleapis.com name there; anywhere on 443 on a network the stack does not own).
"""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_kubernetes as k8s

from . import broker as broker_mod
from .monitoring import COLLECTOR_LABELS, COLLECTOR_NAMESPACE, METRICS_PORT

np = k8s.networking.v1

#: The GKE metadata server under Workload Identity, as GKE's network-policy guidance lists it
#: (https://cloud.google.com/kubernetes-engine/docs/how-to/network-policy): 169.254.169.254:80,
#: the address pods dial, which Dataplane V2 (every Autopilot cluster) matches before it
#: translates it; and 169.254.169.252:988, where the node translates it to, which is what
#: a Calico (Dataplane V1) cluster's policy sees. Both, so one policy works on either
#: (confirmed in Google's gke-labs/kube-agents#777 and #805). 8080/987 (the ALTS handshaker
#: of gRPC DirectPath) stay closed: no client here takes DirectPath.
METADATA_EGRESS = (("169.254.169.254/32", 80), ("169.254.169.252/32", 988))
#: Cluster DNS pods: kube-dns, and NodeLocal DNSCache where it runs as pods.
DNS_APPS = ("kube-dns", "node-local-dns")
#: Node-local resolvers no pod selector can match (they are not pods), so only an ipBlock
#: admits them: Cloud DNS for GKE answers on the node's metadata server, 169.254.169.254:53
#: (https://cloud.google.com/kubernetes-engine/docs/how-to/cloud-dns; seen on a live cluster in
#: gke-labs/kube-agents#1140: a policy without it left pods unable to resolve googleapis.com),
#: and NodeLocal DNSCache,
#: on by default on Autopilot, on 169.254.20.10:53
#: (https://cloud.google.com/kubernetes-engine/docs/how-to/nodelocal-dns-cache).
NODE_LOCAL_RESOLVERS = ("169.254.169.254/32", "169.254.20.10/32")



def broker_block(host: str) -> str:
    """The broker's address as a /32; any address when it is a host name (resolved by DNS)."""
    try:
        return f"{ipaddress.ip_address(host)}/32"
    except ValueError:
        return "0.0.0.0/0"


def to_ip(
    cidr: pulumi.Input[str], port: pulumi.Input[int]
) -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    return np.NetworkPolicyEgressRuleArgs(
        to=[np.NetworkPolicyPeerArgs(ip_block=np.IPBlockArgs(cidr=cidr))],
        ports=[np.NetworkPolicyPortArgs(port=port, protocol="TCP")],
    )


def dns_egress() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """DNS, wherever the cluster answers it: kube-dns pods, Cloud DNS or NodeLocal DNSCache."""
    return np.NetworkPolicyEgressRuleArgs(
        to=[
            *(
                np.NetworkPolicyPeerArgs(ip_block=np.IPBlockArgs(cidr=c))
                for c in NODE_LOCAL_RESOLVERS
            ),
            np.NetworkPolicyPeerArgs(
                namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                    match_labels={"kubernetes.io/metadata.name": "kube-system"}
                ),
                pod_selector=k8s.meta.v1.LabelSelectorArgs(
                    match_expressions=[
                        k8s.meta.v1.LabelSelectorRequirementArgs(
                            key="k8s-app", operator="In", values=list(DNS_APPS)
                        )
                    ]
                ),
            ),
        ],
        ports=[np.NetworkPolicyPortArgs(port=53, protocol=p) for p in ("UDP", "TCP")],
    )


def broker_egress(
    conn: broker_mod.BrokerConnection,
) -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    return to_ip(conn.host.apply(broker_block), conn.port)


def scrape_ingress(port: int) -> k8s.networking.v1.NetworkPolicyIngressRuleArgs:
    """Managed Service for Prometheus' collectors (gmp-system), and only them, on the metrics port."""
    return np.NetworkPolicyIngressRuleArgs(
        from_=[
            np.NetworkPolicyPeerArgs(
                namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                    match_labels={"kubernetes.io/metadata.name": COLLECTOR_NAMESPACE}
                ),
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=COLLECTOR_LABELS),
            )
        ],
        ports=[np.NetworkPolicyPortArgs(port=port, protocol="TCP")],
    )


def workers(
    selector: dict[str, str], conn: broker_mod.BrokerConnection, google_apis_cidr: str
) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """Ingress only from the metrics collectors; egress to DNS, the metadata server, the broker and Google APIs."""
    return np.NetworkPolicySpecArgs(
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
        policy_types=["Ingress", "Egress"],
        ingress=[scrape_ingress(METRICS_PORT)],
        egress=[
            dns_egress(),
            *(to_ip(cidr, port) for cidr, port in METADATA_EGRESS),
            broker_egress(conn),
            to_ip(google_apis_cidr, 443),
        ],
    )
