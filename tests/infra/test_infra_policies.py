"""The policy pack (infra/policy): clean on every real inventory, and each policy catches its violation.

The policies are the pack's own StackValidationPolicy objects (infra_policies.py
runs them as the engine does); each bad inventory is a real one (dev, or the
CMEK environment) with one realistic mistake made in it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from celery_gcs import conventions

from . import infra_policies as policies
from .infra_scenarios import DEV


def test_real_inventories_comply(any_inventory):
    assert policies.check(any_inventory.resources) == {}


@pytest.mark.parametrize("name", ["alpha", "beta", "psa", "keda_stack", "nat_a", "shared_a"])
def test_every_new_environment_complies(runs, name):
    assert runs[name]["error"] is None
    assert policies.check(runs[name]["resources"]) == {}


def iam_member(typ: str, role: str, member: str, **inputs) -> dict:
    return {
        "urn": f"urn:pulumi:dev::celery-gcs::{typ}::bad",
        "type": typ,
        "name": "bad",
        "custom": True,
        "parent": "",
        "dependencies": [],
        "provider": "",
        "protect": None,
        "inputs": {"role": role, "member": member, **inputs},
        "secret_paths": [],
        "additional_secret_outputs": [],
    }


DEPLOYMENT = "kubernetes:apps/v1:Deployment"
WI_BINDING = "gcp:serviceaccount/iAMMember:IAMMember"
WI_ROLE = "roles/iam.workloadIdentityUser"
BUCKET = "gcp:storage/bucket:Bucket"
FIELD = "gcp:firestore/field:Field"
WORKER = f"serviceAccount:{DEV}-worker@acme-celery-dev.iam.gserviceaccount.com"


def find(resources: list[dict], typ: str, **match) -> dict:
    return next(
        r
        for r in resources
        if r["type"] == typ and all(r["inputs"].get(k) == v for k, v in match.items())
    )


def container(resources: list[dict]) -> dict:
    deployment = find(resources, DEPLOYMENT)
    return deployment["inputs"]["spec"]["template"]["spec"]["containers"][0]


def env(resources: list[dict], name: str) -> dict:
    return next(e for e in container(resources)["env"] if e["name"] == name)


def add_editor(rs):
    rs.append(iam_member("gcp:projects/iAMMember:IAMMember", "roles/editor", WORKER))


def add_project_binding(rs):
    binding = iam_member("gcp:projects/iAMBinding:IAMBinding", "roles/datastore.user", WORKER)
    binding["inputs"]["members"] = [binding["inputs"].pop("member")]
    rs.append(binding)


def add_bucket_policy(rs):
    rs.append(
        {
            **iam_member("gcp:storage/bucketIAMPolicy:BucketIAMPolicy", "", ""),
            "inputs": {"bucket": "b", "policyData": '{"bindings": []}'},
        }
    )


def add_storage_admin_on_bucket(rs):
    rs.append(
        iam_member(
            "gcp:storage/bucketIAMMember:BucketIAMMember", "roles/storage.admin", WORKER, bucket="b"
        )
    )


def add_project_storage_role(rs):
    rs.append(iam_member("gcp:projects/iAMMember:IAMMember", "roles/storage.objectUser", WORKER))


def drop_firestore_condition(rs):
    del find(rs, "gcp:projects/iAMMember:IAMMember", role="roles/datastore.user")["inputs"][
        "condition"
    ]


def condition_on_other_database(rs):
    grant = find(rs, "gcp:projects/iAMMember:IAMMember", role="roles/datastore.user")
    grant["inputs"]["condition"]["expression"] = (
        'resource.name == "projects/acme-celery-dev/databases/(default)"'
    )


def add_key(rs):
    rs.append(
        {
            **iam_member("gcp:serviceaccount/key:Key", "", ""),
            "inputs": {"serviceAccountId": "x"},
        }
    )


def add_hmac_key(rs):
    rs.append(
        {
            **iam_member("gcp:storage/hmacKey:HmacKey", "", ""),
            "inputs": {"serviceAccountEmail": "x"},
        }
    )


def binding_before_cluster(rs):
    binding = find(rs, WI_BINDING, role=WI_ROLE)
    cluster = find(rs, CLUSTER)
    binding["dependencies"].remove(cluster["urn"])


def binding_for_wrong_ksa(rs):
    binding = find(rs, WI_BINDING, role=WI_ROLE)
    binding["inputs"]["member"] = "serviceAccount:acme-celery-dev.svc.id.goog[default/default]"


def bucket_public_access_inherited(rs):
    find(rs, BUCKET)["inputs"]["publicAccessPrevention"] = "inherited"


def bucket_fine_grained(rs):
    find(rs, BUCKET)["inputs"]["uniformBucketLevelAccess"] = False


def bucket_all_users(rs):
    rs.append(
        iam_member(
            "gcp:storage/bucketIAMMember:BucketIAMMember",
            "roles/storage.objectViewer",
            "allUsers",
            bucket="b",
        )
    )


def add_object_acl(rs):
    rs.append({**iam_member("gcp:storage/objectACL:ObjectACL", "", ""), "inputs": {"bucket": "b"}})


def lifecycle_zero_dropped(rs):
    rules = find(rs, BUCKET)["inputs"]["lifecycleRules"]
    del rules[0]["condition"]["sendDaysSinceCustomTimeIfZero"]


def lifecycle_deletes_early(rs):
    find(rs, BUCKET)["inputs"]["lifecycleRules"].append(
        {"action": {"type": "Delete"}, "condition": {"age": 1}}
    )


def lifecycle_without_backstop(rs):
    rules = find(rs, BUCKET)["inputs"]["lifecycleRules"]
    rules[:] = [r for r in rules if "age" not in r["condition"]]


def ttl_on_wrong_field(rs):
    # The chords group by name: the three groups' Field resources register in no fixed order.
    find(rs, FIELD, collection="celery_gcs_chords")["inputs"]["field"] = "expiresAt"


def ttl_on_other_database(rs):
    find(rs, FIELD, collection="celery_gcs_chords")["inputs"]["database"] = "(default)"


def no_ttl_on_parts(rs):
    rs.remove(find(rs, FIELD, collection=conventions.FIRESTORE_PARTS_COLLECTION))


def backend_uses_another_collection(rs):
    e = env(rs, "CELERY_RESULT_BACKEND")
    e["value"] = e["value"].replace(f"firestore_collection={conventions.FIRESTORE_COLLECTION}", "firestore_collection=jobs")


def result_backend_wrong_scheme(rs):
    e = env(rs, "CELERY_RESULT_BACKEND")
    e["value"] = e["value"].replace(f"{conventions.URL_SCHEME}://", "gs://")


def broker_url_in_plain_env(rs):
    e = env(rs, "CELERY_BROKER_URL")
    del e["valueFrom"]
    e["value"] = "rediss://:pw@10.0.0.3:6378/0"


def auth_string_in_plain_state(rs):
    find(rs, REDIS)["additional_secret_outputs"] = []


def on_the_default_network(rs):
    find(rs, CLUSTER)["inputs"]["network"] = "projects/acme-celery-dev/global/networks/default"


def auto_mode_vpc(rs):
    find(rs, "gcp:compute/network:Network")["inputs"]["autoCreateSubnetworks"] = True


def subnet_without_private_google_access(rs):
    find(rs, "gcp:compute/subnetwork:Subnetwork")["inputs"]["privateIpGoogleAccess"] = False


def public_nodes(rs):
    find(rs, CLUSTER)["inputs"]["privateClusterConfig"]["enablePrivateNodes"] = False


def no_authorized_networks(rs):
    del find(rs, CLUSTER)["inputs"]["masterAuthorizedNetworksConfig"]


def whole_internet_authorized(rs):
    config = find(rs, CLUSTER)["inputs"]["masterAuthorizedNetworksConfig"]
    config["cidrBlocks"] = [{"cidrBlock": "0.0.0.0/0", "displayName": "all"}]


def google_public_cidrs(rs):
    find(rs, CLUSTER)["inputs"]["masterAuthorizedNetworksConfig"]["gcpPublicCidrsAccessEnabled"] = True


def worker_policy(rs):
    """The workers' NetworkPolicy (the smoke test's has a policy of its own)."""
    return next(r for r in rs if r["type"] == NETWORK_POLICY and r["name"].endswith("-worker-netpol"))


def no_network_policy(rs):
    rs.remove(worker_policy(rs))


def smoke_test_without_policy(rs):
    rs.remove(next(r for r in rs if r["name"].endswith("smoke-test-netpol")))


def network_policy_admits_ingress(rs):
    worker_policy(rs)["inputs"]["spec"]["ingress"] = [{}]


def network_policy_metrics_port_open_to_all(rs):
    """The metrics port admitted from any pod, not only the collectors."""
    worker_policy(rs)["inputs"]["spec"]["ingress"] = [{"ports": [{"port": 9808, "protocol": "TCP"}]}]


def network_policy_egress_anywhere(rs):
    worker_policy(rs)["inputs"]["spec"]["egress"].append({})


def queue_length_service_open_to_all(rs):
    policy = next(r for r in rs if r["name"].endswith("queue-length-netpol"))
    policy["inputs"]["spec"]["ingress"] = [{"ports": [{"port": 8080}]}]


def queue_length_service_without_policy(rs):
    rs.remove(next(r for r in rs if r["name"].endswith("queue-length-netpol")))


def network_policy_ingress_only(rs):
    worker_policy(rs)["inputs"]["spec"]["policyTypes"] = ["Ingress"]


def registry_without_key(rs):
    del find(rs, "gcp:artifactregistry/repository:Repository")["inputs"]["kmsKeyName"]


def database_before_its_grant(rs):
    database = find(rs, DATABASE)
    grants = {g["urn"] for g in rs if g["type"] == "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"}
    database["dependencies"] = [d for d in database["dependencies"] if d not in grants]


def secrets_not_encrypted(rs):
    find(rs, CLUSTER)["inputs"]["databaseEncryption"]["state"] = "DECRYPTED"


def boot_disks_not_encrypted(rs):
    del find(rs, CLUSTER)["inputs"]["clusterAutoscaling"]["autoProvisioningDefaults"]["bootDiskKmsKey"]


def protected_basic_broker(rs):
    find(rs, REDIS)["inputs"]["tier"] = "BASIC"


def protected_broker_without_rdb(rs):
    del find(rs, REDIS)["inputs"]["persistenceConfig"]


def broker_without_window(rs):
    del find(rs, REDIS)["inputs"]["maintenancePolicy"]


def image_by_tag(rs):
    c = container(rs)
    c["image"] = c["image"].split("@")[0] + ":latest"


CLUSTER = "gcp:container/cluster:Cluster"
DATABASE = "gcp:firestore/database:Database"
REDIS = "gcp:redis/instance:Instance"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"

BAD: dict[str, list[tuple[Callable[[list[dict]], None], str]]] = {
    "no-primitive-roles": [(add_editor, "primitive role roles/editor")],
    "no-authoritative-iam": [
        (add_project_binding, "IAMBinding bad is an authoritative IAM resource"),
        (add_bucket_policy, "BucketIAMPolicy bad is an authoritative IAM resource"),
    ],
    "no-admin-roles": [(add_storage_admin_on_bucket, "admin role roles/storage.admin")],
    "storage-roles-on-buckets": [(add_project_storage_role, "on the whole project")],
    "firestore-access-one-database": [
        (drop_firestore_condition, "without a database condition"),
        (condition_on_other_database, "not a stack database"),
    ],
    "no-service-account-keys": [
        (add_key, "Key bad creates a long-lived key"),
        (add_hmac_key, "HmacKey bad creates a long-lived key"),
    ],
    "workload-identity-after-cluster": [(binding_before_cluster, "does not wait for the cluster")],
    "workload-identity-matches-kubernetes": [
        (binding_for_wrong_ksa, f"KSA {DEV}/{DEV}-worker has no Workload Identity binding")
    ],
    "buckets-private": [
        (bucket_public_access_inherited, "does not enforce public access prevention"),
        (bucket_fine_grained, "lacks uniform bucket-level access"),
        (bucket_all_users, "to allUsers"),
        (add_object_acl, "ObjectACL bad sets ACLs"),
    ],
    "ttl-matches-backend": [
        (lifecycle_zero_dropped, "dropped without sendDaysSinceCustomTimeIfZero"),
        (lifecycle_deletes_early, "could drop live results"),
        (lifecycle_without_backstop, "no age backstop of 30 days"),
        (ttl_on_wrong_field, f"no TTL policy on {conventions.FIRESTORE_COLLECTION}.expires_at in database '{DEV}-chords'"),
        (ttl_on_other_database, f"no TTL policy on {conventions.FIRESTORE_COLLECTION}.expires_at in database '{DEV}-chords'"),
        (no_ttl_on_parts, f"no TTL policy on {conventions.FIRESTORE_PARTS_COLLECTION}.expires_at in database '{DEV}-chords'"),
        (backend_uses_another_collection, "no TTL policy on jobs.expires_at"),
        (result_backend_wrong_scheme, "is not gcs://"),
    ],
    "broker-secret-only-in-secrets": [
        (broker_url_in_plain_env, "broker URL in plain env CELERY_BROKER_URL"),
        (auth_string_in_plain_state, "keeps its AUTH string in plain state"),
    ],
    "worker-network-policy": [
        (no_network_policy, "no NetworkPolicy selects its pods"),
        (network_policy_admits_ingress, "admits ingress to the workers"),
        (network_policy_metrics_port_open_to_all, "admits ingress to the workers"),
        (network_policy_egress_anywhere, "egress rule without destinations and ports"),
        (network_policy_ingress_only, "must govern Ingress and Egress"),
        (queue_length_service_open_to_all, "admits ingress from anywhere or on any port"),
        (queue_length_service_without_policy, "Deployment celery-worker-queue-length-deployment: no NetworkPolicy"),
        (smoke_test_without_policy, "Job celery-worker-smoke-test: no NetworkPolicy selects its pods"),
    ],
    "no-default-network": [
        (on_the_default_network, "is on the default network"),
        (auto_mode_vpc, "auto-creates subnetworks"),
        (subnet_without_private_google_access, "lacks Private Google Access"),
    ],
    "private-control-plane": [
        (public_nodes, "gives its nodes public IP addresses"),
        (no_authorized_networks, "any address may reach its control plane"),
        (whole_internet_authorized, "authorizes 0.0.0.0/0, the whole internet"),
        (google_public_cidrs, "every Google Cloud public address"),
    ],
    "cmek-coverage": [
        (registry_without_key, "uses Google-managed encryption while the stack uses"),
        (database_before_its_grant, "is created before any grant of"),
        (secrets_not_encrypted, "does not encrypt its Secrets"),
        (boot_disks_not_encrypted, "boots its nodes from disks not encrypted with"),
    ],
    "durable-broker": [
        (protected_basic_broker, "is protected but tier BASIC"),
        (protected_broker_without_rdb, "without RDB persistence"),
        (broker_without_window, "has no maintenance window"),
    ],
    "images-pinned-by-digest": [(image_by_tag, "not pinned by digest")],
}


def test_every_policy_has_a_violation_case():
    assert set(BAD) == set(policies.POLICIES)


@pytest.mark.parametrize(
    ("policy", "mutate", "expected"),
    [(policy, mutate, expected) for policy, cases in BAD.items() for mutate, expected in cases],
    ids=[f"{policy}-{mutate.__name__}" for policy, cases in BAD.items() for mutate, _ in cases],
)
def test_policy_catches_its_violation(runs, policy, mutate, expected):
    # CMEK and a protected broker are the cmek environment's, the queue-length service
    # prod's (KEDA on Memorystore); everything else is dev's.
    base = "cmek" if policy in ("cmek-coverage", "durable-broker") else "dev"
    if mutate.__name__.startswith("queue_length_service"):
        base = "prod"
    resources = copy.deepcopy(runs[base]["resources"])
    assert policies.run(policy, resources) == []
    mutate(resources)
    violations = policies.run(policy, resources)
    assert any(expected in v for v in violations), violations


def test_the_pack_serves_every_rule_as_a_mandatory_stack_policy():
    from pulumi_policy import EnforcementLevel, StackValidationPolicy

    assert [p.name for p in policies.POLICIES.values()] == [r.name for r in policies.stack_rules.RULES]
    for p in policies.POLICIES.values():
        assert isinstance(p, StackValidationPolicy)
        assert p.enforcement_level == EnforcementLevel.MANDATORY and p.description


def test_values_unknown_during_a_preview_are_not_guessed(runs):
    """At `pulumi preview` outputs of resources to be created are unknown; no rule reports on them."""
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

    resources = copy.deepcopy(runs["dev"]["resources"])
    env(resources, "CELERY_RESULT_BACKEND")["value"] = UNKNOWN_STRING_VALUE
    find(resources, REDIS)["inputs"]["authorizedNetwork"] = UNKNOWN_STRING_VALUE
    container(resources)["image"] = UNKNOWN_STRING_VALUE
    assert policies.check(resources) == {}
