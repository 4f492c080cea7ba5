"""What Google Cloud and Kubernetes would reject when several stacks' inventories meet one project.

Pulumi's mocks accept any resource; the real APIs answer AlreadyExists (409)
when a name is taken. :func:`conflicts` replays inventories, in order, against
one project and its clusters, plus what existed before (``existing``), and
returns what the real ``pulumi up`` of each later stack would fail on, as
readable strings. The identity of each resource is what its API keys it by,
from the providers' documentation:

- a Kubernetes object: its cluster, kind, namespace (none for cluster-scoped
  kinds such as Namespace) and name; pulumi-kubernetes 4.29+ creates, it does
  not adopt, so an existing object is a conflict too;
- a Helm release: its cluster, namespace and name; the CRDs a chart installs
  are cluster-wide;
- a service account: project and account ID; a bucket: its global name;
- a Firestore database: project and database ID (``(default)`` included); a
  Firestore field (TTL policy): project, database, collection group and field;
- a GKE cluster, a Cloud Router, a Memorystore instance, an Artifact Registry
  repository: project, location and name;
- Cloud NAT: each subnetwork range is served by at most one NAT gateway per
  network and region; ``ALL_SUBNETWORKS_ALL_IP_RANGES`` claims them all.

Workload Identity is not an API conflict but a shared identity: a member
``PROJECT.svc.id.goog[NS/KSA]`` bound to two Google service accounts lets
either stack's pods act as both, so it is reported as well.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .infra_inventory import Inventory

Key = tuple[str, ...]

CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
_WI_MEMBER = re.compile(r"^serviceAccount:[a-z0-9-]+\.svc\.id\.goog\[[^\]]+\]$")


def _servers(inv: Inventory) -> dict[str, str]:
    """Kubernetes provider URN -> the cluster's API server it talks to."""
    servers = {}
    for r in inv.of_type("pulumi:providers:kubernetes"):
        config = json.loads(r["inputs"]["kubeconfig"])
        servers[r["urn"]] = config["clusters"][0]["cluster"]["server"]
    return servers


def _location(inputs: dict[str, Any]) -> str:
    return str(inputs.get("location") or inputs.get("region") or "")


def identity(r: dict[str, Any], servers: dict[str, str]) -> Key | None:
    """The key the real API stores a resource under; None for types no API keys by name here."""
    typ, i = r["type"], r["inputs"]
    if typ.startswith("kubernetes:") and r["custom"]:
        server = servers.get(r["provider"].rsplit("::", 1)[0], "?")
        if typ == "kubernetes:helm.sh/v3:Release":
            return ("helm", server, i.get("namespace", "default"), i.get("name", r["name"]))
        meta = i.get("metadata") or {}
        kind = typ.split(":")[-1]
        namespace = "" if kind in CLUSTER_SCOPED else meta.get("namespace", "default")
        return ("k8s", server, kind, namespace, meta.get("name", r["name"]))
    project = str(i.get("project", ""))
    keyed = {
        "gcp:serviceaccount/account:Account": lambda: (project, i["accountId"]),
        "gcp:storage/bucket:Bucket": lambda: (i["name"],),
        "gcp:firestore/database:Database": lambda: (project, i["name"]),
        "gcp:firestore/field:Field": lambda: (project, i["database"], i["collection"], i["field"]),
        "gcp:container/cluster:Cluster": lambda: (project, _location(i), i["name"]),
        "gcp:compute/router:Router": lambda: (project, _location(i), i["name"]),
        "gcp:compute/routerNat:RouterNat": lambda: (project, _location(i), i["router"], i["name"]),
        "gcp:compute/subnetwork:Subnetwork": lambda: (project, _location(i), i["name"]),
        "gcp:redis/instance:Instance": lambda: (project, _location(i), i["name"]),
        "gcp:artifactregistry/repository:Repository": lambda: (
            project,
            _location(i),
            i["repositoryId"],
        ),
    }
    if typ in keyed:
        return (typ, *keyed[typ]())
    return None


