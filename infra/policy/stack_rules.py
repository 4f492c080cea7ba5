"""The celery-gcs deployment rules, as plain functions over a stack's resources.

The policy pack (``policy_pack.py``, run by ``pulumi preview --policy-pack``)
and the infra tests both call these functions; nothing else defines a rule.

A resource is a dict: ``type``, ``name``, ``urn``, ``parent`` (a URN or ""),
``dependencies`` (URNs), ``props`` (its properties, camelCase as Pulumi sends
them), ``protect`` and ``additional_secret_outputs``. A rule returns its
violations as ``(message, urn)`` pairs; none means the stack complies.

Values Pulumi cannot know during a preview are :data:`UNKNOWN`; a rule that
meets one does not guess (the check runs again, with real values, at ``up``).
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from celery_gcs import conventions
except ImportError:  # The pack's own virtualenv: the checkout's backend holds celery_gcs.conventions.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "backend"))
    from celery_gcs import conventions

Resource = dict[str, Any]
Violation = tuple[str, str]


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


#: A value only known once the resource exists.
UNKNOWN: Any = _Unknown()

PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
KEY_TYPES = {"gcp:serviceaccount/key:Key", "gcp:storage/hmacKey:HmacKey"}
KMS_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
BUCKET = "gcp:storage/bucket:Bucket"
CLUSTER = "gcp:container/cluster:Cluster"
DATABASE = "gcp:firestore/database:Database"
FIELD = "gcp:firestore/field:Field"
REDIS = "gcp:redis/instance:Instance"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
NETWORK = "gcp:compute/network:Network"
SUBNETWORK = "gcp:compute/subnetwork:Subnetwork"
KMS_MEMBER = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
KSA = "kubernetes:core/v1:ServiceAccount"
WI_BINDING = "gcp:serviceaccount/iAMMember:IAMMember"
WI_ROLE = "roles/iam.workloadIdentityUser"
#: Resource-level ACLs: legacy access control that uniform access turns off.
ACL_TYPES = re.compile(r"^gcp:storage/\w*(acl|accessControl):", re.IGNORECASE)
#: IAM resources at project, folder or organization level.
HIERARCHY_IAM = re.compile(r"^gcp:(projects|folder|organizations)/iAM\w+:")
#: What the workers' pods carry (worker.py), so their NetworkPolicy can select them.
WORKER_POD_LABEL = ("app.kubernetes.io/name", "celery-worker")
#: What every pod the stack runs carries.
PART_OF = ("app.kubernetes.io/part-of", "celery-gcs")
#: The one ingress a worker admits: Managed Service for Prometheus' collectors on its metrics port.
METRICS_PORT = 9808
COLLECTOR_NAMESPACE = "gmp-system"
#: Where each CMEK-capable resource names its key.
CMEK_KEY_PATHS: dict[str, tuple[str, ...]] = {
    BUCKET: ("encryption", "defaultKmsKeyName"),
    DATABASE: ("cmekConfig", "kmsKeyName"),
    REDIS: ("customerManagedKey",),
    REPOSITORY: ("kmsKeyName",),
    CLUSTER: ("databaseEncryption", "keyName"),
}


def _name(r: Resource) -> str:
    return f"{r['type'].split(':')[-1]} {r['name']}"


def _get(value: Any, *path: str | int) -> Any:
    """``value[path...]``, or None where a step is missing (UNKNOWN where unknown)."""
    for step in path:
        if value is UNKNOWN:
            return UNKNOWN
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _flag(r: Resource, what: str) -> Violation:
    """A violation: the resource, what is wrong with it, and its URN."""
    return (f"{_name(r)} {what}", r["urn"])


def _of_type(resources: list[Resource], typ: str) -> list[Resource]:
    return [r for r in resources if r["type"] == typ]


def _waits_for(r: Resource, by_urn: dict[str, Resource]) -> set[str]:
    """URNs created before ``r``: its dependencies and its ancestors' (a child registers after them)."""
    waits = set(r["dependencies"])
    parent = by_urn.get(r["parent"])
    while parent is not None:
        waits |= set(parent["dependencies"])
        parent = by_urn.get(parent["parent"])
    return waits


