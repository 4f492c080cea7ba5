"""The Pulumi program run offline, under Pulumi's mocks: no cloud account, no Pulumi backend.

What the cloud would answer is made up here, just enough for the program to
run to the end: outputs the program reads back (a bucket's URL, a service
account's email, a cluster's endpoint, an image's digest) and the answers to
the invokes it makes (the project's number, an existing cluster's shape).
Every check the program makes on its config then runs as in ``pulumi up``:
misspelled keys with a suggestion, missing or malformed values, an ``appDir``
outside the project, requirements without hashes, settings that do not go
together.

``python -m celery_gcs_infra.check`` runs a stack's config through it; the
tests (tests/infra/run_program.py) run every scenario through the same mocks.
Pulumi's runtime settings and root stack are process-wide: one run per
process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import runpy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import config as runtime_config

SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
SIG_KEY = "4dabf18193072939515e22adb298388d"

FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIBmockredisca\n-----END CERTIFICATE-----\n"
FAKE_DIGEST = "sha256:" + "ab" * 32
FAKE_TOKEN = "ya29.mock-access-token"
PROJECT_NUMBER = "123456789012"
#: Each service's agent (its domain), as ServiceIdentity returns it: service-NUMBER@DOMAIN.
AGENT_DOMAINS = {
    "storage.googleapis.com": "gs-project-accounts.iam.gserviceaccount.com",
    "firestore.googleapis.com": "gcp-sa-firestore.iam.gserviceaccount.com",
    "redis.googleapis.com": "cloud-redis.iam.gserviceaccount.com",
    "artifactregistry.googleapis.com": "gcp-sa-artifactregistry.iam.gserviceaccount.com",
    "container.googleapis.com": "container-engine-robot.iam.gserviceaccount.com",
    "compute.googleapis.com": "compute-system.iam.gserviceaccount.com",
}
#: Stand-ins for encrypted config values, which cannot be read offline: each of
#: the shape its key's checks accept, so only the rest of the config is judged.
SECRET_STAND_INS = {"brokerUrl": "redis://:not-checked-offline@10.0.0.2:6379/0"}
SECRET_STAND_IN = "not-checked-offline"


def agent_email(service: str) -> str:
    return f"service-{PROJECT_NUMBER}@{AGENT_DOMAINS[service]}"


def plain(value: Any, path: str = "", secret_paths: list[str] | None = None) -> Any:
    """Strip Pulumi's wire signatures, noting where secrets were."""
    secret_paths = [] if secret_paths is None else secret_paths
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            secret_paths.append(path or "$")
            return plain(value.get("value"), path, [])
        if sig == RESOURCE_SIG:
            return value.get("urn")
        return {k: plain(v, f"{path}.{k}" if path else k, secret_paths) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, f"{path}[{i}]", secret_paths) for i, v in enumerate(value)]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def endpoint_for(project: str, location: str, cluster: str) -> str:
    """A cluster's (fake) control-plane address: one per cluster, the same for every stack using it."""
    digest = hashlib.sha256(f"{project}/{location}/{cluster}".encode()).digest()
    return f"10.{digest[0]}.{digest[1]}.{digest[2]}"


def outputs_for(typ: str, name: str, inputs: dict) -> dict:
    """What the cloud would add to a resource's inputs, for the types the program reads back."""
    out = dict(inputs)
    project = inputs.get("project", "mock-project")
    if typ == "gcp:storage/bucket:Bucket":
        out["url"] = f"gs://{inputs['name']}"
    elif typ == "gcp:serviceaccount/account:Account":
        email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
        out.update(email=email, name=f"projects/{project}/serviceAccounts/{email}")
    elif typ == "gcp:redis/instance:Instance":
        out.update(
            host="10.0.0.3",
            port=6378,
            authString="mock-auth-string",
            serverCaCerts=[{"cert": FAKE_CA}],
        )
    elif typ == "gcp:container/cluster:Cluster":
        out.update(
            endpoint=endpoint_for(project, inputs["location"], inputs["name"]),
            masterAuth={"clusterCaCertificate": "bW9jay1jYQ=="},
            privateClusterConfig={
                **(inputs.get("privateClusterConfig") or {}),
                "privateEndpoint": endpoint_for(project, inputs["location"], inputs["name"]),
            },
        )
    elif typ == "gcp:artifactregistry/repository:Repository":
        out["registryUri"] = (
            f"{inputs['location']}-docker.pkg.dev/{project}/{inputs['repositoryId']}"
        )
    elif typ == "gcp:projects/serviceIdentity:ServiceIdentity":
        email = agent_email(inputs["service"])
        out.update(email=email, member=f"serviceAccount:{email}")
    elif typ == "gcp:compute/network:Network":
        out["selfLink"] = f"https://www.googleapis.com/compute/v1/projects/{project}/global/networks/{inputs['name']}"
    elif typ == "gcp:compute/subnetwork:Subnetwork":
        out["selfLink"] = (
            f"https://www.googleapis.com/compute/v1/projects/{project}/regions/"
            f"{inputs['region']}/subnetworks/{inputs['name']}"
        )
    elif typ == "docker-build:index:Image":
        out.update(digest=FAKE_DIGEST, ref=f"{inputs['tags'][0]}@{FAKE_DIGEST}")
    return out


