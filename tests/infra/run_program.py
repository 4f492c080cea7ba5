"""Run one Pulumi program under Pulumi's unit-test mocks and write its resource inventory.

Usage: python run_program.py PROGRAM STACK CONFIG_JSON OUT_JSON

The mocks (what the cloud would answer) are the ones ``python -m
celery_gcs_infra.check`` uses, in ``celery_gcs_infra.offline``. Run in a fresh
interpreter per program run (the tests start it as a
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

import json
import sys
import traceback
from typing import Any

# Re-exported: the tests build expected values from them.
from celery_gcs_infra.offline import (  # noqa: F401
    AGENT_DOMAINS,
    FAKE_CA,
    FAKE_DIGEST,
    FAKE_TOKEN,
    PROJECT_NUMBER,
    OfflineMocks,
    agent_email,
    endpoint_for,
    outputs_for,
    plain,
)
from celery_gcs_infra.offline import run as run_offline


def main(program: str, stack: str, config_path: str, out_path: str) -> None:
    with open(config_path) as fh:
        spec = json.load(fh)

    from google.protobuf import json_format
    from pulumi.runtime import mocks

    resources: list[dict] = []
    registered_outputs: dict[str, dict] = {}
    invokes: list[dict] = []

    class Mocks(OfflineMocks):
        def call(self, args):
            invokes.append(
                {
                    "token": args.token,
                    "args": plain(dict(args.args), "", []),
                    # What was registered when the engine got the call: an invoke
                    # with depends_on is only sent once those resources exist.
                    "after": [r["urn"] for r in resources],
                }
            )
            return super().call(args)

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

    # The program's invokes can be told what exists (an existing cluster's shape).
    the_mocks = Mocks(spec.get("existing_cluster", {}))
    outputs: dict[str, Any] = {}
    secret_outputs: list[str] = []
    error = None
    try:
        found = run_offline(
            program,
            stack=stack,
            config=spec["config"],
            secret_keys=spec.get("secret_keys", []),
            project=spec.get("project", "celery-gcs"),
            organization=spec.get("organization", "organization"),
            mocks=the_mocks,
            monitor=CapturingMonitor,
        )
        for key, (value, secret) in found.items():
            outputs[key] = value
            if secret:
                secret_outputs.append(key)
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