def _iam_grants(resources: list[Resource]) -> Iterator[tuple[Resource, str, list[str]]]:
    """(resource, role, members) for every IAM member, binding and policy resource."""
    for r in resources:
        props = r["props"]
        if "role" in props and ("member" in props or "members" in props):
            members = [props["member"]] if "member" in props else list(props["members"] or [])
            yield r, props["role"], members
        elif isinstance(props.get("policyData"), str):
            for binding in json.loads(props["policyData"]).get("bindings", []):
                yield r, binding.get("role", ""), binding.get("members", [])


# --- IAM -------------------------------------------------------------------


def no_primitive_roles(resources: list[Resource]) -> list[Violation]:
    return [
        _flag(r, f"grants the primitive role {role}")
        for r, role, _ in _iam_grants(resources)
        if role in PRIMITIVE_ROLES
    ]


def no_authoritative_iam(resources: list[Resource]) -> list[Violation]:
    """Bindings and policies replace what others granted; only additive members are allowed."""
    return [
        _flag(r, "is an authoritative IAM resource; use an IAMMember")
        for r in resources
        if r["type"].split(":")[-1].lower().endswith(("iambinding", "iampolicy"))
    ]


def no_admin_roles(resources: list[Resource]) -> list[Violation]:
    return [
        _flag(r, f"grants the admin role {role}")
        for r, role, _ in _iam_grants(resources)
        if "admin" in role.lower()
    ]


def storage_roles_on_buckets_only(resources: list[Resource]) -> list[Violation]:
    return [
        _flag(r, f"grants {role} on the whole project; grant it on the bucket")
        for r, role, _ in _iam_grants(resources)
        if HIERARCHY_IAM.match(r["type"]) and role.startswith("roles/storage.")
    ]


def firestore_access_limited_to_database(resources: list[Resource]) -> list[Violation]:
    """Project-level Firestore roles need a condition naming one of this stack's databases."""
    databases = {
        f"projects/{d['props'].get('project')}/databases/{d['props'].get('name')}"
        for d in _of_type(resources, DATABASE)
    }
    violations = []
    for r, role, _ in _iam_grants(resources):
        if not (HIERARCHY_IAM.match(r["type"]) and role.startswith("roles/datastore.")):
            continue
        expression = _get(r["props"], "condition", "expression") or ""
        if expression is UNKNOWN:
            continue
        match = re.fullmatch(r'resource\.name == "([^"]+)"', expression.strip())
        if not match:
            violations.append(_flag(r, f"grants {role} without a database condition"))
        elif match.group(1) not in databases:
            violations.append(_flag(r, f"is limited to {match.group(1)}, not a stack database"))
    return violations


def no_service_account_keys(resources: list[Resource]) -> list[Violation]:
    return [_flag(r, "creates a long-lived key") for r in resources if r["type"] in KEY_TYPES]


def workload_identity_after_cluster(resources: list[Resource]) -> list[Violation]:
    """The WI binding needs the cluster's identity pool: it must wait for every new cluster."""
    by_urn = {r["urn"]: r for r in resources}
    clusters = {r["urn"] for r in _of_type(resources, CLUSTER)}
    violations = []
    for r in _of_type(resources, WI_BINDING):
        if r["props"].get("role") != WI_ROLE:
            continue
        missing = clusters - _waits_for(r, by_urn)
        if missing:
            violations.append(_flag(r, f"does not wait for the cluster(s) {sorted(missing)}"))
    return violations


def workload_identity_matches_kubernetes(resources: list[Resource]) -> list[Violation]:
    """Every annotated KSA has a binding for exactly its namespace/name, and vice versa."""
    annotated = {
        f"{_get(k['props'], 'metadata', 'namespace')}/{_get(k['props'], 'metadata', 'name')}": k
        for k in _of_type(resources, KSA)
        if "iam.gke.io/gcp-service-account" in (_get(k["props"], "metadata", "annotations") or {})
    }
    bound = {}
    for r in _of_type(resources, WI_BINDING):
        if r["props"].get("role") != WI_ROLE:
            continue
        match = re.fullmatch(
            r"serviceAccount:[a-z0-9-]+\.svc\.id\.goog\[([^/\]]+/[^\]]+)\]", r["props"]["member"]
        )
        if not match:
            return [_flag(r, f"has a malformed member {r['props']['member']}")]
        bound[match.group(1)] = r
    violations = [
        (f"KSA {ksa} has no Workload Identity binding", annotated[ksa]["urn"])
        for ksa in sorted(set(annotated) - set(bound))
    ]
    violations += [
        _flag(bound[ksa], f"binds {ksa}, which no KSA uses")
        for ksa in sorted(set(bound) - set(annotated))
    ]
    return violations


