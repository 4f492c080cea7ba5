"""Environments side by side: many stacks in one project and one cluster, as the real APIs see them.

The inventories are replayed against cloud_model.py, which rejects what
Google Cloud and Kubernetes reject (AlreadyExists on a taken name, a second
NAT for the same subnetwork) and reports a Workload Identity member two
stacks would share.
"""

from __future__ import annotations

import pytest

from .cloud_model import conflicts, names
from .infra_inventory import Inventory
from .infra_scenarios import SHARED_CLUSTER, SHARED_PROJECT
from .run_program import endpoint_for

NAMESPACE = "kubernetes:core/v1:Namespace"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SA_MEMBER = "gcp:serviceaccount/iAMMember:IAMMember"
DATABASE = "gcp:firestore/database:Database"
SHARED_SERVER = "https://" + endpoint_for(SHARED_PROJECT, "europe-west1", SHARED_CLUSTER)


def inventory(runs: dict, name: str) -> Inventory:
    run = runs[name]
    assert run["error"] is None, f"{name}: program failed\n{run['error']['traceback']}"
    return Inventory(run)


@pytest.mark.parametrize(
    "pair",
    [
        ("alpha", "beta"),
        ("shared_a", "shared_b"),
        ("nat_a", "nat_b"),
        # Regression: the prefix came from the stack's name alone, so two teams' stacks named
        # dev (two Pulumi projects, or two organizations) claimed the same names.
        ("orders_dev", "billing_dev"),
        ("dev", "other_org_dev"),
        # Regression: the dev example named its database, so a stack copied from it took dev's.
        ("dev", "staging_from_dev"),
    ],
)
def test_two_environments_share_no_name_identity_database_or_field(runs, pair):
    first, second = (inventory(runs, name) for name in pair)
    assert conflicts([first, second]) == []
    assert names(first) & names(second) == set()
    members = [{r["inputs"]["member"] for r in inv.of_type(SA_MEMBER)} for inv in (first, second)]
    assert members[0] and members[1] and not members[0] & members[1]
    databases = [inv.one(DATABASE)["inputs"]["name"] for inv in (first, second)]
    assert "(default)" not in databases and databases[0] != databases[1]


def test_environments_on_a_shared_cluster_deploy_into_that_cluster(runs):
    for name in ("shared_a", "shared_b"):
        keys = [k for k in names(inventory(runs, name)) if k[0] == "k8s"]
        assert keys and {k[1] for k in keys} == {SHARED_SERVER}


def test_the_model_rejects_a_stack_applied_twice_and_a_taken_namespace(runs):
    alpha = inventory(runs, "alpha")
    again = conflicts([alpha, alpha])
    assert any("AlreadyExists ('gcp:firestore/database:Database'" in c for c in again)
    assert any(c.startswith("shared identity") for c in again)
    shared = inventory(runs, "shared_a")
    namespace = shared.one(NAMESPACE)["inputs"]["metadata"]["name"]
    taken = conflicts([shared], existing=[("k8s", SHARED_SERVER, "Namespace", "", namespace)])
    assert [c for c in taken if "Namespace" in c]


def test_an_existing_namespace_is_used_without_owning_it(runs):
    team = inventory(runs, "team_ns")
    assert team.of_type(NAMESPACE) == []
    assert team.outputs["namespace"] == "team-apps"
    for obj in team.kubernetes_objects():
        assert obj["inputs"]["metadata"]["namespace"] == "team-apps", obj["name"]
    existing = [("k8s", SHARED_SERVER, "Namespace", "", "team-apps")]
    stacks = [inventory(runs, name) for name in ("shared_a", "shared_b", "team_ns")]
    assert conflicts(stacks, existing=existing) == []


def test_the_model_rejects_a_nat_over_every_subnetwork_beside_another(runs):
    nat_a = inventory(runs, "nat_a")
    everything = Inventory(
        {**runs["nat_b"], "resources": [dict(r) for r in runs["nat_b"]["resources"]]}
    )
    for r in everything.of_type("gcp:compute/routerNat:RouterNat"):
        r["inputs"] = {**r["inputs"], "sourceSubnetworkIpRangesToNat": "ALL_SUBNETWORKS_ALL_IP_RANGES"}
    assert [c for c in conflicts([nat_a, everything]) if c.startswith("NAT")]
