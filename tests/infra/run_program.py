"""Run one Pulumi program under Pulumi's unit-test mocks and write its resource inventory.

Usage: python run_program.py PROGRAM STACK CONFIG_JSON OUT_JSON

Run in a fresh interpreter per program run (the tests start it as a
subprocess): Pulumi's runtime settings, stack config and the root stack are
process-wide, so two runs in one process would leak into each other.

Config reaches the program the way the Python language host delivers it: the
``PULUMI_CONFIG`` / ``PULUMI_CONFIG_SECRET_KEYS`` environment variables, loaded
with ``pulumi.runtime.set_all_config`` before the program starts.
(``PULUMI_CONFIG`` alone is enough for ``pulumi.Config().get``, but secret keys
are only known after ``set_all_config``.)

The inventory records, for every registered resource: type, name, URN, parent,
dependencies (``depends_on`` and implicit ones), provider, protect, additional
secret outputs, inputs as sent to the engine, and which input paths were secret; plus the stack outputs,
the invokes made, and the error if the program failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import runpy
import sys
import traceback
from typing import Any

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
}


def agent_email(service: str) -> str:
    return f"service-{PROJECT_NUMBER}@{AGENT_DOMAINS[service]}"


def plain(value: Any, path: str, secret_paths: list[str]) -> Any:
    """Strip Pulumi's wire signatures, noting where secrets were."""
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


def main(program: str, stack: str, config_path: str, out_path: str) -> None:
    with open(config_path) as fh:
        spec = json.load(fh)
    config, secret_keys = spec["config"], spec.get("secret_keys", [])
    os.environ["PULUMI_CONFIG"] = json.dumps(config)
    os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(secret_keys)
    # The program's invokes can be told what exists (an existing cluster's shape).
    existing_cluster = spec.get("existing_cluster", {})

    import pulumi
    from google.protobuf import json_format
    from pulumi.runtime import mocks

    resources: list[dict] = []
    registered_outputs: dict[str, dict] = {}
    invokes: list[dict] = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            inputs = plain(json.loads(json.dumps(args.inputs, default=str)), "", [])
            return f"{args.name}-id", outputs_for(args.typ, args.name, inputs)

        def call(self, args: pulumi.runtime.MockCallArgs):
            invokes.append(
                {
                    "token": args.token,
                    "args": plain(dict(args.args), "", []),
                    # What was registered when the engine got the call: an invoke
                    # with depends_on is only sent once those resources exist.
                    "after": [r["urn"] for r in resources],
                }
            )
            if args.token == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
                return {"emailAddress": agent_email("storage.googleapis.com")}
            if args.token == "gcp:organizations/getClientConfig:getClientConfig":
                return {"accessToken": FAKE_TOKEN, "project": args.args.get("project", "")}
            if args.token == "gcp:organizations/getProject:getProject":
                return {"number": PROJECT_NUMBER, "projectId": args.args.get("projectId", "")}
            if args.token == "gcp:container/getCluster:getCluster":
                return {
                    "name": args.args["name"],
                    "location": args.args.get("location"),
                    "project": args.args.get("project"),
                    "endpoint": endpoint_for(
                        args.args.get("project"), args.args.get("location"), args.args["name"]
                    ),
                    "network": existing_cluster.get("network", "projects/acme-net/global/networks/shared"),
                    "enableAutopilot": existing_cluster.get("enableAutopilot", False),
                    "datapathProvider": existing_cluster.get("datapathProvider", "ADVANCED_DATAPATH"),
                    "networkPolicies": existing_cluster.get("networkPolicies", []),
                    "masterAuths": [{"clusterCaCertificate": "ZXhpc3RpbmctY2E="}],
                    "nodeConfigs": [
                        {"serviceAccount": existing_cluster.get("nodeServiceAccount", "default")}
                    ],
                    "workloadIdentityConfigs": existing_cluster.get(
                        "workloadIdentityConfigs",
                        [{"workloadPool": f"{args.args.get('project')}.svc.id.goog"}],
                    ),
                }
            return {}

    class CapturingMonitor(mocks.MockMonitor):
        def RegisterResource(self, request):
            response = super().RegisterResource(request)
            secret_paths: list[str] = []
            inputs = plain(json_format.MessageToDict(request.object), "", secret_paths)
            resources.append(
                {
                    "urn": response.urn,
                    "type": request.type,
                    "name": request.name,
                    "custom": request.custom,
                    "parent": request.parent,
                    "dependencies": sorted(request.dependencies),
                    "provider": request.provider,
                    "protect": request.protect if request.HasField("protect") else None,
                    "retain_on_delete": request.retainOnDelete
                    if request.HasField("retainOnDelete")
                    else None,
                    "additional_secret_outputs": list(request.additionalSecretOutputs),
                    "inputs": inputs,
                    "secret_paths": sorted(secret_paths),
                }
            )
            return response

        def RegisterResourceOutputs(self, request):
            registered_outputs[request.urn] = plain(
                json_format.MessageToDict(request.outputs), "", []
            )
            return super().RegisterResourceOutputs(request)

    the_mocks = Mocks()
    pulumi.runtime.set_mocks(
        the_mocks,
        project=spec.get("project", "celery-gcs"),
        stack=stack,
        preview=False,
        monitor=CapturingMonitor(the_mocks),
    )
    from pulumi.runtime import config as runtime_config

    runtime_config.set_all_config(
        runtime_config.get_config_env(), runtime_config.get_config_secret_keys_env()
    )

    outputs: dict[str, Any] = {}
    secret_outputs: list[str] = []

    @pulumi.runtime.test
    def run():
        runpy.run_path(program, run_name="__main__")
        root = pulumi.runtime.get_root_resource()

        async def collect() -> None:
            for key, value in root.outputs.items():
                out = pulumi.Output.from_input(value)
                outputs[key] = await out.future()
                if await out.is_secret():
                    secret_outputs.append(key)

        return asyncio.ensure_future(collect())

    error = None
    try:
        run()
    except Exception as exc:  # noqa: BLE001  (recorded: the tests assert on it)
        error = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
    with open(out_path, "w") as fh:
        json.dump(
            {
                "stack": stack,
                "resources": resources,
                "outputs": outputs,
                "secret_outputs": sorted(secret_outputs),
                "registered_outputs": registered_outputs,
                "invokes": invokes,
                "error": error,
            },
            fh,
            indent=1,
            default=str,
        )


if __name__ == "__main__":
    main(*sys.argv[1:5])
