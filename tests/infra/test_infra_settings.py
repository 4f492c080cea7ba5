"""Stack config is parsed once, at the edge: every bad value names its key and the fix."""

from __future__ import annotations

import pytest
from celery_gcs import conventions
from celery_gcs_infra import CeleryStackArgs, SettingError, WorkerSettings, settings

from .infra_scenarios import DEV, ROOT, prefix_of

REQUIRED = {
    "celery-gcs:project": "acme-celery-dev",
    "celery-gcs:region": "europe-west1",
    "celery-gcs:celeryApp": "acme.tasks:app",
    "celery-gcs:appDir": "worker_image/example_app",
    "celery-gcs:appRequirements": "worker_image/example_app/requirements.txt",
    "celery-gcs:authorizedNetworks": "203.0.113.0/24",
}
SECRET_URL = "rediss://:hunter2@redis.example.com:6380/1"
#: What the repository's program passes: the checkout the worker image is built from.
CHECKOUT = str(ROOT)


def load(extra: dict[str, str] | None = None, secret_keys=(), stack="dev"):
    return settings.load({**REQUIRED, **(extra or {})}, stack=stack, secret_keys=secret_keys, build_context=CHECKOUT)


def load_error(extra: dict[str, str], secret_keys=(), drop: str | None = None):
    values = {**REQUIRED, **extra}
    if drop:
        del values[drop]
    with pytest.raises(settings.ConfigError) as caught:
        settings.load(values, stack="dev", secret_keys=secret_keys, build_context=CHECKOUT)
    return caught.value


def test_defaults_fill_in_and_derive():
    args = load()
    assert args.prefix == DEV
    assert args.bucket_name == f"acme-celery-dev-{DEV}-results"
    assert (args.bucket_location, args.firestore_location, args.cluster_location) == (
        "europe-west1",
        "europe-west1",
        "europe-west1",
    )
    assert args.firestore_database == f"{DEV}-chords"
    assert args.firestore_collection == conventions.FIRESTORE_COLLECTION
    assert args.broker == "memorystore" and args.protect is False and args.cluster == ""
    assert args.worker == WorkerSettings(
        celery_app="acme.tasks:app",
        labels={"celery-gcs-stack": "dev"},
        instance=DEV,
        namespace=DEV,
        service_account=f"{DEV}-worker",
    )
    assert args.labels == {"celery-gcs-stack": "dev"}


def test_values_are_parsed_from_the_cli_string_encoding():
    args = load(
        {
            "celery-gcs:protect": "True",
            "celery-gcs:redisMemoryGb": "5",
            "celery-gcs:queues": "celery, priority ,",
            "celery-gcs:keda": "true",
            "celery-gcs:cloudNat": "true",
            "celery-gcs:broker": "external",
            "celery-gcs:brokerUrl": SECRET_URL,
            "celery-gcs:minReplicas": "0",
            "gcp:project": "ignored-other-namespace",
        },
        secret_keys={"celery-gcs:brokerUrl"},
        stack="Prod_EU",
    )
    assert args.protect is True and args.redis_memory_gb == 5
    assert args.redis_tier == "STANDARD_HA"  # derived: protected stacks get the durable tier
    assert args.worker.queues == ("celery", "priority")
    assert args.worker.keda is True and args.worker.min_replicas == 0
    assert args.labels == {"celery-gcs-stack": "prod_eu"}
    assert args.prefix == prefix_of("Prod_EU")
    assert args.prefix.startswith("celery-prod-eu-")


def test_external_broker_from_a_secret():
    args = load(
        {"celery-gcs:broker": "external", "celery-gcs:brokerUrl": SECRET_URL},
        secret_keys={"celery-gcs:brokerUrl"},
    )
    assert args.broker_url == SECRET_URL
    assert "hunter2" not in repr(args)


@pytest.mark.parametrize("key", ["project", "region", "celeryApp"])
def test_missing_required_key(key):
    error = load_error({}, drop=f"celery-gcs:{key}")
    assert error.key == f"celery-gcs:{key}"
    assert "is required and not set" in str(error)
    assert f"pulumi config set celery-gcs:{key} VALUE" in str(error)


