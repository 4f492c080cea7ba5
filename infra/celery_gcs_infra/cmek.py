"""Customer-managed encryption keys: one key name for every resource that takes one, each service agent granted first.

With ``kms_key_name`` set, the bucket, the Firestore database, Memorystore,
the Artifact Registry repository, a new cluster's Secrets (GKE
application-layer encryption) and its nodes' boot disks are all encrypted with it. A Cloud KMS key only
encrypts resources in its own location, so a resource elsewhere uses the key
of the same key ring and key name in *its* KMS location (:func:`key_in`):
Firestore's multi-regions eur3 and nam5 take keys in ``europe`` and ``us``, a
bucket in the EU or US multi-region keys in ``europe`` or ``us``, anything in a
region a key in that region. Create the key ring and key under the same names
in each location the stack uses (docs/security.md). Each of those
services encrypts through its own service agent, which needs
``roles/cloudkms.cryptoKeyEncrypterDecrypter`` on the key *before* the
resource is created: otherwise the create fails, and under the organization
policy ``constraints/gcp.restrictNonCmekServices`` a resource without a key is
refused outright. Each component calls :func:`agent_grant` for its own agent
and creates its resource after that grant.

Some agents exist only once asked for (``ServiceIdentity``); the Cloud Storage
agent is read with ``getProjectServiceAccount``, GKE's and Compute Engine's are
named after the project number.
"""

from __future__ import annotations

import re

import pulumi
import pulumi_gcp as gcp

from . import common

ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
_KEY = re.compile(r"^projects/[^/]+/locations/([^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+$")
#: Services whose agent ServiceIdentity creates (and names).
IDENTITY_SERVICES = ("firestore.googleapis.com", "redis.googleapis.com", "artifactregistry.googleapis.com")
#: Agents named after the project number (https://cloud.google.com/iam/docs/service-agents):
#: GKE's encrypts Secrets, Compute Engine's a new cluster's node boot disks
#: (https://cloud.google.com/kubernetes-engine/docs/how-to/using-cmek).
NUMBERED_AGENTS = {
    "container.googleapis.com": "service-{number}@container-engine-robot.iam.gserviceaccount.com",
    "compute.googleapis.com": "service-{number}@compute-system.iam.gserviceaccount.com",
}


def key_name(value: str, field_name: str = "kms_key_name") -> str:
    common.check(
        value == "" or bool(_KEY.match(value)),
        field_name,
        f"{value!r} is not a Cloud KMS key name",
        "Use projects/P/locations/L/keyRings/R/cryptoKeys/K (in the stack's region), "
        "or leave it empty for Google-managed encryption",
    )
    return value


#: Multi-region resource locations and the Cloud KMS location their keys must be in:
#: Firestore (https://cloud.google.com/firestore/docs/cmek#locations: eur3 -> europe,
#: nam5/nam7 -> us) and Cloud Storage (https://cloud.google.com/storage/docs/encryption/customer-managed-keys:
#: the key's location matches the bucket's; EU -> europe, US -> us, ASIA -> asia).
KMS_LOCATIONS = {"eur3": "europe", "nam5": "us", "nam7": "us", "eu": "europe", "us": "us", "asia": "asia"}


def kms_location(location: str) -> str:
    """Where a key for a resource in ``location`` must be."""
    return KMS_LOCATIONS.get(location.lower(), location.lower())


def key_in(key: str, location: str) -> str:
    """The stack's key name in the KMS location of ``location`` (same project, key ring and key)."""
    if not key:
        return ""
    return re.sub(r"/locations/[^/]+/", f"/locations/{kms_location(location)}/", key, count=1)


def key_location(key: str) -> str:
    match = _KEY.match(key)
    return match.group(1) if match else ""


def check_location(key: str, location: str, what: str, field_name: str = "kms_key_name") -> None:
    """Each service accepts only a key in the resource's own location."""
    if not key:
        return
    common.check(
        key_location(key).lower() == kms_location(location),
        field_name,
        f"the key is in {key_location(key)}, but {what} is in {location}; "
        "Cloud KMS keys only encrypt resources in their own location",
        f"Use a key in {kms_location(location)} (the stack derives it from kmsKeyName: the same "
        "key ring and key name in each location), or move the resource to the key's location",
    )


def grants_before(
    name: str,
    *,
    parent: pulumi.Resource,
    project: str,
    service: str,
    key: str | None,
    invoke_opts: pulumi.InvokeOutputOptions,
) -> list[pulumi.Resource]:
    """What a resource of ``service`` encrypted with ``key`` must depend on: its agent's grant (none without a key)."""
    if not key:
        return []
    grant = agent_grant(name, parent=parent, project=project, service=service, key=key, invoke_opts=invoke_opts)
    return [grant]


def agent_grant(
    name: str,
    *,
    parent: pulumi.Resource,
    project: str,
    service: str,
    key: str,
    invoke_opts: pulumi.InvokeOutputOptions,
) -> gcp.kms.CryptoKeyIAMMember:
    """The key grant to ``service``'s agent; create the encrypted resource after it."""
    if service in IDENTITY_SERVICES:
        agent = gcp.projects.ServiceIdentity(
            f"{name}-agent",
            project=project,
            service=service,
            opts=common.child(parent),
        )
        member: pulumi.Input[str] = common.member(agent.email)
    elif service == "storage.googleapis.com":
        storage = gcp.storage.get_project_service_account_output(project=project, opts=invoke_opts)
        member = common.member(storage.email_address)
    elif service in NUMBERED_AGENTS:
        number = gcp.organizations.get_project_output(project_id=project, opts=invoke_opts).number
        agent = NUMBERED_AGENTS[service]
        member = number.apply(lambda n: "serviceAccount:" + agent.format(number=n))
    else:
        raise ValueError(f"no CMEK service agent known for {service}")
    return gcp.kms.CryptoKeyIAMMember(
        f"{name}-kms-agent",
        crypto_key_id=key,
        role=ROLE,
        member=member,
        opts=common.child(parent),
    )
