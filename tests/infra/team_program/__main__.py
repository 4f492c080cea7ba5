"""A team's own Pulumi program that reuses celery-gcs's top-level component.

It brings its own GKE cluster, Redis and CI-built image, keeps results
under a prefix in a CMEK bucket, and adds a resource of its own next to the stack.
"""

import pulumi
import pulumi_gcp as gcp
from celery_gcs_infra import CeleryStack, CeleryStackArgs, WorkerSettings

config = pulumi.Config()
KEY = "projects/acme-kms/locations/us-central1/keyRings/data/cryptoKeys/celery"

celery = CeleryStack(
    "payments",
    CeleryStackArgs(
        project="acme-payments",
        region="us-central1",
        prefix="payments",
        labels={"team": "payments"},
        base_path="celery/results",
        kms_key_name=KEY,
        firestore_database="payments-chords",
        cluster="shared-gke",
        keda_installed=True,
        broker="external",
        broker_url=config.require("brokerUrl"),
        image="us-docker.pkg.dev/acme-ci/images/payments-worker:1.4.2@sha256:" + "0" * 64,
        worker=WorkerSettings(
            celery_app="payments.worker:app",
            queues=("payments", "refunds"),
            namespace="payments",
            keda=True,
            min_replicas=0,
            max_replicas=20,
        ),
    ),
)

# The team's own resources sit next to the component and use its outputs; the audit
# bucket uses the same key, after the stack has granted it to the storage agent.
audit = gcp.storage.Bucket(
    "payments-audit",
    name="acme-payments-audit",
    project="acme-payments",
    location="us-central1",
    uniform_bucket_level_access=True,
    public_access_prevention="enforced",
    encryption=gcp.storage.BucketEncryptionArgs(default_kms_key_name=KEY),
    opts=pulumi.ResourceOptions(depends_on=[celery]),
)

pulumi.export("result_backend", celery.result_backend)
pulumi.export("service_account_email", celery.service_account_email)
pulumi.export("image_digest", celery.image_digest)
pulumi.export("audit_bucket", audit.name)