BAD_VALUES = [
    ("project", "My Project", "is not a Google Cloud project ID"),
    ("region", "us-central1-a", "is not a Google Cloud region"),
    ("prefix", "a-prefix-that-is-far-too-long", "is not a valid name"),
    ("prefix", "1st", "must start with a letter"),
    ("bucketName", "Results_Bucket", "is not a valid bucket name"),
    ("bucketName", "google-results", "is not a valid bucket name"),
    ("basePath", "/results/", "is not a usable key prefix"),
    ("kmsKeyName", "my-key", "is not a Cloud KMS key name"),
    ("firestoreDatabase", "Celery", "is not a valid Firestore database ID"),
    ("firestoreLocation", "europe", "is not a Firestore location"),
    ("broker", "pubsub", "is not a broker kind"),
    ("redisTier", "PREMIUM", "is not a Memorystore tier"),
    ("redisMemoryGb", "lots", "not a whole number"),
    ("redisMemoryGb", "0", "out of range"),
    ("redisVersion", "7.2", "is not a Memorystore version"),
    ("releaseChannel", "BETA", "is not a GKE release channel"),
    ("image", "europe-docker.pkg.dev/acme/images/worker:latest", "not an image reference pinned"),
    ("celeryApp", "my app", "is not a Celery app"),
    ("queues", " , ", "is not a list of queue names"),
    ("concurrency", "0", "out of range"),
    ("cpu", "lots", "is not a Kubernetes quantity"),
    ("memory", "2GB", "is not a Kubernetes quantity"),
    ("minReplicas", "0", "is not a usable range"),
    ("maxReplicas", "0", "is not a usable range"),
    ("terminationGracePeriodSeconds", "5", "out of range"),
    ("keda", "yes", "not a boolean"),
    ("protect", "maybe", "not a boolean"),
    ("kedaListLength", "0", "must be at least 1"),
    ("alertChordOpenMinutes", "0", "not a number of minutes from 1 to 43200"),
    ("alertChordOpenMinutes", "60000", "not a number of minutes from 1 to 43200"),
    ("alertChordOpenMinutes", "an hour", "not a whole number"),
    ("namespace", "Celery", "is not a valid name"),
    ("serviceAccount", "celery_worker", "is not a valid name"),
]


@pytest.mark.parametrize(("key", "value", "problem"), BAD_VALUES)
def test_bad_value_names_its_key_and_the_fix(key, value, problem):
    error = load_error({f"celery-gcs:{key}": value})
    # min/maxReplicas share one range check, reported on minReplicas.
    expected_key = "minReplicas" if key == "maxReplicas" else key
    assert error.key == f"celery-gcs:{expected_key}"
    assert problem in str(error)
    assert "Use " in str(error)  # every check says what to use instead
    assert f"pulumi config set celery-gcs:{expected_key} VALUE" in str(error)


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ({"celery-gcs:broker": "external"}, "brokerUrl", "an external broker needs a URL"),
        (
            {"celery-gcs:broker": "external", "celery-gcs:brokerUrl": "gcpubsub://projects/acme"},
            "brokerUrl",
            "Pub/Sub is not offered",
        ),
        (
            {"celery-gcs:broker": "external", "celery-gcs:brokerUrl": "amqp://u:hunter2@mq/"},
            "brokerUrl",
            "only Redis brokers are supported",
        ),
        (
            {"celery-gcs:broker": "external", "celery-gcs:brokerUrl": "redis://:hunter2@/0"},
            "brokerUrl",
            "no valid host/port",
        ),
        ({"celery-gcs:brokerUrl": SECRET_URL}, "brokerUrl", "the broker is memorystore"),
    ],
)
def test_broker_errors_never_echo_the_url(extra, key, problem):
    error = load_error(extra, secret_keys={"celery-gcs:brokerUrl"})
    assert error.key == f"celery-gcs:{key}"
    assert problem in str(error)
    assert "hunter2" not in str(error)
    assert "pulumi config set --secret celery-gcs:brokerUrl" in str(error)