def _nat_claims(inv: Inventory) -> list[tuple[Key, str]]:
    """(network, region, subnetwork or '*') each NAT serves, with the NAT's name."""
    routers = {r["inputs"]["name"]: r["inputs"] for r in inv.of_type("gcp:compute/router:Router")}
    claims = []
    for nat in inv.of_type("gcp:compute/routerNat:RouterNat"):
        i = nat["inputs"]
        network = routers.get(i["router"], {}).get("network", "?")
        where = (i.get("project", ""), _location(i), network)
        if i["sourceSubnetworkIpRangesToNat"] == "LIST_OF_SUBNETWORKS":
            claims += [((*where, s["name"]), nat["name"]) for s in i.get("subnetworks", [])]
        else:
            claims.append(((*where, "*"), nat["name"]))
    return claims


def conflicts(inventories: Iterable[Inventory], existing: Iterable[Key] = ()) -> list[str]:
    """What the real APIs would reject, applying the inventories one after another."""
    taken: dict[Key, str] = {key: "(existed before)" for key in existing}
    nats: dict[Key, str] = {}
    members: dict[str, str] = {}
    found = []
    for inv in inventories:
        servers = _servers(inv)
        for r in inv:
            key = identity(r, servers)
            if key is None:
                continue
            owner = f"{inv.stack}: {r['name']}"
            if key in taken:
                found.append(f"AlreadyExists {key}: {owner} (taken by {taken[key]})")
            else:
                taken[key] = owner
        for claim, nat in _nat_claims(inv):
            clash = [
                other
                for other in nats
                if other[:3] == claim[:3] and "*" in (other[3], claim[3]) or other == claim
            ]
            if clash:
                found.append(f"NAT {inv.stack}: {nat} serves {claim}, served by {nats[clash[0]]}")
            nats[claim] = f"{inv.stack}: {nat}"
        for r in inv.of_type("gcp:serviceaccount/iAMMember:IAMMember"):
            member = r["inputs"]["member"]
            if not _WI_MEMBER.match(member):
                continue
            if member in members:
                found.append(f"shared identity {member}: {inv.stack} and {members[member]}")
            members[member] = inv.stack
    return found


def names(inv: Inventory) -> set[Key]:
    """Every API identity an inventory claims (for 'share nothing' assertions)."""
    servers = _servers(inv)
    return {key for r in inv if (key := identity(r, servers)) is not None}


# --- what the APIs reject in one stack's resources ------------------------------
# From the providers' and services' documentation: GKE private clusters, Memorystore
# connect modes, persistence and maintenance, CMEK service agents and key locations,
# and the organization policy constraints/gcp.restrictNonCmekServices.

#: (resource type, the service whose agent encrypts it, where its key is named). A new
#: cluster has two: its Secrets (GKE's agent) and its nodes' boot disks (Compute Engine's,
#: https://cloud.google.com/kubernetes-engine/docs/how-to/using-cmek).
CMEK_SERVICES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("gcp:storage/bucket:Bucket", "storage.googleapis.com", ("encryption", "defaultKmsKeyName")),
    ("gcp:firestore/database:Database", "firestore.googleapis.com", ("cmekConfig", "kmsKeyName")),
    ("gcp:redis/instance:Instance", "redis.googleapis.com", ("customerManagedKey",)),
    ("gcp:artifactregistry/repository:Repository", "artifactregistry.googleapis.com", ("kmsKeyName",)),
    ("gcp:container/cluster:Cluster", "container.googleapis.com", ("databaseEncryption", "keyName")),
    (
        "gcp:container/cluster:Cluster",
        "compute.googleapis.com",
        ("clusterAutoscaling", "autoProvisioningDefaults", "bootDiskKmsKey"),
    ),
)
#: The node settings an Autopilot cluster takes (``gcloud container clusters create-auto``:
#: --service-account, --scopes, --boot-disk-kms-key); GKE manages the rest of its nodes.
AUTOPILOT_NODE_DEFAULTS = {"serviceAccount", "oauthScopes", "bootDiskKmsKey"}
#: Multi-regions and the KMS location their keys must be in: Firestore's
#: (https://cloud.google.com/firestore/docs/cmek) and Cloud Storage's
#: (https://cloud.google.com/storage/docs/encryption/customer-managed-keys).
FIRESTORE_KEY_LOCATIONS = {"eur3": "europe", "nam5": "us", "nam7": "us", "eu": "europe", "us": "us", "asia": "asia"}


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for step in path:
        value = (value or {}).get(step) if isinstance(value, dict) else None
    return value


