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

import json
import re
from collections.abc import Iterable
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