def test_broker_url_must_be_stored_encrypted():
    error = load_error({"celery-gcs:broker": "external", "celery-gcs:brokerUrl": SECRET_URL})
    assert error.key == "celery-gcs:brokerUrl"
    assert "must be stored encrypted" in str(error)
    assert "pulumi config set --secret celery-gcs:brokerUrl VALUE" in str(error)
    assert "hunter2" not in str(error)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"celery-gcs:cluster": "shared", "celery-gcs:authorizedNetworks": "", "celery-gcs:cloudNat": "true"}, "cloudNat"),
        ({"celery-gcs:cluster": "shared", "celery-gcs:authorizedNetworks": "", "celery-gcs:subnetwork": "sub"}, "subnetwork"),
        ({"celery-gcs:cluster": "shared"}, "authorizedNetworks"),
        ({"celery-gcs:cluster": "shared", "celery-gcs:authorizedNetworks": "", "celery-gcs:privateEndpoint": "true"}, "privateEndpoint"),
    ],
)
def test_new_cluster_settings_rejected_with_an_existing_cluster(extra, key):
    assert load_error(extra).key == f"celery-gcs:{key}"


def test_unknown_key_suggests_the_closest():
    error = load_error({"celery-gcs:bucket": "x"})
    assert error.key == "celery-gcs:bucket"
    assert "is not a celery-gcs setting" in str(error)
    assert "Did you mean bucketName?" in str(error)
    assert "pulumi config rm celery-gcs:bucket" in str(error)


def test_component_arguments_validate_without_stack_config():
    """A team program building the arguments itself gets the same checks, by field name."""
    worker = WorkerSettings(celery_app="proj.celery:app")
    with pytest.raises(SettingError) as caught:
        CeleryStackArgs(project="acme-celery", region="europe-west1", worker=worker, prefix="-x")
    assert caught.value.field == "prefix"
    with pytest.raises(SettingError) as caught:
        WorkerSettings(celery_app="proj.celery:app", cpu="1 core")
    assert caught.value.field == "cpu"
    with pytest.raises(SettingError) as caught:
        CeleryStackArgs(project="acme-celery", region="europe-west1", worker=worker)
    assert caught.value.field == "authorized_networks"  # a new cluster's control plane
    with pytest.raises(SettingError) as caught:
        CeleryStackArgs(project="acme-celery", region="europe-west1", worker=worker, authorized_networks="203.0.113.0/24")
    assert caught.value.field == "image"  # nothing to run: no image, no checkout to build one
    with pytest.raises(SettingError) as caught:
        CeleryStackArgs(project="acme-celery", region="europe-west1", worker=worker, build_context=CHECKOUT,
                        authorized_networks="203.0.113.0/24")  # fmt: skip
    assert caught.value.field == "celery_app"  # proj.celery is not in the image's app directory
    acme = WorkerSettings(celery_app="acme.tasks:app")
    args = CeleryStackArgs(project="acme-celery", region="europe-west1", worker=acme, build_context=CHECKOUT,
                           app_dir="worker_image/example_app", authorized_networks="203.0.113.0/24")  # fmt: skip
    assert args.bucket_name == "acme-celery-celery-results"


def test_without_an_image_or_a_checkout_to_build_one_the_image_key_is_named():
    """A team program (no checkout) that names no image: an error at load, before any resource."""
    with pytest.raises(settings.ConfigError) as caught:
        settings.load(REQUIRED, stack="dev")
    message = str(caught.value)
    assert "celery-gcs:image" in message and "build_context" in message
    assert load({"celery-gcs:image": "us-docker.pkg.dev/p/r/worker:1@sha256:" + "a" * 64}).image


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ({"appDir": "../elsewhere"}, "appDir", "is not inside the Pulumi project"),
        ({"appDir": "worker_image/nothing-here"}, "appDir", "is not a directory"),
        ({"appRequirements": "worker_image/none.txt"}, "appRequirements", "is not a file"),
        ({"celeryApp": "acme.jobs:app"}, "celeryApp", "'acme.jobs:app' is not in"),
    ],
)
def test_the_app_is_checked_before_anything_is_built(extra, key, problem):
    error = load_error({f"celery-gcs:{k}": v for k, v in extra.items()})
    assert error.key == f"celery-gcs:{key}"
    assert problem in str(error)


