"""Each stack as the real APIs would take it: what cloud_model.rejections() says the create would fail on.

Every real inventory creates cleanly; the CMEK environment also under the
organization policy constraints/gcp.restrictNonCmekServices, which stops a stack
without keys; and each rule of the model rejects a planted mistake.
"""

from __future__ import annotations

import copy

import pytest

from .cloud_model import (
    CMEK_SERVICES,
    NETWORK_POLICY,
    destroy_rejections,
    network_rejections,
    rejections,
)
from .infra_inventory import Inventory
from .run_program import AGENT_DOMAINS, agent_email

AGENTS = {service: agent_email(service) for service in AGENT_DOMAINS}
RESTRICTED = [service for _, service, _ in CMEK_SERVICES]
CLUSTER = "gcp:container/cluster:Cluster"
REDIS = "gcp:redis/instance:Instance"
DATABASE = "gcp:firestore/database:Database"


def inventory(runs, name) -> Inventory:
    assert runs[name]["error"] is None, runs[name]["error"]
    return Inventory(copy.deepcopy(runs[name]))


@pytest.mark.parametrize(
    "name",
    [
        "dev", "prod", "byo", "team", "alpha", "cmek", "shared_vpc", "psa", "keda_stack", "nat_a",
        # Regression: an existing cluster on another project's network (a Shared VPC host, a
        # cluster in another project) got a broker peering with it directly, which Memorystore refuses.
        "other_project_cluster", "shared_a", "team_ns",
        # Regression: a key in the region was refused for Firestore's eur3 (KMS location europe).
        "cmek_multi_region",
        # A new environment copied from the dev example; two teams' stacks both named dev.
        "staging_from_dev", "orders_dev", "billing_dev", "other_org_dev",
    ],
)  # fmt: skip
def test_every_stack_creates_cleanly(runs, name):
    assert rejections(inventory(runs, name), agents=AGENTS) == []


def test_under_restrict_non_cmek_services_only_the_keyed_stack_deploys(runs):
    """Regression (compute.googleapis.com): a keyed stack's nodes booted from disks without its key."""
    assert rejections(inventory(runs, "cmek"), agents=AGENTS, restrict_non_cmek=RESTRICTED) == []
    multi = inventory(runs, "cmek_multi_region")
    assert rejections(multi, agents=AGENTS, restrict_non_cmek=RESTRICTED) == []
    refused = rejections(inventory(runs, "dev"), agents=AGENTS, restrict_non_cmek=RESTRICTED)
    assert len(refused) == len(CMEK_SERVICES), refused
    assert all("restrictNonCmekServices" in r for r in refused)


def _one(inv: Inventory, typ: str) -> dict:
    return inv.one(typ)


