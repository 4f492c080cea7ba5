"""Deployment policies, as plain functions over a captured resource inventory.

Each policy takes the inventory's resources (a list of dicts: type, name, urn,
parent, dependencies, inputs, secret_paths) and returns its violations, one
readable string each; an empty list means the inventory complies.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from celery_gcs import contract

Resources = list[dict[str, Any]]
Policy = Callable[[Resources], list[str]]

PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
KEY_TYPES = {"gcp:serviceaccount/key:Key", "gcp:storage/hmacKey:HmacKey"}
BUCKET = "gcp:storage/bucket:Bucket"
CLUSTER = "gcp:container/cluster:Cluster"
DATABASE = "gcp:firestore/database:Database"
FIELD = "gcp:firestore/field:Field"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SECRET = "kubernetes:core/v1:Secret"
KSA = "kubernetes:core/v1:ServiceAccount"
WI_BINDING = "gcp:serviceaccount/iAMMember:IAMMember"
WI_ROLE = "roles/iam.workloadIdentityUser"
#: Resource-level ACLs: legacy access control that uniform access turns off.
ACL_TYPES = re.compile(r"^gcp:storage/\w*(acl|accessControl):", re.IGNORECASE)
#: IAM resources at project, folder or organization level.
HIERARCHY_IAM = re.compile(r"^gcp:(projects|folder|organizations)/iAM\w+:")


def _name(r: dict[str, Any]) -> str:
    return f"{r['type'].split(':')[-1]} {r['name']}"


def _iam_grants(resources: Resources):
    """(resource, role, members) for every IAM member, binding and policy resource."""
    for r in resources:
        inputs = r["inputs"]
        if "role" in inputs and ("member" in inputs or "members" in inputs):
            members = [inputs["member"]] if "member" in inputs else list(inputs["members"])
            yield r, inputs["role"], members
        elif "policyData" in inputs:
            for binding in json.loads(inputs["policyData"]).get("bindings", []):
                yield r, binding.get("role", ""), binding.get("members", [])


def _is_authoritative(r: dict[str, Any]) -> bool:
    kind = r["type"].split(":")[-1].lower()
    return kind.endswith(("iambinding", "iampolicy"))


# --- IAM -------------------------------------------------------------------


def no_primitive_roles(resources: Resources) -> list[str]:
    return [
        f"{_name(r)} grants the primitive role {role}"
        for r, role, _ in _iam_grants(resources)
        if role in PRIMITIVE_ROLES
    ]


def no_authoritative_iam(resources: Resources) -> list[str]:
    """Bindings and policies replace what others granted; only additive members are allowed."""
    return [
        f"{_name(r)} is an authoritative IAM resource; use an IAMMember"
        for r in resources
        if _is_authoritative(r)
    ]


def no_admin_roles(resources: Resources) -> list[str]:
    return [
        f"{_name(r)} grants the admin role {role}"
        for r, role, _ in _iam_grants(resources)
        if "admin" in role.lower()
    ]


def storage_roles_on_buckets_only(resources: Resources) -> list[str]:
    return [
        f"{_name(r)} grants {role} on the whole project; grant it on the bucket"
        for r, role, _ in _iam_grants(resources)
        if HIERARCHY_IAM.match(r["type"]) and role.startswith("roles/storage.")
    ]


def firestore_access_limited_to_database(resources: Resources) -> list[str]:
    """Project-level Firestore roles need a condition naming one of this stack's databases."""
    databases = {
        f"projects/{d['inputs']['project']}/databases/{d['inputs']['name']}"
        for d in resources
        if d["type"] == DATABASE
    }
    violations = []
    for r, role, _ in _iam_grants(resources):
        if not (HIERARCHY_IAM.match(r["type"]) and role.startswith("roles/datastore.")):
            continue
        expression = (r["inputs"].get("condition") or {}).get("expression", "")
        match = re.fullmatch(r'resource\.name == "([^"]+)"', expression.strip())
        if not match:
            violations.append(f"{_name(r)} grants {role} without a database condition")
        elif match.group(1) not in databases:
            violations.append(f"{_name(r)} is limited to {match.group(1)}, not a stack database")
    return violations


