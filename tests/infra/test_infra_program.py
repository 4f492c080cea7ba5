"""What `pulumi up` would create, read from the captured inventories (see conftest.py)."""

from __future__ import annotations

import json
import re
import ssl
import urllib.parse

import pytest
from celery_gcs import conventions
from celery_gcs_infra import cluster as cluster_mod
from celery_gcs_infra import keda
from kombu.utils.url import parse_url

from .infra_inventory import Inventory
from .infra_scenarios import (
    BYO_BROKER_URL,
    BYO_IMAGE,
    BYO_KMS_KEY,
    BYO_NODES,
    BYO_POOL_NODES,
    DEV,
    PROD,
    ROOT,
    prefix_of,
)
from .run_program import PROJECT_NUMBER, agent_email, endpoint_for

SERVICE = "gcp:projects/service:Service"
NETWORK = "gcp:compute/network:Network"
SUBNETWORK = "gcp:compute/subnetwork:Subnetwork"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
BUCKET = "gcp:storage/bucket:Bucket"
DATABASE = "gcp:firestore/database:Database"
FIELD = "gcp:firestore/field:Field"
ACCOUNT = "gcp:serviceaccount/account:Account"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
SA_MEMBER = "gcp:serviceaccount/iAMMember:IAMMember"
REPO_MEMBER = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
KMS_MEMBER = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
REDIS = "gcp:redis/instance:Instance"
CLUSTER = "gcp:container/cluster:Cluster"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
IMAGE = "docker-build:index:Image"
K8S_PROVIDER = "pulumi:providers:kubernetes"
NAMESPACE = "kubernetes:core/v1:Namespace"
KSA = "kubernetes:core/v1:ServiceAccount"
SECRET = "kubernetes:core/v1:Secret"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
TRIGGER_AUTH = "kubernetes:keda.sh/v1alpha1:TriggerAuthentication"

FAKE_DIGEST = "sha256:" + "ab" * 32


def _run(runs, name):
    run = runs[name]
    assert run["error"] is None, f"{name}: program failed\n{run['error']['traceback']}"
    return Inventory(run)


def worker_deployment(inv):
    (worker,) = [d for d in inv.of_type(DEPLOYMENT) if d["name"].endswith("-worker-deployment")]
    return worker


def container(inv):
    return worker_deployment(inv)["inputs"]["spec"]["template"]["spec"]["containers"][0]


def env_of(inv) -> dict:
    return {e["name"]: e for e in container(inv)["env"]}


def secret_data(inv) -> dict:
    return inv.one(SECRET)["inputs"]["stringData"]


def service_urn(inv, service: str) -> str:
    return next(r["urn"] for r in inv.of_type(SERVICE) if r["inputs"]["service"] == service)


# --- components ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_every_resource_belongs_to_a_component(request, name):
    inv = request.getfixturevalue(name)
    stack = inv.one("celery-gcs:stack:CeleryStack")
    for r in inv:
        if r["type"] in ("pulumi:pulumi:Stack", "celery-gcs:stack:CeleryStack"):
            continue
        parent = inv.parent(r)
        assert parent is not None and parent["type"].startswith("celery-gcs:"), r["name"]
        assert r["name"].startswith(parent["name"] + "-"), (r["name"], parent["name"])
        assert stack in inv.ancestors(r)


def test_components_have_tokens_and_register_outputs(any_inventory):
    components = [r for r in any_inventory if r["type"].startswith("celery-gcs:")]
    assert {c["type"] for c in components} >= {
        "celery-gcs:stack:CeleryStack",
        "celery-gcs:result_store:ResultStore",
        "celery-gcs:chord_store:ChordStore",
        "celery-gcs:identity:WorkerIdentity",
        "celery-gcs:broker:Broker",
        "celery-gcs:registry:Registry",
        "celery-gcs:cluster:Cluster",
        "celery-gcs:worker:Worker",
    }
    for c in components:
        assert len(c["type"].split(":")) == 3
        assert any_inventory.registered_outputs.get(c["urn"]), f"{c['name']} registered no outputs"


# --- APIs ---------------------------------------------------------------------


def test_apis_enabled_as_used_and_kept_on_destroy(dev, byo):
    base = {
        "cloudresourcemanager.googleapis.com",
        "serviceusage.googleapis.com",
        "storage.googleapis.com",
        "firestore.googleapis.com",
        "iam.googleapis.com",
        "iamcredentials.googleapis.com",
        "container.googleapis.com",
        "artifactregistry.googleapis.com",
    }
    dev_services = {r["inputs"]["service"] for r in dev.of_type(SERVICE)}
    monitoring = "monitoring.googleapis.com"  # the dashboard and alert policies (monitoring on by default)
    assert dev_services == base | {"compute.googleapis.com", "redis.googleapis.com", "dns.googleapis.com", monitoring}
    byo_services = {r["inputs"]["service"] for r in byo.of_type(SERVICE)}
    assert byo_services == base | {"cloudkms.googleapis.com", monitoring}
    for inv in (dev, byo):
        for r in inv.of_type(SERVICE):
            assert r["inputs"]["disableOnDestroy"] is False
            assert r["inputs"]["project"] == "acme-celery-dev"


def test_resources_wait_for_their_apis(dev):
    for typ, service in [
        (BUCKET, "storage.googleapis.com"),
        (DATABASE, "firestore.googleapis.com"),
        (CLUSTER, "container.googleapis.com"),
        (REDIS, "redis.googleapis.com"),
        (REPOSITORY, "artifactregistry.googleapis.com"),
        (ACCOUNT, "iam.googleapis.com"),
    ]:
        for r in dev.of_type(typ):
            assert service_urn(dev, service) in dev.waits_for(r), (typ, r["name"])


@pytest.mark.parametrize("name", ["byo", "shared_a"])
def test_lookups_run_after_the_apis_they_call_are_enabled(runs, name):
    inv = _run(runs, name)
    services = {r["urn"] for r in inv.of_type(SERVICE)}
    assert services and inv.invokes
    for invoke in inv.invokes:
        assert services <= set(invoke["after"]), invoke["token"]


# --- result store -------------------------------------------------------------


def test_bucket_is_private_disposable_and_named_from_config(dev, prod):
    for inv, name in [
        (dev, f"acme-celery-dev-{DEV}-results"),
        (prod, f"acme-celery-prod-{PROD}-results"),
    ]:
        b = inv.one(BUCKET)["inputs"]
        assert b["name"] == name
        assert b["location"] == "europe-west1"
        assert b["uniformBucketLevelAccess"] is True
        assert b["publicAccessPrevention"] == "enforced"
        assert b["softDeletePolicy"] == {"retentionDurationSeconds": 0}
        assert b["versioning"] == {"enabled": False}
        assert b["labels"]["celery-gcs-stack"] == inv.stack
        assert b["labels"]["app"] == "celery-gcs"
        assert "encryption" not in b


