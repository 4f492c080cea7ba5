"""The policy suite: clean on every real inventory, and each policy catches its violation.

Each bad inventory is a real one (dev) with one realistic mistake made in it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from celery_gcs import contract

from . import infra_policies as policies


def test_real_inventories_comply(any_inventory):
    assert policies.check(any_inventory.resources) == {}


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
    }


WORKER = "serviceAccount:celery-dev-worker@acme-celery-dev.iam.gserviceaccount.com"


def find(resources: list[dict], typ: str, **match) -> dict:
    return next(
        r
        for r in resources
        if r["type"] == typ and all(r["inputs"].get(k) == v for k, v in match.items())
    )


def container(resources: list[dict]) -> dict:
    deployment = find(resources, policies.DEPLOYMENT)
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
    binding = find(rs, policies.WI_BINDING, role=policies.WI_ROLE)
    cluster = find(rs, policies.CLUSTER)
    binding["dependencies"].remove(cluster["urn"])


def binding_for_wrong_ksa(rs):
    binding = find(rs, policies.WI_BINDING, role=policies.WI_ROLE)
    binding["inputs"]["member"] = "serviceAccount:acme-celery-dev.svc.id.goog[default/default]"


def bucket_public_access_inherited(rs):
    find(rs, policies.BUCKET)["inputs"]["publicAccessPrevention"] = "inherited"


def bucket_fine_grained(rs):
    find(rs, policies.BUCKET)["inputs"]["uniformBucketLevelAccess"] = False


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
    rules = find(rs, policies.BUCKET)["inputs"]["lifecycleRules"]
    del rules[0]["condition"]["sendDaysSinceCustomTimeIfZero"]


def lifecycle_deletes_early(rs):
    find(rs, policies.BUCKET)["inputs"]["lifecycleRules"].append(
        {"action": {"type": "Delete"}, "condition": {"age": 1}}
    )


def lifecycle_without_backstop(rs):
    rules = find(rs, policies.BUCKET)["inputs"]["lifecycleRules"]
    rules[:] = [r for r in rules if "age" not in r["condition"]]


def ttl_on_wrong_field(rs):
    find(rs, policies.FIELD)["inputs"]["field"] = "expiresAt"


def ttl_on_other_database(rs):
    find(rs, policies.FIELD)["inputs"]["database"] = "(default)"


def no_ttl_on_parts(rs):
    rs.remove(find(rs, policies.FIELD, collection=contract.FIRESTORE_PARTS_COLLECTION))


def backend_uses_another_collection(rs):
    e = env(rs, "CELERY_RESULT_BACKEND")
    e["value"] = e["value"].replace(f"firestore_collection={contract.FIRESTORE_COLLECTION}", "firestore_collection=jobs")


def result_backend_wrong_scheme(rs):
    e = env(rs, "CELERY_RESULT_BACKEND")
    e["value"] = e["value"].replace(f"{contract.URL_SCHEME}://", "gs://")


def broker_url_in_plain_env(rs):
    e = env(rs, "CELERY_BROKER_URL")
    del e["valueFrom"]
    e["value"] = "rediss://:pw@10.0.0.3:6378/0"


def secret_not_secret(rs):
    find(rs, policies.SECRET)["secret_paths"] = []


def image_by_tag(rs):
    c = container(rs)
    c["image"] = c["image"].split("@")[0] + ":latest"


BAD: dict[str, list[tuple[Callable[[list[dict]], None], str]]] = {
    "no_primitive_roles": [(add_editor, "primitive role roles/editor")],
    "no_authoritative_iam": [
        (add_project_binding, "IAMBinding bad is an authoritative IAM resource"),
        (add_bucket_policy, "BucketIAMPolicy bad is an authoritative IAM resource"),
    ],
    "no_admin_roles": [(add_storage_admin_on_bucket, "admin role roles/storage.admin")],
    "storage_roles_on_buckets_only": [(add_project_storage_role, "on the whole project")],
    "firestore_access_limited_to_database": [
        (drop_firestore_condition, "without a database condition"),
        (condition_on_other_database, "not a stack database"),
    ],
    "no_service_account_keys": [
        (add_key, "Key bad creates a long-lived key"),
        (add_hmac_key, "HmacKey bad creates a long-lived key"),
    ],
    "workload_identity_after_cluster": [(binding_before_cluster, "does not wait for the cluster")],
    "workload_identity_matches_kubernetes": [
        (binding_for_wrong_ksa, "KSA celery-dev/celery-dev-worker has no Workload Identity binding")
    ],
    "buckets_private": [
        (bucket_public_access_inherited, "does not enforce public access prevention"),
        (bucket_fine_grained, "lacks uniform bucket-level access"),
        (bucket_all_users, "to allUsers"),
        (add_object_acl, "ObjectACL bad sets ACLs"),
    ],
    "ttl_matches_backend": [
        (lifecycle_zero_dropped, "dropped without sendDaysSinceCustomTimeIfZero"),
        (lifecycle_deletes_early, "could drop live results"),
        (lifecycle_without_backstop, "no age backstop of 30 days"),
        (ttl_on_wrong_field, f"no TTL policy on {contract.FIRESTORE_COLLECTION}.expires_at in database 'celery-dev'"),
        (ttl_on_other_database, f"no TTL policy on {contract.FIRESTORE_COLLECTION}.expires_at in database 'celery-dev'"),
        (no_ttl_on_parts, f"no TTL policy on {contract.FIRESTORE_PARTS_COLLECTION}.expires_at in database 'celery-dev'"),
        (backend_uses_another_collection, "no TTL policy on jobs.expires_at"),
        (result_backend_wrong_scheme, "is not gcs://"),
    ],
    "broker_url_only_in_secrets": [
        (broker_url_in_plain_env, "broker URL in plain env CELERY_BROKER_URL"),
        (secret_not_secret, "not marked secret"),
    ],
    "images_pinned_by_digest": [(image_by_tag, "not pinned by digest")],
}


def test_every_policy_has_a_violation_case():
    assert set(BAD) == set(policies.POLICIES)


@pytest.mark.parametrize(
    ("policy", "mutate", "expected"),
    [(policy, mutate, expected) for policy, cases in BAD.items() for mutate, expected in cases],
    ids=[f"{policy}-{mutate.__name__}" for policy, cases in BAD.items() for mutate, _ in cases],
)
def test_policy_catches_its_violation(dev, policy, mutate, expected):
    resources = copy.deepcopy(dev.resources)
    assert policies.POLICIES[policy](resources) == []
    mutate(resources)
    violations = policies.POLICIES[policy](resources)
    assert any(expected in v for v in violations), violations