# --- storage ---------------------------------------------------------------


def buckets_private(resources: list[Resource]) -> list[Violation]:
    violations = []
    for r in resources:
        if r["type"] == BUCKET:
            if r["props"].get("uniformBucketLevelAccess") is not True:
                violations.append(_flag(r, "lacks uniform bucket-level access"))
            if r["props"].get("publicAccessPrevention") != "enforced":
                violations.append(_flag(r, "does not enforce public access prevention"))
        elif ACL_TYPES.match(r["type"]):
            violations.append(_flag(r, "sets ACLs"))
    for r, role, members in _iam_grants(resources):
        for member in members:
            if member in PUBLIC_MEMBERS:
                violations.append(_flag(r, f"grants {role} to {member}"))
    return violations


def _containers(deployment: Resource) -> list[dict[str, Any]]:
    return _get(deployment["props"], "spec", "template", "spec", "containers") or []


def _result_backends(resources: list[Resource]) -> list[tuple[Resource, Any]]:
    return [
        (d, env.get("value", ""))
        for d in _of_type(resources, DEPLOYMENT)
        for container in _containers(d)
        for env in container.get("env") or []
        if env.get("name") == "CELERY_RESULT_BACKEND"
    ]


def ttl_matches_backend(resources: list[Resource]) -> list[Violation]:
    """The result bucket and chord database expire data the way the backend expects.

    TTL is per collection group and never reaches subcollections: every group
    ``conventions.chord_collection_groups()`` names needs its own policy.
    """
    buckets = {b["props"].get("name"): b for b in _of_type(resources, BUCKET)}
    fields = _of_type(resources, FIELD)
    backends = _result_backends(resources)
    if not backends:
        return [("no Deployment sets CELERY_RESULT_BACKEND", "")]
    violations: list[Violation] = []
    for deployment, url in backends:
        if url is UNKNOWN:
            continue
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != conventions.URL_SCHEME:
            violations.append(
                _flag(deployment, f"result backend {url!r} is not {conventions.URL_SCHEME}://")
            )
            continue
        bucket = buckets.get(parts.netloc)
        if bucket is None:
            violations.append(_flag(deployment, f"uses bucket {parts.netloc}, not in the stack"))
        else:
            violations += _lifecycle_violations(bucket)
        query = urllib.parse.parse_qs(parts.query)
        database = query.get("firestore_database", [conventions.FIRESTORE_DATABASE])[0]
        collection = query.get("firestore_collection", [conventions.FIRESTORE_COLLECTION])[0]
        for group in conventions.chord_collection_groups(collection):
            if not any(
                f["props"].get("database") == database
                and f["props"].get("collection") == group
                and f["props"].get("field") == conventions.FIRESTORE_TTL_FIELD
                and f["props"].get("ttlConfig") is not None
                for f in fields
            ):
                violations.append(
                    (
                        (
                            f"no TTL policy on {group}.{conventions.FIRESTORE_TTL_FIELD} "
                            f"in database {database!r}"
                        ),
                        deployment["urn"],
                    )
                )
    return violations