def _key_location(key: str) -> str:
    return key.split("/")[3] if key.count("/") >= 7 else ""


def _resource_location(r: dict[str, Any]) -> str:
    i = r["inputs"]
    location = i.get("locationId") if r["type"].startswith("gcp:firestore") else _location(i)
    location = str(location or "").lower()
    return FIRESTORE_KEY_LOCATIONS.get(location, location)


def rejections(
    inv: Inventory, *, agents: dict[str, str], restrict_non_cmek: Iterable[str] = ()
) -> list[str]:
    """What creating one stack's resources would fail on; ``agents``: service -> agent email."""
    found: list[str] = []
    restricted = set(restrict_non_cmek)
    networks_made = {r["inputs"].get("name") for r in inv.of_type("gcp:compute/network:Network")}
    connections = inv.of_type("gcp:servicenetworking/connection:Connection")
    for r in inv:
        typ, i, name = r["type"], r["inputs"], r["name"]
        for service, path in ((s, p) for t, s, p in CMEK_SERVICES if t == typ):
            key = _dig(i, path)
            if not key and service in restricted:
                found.append(f"{name}: constraints/gcp.restrictNonCmekServices forbids {service} without CMEK")
            if key:
                if _key_location(key) != _resource_location(r):
                    found.append(f"{name}: key {key} is not in the resource's location {_resource_location(r)}")
                member = f"serviceAccount:{agents[service]}"
                if not any(
                    g["inputs"].get("cryptoKeyId") == key
                    and g["inputs"].get("member") == member
                    and g["inputs"].get("role") == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
                    and g["urn"] in inv.waits_for(r)
                    for g in inv.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
                ):
                    found.append(f"{name}: PERMISSION_DENIED, {agents[service]} cannot use {key} yet")
        if typ == "gcp:container/cluster:Cluster":
            found += _cluster_rejections(name, i)
        if typ == "gcp:redis/instance:Instance":
            found += _redis_rejections(inv, r, networks_made, connections)
    return found + network_rejections(inv) + scrape_rejections(inv) + monitoring_rejections(inv)


def _cluster_rejections(name: str, i: dict[str, Any]) -> list[str]:
    found = []
    private = i.get("privateClusterConfig") or {}
    if private.get("enablePrivateEndpoint") and not private.get("enablePrivateNodes"):
        found.append(f"{name}: a private endpoint needs private nodes")
    if private.get("enablePrivateNodes"):
        cidr = private.get("masterIpv4CidrBlock")
        version = str(i.get("minMasterVersion") or "1.30")
        if cidr:
            block = ipaddress.ip_network(cidr, strict=False)
            if block.prefixlen != 28 or not block.is_private:
                found.append(f"{name}: masterIpv4CidrBlock must be a private /28, not {cidr}")
        elif tuple(int(p) for p in version.split(".")[:2]) < (1, 29):
            found.append(f"{name}: private nodes on GKE {version} need a masterIpv4CidrBlock (PSC is 1.29+)")
    for block in _dig(i, ("masterAuthorizedNetworksConfig", "cidrBlocks")) or []:
        try:
            ipaddress.ip_network(block.get("cidrBlock", ""), strict=True)
        except ValueError:
            found.append(f"{name}: invalid authorized network {block.get('cidrBlock')!r}")
    if i.get("enableAutopilot"):
        if (i.get("networkPolicy") or {}).get("enabled") or _dig(
            i, ("addonsConfig", "networkPolicyConfig")
        ) not in (None, {"disabled": True}):
            found.append(f"{name}: Autopilot enforces NetworkPolicy with Dataplane V2; networkPolicy cannot be set")
        if i.get("datapathProvider") not in (None, "ADVANCED_DATAPATH"):
            found.append(f"{name}: Autopilot clusters run Dataplane V2 only")
        defaults = _dig(i, ("clusterAutoscaling", "autoProvisioningDefaults")) or {}
        if set(defaults) - AUTOPILOT_NODE_DEFAULTS:
            unsupported = sorted(set(defaults) - AUTOPILOT_NODE_DEFAULTS)
            found.append(f"{name}: Autopilot manages its nodes; {unsupported} cannot be set")
    return found