def answer(token: str, args: Mapping[str, Any], existing_cluster: Mapping[str, Any]) -> dict:
    """What an invoke returns: the project's number, an existing cluster as ``existing_cluster`` describes it."""
    if token == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
        return {"emailAddress": agent_email("storage.googleapis.com")}
    if token == "gcp:organizations/getClientConfig:getClientConfig":
        return {"accessToken": FAKE_TOKEN, "project": args.get("project", "")}
    if token == "gcp:organizations/getProject:getProject":
        return {"number": PROJECT_NUMBER, "projectId": args.get("projectId", "")}
    if token == "gcp:container/getCluster:getCluster":
        return {
            "name": args["name"],
            "location": args.get("location"),
            "project": args.get("project"),
            "endpoint": endpoint_for(args.get("project"), args.get("location"), args["name"]),
            "network": existing_cluster.get("network", "projects/acme-net/global/networks/shared"),
            "enableAutopilot": existing_cluster.get("enableAutopilot", False),
            "datapathProvider": existing_cluster.get("datapathProvider", "ADVANCED_DATAPATH"),
            "networkPolicies": existing_cluster.get("networkPolicies", []),
            "masterAuths": [{"clusterCaCertificate": "ZXhpc3RpbmctY2E="}],
            "nodeConfigs": [{"serviceAccount": existing_cluster.get("nodeServiceAccount", "default")}],
            "nodePools": existing_cluster.get("nodePools", []),
            "workloadIdentityConfigs": existing_cluster.get(
                "workloadIdentityConfigs", [{"workloadPool": f"{args.get('project')}.svc.id.goog"}]
            ),
        }
    return {}


class OfflineMocks(pulumi.runtime.Mocks):
    """Resources get their inputs back plus what :func:`outputs_for` adds; invokes get :func:`answer`."""

    def __init__(self, existing_cluster: Mapping[str, Any] | None = None) -> None:
        self.existing_cluster = dict(existing_cluster or {})

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        inputs = plain(json.loads(json.dumps(args.inputs, default=str)))
        return f"{args.name}-id", outputs_for(args.typ, args.name, inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return answer(args.token, plain(dict(args.args)), self.existing_cluster)


def run(
    program: str | Path,
    *,
    stack: str,
    config: Mapping[str, str],
    secret_keys: Sequence[str] = (),
    project: str = "celery-gcs",
    organization: str = "organization",
    mocks: pulumi.runtime.Mocks | None = None,
    monitor: Callable[[pulumi.runtime.Mocks], Any] | None = None,
) -> dict[str, Any]:
    """Run ``program`` (a directory or ``__main__.py``) under the mocks; return its stack outputs.

    Config reaches it as the Python language host delivers it (``PULUMI_CONFIG``,
    loaded with ``set_all_config``: secret keys are only known after that). Raises
    what the program raises.
    """
    import os

    os.environ["PULUMI_CONFIG"] = json.dumps(dict(config))
    os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(secret_keys))
    mocks = mocks or OfflineMocks()
    pulumi.runtime.set_mocks(
        mocks,
        project=project,
        stack=stack,
        organization=organization,
        preview=False,
        monitor=monitor(mocks) if monitor else None,
    )
    runtime_config.set_all_config(runtime_config.get_config_env(), runtime_config.get_config_secret_keys_env())
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program_run() -> Any:
        runpy.run_path(str(program), run_name="__main__")
        root = pulumi.runtime.get_root_resource()

        async def collect() -> None:
            for key, value in root.outputs.items():
                out = pulumi.Output.from_input(value)
                outputs[key] = (await out.future(), await out.is_secret())

        return asyncio.ensure_future(collect())

    program_run()
    return outputs


def stack_config(project_dir: Path, stack: str) -> tuple[dict[str, str], list[str], str]:
    """What ``pulumi up`` passes the program for ``stack``: config, secret keys, the project's name.

    Pulumi.yaml's defaults, then Pulumi.STACK.yaml's values; an encrypted
    value (``secure:``) cannot be read here and gets a stand-in of its shape.
    """
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    name = project["name"]
    config = {
        (key if ":" in key else f"{name}:{key}"): config_string(decl["default"])
        for key, decl in (project.get("config") or {}).items()
        if isinstance(decl, dict) and "default" in decl
    }
    stack_file = yaml.safe_load((project_dir / f"Pulumi.{stack}.yaml").read_text()) or {}
    secret_keys = []
    for key, value in (stack_file.get("config") or {}).items():
        key = key if ":" in key else f"{name}:{key}"
        if isinstance(value, dict) and "secure" in value:
            secret_keys.append(key)
            value = SECRET_STAND_INS.get(key.split(":", 1)[1], SECRET_STAND_IN)
        config[key] = config_string(value)
    return config, secret_keys, name


def config_string(value: Any) -> str:
    """Config values reach the program as strings (the CLI's encoding)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
