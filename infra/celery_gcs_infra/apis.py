"""The Google Cloud APIs a deployment uses, enabled and never disabled on destroy.

Another stack, or anything else in the project, may depend on the same APIs, so
``pulumi destroy`` leaves them enabled (``disable_on_destroy=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from . import common

#: Needed by every deployment. The first two are what Terraform and Pulumi's
#: Google provider call to enable the others and to read the project (its
#: number, IAM policy); a new project has neither on.
BASE_SERVICES = (
    "cloudresourcemanager.googleapis.com",  # project IAM members, project lookups
    "serviceusage.googleapis.com",  # enabling the services below
    "storage.googleapis.com",  # the result bucket
    "firestore.googleapis.com",  # chord counters
    "iam.googleapis.com",  # the worker service account
    "iamcredentials.googleapis.com",  # Workload Identity token exchange
    "container.googleapis.com",  # GKE
    "artifactregistry.googleapis.com",  # the worker image repository
)
COMPUTE = "compute.googleapis.com"  # a new cluster's network and Cloud NAT
REDIS = "redis.googleapis.com"  # Memorystore broker
KMS = "cloudkms.googleapis.com"  # CMEK
DNS = "dns.googleapis.com"  # the stack VPC's private googleapis.com zone
SERVICE_NETWORKING = "servicenetworking.googleapis.com"  # Memorystore's private services access
MONITORING = "monitoring.googleapis.com"  # the dashboard, alert policies, Managed Service for Prometheus


def services_for(
    *,
    new_cluster: bool,
    memorystore: bool,
    cmek: bool,
    own_network: bool = False,
    private_service_access: bool = False,
    monitoring: bool = False,
) -> tuple[str, ...]:
    """The services a deployment with these features uses, in a stable order."""
    extra = (
        ((COMPUTE,) if new_cluster else ())
        + ((REDIS,) if memorystore else ())
        + ((KMS,) if cmek else ())
        + ((DNS,) if own_network else ())
        + ((SERVICE_NETWORKING,) if private_service_access else ())
        + ((MONITORING,) if monitoring else ())
    )
    return BASE_SERVICES + extra


@dataclass(frozen=True, kw_only=True)
class ApisArgs:
    project: str
    services: tuple[str, ...]

    def __post_init__(self) -> None:
        common.project_id(self.project)
        for service in self.services:
            common.check(
                service.endswith(".googleapis.com"),
                "services",
                f"{service!r} is not an API service name",
                "Use names such as storage.googleapis.com",
            )


class Apis(pulumi.ComponentResource):
    """Enables ``args.services`` on the project."""

    services: dict[str, gcp.projects.Service]

    def __init__(
        self, name: str, args: ApisArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("apis", "Apis"), name, None, opts)
        self.services = {
            service: gcp.projects.Service(
                f"{name}-{service.split('.')[0]}",
                project=args.project,
                service=service,
                disable_on_destroy=False,
                disable_dependent_services=False,
                opts=common.child(self),
            )
            for service in args.services
        }
        self.register_outputs({"services": [s.service for s in self.services.values()]})