def _redis_rejections(inv: Inventory, r: dict[str, Any], networks_made: set, connections: list) -> list[str]:
    name, i = r["name"], r["inputs"]
    found = []
    network = str(i.get("authorizedNetwork") or "")
    network_project = network.split("/")[1] if network.startswith("projects/") else i.get("project")
    mode = i.get("connectMode", "DIRECT_PEERING")
    if mode == "DIRECT_PEERING" and network_project != i.get("project"):
        found.append(f"{name}: a Shared VPC network needs PRIVATE_SERVICE_ACCESS")
    made_here = network.rsplit("/", 1)[-1] in networks_made
    if mode == "PRIVATE_SERVICE_ACCESS" and made_here and not any(
        c["urn"] in inv.waits_for(r) for c in connections
    ):
        found.append(f"{name}: no private services access connection on {network}")
    if i.get("readReplicasMode") == "READ_REPLICAS_ENABLED" and (
        i.get("tier") != "STANDARD_HA" or int(i.get("memorySizeGb", 0)) < 5
    ):
        found.append(f"{name}: read replicas need STANDARD_HA and at least 5 GB")
    persistence = i.get("persistenceConfig") or {}
    if persistence.get("persistenceMode") == "RDB" and persistence.get("rdbSnapshotPeriod") not in (
        "ONE_HOUR", "SIX_HOURS", "TWELVE_HOURS", "TWENTY_FOUR_HOURS"
    ):
        found.append(f"{name}: RDB persistence needs an rdbSnapshotPeriod")
    for window in _dig(i, ("maintenancePolicy", "weeklyMaintenanceWindows")) or []:
        start = window.get("startTime") or {}
        if start.get("minutes", 0) or start.get("seconds", 0) or not 0 <= start.get("hours", 0) <= 23:
            found.append(f"{name}: maintenance windows start on the hour, not {start}")
    return found


# --- what the cluster's network lets each pod reach --------------------------------
# A NetworkPolicy peer that selects pods never matches a link-local address: only an
# ipBlock does. So where a pod's resolver or metadata server sits decides whether the
# rendered policies let it work. Each address below is from GKE's documentation:
#
# - kube-dns: https://cloud.google.com/kubernetes-engine/docs/how-to/kube-dns -- the
#   kube-dns Service's pods in kube-system (k8s-app=kube-dns); Dataplane V2 evaluates
#   policy after the Service address is translated to a pod, so a pod selector matches.
# - Cloud DNS for GKE: https://cloud.google.com/kubernetes-engine/docs/how-to/cloud-dns --
#   pods' resolv.conf names the node's metadata server, 169.254.169.254, on port 53
#   (the default on new Autopilot clusters).
# - NodeLocal DNSCache: https://cloud.google.com/kubernetes-engine/docs/how-to/nodelocal-dns-cache --
#   on by default, and not to be turned off, on Autopilot (Standard: from 1.34.1-gke.3720000);
#   a hostNetwork DaemonSet listening on 169.254.20.10, port 53.
# - The GKE metadata server under Workload Identity:
#   https://cloud.google.com/kubernetes-engine/docs/how-to/network-policy -- with network
#   policies, allow 169.254.169.254/32 on TCP 80 (what pods dial; Dataplane V2 evaluates
#   policy before translating it) and 169.254.169.252/32 on TCP 988 (where the node
#   translates it to; what a Calico cluster's policy sees), as Google's own
#   gke-labs/kube-agents found on both datapaths (#777, #805). google-auth also finds it by
#   name (metadata.google.internal), through DNS.
# Since a stack deploys into clusters whose DNS it does not choose (an existing cluster),
# every pod must reach every resolver; a pod acting as a Google service account must also
# reach the metadata server.


@dataclass(frozen=True)
class Destination:
    what: str
    #: An IP address, or None for pods selected by ``pod`` in namespace ``namespace``.
    ip: str | None
    port: int
    protocols: tuple[str, ...] = ("TCP",)
    namespace: str = ""
    pod: dict[str, str] | None = None


RESOLVERS = (
    Destination("kube-dns", None, 53, ("UDP", "TCP"), "kube-system", {"k8s-app": "kube-dns"}),
    Destination("Cloud DNS (the node's metadata server)", "169.254.169.254", 53, ("UDP", "TCP")),
    Destination("NodeLocal DNSCache", "169.254.20.10", 53, ("UDP", "TCP")),
)
METADATA_SERVER = (
    Destination("the GKE metadata server", "169.254.169.254", 80),
    Destination("the GKE metadata server (after the node's translation, Calico)", "169.254.169.252", 988),
)
POD_TYPES = ("kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:Job")
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
WI_ANNOTATION = "iam.gke.io/gcp-service-account"