def _lifecycle_violations(bucket: Resource) -> list[Violation]:
    deletes = [
        rule.get("condition") or {}
        for rule in bucket["props"].get("lifecycleRules") or []
        if (rule.get("action") or {}).get("type") == "Delete"
    ]
    name, urn = _name(bucket), bucket["urn"]
    violations = []
    custom = [c for c in deletes if c.get("daysSinceCustomTime") is not None]
    want = conventions.LIFECYCLE_DAYS_SINCE_CUSTOM_TIME
    if not any(c["daysSinceCustomTime"] == want for c in custom):
        violations.append((f"{name} has no Delete rule at {want} days since custom time", urn))
    if want == 0 and not any(c.get("sendDaysSinceCustomTimeIfZero") for c in custom):
        violations.append(
            (f"{name}: daysSinceCustomTime 0 is dropped without sendDaysSinceCustomTimeIfZero", urn)
        )
    ages = [c["age"] for c in deletes if c.get("age") is not None]
    if conventions.LIFECYCLE_MAX_AGE_DAYS not in ages:
        violations.append(
            (f"{name} has no age backstop of {conventions.LIFECYCLE_MAX_AGE_DAYS} days", urn)
        )
    allowed = {"age", "daysSinceCustomTime", "sendDaysSinceCustomTimeIfZero", "sendAgeIfZero"}
    for c in deletes:
        set_keys = {k for k, v in c.items() if v not in (None, False, [], "")}
        early = (c.get("age") or conventions.LIFECYCLE_MAX_AGE_DAYS) < conventions.LIFECYCLE_MAX_AGE_DAYS
        if set_keys - allowed or early:
            violations.append((f"{name} has a Delete rule {c} that could drop live results", urn))
    return violations


# --- Kubernetes ------------------------------------------------------------


def broker_secret_only_in_secrets(resources: list[Resource]) -> list[Violation]:
    """The broker URL and the Memorystore AUTH string reach pods only through a Secret.

    And Memorystore's ``authString`` is an additional secret output, so the
    instance's state never holds it in plain text.
    """
    violations = []
    for d in _of_type(resources, DEPLOYMENT):
        for container in _containers(d):
            for env in container.get("env") or []:
                if re.search(r"rediss?://", str(env.get("value", ""))):
                    violations.append(_flag(d, f"has a broker URL in plain env {env['name']}"))
                if env.get("name") == "CELERY_BROKER_URL" and not _get(
                    env, "valueFrom", "secretKeyRef"
                ):
                    violations.append(_flag(d, "does not read CELERY_BROKER_URL from a Secret"))
    for r in _of_type(resources, REDIS):
        if r["props"].get("authEnabled") and "authString" not in r["additional_secret_outputs"]:
            violations.append(
                _flag(r, "keeps its AUTH string in plain state (additionalSecretOutputs)")
            )
    return violations


def images_pinned_by_digest(resources: list[Resource]) -> list[Violation]:
    return [
        _flag(d, f"runs {c.get('image')!r}, not pinned by digest")
        for d in _of_type(resources, DEPLOYMENT)
        for c in _containers(d)
        if c.get("image") is not UNKNOWN
        and not re.search(r"@sha256:[0-9a-f]{64}$", str(c.get("image")))
    ]


