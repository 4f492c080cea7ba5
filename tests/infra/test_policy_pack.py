"""The policy pack as the Pulumi CLI runs it: its project files, and the pack served over gRPC.

``pulumi preview --policy-pack infra/policy`` starts ``python -m pulumi.policy
ENGINE infra/policy``, which runs the pack's ``__main__.py``; the pack prints
the port of its Analyzer service and the engine calls it. This test does the
same on loopback: it asks for the pack's policies and has it analyze a real
inventory, clean and with a planted violation.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from .infra_policies import PACK_DIR, stack_rules
from .infra_scenarios import ROOT


def test_pack_project_files():
    project = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"virtualenv": "venv"}}
    assert project["version"] and project["description"]
    requirements = (PACK_DIR / "requirements.txt").read_text()
    pinned = next(line for line in requirements.splitlines() if line.startswith("pulumi-policy=="))
    # The pack's venv gets the SDK version the tests run (make venv installs sdk.txt).
    sdk = (PACK_DIR / "sdk.txt").read_text()
    assert f"{pinned} --hash=sha256:" in sdk
    import pulumi_policy.version

    assert pinned == f"pulumi-policy=={pulumi_policy.version.VERSION}"
    assert (PACK_DIR / "venv").name in (ROOT / ".gitignore").read_text()


def test_the_rules_find_the_conventions_in_the_checkout_without_celery_gcs_installed():
    """The pack's own venv has no celery-gcs: the rules read celery_gcs.conventions from the checkout's backend/."""
    code = (
        f"import sys; sys.path.insert(0, {str(PACK_DIR)!r}); import stack_rules; "
        "print(stack_rules.conventions.__file__, stack_rules.conventions.chord_collection_groups())"
    )
    # -S: no site-packages, so no installed celery_gcs (nor anything else) to import.
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.startswith(str(ROOT / "backend" / "celery_gcs" / "conventions.py"))
    assert "celery_gcs_chord_parts" in done.stdout


@pytest.fixture(scope="module")
def analyzer():
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulumi.policy", "127.0.0.1:1", str(PACK_DIR)],
        cwd=PACK_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline().strip())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _request(resources: list[dict]) -> analyzer_pb2.AnalyzeStackRequest:
    def props(inputs: dict) -> struct_pb2.Struct:
        message = struct_pb2.Struct()
        json_format.ParseDict(inputs, message)
        return message

    return analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=r["type"],
                urn=r["urn"],
                name=r["name"],
                properties=props(r["inputs"]),
                parent=r["parent"],
                dependencies=r["dependencies"],
                options=analyzer_pb2.AnalyzerResourceOptions(
                    protect=bool(r["protect"]),
                    additionalSecretOutputs=r.get("additional_secret_outputs") or [],
                ),
            )
            for r in resources
        ]
    )


def test_the_pack_offers_every_rule_as_a_mandatory_policy(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "celery-gcs"
    assert [p.name for p in info.policies] == [r.name for r in stack_rules.RULES]
    mandatory = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
    assert {p.enforcementLevel for p in info.policies} == {mandatory}


def test_the_pack_passes_a_real_stack_and_stops_a_bad_one(analyzer, runs):
    resources = runs["cmek"]["resources"]
    clean = analyzer.AnalyzeStack(_request(resources), timeout=60)
    assert [d.message for d in clean.diagnostics] == []
    bad = copy.deepcopy(resources)
    cluster = next(r for r in bad if r["type"] == stack_rules.CLUSTER)
    cluster["inputs"]["network"] = "projects/acme-shared/global/networks/default"
    found = analyzer.AnalyzeStack(_request(bad), timeout=60)
    assert [(d.policyName, d.urn) for d in found.diagnostics] == [("no-default-network", cluster["urn"])]
    assert "is on the default network" in found.diagnostics[0].message