def _labels_match(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions); an empty one selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer: dict[str, Any], dest: Destination, namespace: str) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        if dest.ip is None:
            # A pod's address is somewhere in the pod range: only "anywhere" surely covers it.
            return ipaddress.ip_network(block["cidr"]).prefixlen == 0
        address = ipaddress.ip_address(dest.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except") or []
        )
    if dest.ip is not None:
        return False  # a pod or namespace selector never matches a node-local address
    dest_namespace = {"kubernetes.io/metadata.name": dest.namespace}
    if "namespaceSelector" in peer:
        if not _labels_match(peer["namespaceSelector"], dest_namespace):
            return False
    elif dest.namespace != namespace:
        return False
    return _labels_match(peer.get("podSelector"), dest.pod or {})


def _rule_allows(
    rule: dict[str, Any], dest: Destination, protocol: str, namespace: str, peers_key: str = "to"
) -> bool:
    """An egress rule (``to``) reaching ``dest``, or an ingress rule (``from``) admitting it on ``dest.port``."""
    ports = rule.get("ports") or []
    if ports and not any(
        p.get("protocol", "TCP") == protocol and p.get("port") in (None, dest.port) for p in ports
    ):
        return False
    peers = rule.get(peers_key) or []
    return not peers or any(_peer_matches(peer, dest, namespace) for peer in peers)


def egress_allowed(inv: Inventory, pod: dict[str, Any], dest: Destination, protocol: str) -> bool:
    """Whether the NetworkPolicies in ``inv`` let the pods of ``pod`` (a Deployment or Job) reach ``dest``."""
    return _allowed(inv, pod, dest, protocol, "Egress")


def _allowed(inv: Inventory, pod: dict[str, Any], peer: Destination, protocol: str, direction: str) -> bool:
    """Whether the pods of ``pod`` reach ``peer`` (Egress), or ``peer``'s pods reach them on ``peer.port`` (Ingress)."""
    namespace = (pod["inputs"].get("metadata") or {}).get("namespace", "default")
    labels = _dig(pod["inputs"], ("spec", "template", "metadata", "labels")) or {}
    policies = [
        p["inputs"]
        for p in inv.of_type(NETWORK_POLICY)
        if (p["inputs"].get("metadata") or {}).get("namespace", "default") == namespace
        and direction in (_dig(p["inputs"], ("spec", "policyTypes")) or [])
        and _labels_match(_dig(p["inputs"], ("spec", "podSelector")), labels)
    ]
    if not policies:
        return True  # no policy restricts it
    rules, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    return any(
        _rule_allows(rule, peer, protocol, namespace, peers_key=peers)
        for policy in policies
        for rule in policy["spec"].get(rules) or []
    )


def _uses_workload_identity(inv: Inventory, pod: dict[str, Any]) -> bool:
    spec = _dig(pod["inputs"], ("spec", "template", "spec")) or {}
    namespace = (pod["inputs"].get("metadata") or {}).get("namespace", "default")
    account = spec.get("serviceAccountName", "default")
    return any(
        (k["inputs"].get("metadata") or {}).get("name") == account
        and (k["inputs"].get("metadata") or {}).get("namespace", "default") == namespace
        and WI_ANNOTATION in ((k["inputs"].get("metadata") or {}).get("annotations") or {})
        for k in inv.of_type("kubernetes:core/v1:ServiceAccount")
    )


def network_rejections(inv: Inventory) -> list[str]:
    """Pods whose rendered NetworkPolicies cut them off from DNS or, under Workload Identity, their tokens."""
    found = []
    for pod in (r for typ in POD_TYPES for r in inv.of_type(typ)):
        needed = RESOLVERS + (METADATA_SERVER if _uses_workload_identity(inv, pod) else ())
        for dest in needed:
            for protocol in dest.protocols:
                if not egress_allowed(inv, pod, dest, protocol):
                    where = dest.ip or f"{dest.namespace}/{dest.pod}"
                    found.append(
                        f"{pod['name']}: its NetworkPolicy blocks {dest.what} "
                        f"({where}:{dest.port}/{protocol})"
                    )
    return found