def _selects(policy: Resource, labels: dict[str, str]) -> bool:
    selector = _get(policy["props"], "spec", "podSelector", "matchLabels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _scrape_only(rule: dict[str, Any]) -> bool:
    """An ingress rule admitting only the metrics collectors, only on the metrics port."""
    ports = rule.get("ports") or []
    peers = rule.get("from") or []
    return (
        bool(ports)
        and all(p.get("port") == METRICS_PORT for p in ports)
        and bool(peers)
        and all(
            (_get(peer, "namespaceSelector", "matchLabels") or {}).get("kubernetes.io/metadata.name")
            == COLLECTOR_NAMESPACE
            and "ipBlock" not in peer
            for peer in peers
        )
    )


def worker_network_policy(resources: list[Resource]) -> list[Violation]:
    """Every celery-gcs pod is selected by a NetworkPolicy governing both directions.

    Workers admit no ingress but the metrics collectors' (namespace gmp-system) on
    the metrics port; any other pod (KEDA's queue-length service) only from named
    sources on named ports; every egress rule names both.
    """
    policies = _of_type(resources, NETWORK_POLICY)
    violations = []
    # The smoke-test Job's pods too: they act as the workers.
    for d in _of_type(resources, DEPLOYMENT) + _of_type(resources, JOB):
        labels = _get(d["props"], "spec", "template", "metadata", "labels") or {}
        if labels.get(PART_OF[0]) != PART_OF[1]:
            continue
        worker = labels.get(WORKER_POD_LABEL[0]) == WORKER_POD_LABEL[1]
        namespace = _get(d["props"], "metadata", "namespace")
        mine = [
            p
            for p in policies
            if _get(p["props"], "metadata", "namespace") == namespace and _selects(p, labels)
        ]
        if not mine:
            violations.append((f"{_name(d)}: no NetworkPolicy selects its pods", d["urn"]))
            continue
        for p in mine:
            spec = p["props"]["spec"]
            types = set(spec.get("policyTypes") or [])
            if types != {"Ingress", "Egress"}:
                violations.append(_flag(p, f"must govern Ingress and Egress, not {sorted(types)}"))
            for rule in spec.get("ingress") or []:
                if worker and not _scrape_only(rule):
                    violations.append(_flag(p, "admits ingress to the workers"))
                elif not rule.get("from") or not rule.get("ports"):
                    violations.append(_flag(p, "admits ingress from anywhere or on any port"))
            for rule in spec.get("egress") or []:
                if not rule.get("to") or not rule.get("ports"):
                    violations.append(
                        _flag(p, "has an egress rule without destinations and ports")
                    )
    return violations


# --- network and cluster ---------------------------------------------------


def _network_name(value: Any) -> str:
    return str(value).rstrip("/").rsplit("/", 1)[-1]


def no_default_network(resources: list[Resource]) -> list[Violation]:
    """The ``default`` network's firewall rules allow SSH and RDP from anywhere."""
    violations = []
    for r in _of_type(resources, CLUSTER) + _of_type(resources, REDIS):
        network = r["props"].get("network") or r["props"].get("authorizedNetwork")
        if network is UNKNOWN:
            continue
        if network in (None, "") or _network_name(network) == "default":
            violations.append(_flag(r, "is on the default network"))
    for r in _of_type(resources, NETWORK):
        if r["props"].get("autoCreateSubnetworks") is not False:
            violations.append(
                _flag(r, "auto-creates subnetworks in every region (custom mode only)")
            )
    for r in _of_type(resources, SUBNETWORK):
        if r["props"].get("privateIpGoogleAccess") is not True:
            violations.append(_flag(r, "lacks Private Google Access (private nodes need it)"))
    return violations


def private_control_plane(resources: list[Resource]) -> list[Violation]:
    """Private nodes, and a control plane reachable only from authorized networks."""
    violations = []
    for r in _of_type(resources, CLUSTER):
        private = r["props"].get("privateClusterConfig") or {}
        authorized = r["props"].get("masterAuthorizedNetworksConfig")
        if private.get("enablePrivateNodes") is not True:
            violations.append(_flag(r, "gives its nodes public IP addresses"))
        if authorized is None:
            violations.append(
                _flag(r, "has no authorized networks: any address may reach its control plane")
            )
            continue
        if authorized.get("gcpPublicCidrsAccessEnabled") is not False:
            violations.append(
                _flag(r, "lets every Google Cloud public address reach its control plane")
            )
        if private.get("enablePrivateEndpoint") is True:
            continue
        blocks = [b.get("cidrBlock") for b in authorized.get("cidrBlocks") or []]
        if not blocks:
            violations.append(_flag(r, "has a public endpoint without authorized networks"))
        for block in blocks:
            if block is not UNKNOWN and ipaddress.ip_network(block, strict=False).prefixlen == 0:
                violations.append(_flag(r, f"authorizes {block}, the whole internet"))
    return violations


def cmek_coverage(resources: list[Resource]) -> list[Violation]:
    """When one resource is encrypted with a key, all of them are, each agent granted first."""
    keyed = [r for r in resources if r["type"] in CMEK_KEY_PATHS]
    keys = {_get(r["props"], *CMEK_KEY_PATHS[r["type"]]) for r in keyed} - {None, "", UNKNOWN}
    if not keys:
        return []
    by_urn = {r["urn"]: r for r in resources}
    grants = {
        g["urn"]: g["props"].get("cryptoKeyId")
        for g in _of_type(resources, KMS_MEMBER)
        if g["props"].get("role") == KMS_ROLE
    }
    violations = []
    for r in keyed:
        key = _get(r["props"], *CMEK_KEY_PATHS[r["type"]])
        if key is UNKNOWN:
            continue
        if key in (None, ""):
            violations.append(
                _flag(r, f"uses Google-managed encryption while the stack uses {min(keys)}")
            )
        elif not any(grants.get(u) == key for u in _waits_for(r, by_urn)):
            violations.append(_flag(r, f"is created before any grant of {key} to a service agent"))
        if (
            r["type"] == CLUSTER
            and key
            and _get(r["props"], "databaseEncryption", "state") != "ENCRYPTED"
        ):
            violations.append(_flag(r, f"does not encrypt its Secrets with {key}"))
        if r["type"] == CLUSTER and key:
            boot = _get(r["props"], "clusterAutoscaling", "autoProvisioningDefaults", "bootDiskKmsKey")
            if boot is not UNKNOWN and not boot:
                violations.append(_flag(r, f"boots its nodes from disks not encrypted with {key}"))
    return violations


def durable_broker(resources: list[Resource]) -> list[Violation]:
    """A protected broker survives a zone loss and a restart: STANDARD_HA, RDB, a maintenance window."""
    violations = []
    for r in _of_type(resources, REDIS):
        if not r["protect"]:
            continue
        props = r["props"]
        if props.get("tier") != "STANDARD_HA":
            violations.append(_flag(r, f"is protected but tier {props.get('tier')}"))
        if _get(props, "persistenceConfig", "persistenceMode") != "RDB":
            violations.append(
                _flag(
                    r,
                    "is protected but without RDB persistence: a restart loses every queued task",
                )
            )
        if not _get(props, "maintenancePolicy", "weeklyMaintenanceWindows"):
            violations.append(_flag(r, "has no maintenance window"))
        if props.get("transitEncryptionMode") != "SERVER_AUTHENTICATION" or not props.get(
            "authEnabled"
        ):
            violations.append(_flag(r, "lacks TLS or AUTH"))
    return violations


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[[list[Resource]], list[Violation]]


RULES: tuple[Rule, ...] = (
    Rule("no-primitive-roles", "No owner, editor or viewer grants.", no_primitive_roles),
    Rule(
        "no-authoritative-iam",
        "Only additive IAM members, never bindings or policies.",
        no_authoritative_iam,
    ),
    Rule("no-admin-roles", "No *admin roles granted by the stack.", no_admin_roles),
    Rule(
        "storage-roles-on-buckets",
        "Storage roles on buckets, not the project.",
        storage_roles_on_buckets_only,
    ),
    Rule(
        "firestore-access-one-database",
        "Project-level Firestore roles are conditioned to one of the stack's databases.",
        firestore_access_limited_to_database,
    ),
    Rule("no-service-account-keys", "No service account or HMAC keys.", no_service_account_keys),
    Rule(
        "workload-identity-after-cluster",
        "Workload Identity bindings wait for the cluster whose pool they name.",
        workload_identity_after_cluster,
    ),
    Rule(
        "workload-identity-matches-kubernetes",
        "Each annotated Kubernetes service account has exactly its binding.",
        workload_identity_matches_kubernetes,
    ),
    Rule(
        "buckets-private",
        "Uniform access, public access prevention, no ACLs, no public members.",
        buckets_private,
    ),
    Rule(
        "ttl-matches-backend",
        "Lifecycle rules and TTL on every chord collection group, as the backend expects.",
        ttl_matches_backend,
    ),
    Rule(
        "broker-secret-only-in-secrets",
        "The broker URL and AUTH string only in Kubernetes Secrets and Pulumi secrets.",
        broker_secret_only_in_secrets,
    ),
    Rule(
        "images-pinned-by-digest", "Workers run images pinned by digest.", images_pinned_by_digest
    ),
    Rule(
        "worker-network-policy",
        "NetworkPolicies deny ingress to the workers, limit the other pods' and everyone's egress.",
        worker_network_policy,
    ),
    Rule(
        "no-default-network",
        "No resource on the default network; custom-mode subnets with Private Google Access.",
        no_default_network,
    ),
    Rule(
        "private-control-plane",
        "Private nodes; control plane only from authorized networks.",
        private_control_plane,
    ),
    Rule(
        "cmek-coverage",
        "With a key, every resource that takes one uses it, granted first.",
        cmek_coverage,
    ),
    Rule(
        "durable-broker",
        "Protected stacks get STANDARD_HA Memorystore with RDB and a maintenance window.",
        durable_broker,
    ),
)


def check(resources: list[Resource]) -> dict[str, list[Violation]]:
    """Every rule's violations, by rule name (only the violated ones)."""
    return {rule.name: found for rule in RULES if (found := rule.check(resources))}