def no_service_account_keys(resources: Resources) -> list[str]:
    return [f"{_name(r)} creates a long-lived key" for r in resources if r["type"] in KEY_TYPES]


def workload_identity_after_cluster(resources: Resources) -> list[str]:
    """The WI binding needs the cluster's identity pool: it must wait for every new cluster."""
    by_urn = {r["urn"]: r for r in resources}
    clusters = {r["urn"] for r in resources if r["type"] == CLUSTER}
    violations = []
    for r in resources:
        if r["type"] != WI_BINDING or r["inputs"].get("role") != WI_ROLE:
            continue
        waits = set(r["dependencies"])
        parent = by_urn.get(r["parent"])
        while parent is not None:
            waits |= set(parent["dependencies"])
            parent = by_urn.get(parent["parent"])
        missing = clusters - waits
        if missing:
            violations.append(f"{_name(r)} does not wait for the cluster(s) {sorted(missing)}")
    return violations


def workload_identity_matches_kubernetes(resources: Resources) -> list[str]:
    """Every annotated KSA has a binding for exactly its namespace/name, and vice versa."""
    annotated = {
        f"{k['inputs']['metadata']['namespace']}/{k['inputs']['metadata']['name']}"
        for k in resources
        if k["type"] == KSA
        and "iam.gke.io/gcp-service-account" in (k["inputs"]["metadata"].get("annotations") or {})
    }
    bound = {}
    for r in resources:
        if r["type"] == WI_BINDING and r["inputs"].get("role") == WI_ROLE:
            match = re.fullmatch(
                r"serviceAccount:[a-z0-9-]+\.svc\.id\.goog\[([^/\]]+/[^\]]+)\]",
                r["inputs"]["member"],
            )
            if not match:
                return [f"{_name(r)} has a malformed member {r['inputs']['member']}"]
            bound[match.group(1)] = r
    violations = [f"KSA {ksa} has no Workload Identity binding" for ksa in annotated - set(bound)]
    violations += [
        f"{_name(bound[ksa])} binds {ksa}, which no KSA uses" for ksa in set(bound) - annotated
    ]
    return violations


# --- storage ---------------------------------------------------------------


def buckets_private(resources: Resources) -> list[str]:
    violations = []
    for r in resources:
        if r["type"] == BUCKET:
            if r["inputs"].get("uniformBucketLevelAccess") is not True:
                violations.append(f"{_name(r)} lacks uniform bucket-level access")
            if r["inputs"].get("publicAccessPrevention") != "enforced":
                violations.append(f"{_name(r)} does not enforce public access prevention")
        elif ACL_TYPES.match(r["type"]):
            violations.append(f"{_name(r)} sets ACLs")
    for r, role, members in _iam_grants(resources):
        for member in members:
            if member in PUBLIC_MEMBERS:
                violations.append(f"{_name(r)} grants {role} to {member}")
    return violations