# -- Managed Service for Prometheus and Cloud Monitoring ------------------------------------------
# A PodMonitoring scrapes the pods its selector matches, on a container port named in its
# endpoints, from the collectors in gmp-system: a pod that does not declare the port, or whose
# NetworkPolicies do not admit the collectors on it, is never scraped (its series never appear).
# Cloud Monitoring (monitoring v3 AlertPolicy, dashboards v1 MosaicLayout, their field rules) refuses:
# a policy of no condition or more than six, a condition of not exactly one type, a PromQL (or MQL)
# condition beside another ("An alerting policy that uses PromQL must have only one condition",
# cloud.google.com/monitoring/promql/create-promql-alerts), a PromQL duration that is not a
# non-negative number of seconds, an evaluationInterval that is not a positive multiple of 30 s, a
# query naming a metric Cloud Monitoring has not seen unless disableMetricValidation is set (a new
# stack's metrics do not exist until first scraped; a labelled counter not until its first event),
# documentation over 8,192 characters or not text/markdown, user labels outside their alphabet, a
# notification channel not named projects/P/notificationChannels/ID; a mosaic of more than 48
# columns, a tile outside them or of no size, a chart query of not exactly one kind. PromQL is
# only checked for balanced brackets. MQL is refused too, though the API still takes it: its
# support ended (MQL_ENDED).

POD_MONITORING = "kubernetes:monitoring.googleapis.com/v1:PodMonitoring"
ALERT_POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
COLLECTORS = {"namespace": "gmp-system", "pod": {"app.kubernetes.io/name": "collector"}}
_CHANNEL = re.compile(r"^projects/[^/]+/notificationChannels/[0-9]+$")


def ingress_allowed(inv: Inventory, pod: dict[str, Any], source: Destination, protocol: str = "TCP") -> bool:
    """Whether the NetworkPolicies in ``inv`` admit ``source`` (pods) to the pods of ``pod`` on ``source.port``."""
    return _allowed(inv, pod, source, protocol, "Ingress")


def scrape_rejections(inv: Inventory) -> list[str]:
    found = []
    for monitor in inv.of_type(POD_MONITORING):
        spec, meta = monitor["inputs"].get("spec") or {}, monitor["inputs"].get("metadata") or {}
        namespace = meta.get("namespace", "default")
        pods = [
            pod
            for typ in POD_TYPES
            for pod in inv.of_type(typ)
            if (pod["inputs"].get("metadata") or {}).get("namespace", "default") == namespace
            and _labels_match(spec.get("selector"), _dig(pod["inputs"], ("spec", "template", "metadata", "labels")) or {})
        ]
        if not pods:
            found.append(f"{monitor['name']}: its selector matches no pod in namespace {namespace}")
        for pod in pods:
            containers = _dig(pod["inputs"], ("spec", "template", "spec", "containers")) or []
            declared = {p.get("name"): p.get("containerPort") for c in containers for p in c.get("ports") or []}
            for endpoint in spec.get("endpoints") or []:
                port = endpoint.get("port")
                number = port if isinstance(port, int) else declared.get(port)
                if number is None:
                    found.append(f"{monitor['name']}: {pod['name']} declares no container port {port!r}")
                    continue
                source = Destination("the metrics collectors", None, number, ("TCP",), **COLLECTORS)
                if not ingress_allowed(inv, pod, source):
                    found.append(
                        f"{monitor['name']}: {pod['name']}'s NetworkPolicy blocks the collectors (gmp-system) on {number}/TCP"
                    )
    return found