def test_requirements_without_hashes_are_refused(tmp_path):
    (tmp_path / "app" / "acme").mkdir(parents=True)
    (tmp_path / "app" / "acme" / "tasks.py").write_text("")
    (tmp_path / "app" / "requirements.txt").write_text(
        "# pinned, but no hash\nhumanize==4.11.0\nsix==1.16.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
    )
    values = {**REQUIRED, "celery-gcs:appDir": "app", "celery-gcs:appRequirements": "app/requirements.txt"}
    with pytest.raises(settings.ConfigError) as caught:
        settings.load(values, stack="dev", build_context=str(tmp_path))
    assert caught.value.key == "celery-gcs:appRequirements"
    assert "without hashes (humanize==4.11.0)" in str(caught.value)
    assert "--generate-hashes" in str(caught.value)


def test_a_prebuilt_image_needs_no_app_directory():
    image = "europe-docker.pkg.dev/acme/images/worker@sha256:" + "a" * 64
    args = load({"celery-gcs:appDir": "", "celery-gcs:image": image})
    assert args.app_build_args() == {}


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ({"network": "default", "subnetwork": "default"}, "network", "let SSH and RDP in from the internet"),
        ({"network": "projects/acme/global/networks/default", "subnetwork": "x"}, "network", "SSH and RDP"),
        ({"network": "shared-vpc"}, "subnetwork", "an existing network needs the subnetwork"),
        ({"subnetwork": "celery"}, "subnetwork", "only used with an existing network"),
        (
            {"network": "projects/acme-host/global/networks/shared", "subnetwork": "s",
             "redisConnectMode": "PRIVATE_SERVICE_ACCESS", "cloudNat": "true"},
            "cloudNat",
            "a Shared VPC",
        ),
        (
            {"network": "projects/acme-host/global/networks/shared", "subnetwork": "s",
             "redisConnectMode": "DIRECT_PEERING"},
            "redisConnectMode",
            "only through private services access",
        ),
        ({"redisConnectMode": "VPC_PEERING"}, "redisConnectMode", "is not a Memorystore connect mode"),
        ({"authorizedNetworks": ""}, "authorizedNetworks", "no authorized network is set"),
        ({"authorizedNetworks": "203.0.113.7/24"}, "authorizedNetworks", "is not an IPv4 CIDR block"),
        ({"authorizedNetworks": "office"}, "authorizedNetworks", "is not an IPv4 CIDR block"),
        ({"authorizedNetworks": "0.0.0.0/0"}, "authorizedNetworks", "the whole internet"),
        ({"privateEndpoint": "true"}, "privateEndpoint", "nothing inside to run pulumi from"),
        ({"protect": "true", "redisTier": "BASIC"}, "redisTier", "has no replica"),
        ({"redisMaintenanceWindow": "SUNDAY 03:30"}, "redisMaintenanceWindow", "start on the hour"),
        ({"redisMaintenanceWindow": "someday 03:00"}, "redisMaintenanceWindow", "not a weekly maintenance window"),
    ],
)
def test_network_control_plane_broker_and_key_settings_are_checked(extra, key, problem):
    error = load_error({f"celery-gcs:{k}": v for k, v in extra.items()})
    assert error.key == f"celery-gcs:{key}"
    assert problem in str(error)


def test_keda_the_stack_installs_needs_cloud_nat_for_its_images():
    error = load_error({"celery-gcs:keda": "true"})
    assert error.key == "celery-gcs:cloudNat"
    assert "ghcr.io" in str(error)