def grant_after_the_database(inv):
    database = _one(inv, DATABASE)
    grants = {g["urn"] for g in inv.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")}
    database["dependencies"] = [d for d in database["dependencies"] if d not in grants]
    for ancestor in inv.ancestors(database):
        ancestor["dependencies"] = [d for d in ancestor["dependencies"] if d not in grants]


def key_granted_to_the_wrong_agent(inv):
    for g in inv.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"):
        if "cloud-redis" in g["inputs"]["member"]:
            g["inputs"]["member"] = "serviceAccount:" + AGENTS["storage.googleapis.com"]


def database_in_a_multi_region(inv):
    _one(inv, DATABASE)["inputs"]["locationId"] = "eur3"


def old_gke_without_master_cidr(inv):
    _one(inv, CLUSTER)["inputs"]["minMasterVersion"] = "1.27"


def master_cidr_too_big(inv):
    _one(inv, CLUSTER)["inputs"]["privateClusterConfig"]["masterIpv4CidrBlock"] = "172.16.0.0/24"


def host_bits_in_an_authorized_network(inv):
    _one(inv, CLUSTER)["inputs"]["masterAuthorizedNetworksConfig"]["cidrBlocks"] = [
        {"cidrBlock": "203.0.113.7/24"}
    ]


def calico_on_autopilot(inv):
    _one(inv, CLUSTER)["inputs"]["networkPolicy"] = {"enabled": True, "provider": "CALICO"}


def psa_without_connection(inv):
    redis = _one(inv, REDIS)
    connections = {c["urn"] for c in inv.of_type("gcp:servicenetworking/connection:Connection")}
    for r in [redis, *inv.ancestors(redis)]:
        r["dependencies"] = [d for d in r["dependencies"] if d not in connections]


def direct_peering_on_a_shared_vpc(inv):
    _one(inv, REDIS)["inputs"]["connectMode"] = "DIRECT_PEERING"


def window_at_half_past(inv):
    _one(inv, REDIS)["inputs"]["maintenancePolicy"]["weeklyMaintenanceWindows"][0]["startTime"]["minutes"] = 30


def rdb_without_period(inv):
    del _one(inv, REDIS)["inputs"]["persistenceConfig"]["rdbSnapshotPeriod"]


def read_replicas_on_one_gb(inv):
    _one(inv, REDIS)["inputs"].update(readReplicasMode="READ_REPLICAS_ENABLED", memorySizeGb=1)


def boot_disks_not_granted(inv):
    for g in inv.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"):
        if "compute-system" in g["inputs"]["member"]:
            g["inputs"]["member"] = "serviceAccount:" + AGENTS["container.googleapis.com"]


def disk_size_on_autopilot(inv):
    _one(inv, CLUSTER)["inputs"]["clusterAutoscaling"]["autoProvisioningDefaults"]["diskSize"] = 200


@pytest.mark.parametrize(
    ("base", "mutate", "expected"),
    [
        ("cmek", grant_after_the_database, "PERMISSION_DENIED"),
        ("cmek", key_granted_to_the_wrong_agent, "cloud-redis.iam.gserviceaccount.com cannot use"),
        ("cmek", database_in_a_multi_region, "is not in the resource's location europe"),
        ("dev", old_gke_without_master_cidr, "need a masterIpv4CidrBlock"),
        ("dev", master_cidr_too_big, "must be a private /28"),
        ("dev", host_bits_in_an_authorized_network, "invalid authorized network"),
        ("dev", calico_on_autopilot, "networkPolicy cannot be set"),
        ("psa", psa_without_connection, "no private services access connection"),
        ("shared_vpc", direct_peering_on_a_shared_vpc, "needs PRIVATE_SERVICE_ACCESS"),
        ("dev", window_at_half_past, "start on the hour"),
        ("cmek", rdb_without_period, "needs an rdbSnapshotPeriod"),
        ("dev", read_replicas_on_one_gb, "read replicas need STANDARD_HA"),
        ("cmek", boot_disks_not_granted, "compute-system.iam.gserviceaccount.com cannot use"),
        ("dev", disk_size_on_autopilot, "Autopilot manages its nodes; ['diskSize']"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_the_model_rejects_what_the_api_rejects(runs, base, mutate, expected):
    inv = inventory(runs, base)
    mutate(inv)
    found = rejections(inv, agents=AGENTS)
    assert any(expected in f for f in found), found


def test_every_pod_resolves_names_and_reaches_its_tokens_on_any_gke_dns(runs):
    """Regression: the policies allowed DNS only to kube-dns pods, so on Cloud DNS and
    NodeLocal DNSCache (new Autopilot clusters) no worker could resolve googleapis.com."""
    for name in ("dev", "prod", "keda_stack", "byo", "cmek"):
        assert network_rejections(inventory(runs, name)) == [], name


def dns_only_to_kube_dns_pods(inv):
    for policy in inv.of_type(NETWORK_POLICY):
        for rule in policy["inputs"]["spec"]["egress"]:
            rule["to"] = [p for p in rule.get("to", []) if "ipBlock" not in p or not p["ipBlock"]["cidr"].startswith("169.254.")]
        policy["inputs"]["spec"]["egress"] = [r for r in policy["inputs"]["spec"]["egress"] if r["to"]]


def metadata_on_port_80_only(inv):
    for policy in inv.of_type(NETWORK_POLICY):
        policy["inputs"]["spec"]["egress"] = [
            r
            for r in policy["inputs"]["spec"]["egress"]
            if r.get("to") != [{"ipBlock": {"cidr": "169.254.169.252/32"}}]
        ]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (dns_only_to_kube_dns_pods, "blocks NodeLocal DNSCache (169.254.20.10:53/UDP)"),
        (dns_only_to_kube_dns_pods, "blocks Cloud DNS (the node's metadata server) (169.254.169.254:53/UDP)"),
        (dns_only_to_kube_dns_pods, "blocks the GKE metadata server (169.254.169.254:80/TCP)"),
        (metadata_on_port_80_only, "blocks the GKE metadata server (after the node's translation, Calico) (169.254.169.252:988/TCP)"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_the_model_rejects_policies_that_cut_pods_off(runs, mutate, expected):
    inv = inventory(runs, "dev")
    mutate(inv)
    found = network_rejections(inv)
    assert any(expected in f for f in found), found


def test_the_model_lets_unrestricted_pods_reach_everything(runs):
    inv = inventory(runs, "dev")
    inv.resources[:] = [r for r in inv.resources if r["type"] != NETWORK_POLICY]
    assert network_rejections(inv) == []


@pytest.mark.parametrize("name", ["psa", "dev", "alpha"])
def test_an_unprotected_stack_can_be_destroyed(runs, name):
    """Regression: in PRIVATE_SERVICE_ACCESS mode the connection's delete failed while Memorystore
    still held it, and its peering blocked deleting the VPC."""
    assert destroy_rejections(inventory(runs, name)) == []


def test_the_model_rejects_a_connection_that_cannot_be_deleted(runs):
    inv = inventory(runs, "psa")
    inv.one("gcp:servicenetworking/connection:Connection")["inputs"].pop("deletionPolicy", None)
    assert any("still using this connection" in f for f in destroy_rejections(inv))