def test_bucket_lifecycle_matches_backend_defaults(dev):
    rules = dev.one(BUCKET)["inputs"]["lifecycleRules"]
    assert rules == [
        {
            "action": {"type": "Delete"},
            "condition": {
                "daysSinceCustomTime": conventions.LIFECYCLE_DAYS_SINCE_CUSTOM_TIME,
                "sendDaysSinceCustomTimeIfZero": True,
            },
        },
        {"action": {"type": "Delete"}, "condition": {"age": conventions.LIFECYCLE_MAX_AGE_DAYS}},
    ]


def test_dev_bucket_destroyable_prod_bucket_protected(dev, prod):
    assert dev.one(BUCKET)["inputs"]["forceDestroy"] is True
    assert dev.one(BUCKET)["protect"] is False
    assert prod.one(BUCKET)["inputs"]["forceDestroy"] is False
    assert prod.one(BUCKET)["protect"] is True


def test_cmek_key_used_and_granted_to_the_storage_agent_first(byo, dev):
    bucket = byo.one(BUCKET)
    assert bucket["inputs"]["encryption"] == {"defaultKmsKeyName": BYO_KMS_KEY}
    grant = byo.named("celery-results-kms-agent")
    assert grant["inputs"] == {
        "cryptoKeyId": BYO_KMS_KEY,
        "role": "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        "member": "serviceAccount:" + agent_email("storage.googleapis.com"),
    }
    assert grant["urn"] in bucket["dependencies"]
    assert dev.of_type(KMS_MEMBER) == []


# --- chord store --------------------------------------------------------------


def test_database_native_named_and_located_from_config(dev, prod):
    d = dev.one(DATABASE)["inputs"]
    assert (d["type"], d["name"], d["locationId"]) == (
        "FIRESTORE_NATIVE",
        f"{DEV}-chords",
        "europe-west1",
    )
    # Unset, the database is the stack's own, never the project's (default).
    p = prod.one(DATABASE)["inputs"]
    assert (p["type"], p["name"], p["locationId"]) == (
        "FIRESTORE_NATIVE",
        f"{PROD}-chords",
        "eur3",
    )


def test_dev_database_is_destroyable(dev):
    db = dev.one(DATABASE)
    assert db["inputs"]["deletionPolicy"] == "DELETE"
    assert db["inputs"]["deleteProtectionState"] == "DELETE_PROTECTION_DISABLED"
    assert db["inputs"]["pointInTimeRecoveryEnablement"] == "POINT_IN_TIME_RECOVERY_DISABLED"
    assert db["protect"] is False


def test_prod_database_protected_with_pitr(prod):
    db = prod.one(DATABASE)
    assert db["inputs"]["deletionPolicy"] == "ABANDON"
    assert db["inputs"]["deleteProtectionState"] == "DELETE_PROTECTION_ENABLED"
    assert db["inputs"]["pointInTimeRecoveryEnablement"] == "POINT_IN_TIME_RECOVERY_ENABLED"
    assert db["protect"] is True


def test_ttl_policy_on_every_collection_group_the_backend_writes(dev, prod):
    # TTL is per collection group and never deletes subcollections: the chords
    # and their parts and counters (subcollections of each chord) each need a policy.
    for inv in (dev, prod):
        db = inv.one(DATABASE)
        fields = sorted(inv.of_type(FIELD), key=lambda f: f["inputs"]["collection"])
        assert [f["inputs"] for f in fields] == [
            {
                "project": db["inputs"]["project"],
                "database": db["inputs"]["name"],
                "collection": group,
                "field": conventions.FIRESTORE_TTL_FIELD,
                "ttlConfig": {},
                # Exempt from single-field indexes: no query uses it.
                "indexConfig": {},
            }
            for group in sorted(conventions.chord_collection_groups())
        ]
        for field in fields:
            assert db["urn"] in field["dependencies"]


def test_firestore_collection_key_feeds_the_backend_url_and_the_ttl_policies(runs):
    inv = _run(runs, "collection")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(inv.outputs["result_backend"]).query)
    assert query["firestore_collection"] == ["jobs"]
    assert {f["inputs"]["collection"] for f in inv.of_type(FIELD)} == set(conventions.chord_collection_groups("jobs"))


# --- identity -----------------------------------------------------------------


def worker_account(inv):
    return next(a for a in inv.of_type(ACCOUNT) if a["inputs"]["accountId"].endswith("-worker"))


def test_least_privilege_grants_exactly(dev):
    worker = f"serviceAccount:{DEV}-worker@acme-celery-dev.iam.gserviceaccount.com"
    nodes = f"serviceAccount:{DEV}-nodes@acme-celery-dev.iam.gserviceaccount.com"
    grants = sorted(
        (r["type"], r["inputs"]["role"], r["inputs"]["member"])
        for r in dev
        if "member" in r["inputs"]
    )
    assert grants == sorted(
        [
            (BUCKET_MEMBER, "roles/storage.objectUser", worker),
            (PROJECT_MEMBER, "roles/datastore.user", worker),
            (
                SA_MEMBER,
                "roles/iam.workloadIdentityUser",
                f"serviceAccount:acme-celery-dev.svc.id.goog[{DEV}/{DEV}-worker]",
            ),
            (PROJECT_MEMBER, "roles/container.defaultNodeServiceAccount", nodes),
            (REPO_MEMBER, "roles/artifactregistry.reader", nodes),
        ]
    )


def test_object_role_is_on_the_result_bucket(dev):
    grant = dev.one(BUCKET_MEMBER)
    assert grant["inputs"]["bucket"] == dev.one(BUCKET)["inputs"]["name"]


def test_firestore_access_conditioned_on_this_database(dev, prod):
    for inv, database in [(dev, f"{DEV}-chords"), (prod, f"{PROD}-chords")]:
        grant = next(
            r for r in inv.of_type(PROJECT_MEMBER) if r["inputs"]["role"] == "roles/datastore.user"
        )
        project = grant["inputs"]["project"]
        assert grant["inputs"]["condition"]["expression"] == (
            f'resource.name == "projects/{project}/databases/{database}"'
        )
        assert grant["inputs"]["condition"]["title"]


def test_workload_identity_binding(dev, byo):
    for inv in (dev, byo):
        binding = inv.one(SA_MEMBER)
        assert binding["inputs"]["serviceAccountId"] == (
            "projects/acme-celery-dev/serviceAccounts/"
            f"{DEV}-worker@acme-celery-dev.iam.gserviceaccount.com"
        )
    assert dev.one(CLUSTER)["urn"] in dev.one(SA_MEMBER)["dependencies"]
    assert byo.of_type(CLUSTER) == []


def test_no_keys_and_worker_account_is_not_the_node_account(dev):
    assert not [r for r in dev if r["type"].startswith("gcp:serviceaccount/key")]
    auto = dev.one(CLUSTER)["inputs"]["clusterAutoscaling"]["autoProvisioningDefaults"]
    assert auto["serviceAccount"] == f"{DEV}-nodes@acme-celery-dev.iam.gserviceaccount.com"
    assert worker_account(dev)["inputs"]["accountId"] == f"{DEV}-worker"


# --- broker -------------------------------------------------------------------