def _result_backends(resources: Resources) -> list[tuple[dict[str, Any], str]]:
    found = []
    for d in resources:
        if d["type"] != DEPLOYMENT:
            continue
        for container in d["inputs"]["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if env["name"] == "CELERY_RESULT_BACKEND":
                    found.append((d, env.get("value", "")))
    return found


def ttl_matches_backend(resources: Resources) -> list[str]:
    """The result bucket and chord database expire data the way the backend expects."""
    buckets = {b["inputs"]["name"]: b for b in resources if b["type"] == BUCKET}
    fields = [f for f in resources if f["type"] == FIELD]
    violations = []
    backends = _result_backends(resources)
    if not backends:
        return ["no Deployment sets CELERY_RESULT_BACKEND"]
    for deployment, url in backends:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != contract.URL_SCHEME:
            violations.append(
                f"{_name(deployment)} result backend {url!r} is not {contract.URL_SCHEME}://"
            )
            continue
        bucket = buckets.get(parts.netloc)
        if bucket is None:
            violations.append(f"{_name(deployment)} uses bucket {parts.netloc}, not in the stack")
        else:
            violations += _lifecycle_violations(bucket)
        query = urllib.parse.parse_qs(parts.query)
        database = query.get("firestore_database", [contract.FIRESTORE_DATABASE])[0]
        collection = query.get("firestore_collection", [contract.FIRESTORE_COLLECTION])[0]
        # TTL is per collection group and never reaches subcollections: the
        # chords and their parts each need a policy.
        for group in contract.chord_collection_groups(collection):
            if not any(
                f["inputs"].get("database") == database
                and f["inputs"].get("collection") == group
                and f["inputs"].get("field") == contract.FIRESTORE_TTL_FIELD
                and "ttlConfig" in f["inputs"]
                for f in fields
            ):
                violations.append(
                    f"no TTL policy on {group}.{contract.FIRESTORE_TTL_FIELD} "
                    f"in database {database!r}"
                )
    return violations


def _lifecycle_violations(bucket: dict[str, Any]) -> list[str]:
    deletes = [
        rule["condition"]
        for rule in bucket["inputs"].get("lifecycleRules", [])
        if rule.get("action", {}).get("type") == "Delete"
    ]
    violations = []
    custom = [c for c in deletes if "daysSinceCustomTime" in c]
    want = contract.LIFECYCLE_DAYS_SINCE_CUSTOM_TIME
    if not any(c["daysSinceCustomTime"] == want for c in custom):
        violations.append(f"{_name(bucket)} has no Delete rule at {want} days since custom time")
    if want == 0 and not any(c.get("sendDaysSinceCustomTimeIfZero") for c in custom):
        violations.append(
            f"{_name(bucket)}: daysSinceCustomTime 0 is dropped without sendDaysSinceCustomTimeIfZero"
        )
    ages = [c["age"] for c in deletes if "age" in c]
    if contract.LIFECYCLE_MAX_AGE_DAYS not in ages:
        violations.append(
            f"{_name(bucket)} has no age backstop of {contract.LIFECYCLE_MAX_AGE_DAYS} days"
        )
    for c in deletes:
        extra = set(c) - {
            "age",
            "daysSinceCustomTime",
            "sendDaysSinceCustomTimeIfZero",
            "sendAgeIfZero",
        }
        if extra or c.get("age", contract.LIFECYCLE_MAX_AGE_DAYS) < contract.LIFECYCLE_MAX_AGE_DAYS:
            violations.append(f"{_name(bucket)} has a Delete rule {c} that could drop live results")
    return violations


# --- Kubernetes ------------------------------------------------------------


def broker_url_only_in_secrets(resources: Resources) -> list[str]:
    violations = []
    for d in resources:
        if d["type"] != DEPLOYMENT:
            continue
        for container in d["inputs"]["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if re.search(r"rediss?://", str(env.get("value", ""))):
                    violations.append(f"{_name(d)} has a broker URL in plain env {env['name']}")
                if env["name"] == "CELERY_BROKER_URL" and "secretKeyRef" not in env.get(
                    "valueFrom", {}
                ):
                    violations.append(f"{_name(d)} does not read CELERY_BROKER_URL from a Secret")
    for s in resources:
        if s["type"] == SECRET and not any(
            p in ("stringData", "data", "$") for p in s["secret_paths"]
        ):
            violations.append(f"{_name(s)} data is not marked secret in Pulumi state")
    return violations


def images_pinned_by_digest(resources: Resources) -> list[str]:
    return [
        f"{_name(d)} runs {c['image']!r}, not pinned by digest"
        for d in resources
        if d["type"] == DEPLOYMENT
        for c in d["inputs"]["spec"]["template"]["spec"]["containers"]
        if not re.search(r"@sha256:[0-9a-f]{64}$", c["image"])
    ]


POLICIES: dict[str, Policy] = {
    p.__name__: p
    for p in (
        no_primitive_roles,
        no_authoritative_iam,
        no_admin_roles,
        storage_roles_on_buckets_only,
        firestore_access_limited_to_database,
        no_service_account_keys,
        workload_identity_after_cluster,
        workload_identity_matches_kubernetes,
        buckets_private,
        ttl_matches_backend,
        broker_url_only_in_secrets,
        images_pinned_by_digest,
    )
}


def check(resources: Resources) -> dict[str, list[str]]:
    """Every policy's violations, by policy name (only the violated ones)."""
    return {name: v for name, policy in POLICIES.items() if (v := policy(resources))}
