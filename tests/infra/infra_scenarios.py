"""The program runs the infra tests capture: which program, which stack, which config.

- ``dev``, ``prod``: ``infra/__main__.py`` with Pulumi.yaml's defaults and the
  stack file, as the Pulumi CLI would pass them;
- ``byo``: the dev stack bringing its own cluster, broker (a secret URL), image
  and CMEK key, scaled by KEDA;
- ``team``: ``team_program/``, a team's own program importing ``CeleryStack``;
- ``no_workload_identity``: an existing cluster without Workload Identity,
  which must stop the program;
- ``misspelled``: a stack file with a typo, which must stop the program before
  any resource is registered;
- ``app_missing``: the dev stack without its app directory, which must stop
  the program before anything is built;
- ``alpha``, ``beta``: two new environments in one project, each ``pulumi
  stack init`` plus the required keys and nothing else;
- ``shared_a``, ``shared_b``: two environments deploying into one existing
  cluster; ``team_ns``: a third one, in a namespace that exists already;
- ``nat_a``, ``nat_b``: two new environments with Cloud NAT, each on its own
  subnetwork of the same network;
- ``orders_dev``, ``billing_dev``: two teams' own Pulumi projects, each with a
  stack named ``dev``, in one Google Cloud project and one cluster;
- ``other_org_dev``: the dev example again, as another Pulumi organization's
  stack ``dev`` in the same Google Cloud project as ``dev``;
- ``staging_from_dev``: a new environment made the way the docs say, the dev
  example copied to ``Pulumi.staging.yaml``, beside ``dev``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: The worked example stack files: outside the project root, so `pulumi stack init` never picks one up.
EXAMPLES = ROOT / "infra" / "examples"

PROJECT = "celery-gcs"
#: The Pulumi organization every scenario runs in unless it names one (a self-managed backend's).
ORGANIZATION = "organization"


def prefix_of(stack: str, project: str = PROJECT, organization: str = ORGANIZATION) -> str:
    """The default name prefix of a stack (settings.default_prefix)."""
    from celery_gcs_infra.settings import default_prefix

    return default_prefix(stack, project=project, organization=organization)


#: The example stacks' default prefixes (celery-STACK-HASH).
DEV, PROD = prefix_of("dev"), prefix_of("prod")

BYO_BROKER_URL = "rediss://:s3cret%2Fpw@redis.example.com:6380/2"
KEDA_BROKER_URL = "rediss://:k3da-pw@redis.acme.example:6380/0"
BYO_IMAGE = "europe-docker.pkg.dev/acme-ci/images/worker:2024.11@sha256:" + "c" * 64
BYO_NODES = "gke-nodes@acme-celery-dev.iam.gserviceaccount.com"
BYO_POOL_NODES = "gke-batch-pool@acme-celery-dev.iam.gserviceaccount.com"
BYO_KMS_KEY = "projects/acme-kms/locations/europe-west1/keyRings/celery/cryptoKeys/results"
#: The key of the ``cmek`` environment: one key for everything in europe-west1.
CMEK_KEY = "projects/acme-kms/locations/europe-west1/keyRings/celery/cryptoKeys/all"
#: Where pulumi runs for the new environments (a documentation range).
RUNNER_CIDR = "203.0.113.0/24"
SHARED_VPC = "projects/acme-host/global/networks/shared"
SHARED_SUBNET = "projects/acme-host/regions/europe-west1/subnetworks/celery"


def render(tmp: Path, name: str, spec: dict, env: dict[str, str] | None = None) -> dict:
    """Run one scenario's program in a fresh interpreter (run_program.py); return its inventory."""
    config_file = tmp / f"{name}.config.json"
    config_file.write_text(json.dumps(spec))
    out_file = tmp / f"{name}.inventory.json"
    proc = subprocess.run(
        [sys.executable, str(HERE / "run_program.py"), spec["program"], spec["stack"], str(config_file), str(out_file)],
        cwd=ROOT,
        env=env if env is not None else {**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"{name}: runner failed\n{proc.stdout}"
    return json.loads(out_file.read_text())


def _as_config_string(value) -> str:
    """Stack config values reach the program as strings (the CLI's encoding)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def project_defaults() -> dict[str, str]:
    """The defaults Pulumi.yaml declares, as full keys and config strings."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    return {
        f"{PROJECT}:{key}": _as_config_string(decl["default"])
        for key, decl in project["config"].items()
        if "default" in decl
    }


def stack_config(stack: str, overrides: dict[str, object] | None = None) -> dict[str, str]:
    """Pulumi.yaml defaults, then Pulumi.<stack>.yaml, then overrides: what `pulumi up` passes."""
    config = project_defaults()
    stack_file = yaml.safe_load((EXAMPLES / f"Pulumi.{stack}.yaml").read_text())
    config.update({k: _as_config_string(v) for k, v in stack_file["config"].items()})
    for key, value in (overrides or {}).items():
        config[f"{PROJECT}:{key}"] = _as_config_string(value)
    return config


EXAMPLE_APP_DIR = "worker_image/example_app"

#: The project every "new environment" scenario shares.
SHARED_PROJECT = "acme-shared"
SHARED_CLUSTER = "shared-gke"


def new_environment(stack: str, overrides: dict[str, object] | None = None) -> dict:
    """``pulumi stack init STACK`` plus the required keys: Pulumi.yaml's defaults, no stack file."""
    config = project_defaults()
    required = {
        "project": SHARED_PROJECT,
        "region": "europe-west1",
        # The app: what it is and where it is (the example team's, as the stack files).
        "celeryApp": "acme.tasks:app",
        "appDir": EXAMPLE_APP_DIR,
        "appRequirements": f"{EXAMPLE_APP_DIR}/requirements.txt",
        # Who may reach a new cluster's control plane.
        "authorizedNetworks": RUNNER_CIDR,
    }
    for key, value in {**required, **(overrides or {})}.items():
        config[f"{PROJECT}:{key}"] = _as_config_string(value)
    return {"program": str(ROOT / "infra" / "__main__.py"), "stack": stack, "config": config}


def scenarios() -> dict[str, dict]:
    program = str(ROOT / "infra" / "__main__.py")
    return {
        "dev": {"program": program, "stack": "dev", "config": stack_config("dev")},
        "prod": {"program": program, "stack": "prod", "config": stack_config("prod")},
        "byo": {
            "program": program,
            "stack": "dev",
            "config": stack_config(
                "dev",
                {
                    "cluster": "shared-gke",
                    "authorizedNetworks": "",
                    "clusterLocation": "europe-west1-b",
                    "broker": "external",
                    "brokerUrl": BYO_BROKER_URL,
                    "image": BYO_IMAGE,
                    "kmsKeyName": BYO_KMS_KEY,
                    "basePath": "results/v1",
                    "keda": True,
                    "kedaInstalled": True,
                    "minReplicas": 0,
                },
            ),
            "secret_keys": [f"{PROJECT}:brokerUrl"],
            "existing_cluster": {
                "network": "projects/acme-net/global/networks/shared",
                "nodeServiceAccount": BYO_NODES,
                # A second node pool with an account of its own.
                "nodePools": [{"nodeConfigs": [{"serviceAccount": BYO_POOL_NODES}]}],
            },
        },
        "team": {
            "program": str(HERE / "team_program" / "__main__.py"),
            "stack": "payments",
            "project": "payments-infra",
            "config": {"payments-infra:brokerUrl": "redis://:pw@10.20.0.5:6379/0"},
            "secret_keys": ["payments-infra:brokerUrl"],
        },
        "collection": {
            "program": program,
            "stack": "dev",
            "config": stack_config("dev", {"firestoreCollection": "jobs"}),
        },
        "no_workload_identity": {
            "program": program,
            "stack": "dev",
            "config": stack_config("dev", {"cluster": "legacy-gke", "authorizedNetworks": ""}),
            "existing_cluster": {"workloadIdentityConfigs": []},
        },
        "alpha": new_environment("alpha"),
        "beta": new_environment("beta"),
        "shared_a": new_environment("shared-a", {"cluster": SHARED_CLUSTER, "authorizedNetworks": ""}),
        "shared_b": new_environment("shared-b", {"cluster": SHARED_CLUSTER, "authorizedNetworks": ""}),
        "team_ns": new_environment(
            "team-ns",
            {
                "cluster": SHARED_CLUSTER,
                "authorizedNetworks": "",
                "namespace": "team-apps",
                "createNamespace": False,
            },
        ),
        # Two teams, each with its own copy of the program (its own Pulumi project), both name a stack dev.
        "orders_dev": {
            **new_environment("dev", {"cluster": SHARED_CLUSTER, "authorizedNetworks": ""}),
            "project": "orders-celery",
        },
        "billing_dev": {
            **new_environment("dev", {"cluster": SHARED_CLUSTER, "authorizedNetworks": ""}),
            "project": "billing-celery",
        },
        "other_org_dev": {
            "program": program,
            "stack": "dev",
            "config": stack_config("dev"),
            "organization": "acme-billing",
        },
        # A new environment from the template: Pulumi.dev.yaml copied to Pulumi.staging.yaml as it is.
        "staging_from_dev": {"program": program, "stack": "staging", "config": stack_config("dev")},
        "nat_a": new_environment("nat-a", {"cloudNat": True}),
        "nat_b": new_environment("nat-b", {"cloudNat": True}),
        "cmek": new_environment("cmek", {"kmsKeyName": CMEK_KEY, "protect": True}),
        # The prod example's multi-region Firestore (eur3) and a multi-region bucket (EU), one key name.
        "cmek_multi_region": new_environment(
            "cmek-mr",
            {"kmsKeyName": CMEK_KEY, "protect": True, "firestoreLocation": "eur3", "bucketLocation": "EU"},
        ),
        "shared_vpc": new_environment(
            "svpc",
            {
                "network": SHARED_VPC,
                "subnetwork": SHARED_SUBNET,
                "redisConnectMode": "PRIVATE_SERVICE_ACCESS",
                "privateEndpoint": True,
                "authorizedNetworks": "10.100.0.0/24",
            },
        ),
        "psa": new_environment("psa", {"redisConnectMode": "PRIVATE_SERVICE_ACCESS"}),
        # Monitoring off with its one key: no scraping, dashboard, alert policy nor monitoring API.
        "quiet": new_environment("quiet", {"monitoring": False}),
        # Hour-long tasks: a longer grace period and visibility timeout, the app's own env and args.
        "long_tasks": new_environment(
            "long",
            {
                "terminationGracePeriodSeconds": 3600,
                "visibilityTimeout": 7200,
                "remapSigterm": True,
                "extraEnv": "ACME_MODE=batch,TZ=UTC",
                "extraArgs": "--prefetch-multiplier=1 --without-gossip",
                # KEDA on Memorystore (the queue-length service), installed in a namespace of its own name.
                "keda": True,
                "cloudNat": True,
                "kedaNamespace": "autoscaling",
            },
        ),
        # KEDA installed by the stack (its images through Cloud NAT), on an internet broker
        # whose certificate names its host.
        "keda_stack": {
            **new_environment(
                "keda",
                {
                    "broker": "external",
                    "brokerUrl": KEDA_BROKER_URL,
                    "keda": True,
                    "cloudNat": True,
                    "minReplicas": 0,
                    "queues": "celery,priority",
                },
            ),
            "secret_keys": [f"{PROJECT}:brokerUrl"],
        },
        "no_network_policy": {
            "program": program,
            "stack": "dev",
            "config": stack_config("dev", {"cluster": "legacy-gke", "authorizedNetworks": ""}),
            "existing_cluster": {"datapathProvider": "LEGACY_DATAPATH"},
        },
        "other_project_cluster": new_environment(
            "other-project",
            {
                "cluster": "platform-gke",
                "clusterProject": "acme-platform",
                "clusterLocation": "us-east1",
                "authorizedNetworks": "",
            },
        ),
        "keda_unconfirmed": {
            **new_environment(
                "keda-unconfirmed",
                {
                    "cluster": SHARED_CLUSTER,
                    "authorizedNetworks": "",
                    "keda": True,
                    "broker": "external",
                    "brokerUrl": "redis://10.30.0.5:6379/0",
                },
            ),
            "secret_keys": [f"{PROJECT}:brokerUrl"],
        },
        "app_missing": {
            "program": program,
            "stack": "dev",
            "config": stack_config("dev", {"appDir": "", "appRequirements": ""}),
        },
        "misspelled": {
            "program": program,
            "stack": "dev",
            "config": {**stack_config("dev"), f"{PROJECT}:celeryAp": "acme.tasks:app"},
        },
    }