def test_memorystore_auth_tls_on_cluster_network(dev, prod):
    for inv, tier, size in [(dev, "BASIC", 1), (prod, "STANDARD_HA", 5)]:
        redis = inv.one(REDIS)["inputs"]
        assert redis["authEnabled"] is True
        assert redis["transitEncryptionMode"] == "SERVER_AUTHENTICATION"
        assert redis["authorizedNetwork"] == inv.one(CLUSTER)["inputs"]["network"]
        assert redis["connectMode"] == "DIRECT_PEERING"
        assert redis["redisConfigs"] == {"maxmemory-policy": "noeviction"}
        assert (redis["tier"], redis["memorySizeGb"], redis["region"]) == (
            tier,
            size,
            "europe-west1",
        )
    assert dev.one(REDIS)["inputs"]["deletionProtection"] is False
    assert prod.one(REDIS)["inputs"]["deletionProtection"] is True
    assert prod.one(REDIS)["protect"] is True


def test_memorystore_url_reaches_the_worker_as_a_secret_kombu_understands(dev):
    secret = dev.one(SECRET)
    assert "stringData" in secret["secret_paths"]
    data = secret["inputs"]["stringData"]
    parsed = parse_url(data["url"])
    assert parsed["transport"] == "rediss"
    assert (parsed["hostname"], parsed["port"], parsed["password"]) == (
        "10.0.0.3",
        6378,
        "mock-auth-string",
    )
    assert parsed["ssl"] == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/etc/celery-broker/ca.pem",
        "ssl_check_hostname": False,
    }
    assert data["ca.pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert (data["address"], data["password"], data["tls"]) == (
        "10.0.0.3:6378",
        "mock-auth-string",
        "enable",
    )
    mounts = {m["name"]: m for m in container(dev)["volumeMounts"]}
    assert mounts["broker-ca"]["mountPath"] == "/etc/celery-broker"
    assert env_of(dev)["CELERY_BROKER_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": f"{DEV}-broker", "key": "url"}
    }


def test_external_broker_url_stays_secret(byo):
    assert byo.of_type(REDIS) == []
    secret = byo.one(SECRET)
    assert secret["inputs"]["stringData"] == {
        "url": BYO_BROKER_URL,
        "address": "redis.example.com:6380",
        "password": "s3cret/pw",
        "tls": "enable",
    }
    assert "stringData" in secret["secret_paths"]
    leaking = [r["name"] for r in byo if "s3cret" in json.dumps(r["inputs"]) and r is not secret]
    assert leaking == []
    # Only in the broker_url output, which is a Pulumi secret.
    assert [k for k, v in byo.outputs.items() if "s3cret" in json.dumps(v)] == ["broker_url"]
    assert "broker_url" in byo.secret_outputs
    volumes = [
        v["name"] for v in worker_deployment(byo)["inputs"]["spec"]["template"]["spec"]["volumes"]
    ]
    assert "broker-ca" not in volumes


# --- registry and image -------------------------------------------------------


def test_repository_with_cleanup_policies(dev):
    repo = dev.one(REPOSITORY)["inputs"]
    assert (repo["format"], repo["location"], repo["repositoryId"]) == (
        "DOCKER",
        "europe-west1",
        DEV,
    )
    assert repo["cleanupPolicyDryRun"] is False
    policies = {p["id"]: p for p in repo["cleanupPolicies"]}
    assert policies["delete-untagged"]["action"] == "DELETE"
    assert policies["delete-untagged"]["condition"] == {
        "tagState": "UNTAGGED",
        "olderThan": "604800s",
    }
    assert policies["delete-old"]["condition"] == {"tagState": "ANY", "olderThan": "2592000s"}
    assert policies["keep-recent"] == {
        "id": "keep-recent",
        "action": "KEEP",
        "mostRecentVersions": {"keepCount": 10},
    }
    reader = dev.one(REPO_MEMBER)["inputs"]
    assert reader["repository"] == DEV


def test_image_built_from_worker_image_and_deployed_by_digest(dev):
    image = dev.one(IMAGE)
    inputs = image["inputs"]
    assert inputs["push"] is True
    assert inputs["platforms"] == ["linux/amd64"]
    assert inputs["context"] == {"location": str(ROOT)}
    assert inputs["dockerfile"] == {"location": str(ROOT / "worker_image" / "Dockerfile")}
    registry = f"europe-west1-docker.pkg.dev/acme-celery-dev/{DEV}"
    assert inputs["tags"] == [f"{registry}/worker:latest"]
    assert inputs["registries"][0]["address"] == "europe-west1-docker.pkg.dev"
    assert "registries[0].password" in image["secret_paths"]
    assert container(dev)["image"] == f"{registry}/worker@{FAKE_DIGEST}"
    assert dev.outputs["image_digest"] == FAKE_DIGEST


def test_image_built_with_the_teams_app_and_requirements(dev):
    assert dev.one(IMAGE)["inputs"]["buildArgs"] == {
        "APP_DIR": "worker_image/example_app",
        "APP_REQUIREMENTS": "worker_image/example_app/requirements.txt",
        "CELERY_APP": "acme.tasks:app",
    }


def test_every_build_argument_is_one_the_dockerfile_declares(dev):
    dockerfile = (ROOT / "worker_image" / "Dockerfile").read_text()
    declared = set(re.findall(r"^ARG ([A-Z_]+)", dockerfile, re.MULTILINE))
    assert set(dev.one(IMAGE)["inputs"]["buildArgs"]) <= declared


def test_an_app_missing_from_the_build_stops_the_preview(runs):
    run = runs["app_missing"]
    assert run["error"]["type"] == "ConfigError"
    message = run["error"]["message"]
    assert "celery-gcs:celeryApp 'acme.tasks:app' is not in worker_image/app" in message
    assert "Set appDir" in message and "image" in message
    assert [r["type"] for r in run["resources"]] == ["pulumi:pulumi:Stack"]


def test_existing_image_deployed_as_given(byo):
    assert byo.of_type(IMAGE) == []
    assert container(byo)["image"] == BYO_IMAGE
    assert byo.outputs["image_digest"] == BYO_IMAGE.split("@")[1]
    # The repository exists anyway, for CI to push to, and the cluster's nodes may pull from it.
    repository = byo.one(REPOSITORY)["inputs"]["repositoryId"]
    own = [m["inputs"]["member"] for m in byo.of_type(REPO_MEMBER) if m["inputs"]["repository"] == repository]
    # Each grant is registered once its account is known: in no fixed order.
    assert sorted(own) == sorted([f"serviceAccount:{BYO_NODES}", f"serviceAccount:{BYO_POOL_NODES}"])


def test_an_existing_clusters_nodes_can_pull_the_built_image(runs):
    shared = _run(runs, "shared_a")
    assert shared.one(IMAGE)
    reader = shared.one(REPO_MEMBER)["inputs"]
    assert reader["role"] == "roles/artifactregistry.reader"
    assert reader["repository"] == shared.one(REPOSITORY)["inputs"]["repositoryId"]
    # The cluster's node config says "default": the Compute Engine default account.
    assert reader["member"] == f"serviceAccount:{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"


# --- cluster ------------------------------------------------------------------