def test_unprotected_stacks_default_to_basic_and_protected_ones_to_standard_ha():
    assert load().redis_tier == "BASIC"
    assert load({"celery-gcs:protect": "true"}).redis_tier == "STANDARD_HA"


def test_maintenance_start_is_a_time_of_day():
    error = load_error({"celery-gcs:maintenanceStart": "3am"})
    assert error.key == "celery-gcs:maintenanceStart"
    assert "Use HH:MM in UTC" in str(error)


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ({"clusterLocation": "europe-west1-b"}, "clusterLocation", "but no cluster is set"),
        ({"clusterProject": "acme-platform"}, "clusterProject", "but no cluster is set"),
        ({"cluster": "shared-gke", "network": "shared-vpc"}, "network", "but an existing cluster is used"),
    ],
)
def test_settings_of_the_other_kind_of_cluster_are_refused(extra, key, problem):
    error = load_error({f"celery-gcs:{k}": v for k, v in extra.items()})
    assert error.key == f"celery-gcs:{key}"
    assert problem in str(error)


def test_the_broker_connect_mode_follows_the_networks_project():
    """Another project's network (a Shared VPC host) gets PRIVATE_SERVICE_ACCESS; the stack's own VPC, peering."""
    shared = load({"celery-gcs:network": "projects/acme-host/global/networks/shared", "celery-gcs:subnetwork": "s"})
    assert shared.redis_connect_mode == "PRIVATE_SERVICE_ACCESS"
    assert load().redis_connect_mode == "DIRECT_PEERING"
    chosen = load({"celery-gcs:redisConnectMode": "PRIVATE_SERVICE_ACCESS"})
    assert chosen.redis_connect_mode == "PRIVATE_SERVICE_ACCESS"


def test_an_existing_clusters_network_decides_the_connect_mode_when_read():
    from celery_gcs_infra import broker

    assert broker.connect_mode_for("projects/acme-net/global/networks/shared", "acme-celery-dev") == (
        "PRIVATE_SERVICE_ACCESS"
    )
    assert broker.connect_mode_for("projects/acme-celery-dev/global/networks/own", "acme-celery-dev") == (
        "DIRECT_PEERING"
    )
    with pytest.raises(ValueError, match="set redisConnectMode to PRIVATE_SERVICE_ACCESS"):
        broker.connect_mode_for("projects/acme-net/global/networks/shared", "acme-celery-dev", "DIRECT_PEERING")


def test_the_key_name_is_derived_for_each_location_and_a_component_refuses_a_foreign_key():
    from celery_gcs_infra import cmek, result_store

    key = "projects/k/locations/europe/keyRings/r/cryptoKeys/c"
    args = load({"celery-gcs:kmsKeyName": key, "celery-gcs:firestoreLocation": "nam5"})
    assert args.chord_store_args().kms_key_name == "projects/k/locations/us/keyRings/r/cryptoKeys/c"
    assert args.result_store_args().kms_key_name == "projects/k/locations/europe-west1/keyRings/r/cryptoKeys/c"
    assert cmek.kms_location("EU") == "europe"
    with pytest.raises(SettingError) as refused:
        result_store.ResultStoreArgs(project="acme-celery-dev", bucket_name="b-results", location="europe-west1",
                                     kms_key_name=key)
    assert "Cloud KMS keys only encrypt resources in their own location" in str(refused.value)


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ({"celery-gcs:visibilityTimeout": "600"}, "visibilityTimeout", "is not longer than the grace period"),
        ({"celery-gcs:extraEnv": "CELERY_APP=other:app"}, "extraEnv", "CELERY_APP is set by the stack"),
        ({"celery-gcs:extraEnv": "no-equals"}, "extraEnv", "is not NAME=value"),
    ],
)
def test_long_task_settings_are_checked(extra, key, problem):
    error = load_error(extra)
    assert error.key == f"celery-gcs:{key}"
    assert problem in str(error)