#: The condition types an alert policy's condition holds exactly one of (monitoring v3 AlertPolicy.Condition).
CONDITION_TYPES = (
    "conditionThreshold", "conditionAbsent", "conditionMatchedLog", "conditionMonitoringQueryLanguage",
    "conditionPrometheusQueryLanguage", "conditionSql",
)  # fmt: skip
COMBINERS = ("COMBINE_UNSPECIFIED", "AND", "OR", "AND_WITH_MATCHING_RESOURCE")
#: A protobuf Duration in JSON: seconds, a fraction allowed, and "s" (no "5m").
_DURATION = re.compile(r"^(\d+)(\.\d{1,9})?s$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_USER_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_USER_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
#: A metric selector in PromQL: a name before its label matchers.
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
#: Google's MQL notice: support ended and the console dropped it on 2025-07-22; the API still takes it.
MQL_ENDED = "MQL is deprecated (Google's support ended 2025-07-22, docs.cloud.google.com/monitoring/mql): write PromQL"
PLOT_TYPES = ("LINE", "STACKED_AREA", "STACKED_BAR", "HEATMAP")
QUERY_KINDS = ("timeSeriesFilter", "timeSeriesFilterRatio", "timeSeriesQueryLanguage", "prometheusQuery")


def _seconds(value: str) -> float | None:
    found = _DURATION.match(value)
    return float(value[:-1]) if found else None


def _balanced(query: str) -> bool:
    """Brackets closed in order, outside quoted strings: the least of what PromQL's parser checks."""
    stack, quote = [], None
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in query:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack and quote is None


def _promql_rejections(name: str, promql: dict[str, Any]) -> list[str]:
    """What monitoring v3 refuses in a PrometheusQueryLanguageCondition (its field rules)."""
    found = []
    query = promql.get("query") or ""
    if not query.strip():
        found.append(f"{name}: a PromQL condition needs a query")
    elif not _balanced(query):
        found.append(f"{name}: the PromQL query does not parse (unbalanced brackets or quotes): {query}")
    duration = _seconds(promql.get("duration", "0s"))
    if duration is None:
        found.append(f"{name}: duration {promql.get('duration')!r} is not a non-negative duration in seconds (60s)")
    interval = promql.get("evaluationInterval")
    if interval is not None:
        seconds = _seconds(interval)
        if seconds is None or seconds <= 0 or seconds % 30:
            found.append(f"{name}: evaluationInterval {interval!r} is not a positive multiple of 30 seconds")
    alert_rule = promql.get("alertRule")
    if alert_rule and not (_LABEL_NAME.match(alert_rule) and len(alert_rule) <= 2048):
        found.append(f"{name}: alertRule {alert_rule!r} is not a Prometheus label name")
    if len(promql.get("ruleGroup") or "") > 2048:
        found.append(f"{name}: ruleGroup is longer than 2,048 characters")
    for label in promql.get("labels") or {}:
        if not _LABEL_NAME.match(label):
            found.append(f"{name}: label {label!r} is not a Prometheus label name")
    # Without disableMetricValidation the API refuses a condition on a metric Cloud Monitoring has
    # not seen yet: every Prometheus metric of a stack not yet scraped (GKE's own, named with ':', exist).
    unseen = sorted({m for m in _SELECTOR.findall(query) if ":" not in m})
    if unseen and not promql.get("disableMetricValidation"):
        found.append(
            f"{name}: the API checks that {', '.join(unseen)} exist, and a new stack has not exported them yet: "
            "set disableMetricValidation"
        )
    return found


def _policy_rejections(policy: dict[str, Any]) -> list[str]:
    i, name = policy["inputs"], policy["name"]
    found = []
    conditions = i.get("conditions") or []
    if not i.get("displayName") or len(i["displayName"]) > 512:
        found.append(f"{name}: an alert policy needs a display name of at most 512 characters")
    if not 1 <= len(conditions) <= 6:
        found.append(f"{name}: an alert policy has one to six conditions, not {len(conditions)}")
    if i.get("combiner") not in COMBINERS or (len(conditions) > 1 and i.get("combiner") in (None, "COMBINE_UNSPECIFIED")):
        found.append(f"{name}: combiner {i.get('combiner')!r} is not one of {', '.join(COMBINERS[1:])}")
    for condition in conditions:
        kinds = [kind for kind in CONDITION_TYPES if condition.get(kind) is not None]
        if len(kinds) != 1 or not condition.get("displayName"):
            found.append(f"{name}: a condition needs a display name and exactly one condition type, not {kinds}")
            continue
        if kinds[0] in ("conditionPrometheusQueryLanguage", "conditionMonitoringQueryLanguage") and len(conditions) > 1:
            found.append(f"{name}: a policy with a {kinds[0]} has only that one condition")
        if kinds[0] == "conditionMonitoringQueryLanguage":
            found.append(f"{name}: {MQL_ENDED}")
        if kinds[0] == "conditionPrometheusQueryLanguage":
            found += _promql_rejections(name, condition["conditionPrometheusQueryLanguage"])
    for channel in i.get("notificationChannels") or []:
        if not _CHANNEL.match(channel):
            found.append(f"{name}: {channel!r} is not a notification channel")
    documentation = i.get("documentation") or {}
    content = documentation.get("content") or ""
    if len(content) > 8192 or len(content.encode()) > 10_240:
        found.append(f"{name}: documentation content is longer than 8,192 characters or 10,240 bytes")
    if documentation and documentation.get("mimeType", "text/markdown") != "text/markdown":
        found.append(f"{name}: documentation mimeType {documentation.get('mimeType')!r} is not text/markdown")
    labels = i.get("userLabels") or {}
    if len(labels) > 64 or any(not _USER_LABEL_KEY.match(k) or not _USER_LABEL_VALUE.match(v) for k, v in labels.items()):
        found.append(f"{name}: user labels: at most 64, lowercase letters, digits, _ and - (keys from a letter), 63 characters each")
    return found


def _dashboard_rejections(board: dict[str, Any]) -> list[str]:
    name = board["name"]
    try:
        layout = json.loads(board["inputs"]["dashboardJson"])["mosaicLayout"]
    except (KeyError, ValueError, TypeError):
        return [f"{name}: dashboardJson is not a dashboard with a mosaicLayout"]
    found = []
    columns = layout.get("columns", 12)
    if not 1 <= columns <= 48:
        found.append(f"{name}: a mosaic layout has 1 to 48 columns, not {columns}")
    for tile in layout.get("tiles") or []:
        x, y, width, height = (tile.get(k, 0) for k in ("xPos", "yPos", "width", "height"))
        if x < 0 or y < 0 or width < 1 or height < 1:
            found.append(f"{name}: a tile needs a position of 0 or more and a width and height of at least 1")
        if x + width > columns:
            found.append(f"{name}: a tile reaches past column {columns}")
        for data_set in (tile.get("widget") or {}).get("xyChart", {}).get("dataSets") or []:
            query = data_set.get("timeSeriesQuery") or {}
            kinds = [kind for kind in QUERY_KINDS if query.get(kind)]
            if len(kinds) != 1:
                found.append(f"{name}: a chart's time series query needs exactly one of {', '.join(QUERY_KINDS)}")
            elif kinds[0] == "timeSeriesQueryLanguage":
                found.append(f"{name}: {MQL_ENDED}")
            elif kinds[0] == "prometheusQuery" and not _balanced(query["prometheusQuery"]):
                found.append(f"{name}: the PromQL query does not parse: {query['prometheusQuery']}")
            if data_set.get("plotType", "LINE") not in PLOT_TYPES:
                found.append(f"{name}: plotType {data_set.get('plotType')!r} is not one of {', '.join(PLOT_TYPES)}")
    return found


def monitoring_rejections(inv: Inventory) -> list[str]:
    """What Cloud Monitoring's API refuses in the stack's alert policies and dashboards (monitoring v3, dashboards v1)."""
    found = []
    for policy in inv.of_type(ALERT_POLICY):
        found += _policy_rejections(policy)
    for board in inv.of_type(DASHBOARD):
        found += _dashboard_rejections(board)
    return found


def destroy_rejections(inv: Inventory) -> list[str]:
    """What ``pulumi destroy`` of one stack would fail on.

    A private services access connection cannot be deleted while its producer
    (Memorystore) still holds it, which it does for minutes after the instance is
    deleted ("Failed to delete connection; Producer services ... are still using this
    connection", terraform-provider-google issue 16275); the peering it leaves blocks
    the deletion of a network the stack made. Only ``deletionPolicy: REMOVE_PEERING``
    (magic-modules PR 18476) lets such a stack be destroyed.
    """
    found = []
    if any(r["protect"] for r in inv):
        return found  # a protected stack is not meant to be destroyed
    networks = {r["urn"] for r in inv.of_type("gcp:compute/network:Network")}
    for c in inv.of_type("gcp:servicenetworking/connection:Connection"):
        on_own_network = any(urn in c["dependencies"] for urn in networks)
        if on_own_network and c["inputs"].get("deletionPolicy") != "REMOVE_PEERING":
            found.append(f"{c['name']}: producer services are still using this connection; its peering blocks deleting the network")
    return found