def test_new_autopilot_cluster_private_on_a_channel(dev, prod):
    for inv, channel, protected in [(dev, "REGULAR", False), (prod, "STABLE", True)]:
        cluster = inv.one(CLUSTER)
        c = cluster["inputs"]
        assert c["enableAutopilot"] is True
        assert c["privateClusterConfig"]["enablePrivateNodes"] is True
        assert c["releaseChannel"] == {"channel": channel}
        assert c["workloadIdentityConfig"] == {"workloadPool": f"{c['project']}.svc.id.goog"}
        assert c["location"] == "europe-west1"
        assert c["deletionProtection"] is protected
        assert cluster["protect"] is protected


def test_new_cluster_upgrades_only_in_its_maintenance_window(dev, prod):
    for inv in (dev, prod):
        policy = inv.one(CLUSTER)["inputs"]["maintenancePolicy"]
        assert policy == {"dailyMaintenanceWindow": {"startTime": "03:00"}}


def test_autoscaler_never_evicts_a_running_worker(dev, prod):
    for inv in (dev, prod):
        template = worker_deployment(inv)["inputs"]["spec"]["template"]["metadata"]
        assert template["annotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}


def test_registry_protected_with_the_stack_and_pushed_images_kept(dev, prod):
    assert prod.one(REPOSITORY)["protect"] is True
    assert dev.one(REPOSITORY)["protect"] is False
    for inv in (dev, prod):
        # Deleting or replacing the image resource must not delete tags a Deployment runs.
        assert inv.one(IMAGE)["retain_on_delete"] is True


def test_cloud_nat_only_when_asked_and_only_for_the_clusters_subnetwork(dev, prod, runs):
    assert dev.of_type("gcp:compute/routerNat:RouterNat") == []
    assert prod.one("gcp:compute/routerNat:RouterNat")  # KEDA's images, from ghcr.io
    nat_a = _run(runs, "nat_a")
    nat = nat_a.one("gcp:compute/routerNat:RouterNat")["inputs"]
    router = nat_a.one("gcp:compute/router:Router")["inputs"]
    assert nat["router"] == router["name"]
    assert router["network"] == nat_a.one(NETWORK)["name"] + "-id"  # the stack's own VPC
    assert nat["sourceSubnetworkIpRangesToNat"] == "LIST_OF_SUBNETWORKS"
    subnetwork = f"projects/acme-shared/regions/europe-west1/subnetworks/{prefix_of('nat-a')}"
    assert nat["subnetworks"] == [{"name": subnetwork, "sourceIpRangesToNats": ["ALL_IP_RANGES"]}]
    assert nat_a.one(CLUSTER)["inputs"]["subnetwork"] == subnetwork


def kubeconfig(inv) -> dict:
    provider = inv.one(K8S_PROVIDER)
    assert "kubeconfig" in provider["secret_paths"]
    return json.loads(provider["inputs"]["kubeconfig"])


def test_kubernetes_objects_go_to_the_stack_cluster(dev, byo):
    config = kubeconfig(dev)
    cluster = dev.one(CLUSTER)["inputs"]
    assert config["clusters"][0]["cluster"]["server"] == "https://" + endpoint_for(
        cluster["project"], cluster["location"], cluster["name"]
    )
    assert config["users"][0]["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"
    provider = dev.one(K8S_PROVIDER)
    for obj in dev.kubernetes_objects():
        assert obj["provider"].startswith(provider["urn"] + "::"), obj["name"]
    assert kubeconfig(byo)["clusters"][0]["cluster"]["server"] == "https://" + endpoint_for(
        "acme-celery-dev", "europe-west1-b", "shared-gke"
    )


def test_existing_cluster_is_looked_up_not_created(byo):
    lookups = [i for i in byo.invokes if i["token"] == "gcp:container/getCluster:getCluster"]
    assert lookups and lookups[0]["args"] == {
        "name": "shared-gke",
        "location": "europe-west1-b",
        "project": "acme-celery-dev",
    }
    assert byo.of_type(CLUSTER) == [] and byo.of_type("gcp:compute/router:Router") == []
    assert byo.outputs["cluster"] == "shared-gke"


def test_an_existing_cluster_in_another_project_is_found_and_trusted_there(runs):
    inv = _run(runs, "other_project_cluster")
    lookup = next(i for i in inv.invokes if i["token"] == "gcp:container/getCluster:getCluster")
    assert lookup["args"] == {"name": "platform-gke", "location": "us-east1", "project": "acme-platform"}
    other = prefix_of("other-project")
    member = inv.one(SA_MEMBER)["inputs"]["member"]
    assert member == f"serviceAccount:acme-platform.svc.id.goog[{other}/{other}-worker]"
    # Everything else stays in the stack's own project.
    assert inv.one(BUCKET)["inputs"]["project"] == "acme-shared"
    assert worker_account(inv)["inputs"]["project"] == "acme-shared"


# --- worker -------------------------------------------------------------------


def test_namespace_and_workload_identity_service_account(dev):
    ns = dev.one(NAMESPACE)["inputs"]["metadata"]
    assert ns["name"] == DEV
    assert ns["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    ksa = dev.one(KSA)["inputs"]["metadata"]
    assert (ksa["namespace"], ksa["name"]) == (DEV, f"{DEV}-worker")
    assert ksa["annotations"] == {
        "iam.gke.io/gcp-service-account": dev.outputs["service_account_email"]
    }


def test_deployment_environment(dev, prod):
    for inv, concurrency, queues in [(dev, "4", "celery"), (prod, "8", "celery,priority")]:
        env = env_of(inv)
        assert list(env) == [
            "CELERY_BROKER_URL",
            "CELERY_RESULT_BACKEND",
            "CELERY_APP",
            "CELERY_CONCURRENCY",
            "CELERY_QUEUES",
            "GOOGLE_CLOUD_PROJECT",
            "CELERY_TASK_ACKS_LATE",
            "CELERY_TASK_REJECT_ON_WORKER_LOST",
            "CELERY_BROKER_VISIBILITY_TIMEOUT",
        ]
        assert env["CELERY_RESULT_BACKEND"]["value"] == inv.outputs["result_backend"]
        assert env["CELERY_APP"]["value"] == "acme.tasks:app"
        assert env["CELERY_CONCURRENCY"]["value"] == concurrency
        assert env["CELERY_QUEUES"]["value"] == queues
        assert env["GOOGLE_CLOUD_PROJECT"]["value"] == f"acme-celery-{inv.stack}"


def test_result_backend_url_names_bucket_project_and_database(dev, byo):
    for inv, path in [(dev, ""), (byo, "/results/v1")]:
        url = urllib.parse.urlsplit(inv.outputs["result_backend"])
        assert url.scheme == conventions.URL_SCHEME
        assert url.netloc == inv.one(BUCKET)["inputs"]["name"]
        assert url.path == path
        assert urllib.parse.parse_qs(url.query) == {
            "gcs_project": ["acme-celery-dev"],
            "firestore_project": ["acme-celery-dev"],
            "firestore_database": [inv.one(DATABASE)["inputs"]["name"]],
            "firestore_collection": [conventions.FIRESTORE_COLLECTION],
        }


def test_a_smoke_test_job_runs_as_the_workers_after_they_are_ready(dev, prod):
    """Issue 22: after every `pulumi up` a Job stores and reads a result and runs a chord of 10 through
    the workers, as they run (identity, environment, CA, egress rules); `up` fails when it fails."""
    for inv in (dev, prod):
        job = inv.one("kubernetes:batch/v1:Job")
        spec = job["inputs"]["spec"]
        pod = spec["template"]["spec"]
        worker_pod = worker_deployment(inv)["inputs"]["spec"]["template"]["spec"]
        (check,) = pod["containers"]
        assert check["command"][-3:] == ["python", "-m", "celery_gcs.worker.smoke"]
        assert check["image"] == container(inv)["image"]
        assert check["env"] == container(inv)["env"]
        assert check["volumeMounts"] == container(inv)["volumeMounts"]
        assert check["securityContext"] == container(inv)["securityContext"]
        assert (pod["serviceAccountName"], pod["volumes"]) == (worker_pod["serviceAccountName"], worker_pod["volumes"])
        assert (pod["restartPolicy"], spec["backoffLimit"], pod["automountServiceAccountToken"]) == ("Never", 0, False)
        assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
        # Its own policy, with the workers' egress; it is not one of the workers' pods.
        labels = spec["template"]["metadata"]["labels"]
        policies = {p["inputs"]["metadata"]["name"]: p["inputs"]["spec"] for p in inv.of_type(NETWORK_POLICY)}
        own = policies[job["inputs"]["metadata"]["name"]]
        assert own["podSelector"]["matchLabels"].items() <= labels.items()
        assert own["egress"] == policies[worker_deployment(inv)["inputs"]["metadata"]["name"]]["egress"]
        assert not worker_deployment(inv)["inputs"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        # After the workers are ready and their autoscaler exists; a new run replaces the last.
        waits = inv.waits_for(job)
        assert worker_deployment(inv)["urn"] in waits
        assert {r["urn"] for r in inv.of_type(HPA) + inv.of_type(SCALED_OBJECT)} & waits
        assert "celery-gcs.dev/run" in spec["template"]["metadata"]["annotations"]
        # The dashboard, alerts and scraping do not wait for it: they must exist when it fails.
        watchers = [r for r in inv if r["type"].startswith(("gcp:monitoring", "kubernetes:monitoring"))]
        # (Waiting for its component, the Worker, would be waiting for it too.)
        assert watchers and not any({job["urn"], job["parent"]} & inv.waits_for(r) for r in watchers)
    # Under the mocks the Job never completes: the output says so.
    assert dev.outputs["smoke_test_passed_at"] is None


def test_deployment_resources_shutdown_and_identity(dev, prod):
    for inv, cpu, memory in [(dev, "500m", "1Gi"), (prod, "2", "4Gi")]:
        deployment = worker_deployment(inv)
        pod = deployment["inputs"]["spec"]["template"]["spec"]
        resources = container(inv)["resources"]
        assert resources["requests"] == resources["limits"]
        assert (resources["requests"]["cpu"], resources["requests"]["memory"]) == (cpu, memory)
        assert pod["terminationGracePeriodSeconds"] == 600
        assert pod["serviceAccountName"] == f"{prefix_of(inv.stack)}-worker"
        assert "replicas" not in deployment["inputs"]["spec"]  # the autoscaler owns it
        waits = inv.waits_for(deployment)
        assert inv.one(SA_MEMBER)["urn"] in waits
        assert {f["urn"] for f in inv.of_type(FIELD)} <= waits
        assert inv.one(BUCKET_MEMBER)["urn"] in waits


def test_probes_read_the_workers_health_files_not_the_broker(dev, prod):
    for inv in (dev, prod):
        worker = container(inv)
        for kind, probe in [("live", "startupProbe"), ("live", "livenessProbe"), ("ready", "readinessProbe")]:
            assert worker[probe]["exec"]["command"] == ["python", "-m", "celery_gcs.worker.probe", kind]
            assert worker[probe]["periodSeconds"] >= 5
        pod = worker_deployment(inv)["inputs"]["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["mountPath"]: mount["name"] for mount in worker["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/run/celery-worker"]]  # writable on a read-only root
        assert worker["securityContext"]["readOnlyRootFilesystem"] is True


def test_pod_disruption_budget_lets_one_pod_drain(dev):
    pdb = dev.one(PDB)["inputs"]["spec"]
    assert pdb == {
        "maxUnavailable": 1,
        "selector": worker_deployment(dev)["inputs"]["spec"]["selector"],
    }


def test_hpa_on_cpu_without_keda(dev):
    assert dev.of_type(SCALED_OBJECT) == [] and dev.of_type(TRIGGER_AUTH) == []
    spec = dev.one(HPA)["inputs"]["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{DEV}-worker",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 3)
    assert spec["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    ]


def test_keda_on_memorystore_reads_the_verified_queue_length_service(prod):
    assert prod.of_type(HPA) == [] and prod.of_type(TRIGGER_AUTH) == []
    spec = prod.one(SCALED_OBJECT)["inputs"]["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 50)
    url = f"http://{PROD}-queue-length.{PROD}.svc.cluster.local:8080/queues"
    assert spec["triggers"] == [
        {"type": "metrics-api", "metadata": {"url": url, "valueLocation": q, "targetValue": "10"}}
        for q in ("celery", "priority")
    ]
    service = prod.one("kubernetes:core/v1:Service")["inputs"]
    assert (service["metadata"]["name"], service["spec"]["ports"][0]["port"]) == (f"{PROD}-queue-length", 8080)
    (exporter,) = [d for d in prod.of_type(DEPLOYMENT) if d is not worker_deployment(prod)]
    pod = exporter["inputs"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == container(prod)["image"]  # the worker image's Python and redis-py
    assert c["command"] == ["/usr/bin/tini", "--", "python", "/opt/celery-gcs-queue-length/queue_length.py"]
    env = {e["name"]: e for e in c["env"]}
    assert env["BROKER_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": f"{PROD}-broker", "key": "password"}}
    assert (env["BROKER_HOST"]["value"], env["BROKER_PORT"]["value"]) == ("10.0.0.3", "6378")
    assert env["BROKER_CA_FILE"]["value"] == "/etc/celery-broker/ca.pem"
    script = prod.one("kubernetes:core/v1:ConfigMap")["inputs"]["data"]["queue_length.py"]
    assert script == (ROOT / "infra" / "celery_gcs_infra" / "queue_length.py").read_text()
    assert "mock-auth-string" not in json.dumps(exporter["inputs"])
    (policy,) = [p for p in prod.of_type(NETWORK_POLICY) if p["name"].endswith("queue-length-netpol")]
    assert policy["inputs"]["spec"]["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        },
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gmp-system"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "collector"}},
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        },  # /metrics, scraped by Managed Service for Prometheus
    ]
    assert [r["to"][0].get("ipBlock") for r in policy["inputs"]["spec"]["egress"]][1:] == [{"cidr": "10.0.0.3/32"}]


def test_keda_scales_on_each_queue_list(keda_stack, byo):
    assert keda_stack.of_type(HPA) == []
    spec = keda_stack.one(SCALED_OBJECT)["inputs"]["spec"]
    assert spec["scaleTargetRef"] == {"name": f"{prefix_of('keda')}-worker"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 10)
    assert [t["metadata"]["listName"] for t in spec["triggers"]] == ["celery", "priority"]
    for trigger in spec["triggers"]:
        assert trigger["type"] == "redis"
        assert trigger["authenticationRef"] == {"name": f"{prefix_of('keda')}-broker"}
        assert trigger["metadata"]["databaseIndex"] == "0"
        assert "unsafeSsl" not in trigger["metadata"]  # the server is verified
    refs = {
        r["parameter"]: r["key"]
        for r in keda_stack.one(TRIGGER_AUTH)["inputs"]["spec"]["secretTargetRef"]
    }
    assert refs == {"address": "address", "password": "password", "tls": "tls"}
    byo_spec = byo.one(SCALED_OBJECT)["inputs"]["spec"]
    assert byo_spec["minReplicaCount"] == 0
    assert byo_spec["triggers"][0]["metadata"]["databaseIndex"] == "2"
    byo_refs = {r["parameter"] for r in byo.one(TRIGGER_AUTH)["inputs"]["spec"]["secretTargetRef"]}
    assert byo_refs == {"address", "password", "tls"}


RELEASE = "kubernetes:helm.sh/v3:Release"


def test_keda_installed_with_a_pinned_chart_before_any_keda_object(keda_stack, dev, byo):
    prod = keda_stack
    release = prod.one(RELEASE)
    inputs = release["inputs"]
    assert (inputs["chart"], inputs["namespace"], inputs["createNamespace"]) == ("keda", "keda", True)
    assert inputs["repositoryOpts"] == {"repo": "https://kedacore.github.io/charts"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", inputs["version"])
    assert inputs.get("skipCrds") is False  # the chart's CRDs are what the objects need
    assert release["provider"].startswith(prod.one(K8S_PROVIDER)["urn"] + "::")
    for typ in (SCALED_OBJECT, TRIGGER_AUTH):
        assert release["urn"] in prod.waits_for(prod.one(typ)), typ
    # No KEDA without KEDA objects; none on a cluster that has it already.
    assert dev.of_type(RELEASE) == [] and byo.of_type(RELEASE) == []


def test_keda_on_an_existing_cluster_must_be_confirmed_installed(runs):
    error = runs["keda_unconfirmed"]["error"]
    assert error["type"] == "ConfigError"
    assert error["message"].startswith("celery-gcs:kedaInstalled ")
    assert "Install KEDA once per cluster" in error["message"]


# --- outputs ------------------------------------------------------------------


def test_stack_outputs(dev):
    out = dev.outputs
    assert set(out) == {
        "prefix",
        "bucket",
        "firestore_database",
        "service_account_email",
        "result_backend",
        "cluster",
        "namespace",
        "image",
        "image_digest",
        "registry",
        "broker_url",
        "smoke_test_passed_at",
    }
    assert dev.secret_outputs == ["broker_url"]
    assert out["bucket"] == dev.one(BUCKET)["inputs"]["name"]
    assert out["firestore_database"] == f"{DEV}-chords"
    assert (
        out["service_account_email"] == f"{DEV}-worker@acme-celery-dev.iam.gserviceaccount.com"
    )
    assert out["prefix"] == out["cluster"] == DEV
    assert out["namespace"] == DEV
    assert out["image"] == container(dev)["image"]


# --- a team's own program -----------------------------------------------------


def test_team_program_reuses_the_component(team):
    stack = team.one("celery-gcs:stack:CeleryStack")
    assert stack["name"] == "payments"
    url = urllib.parse.urlsplit(team.outputs["result_backend"])
    assert (url.netloc, url.path) == ("acme-payments-payments-results", "/celery/results")
    assert team.one(NAMESPACE)["inputs"]["metadata"]["name"] == "payments"
    assert team.one(SCALED_OBJECT)["inputs"]["spec"]["minReplicaCount"] == 0
    assert team.one(SECRET)["inputs"]["stringData"]["url"] == "redis://:pw@10.20.0.5:6379/0"
    assert "tls" not in team.one(SECRET)["inputs"]["stringData"]
    audit = team.named("payments-audit")
    assert team.parent(audit)["type"] == "pulumi:pulumi:Stack"
    assert team.outputs["audit_bucket"] == "acme-payments-audit"
    result_bucket = next(b for b in team.of_type(BUCKET) if b is not audit)
    assert result_bucket["inputs"]["labels"]["team"] == "payments"


# --- config errors stop the program at the edge -------------------------------


def test_misspelled_key_stops_before_any_resource(runs):
    run = runs["misspelled"]
    assert run["error"]["type"] == "ConfigError"
    assert "celery-gcs:celeryAp is not a celery-gcs setting" in run["error"]["message"]
    assert "Did you mean celeryApp?" in run["error"]["message"]
    assert [r["type"] for r in run["resources"]] == ["pulumi:pulumi:Stack"]


def test_existing_cluster_without_workload_identity_stops_the_program(runs):
    error = runs["no_workload_identity"]["error"]
    assert error is not None
    assert "cluster legacy-gke in europe-west1 has Workload Identity off" in error["message"]
    assert "--workload-pool=acme-celery-dev.svc.id.goog" in error["message"]


# --- network, control plane, encryption, broker durability (issue 14) ---------


def test_a_new_cluster_gets_its_own_vpc_never_default(dev, runs):
    vpc = dev.one(NETWORK)["inputs"]
    assert (vpc["name"], vpc["autoCreateSubnetworks"]) == (DEV, False)
    subnet = dev.one(SUBNETWORK)["inputs"]
    assert subnet["privateIpGoogleAccess"] is True and subnet["region"] == "europe-west1"
    assert {r["rangeName"] for r in subnet["secondaryIpRanges"]} == {"pods", "services"}
    cluster = dev.one(CLUSTER)["inputs"]
    assert cluster["network"] == f"projects/acme-celery-dev/global/networks/{DEV}"
    assert cluster["subnetwork"] == f"projects/acme-celery-dev/regions/europe-west1/subnetworks/{DEV}"
    assert cluster["ipAllocationPolicy"] == {
        "clusterSecondaryRangeName": "pods",
        "servicesSecondaryRangeName": "services",
    }
    assert dev.one(REDIS)["inputs"]["authorizedNetwork"] == cluster["network"]
    # googleapis.com resolves to private.googleapis.com inside the VPC.
    records = {r["inputs"]["name"]: r["inputs"] for r in dev.of_type("gcp:dns/recordSet:RecordSet")}
    assert records["private.googleapis.com."]["rrdatas"] == [
        "199.36.153.8", "199.36.153.9", "199.36.153.10", "199.36.153.11"
    ]
    assert records["*.googleapis.com."]["rrdatas"] == ["private.googleapis.com."]
    # A given network is used as given, never a network of the stack's own.
    shared = _run(runs, "shared_vpc")
    assert shared.of_type(NETWORK) == [] and shared.of_type(SUBNETWORK) == []
    assert shared.one(CLUSTER)["inputs"]["network"] == "projects/acme-host/global/networks/shared"


def test_the_control_plane_answers_only_authorized_networks(dev, runs):
    c = dev.one(CLUSTER)["inputs"]
    assert c["privateClusterConfig"] == {"enablePrivateNodes": True, "enablePrivateEndpoint": False}
    assert c["masterAuthorizedNetworksConfig"] == {
        "cidrBlocks": [{"cidrBlock": "203.0.113.0/24", "displayName": "authorized-0"}],
        "gcpPublicCidrsAccessEnabled": False,
    }
    private = _run(runs, "shared_vpc").one(CLUSTER)["inputs"]
    assert private["privateClusterConfig"]["enablePrivateEndpoint"] is True
    assert private["masterAuthorizedNetworksConfig"]["cidrBlocks"] == [
        {"cidrBlock": "10.100.0.0/24", "displayName": "authorized-0"}
    ]


def test_every_resource_that_takes_a_key_uses_it_after_its_agent_is_granted(runs):
    inv = _run(runs, "cmek")
    key = "projects/acme-kms/locations/europe-west1/keyRings/celery/cryptoKeys/all"
    encrypted = {
        BUCKET: inv.one(BUCKET)["inputs"]["encryption"]["defaultKmsKeyName"],
        DATABASE: inv.one(DATABASE)["inputs"]["cmekConfig"]["kmsKeyName"],
        REDIS: inv.one(REDIS)["inputs"]["customerManagedKey"],
        REPOSITORY: inv.one(REPOSITORY)["inputs"]["kmsKeyName"],
        CLUSTER: inv.one(CLUSTER)["inputs"]["databaseEncryption"]["keyName"],
    }
    assert set(encrypted.values()) == {key}
    assert inv.one(CLUSTER)["inputs"]["databaseEncryption"]["state"] == "ENCRYPTED"
    agents = {
        BUCKET: "storage.googleapis.com",
        DATABASE: "firestore.googleapis.com",
        REDIS: "redis.googleapis.com",
        REPOSITORY: "artifactregistry.googleapis.com",
        CLUSTER: "container.googleapis.com",
    }
    grants = {g["inputs"]["member"]: g for g in inv.of_type(KMS_MEMBER)}
    for typ, service in agents.items():
        grant = grants["serviceAccount:" + agent_email(service)]
        assert grant["inputs"]["cryptoKeyId"] == key
        assert grant["urn"] in inv.waits_for(inv.one(typ)), typ


def test_a_protected_broker_is_durable_and_a_dev_broker_is_cheap(dev, prod):
    redis = prod.one(REDIS)["inputs"]
    assert redis["tier"] == "STANDARD_HA"
    assert redis["persistenceConfig"] == {"persistenceMode": "RDB", "rdbSnapshotPeriod": "ONE_HOUR"}
    for inv in (dev, prod):
        assert inv.one(REDIS)["inputs"]["maintenancePolicy"] == {
            "weeklyMaintenanceWindows": [{"day": "SUNDAY", "startTime": {"hours": 3, "minutes": 0}}]
        }
    assert dev.one(REDIS)["inputs"]["tier"] == "BASIC"
    assert "persistenceConfig" not in dev.one(REDIS)["inputs"]


def test_the_auth_string_lives_only_in_the_secret_and_a_secret_output(dev):
    assert "authString" in dev.one(REDIS)["additional_secret_outputs"]
    holders = [r["name"] for r in dev if "mock-auth-string" in json.dumps(r["inputs"])]
    assert holders == [dev.one(SECRET)["name"]]
    assert "stringData" in dev.one(SECRET)["secret_paths"]
    assert [k for k, v in dev.outputs.items() if "mock-auth-string" in json.dumps(v)] == ["broker_url"]
    assert "broker_url" in dev.secret_outputs


def test_private_service_access_made_on_the_stacks_vpc_and_assumed_on_a_shared_one(runs):
    psa = _run(runs, "psa")
    redis = psa.one(REDIS)
    assert redis["inputs"]["connectMode"] == "PRIVATE_SERVICE_ACCESS"
    address = psa.one("gcp:compute/globalAddress:GlobalAddress")["inputs"]
    assert (address["purpose"], address["addressType"]) == ("VPC_PEERING", "INTERNAL")
    connection = psa.one("gcp:servicenetworking/connection:Connection")
    assert connection["inputs"]["reservedPeeringRanges"] == [address["name"]]
    assert connection["urn"] in psa.waits_for(redis)
    assert "servicenetworking.googleapis.com" in {s["inputs"]["service"] for s in psa.of_type(SERVICE)}
    shared = _run(runs, "shared_vpc")
    assert shared.one(REDIS)["inputs"]["connectMode"] == "PRIVATE_SERVICE_ACCESS"
    assert shared.of_type("gcp:servicenetworking/connection:Connection") == []


def test_workers_admit_only_the_metrics_collectors_and_reach_only_dns_metadata_broker_and_google(dev, byo):
    policy = dev.named("celery-worker-netpol")["inputs"]
    assert policy["spec"]["podSelector"] == worker_deployment(dev)["inputs"]["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gmp-system"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "collector"}},
                }
            ],
            "ports": [{"port": 9808, "protocol": "TCP"}],
        }
    ]
    egress = policy["spec"]["egress"]
    dns = egress[0]
    # kube-dns pods, and the node-local resolvers (Cloud DNS, NodeLocal DNSCache) no pod selector matches.
    assert dns["to"][:2] == [{"ipBlock": {"cidr": "169.254.169.254/32"}}, {"ipBlock": {"cidr": "169.254.20.10/32"}}]
    assert dns["to"][2]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    assert {p["port"] for p in dns["ports"]} == {53}
    by_block = {r["to"][0]["ipBlock"]["cidr"]: [p["port"] for p in r["ports"]] for r in egress[1:]}
    assert by_block == {
        "169.254.169.254/32": [80],
        "169.254.169.252/32": [988],
        "10.0.0.3/32": [6378],  # the Memorystore instance
        "199.36.153.8/30": [443],  # private.googleapis.com, which the VPC's DNS points at
    }
    # An external broker by host name, on a network the stack does not own: its port only.
    byo_egress = byo.named("celery-worker-netpol")["inputs"]["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 6380, "protocol": "TCP"}]} in byo_egress


def test_an_existing_cluster_that_ignores_network_policy_stops_the_program(runs):
    error = runs["no_network_policy"]["error"]
    assert error is not None
    assert "cluster legacy-gke in europe-west1 does not enforce NetworkPolicy" in error["message"]
    assert "--enable-network-policy" in error["message"]


def test_the_keda_the_stack_installs_supports_the_clusters_kubernetes(runs):
    """Regression: KEDA 2.16.1 (tested on 1.29-1.31) went onto clusters GKE now creates at 1.34+."""
    inv = _run(runs, "keda_stack")
    release = inv.one("kubernetes:helm.sh/v3:Release")["inputs"]["version"]
    # Without a minimum, the release channel decides: it creates 1.34-1.35 clusters now.
    cluster_version = inv.one(CLUSTER)["inputs"].get("minMasterVersion", "1.34")
    assert keda.supports(release, cluster_version), (release, cluster_version)


def test_a_keda_release_outside_the_clusters_range_is_refused_at_preview():
    from celery_gcs_infra import common

    with pytest.raises(common.SettingError) as refused:
        keda.KedaArgs(version="2.16.1", kubernetes_version="1.34")
    assert refused.value.field == "keda_version"
    assert "tested on Kubernetes 1.29-1.31" in str(refused.value)
    assert keda.supports(keda.CHART_VERSION, cluster_mod.DEFAULT_KUBERNETES_VERSION)
    assert not keda.supports("2.19.0", "1.35")


def test_multi_region_locations_get_the_stacks_key_in_their_kms_location(runs):
    """Regression: with firestoreLocation eur3 no single kmsKeyName was accepted (issue 22)."""
    inv = _run(runs, "cmek_multi_region")
    database = inv.one("gcp:firestore/database:Database")["inputs"]
    bucket = inv.one("gcp:storage/bucket:Bucket")["inputs"]
    redis = inv.one(REDIS)["inputs"]
    assert database["cmekConfig"]["kmsKeyName"] == "projects/acme-kms/locations/europe/keyRings/celery/cryptoKeys/all"
    assert bucket["encryption"]["defaultKmsKeyName"] == database["cmekConfig"]["kmsKeyName"]
    assert redis["customerManagedKey"] == "projects/acme-kms/locations/europe-west1/keyRings/celery/cryptoKeys/all"
    granted = {g["inputs"]["cryptoKeyId"] for g in inv.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")}
    assert {database["cmekConfig"]["kmsKeyName"], redis["customerManagedKey"]} <= granted


def test_a_killed_workers_task_is_redelivered_by_default(dev):
    """Regression: nothing set acks_late or reject_on_worker_lost, so a SIGKILLed task was lost,
    and Redis's one-hour visibility timeout was never weighed against the grace period."""
    env = {e["name"]: e.get("value") for e in container(dev)["env"]}
    grace = worker_deployment(dev)["inputs"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert env["CELERY_TASK_ACKS_LATE"] == "true"
    assert env["CELERY_TASK_REJECT_ON_WORKER_LOST"] == "true"
    assert int(env["CELERY_BROKER_VISIBILITY_TIMEOUT"]) > grace
    assert "REMAP_SIGTERM" not in env  # SIGTERM stays a warm shutdown within the grace period
    assert "args" not in container(dev)


def test_long_tasks_are_tuned_through_the_stack(runs):
    inv = _run(runs, "long_tasks")
    c = container(inv)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert worker_deployment(inv)["inputs"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3600
    assert env["CELERY_BROKER_VISIBILITY_TIMEOUT"] == "7200"
    assert env["REMAP_SIGTERM"] == "SIGQUIT"
    assert (env["ACME_MODE"], env["TZ"]) == ("batch", "UTC")
    assert c["args"] == ["worker", "--prefetch-multiplier=1", "--without-gossip"]


def test_the_example_app_applies_the_stacks_long_task_settings():
    import subprocess
    import sys

    code = (
        "import sys, types; sys.modules['humanize'] = types.ModuleType('humanize');"
        "from acme.tasks import app; c = app.conf;"
        "print(c.task_acks_late, c.task_reject_on_worker_lost, c.broker_transport_options['visibility_timeout'])"
    )
    env = {
        "PYTHONPATH": str(ROOT / "worker_image" / "example_app"),
        "CELERY_TASK_ACKS_LATE": "true",
        "CELERY_TASK_REJECT_ON_WORKER_LOST": "false",
        "CELERY_BROKER_VISIBILITY_TIMEOUT": "7200",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "7200"]


def test_scaling_survives_one_lost_pod_or_metrics_outage(prod):
    """Regression: one queue-length replica and no PDB, and no fallback in the ScaledObject:
    one evicted pod left KEDA blind, and a blind ScaledObject can stop every worker."""
    (service,) = [d for d in prod.of_type(DEPLOYMENT) if d["name"].endswith("queue-length-deployment")]
    assert service["inputs"]["spec"]["replicas"] >= 2
    labels = service["inputs"]["spec"]["template"]["metadata"]["labels"]
    budgets = [
        b for b in prod.of_type("kubernetes:policy/v1:PodDisruptionBudget")
        if all(labels.get(k) == v for k, v in b["inputs"]["spec"]["selector"]["matchLabels"].items())
    ]
    assert [b["inputs"]["spec"]["maxUnavailable"] for b in budgets] == [1]
    scaled = prod.one("kubernetes:keda.sh/v1alpha1:ScaledObject")["inputs"]["spec"]
    assert scaled["fallback"]["failureThreshold"] >= 1
    assert scaled["fallback"]["replicas"] >= max(1, scaled["minReplicaCount"])


def test_the_keda_namespace_is_a_setting(runs):
    """Regression: the queue-length service admitted only a namespace named keda."""
    inv = _run(runs, "long_tasks")
    assert inv.one("kubernetes:helm.sh/v3:Release")["inputs"]["namespace"] == "autoscaling"
    (policy,) = [p for p in inv.of_type(NETWORK_POLICY) if p["name"].endswith("queue-length-netpol")]
    peer = policy["inputs"]["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "autoscaling"}


def test_the_control_plane_reaches_kedas_ports_on_the_stacks_private_nodes(runs):
    """Regression: private nodes admit only 443 and 10250 from GKE's control plane, and KEDA's
    metrics API server (6443 on the pod range, by KEDA's firewall table) and webhooks (9443)
    were unreachable on the stack's own VPC."""
    inv = _run(runs, "keda_stack")
    (rule,) = inv.of_type("gcp:compute/firewall:Firewall")
    i = rule["inputs"]
    cluster = inv.one(CLUSTER)["inputs"]
    assert i["direction"] == "INGRESS"
    assert i["allows"] == [{"protocol": "tcp", "ports": ["6443", "9443"]}]
    assert i["sourceRanges"] == [endpoint_for(cluster["project"], cluster["location"], cluster["name"]) + "/32"]
    assert i["targetServiceAccounts"] == [cluster["clusterAutoscaling"]["autoProvisioningDefaults"]["serviceAccount"]]
    release = inv.one("kubernetes:helm.sh/v3:Release")
    assert rule["urn"] in inv.waits_for(release)


def test_workers_spread_over_zones(prod):
    spec = worker_deployment(prod)["inputs"]["spec"]["template"]["spec"]
    (spread,) = spec["topologySpreadConstraints"]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"]) == ("topology.kubernetes.io/zone", "ScheduleAnyway")
    assert spread["labelSelector"]["matchLabels"] == worker_deployment(prod)["inputs"]["spec"]["selector"]["matchLabels"]


def test_every_node_pool_can_pull_the_image_from_where_it_is(byo):
    """Regression: only the first node account got a pull grant, and only on the stack's own
    repository, so a second node pool or an image from another registry hit ImagePullBackOff."""
    grants = byo.of_type("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
    where = {(g["inputs"]["project"], g["inputs"]["location"], g["inputs"]["repository"], g["inputs"]["member"]) for g in grants}
    for account in (BYO_NODES, BYO_POOL_NODES):
        member = f"serviceAccount:{account}"
        # The image's own repository: europe-docker.pkg.dev/acme-ci/images.
        assert ("acme-ci", "europe", "images", member) in where
    assert {g["inputs"]["role"] for g in grants} == {"roles/artifactregistry.reader"}
