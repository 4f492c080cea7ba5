"""The worker's Google identity, with the least privilege the backend needs.

- a service account, without keys: pods get its tokens through Workload Identity;
- ``roles/storage.objectUser`` on the result bucket only (no project-wide storage role);
- ``roles/datastore.user`` on the project, limited by an IAM condition to this
  Firestore database (Firestore has no database-level IAM of its own);
- ``roles/iam.workloadIdentityUser`` on the service account for the worker's
  Kubernetes service account, created after the cluster (whose creation makes
  the ``PROJECT.svc.id.goog`` identity pool exist).

Every grant is an additive ``*IAMMember``: nothing here rewrites a policy others share.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
from celery_gcs import conventions

from . import chord_store, common, result_store

FIRESTORE_ROLE = conventions.WORKER_DATABASE_ROLE
WORKLOAD_IDENTITY_ROLE = "roles/iam.workloadIdentityUser"


def firestore_condition(project: str, database: str) -> dict[str, str]:
    """The IAM condition that limits a project-level Firestore role to one database."""
    return {
        "title": f"only-firestore-{database.strip('()')}",
        "description": f"Only the Firestore database {database}",
        "expression": f'resource.name == "{chord_store.resource_name(project, database)}"',
    }


def workload_identity_member(project: str, namespace: str, ksa: str) -> str:
    return f"serviceAccount:{project}.svc.id.goog[{namespace}/{ksa}]"


@dataclass(frozen=True, kw_only=True)
class WorkerIdentityArgs:
    project: str
    #: Service account ID (the part before ``@``): 6-30 characters.
    account_id: str
    bucket: pulumi.Input[str]
    database: str
    namespace: str
    kubernetes_service_account: str
    #: The project whose Workload Identity pool the cluster uses (the cluster's
    #: project); default: ``project``.
    pool_project: str = ""
    #: The cluster resource, when this stack creates it: the Workload Identity
    #: binding waits for it. ``None`` for an existing cluster.
    cluster: pulumi.Resource | None = None

    def __post_init__(self) -> None:
        common.project_id(self.project)
        common.check(
            6 <= len(self.account_id) <= 30,
            "account_id",
            f"{self.account_id!r} must be 6-30 characters long",
            "Use a shorter (or longer) name prefix",
        )
        common.dns_label(self.account_id, "account_id")
        chord_store.database_name(self.database)
        common.dns_label(self.namespace, "namespace")
        common.dns_label(self.kubernetes_service_account, "kubernetes_service_account")


class WorkerIdentity(pulumi.ComponentResource):
    service_account: gcp.serviceaccount.Account
    email: pulumi.Output[str]
    workload_identity: gcp.serviceaccount.IAMMember

    def __init__(
        self, name: str, args: WorkerIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("identity", "WorkerIdentity"), name, None, opts)
        self.service_account = gcp.serviceaccount.Account(
            f"{name}-sa",
            project=args.project,
            account_id=args.account_id,
            display_name="celery-gcs worker",
            description="Celery workers on GKE (Workload Identity); no keys.",
            opts=common.child(self),
        )
        self.email = self.service_account.email
        member = common.member(self.email)

        self.bucket_access = gcp.storage.BucketIAMMember(
            f"{name}-bucket",
            bucket=args.bucket,
            role=result_store.WORKER_ROLE,
            member=member,
            opts=common.child(self),
        )
        self.firestore_access = gcp.projects.IAMMember(
            f"{name}-firestore",
            project=args.project,
            role=FIRESTORE_ROLE,
            member=member,
            condition=gcp.projects.IAMMemberConditionArgs(
                **firestore_condition(args.project, args.database)
            ),
            opts=common.child(self),
        )
        self.workload_identity = gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity",
            service_account_id=self.service_account.name,
            role=WORKLOAD_IDENTITY_ROLE,
            member=workload_identity_member(
                args.pool_project or args.project, args.namespace, args.kubernetes_service_account
            ),
            opts=common.child(self, depends_on=[args.cluster] if args.cluster is not None else []),
        )
        self.register_outputs({"email": self.email})
