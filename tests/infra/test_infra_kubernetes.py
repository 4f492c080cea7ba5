"""Every Kubernetes object the program sends, checked as the API server would see it.

Core objects go through kubernetes-validate in strict mode (unknown fields are
errors) for the oldest and newest Kubernetes minor versions GKE channels
carry here. KEDA's objects are custom resources outside that schema set, so
they are checked structurally against the fields KEDA's redis scaler reads.
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

#: Oldest minor GKE's channels still offer, and the newest schema installed.
VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version() + ".0"]
KEDA = "keda.sh/v1alpha1"
GMP = "monitoring.googleapis.com/v1"
#: Custom resources, outside the core schemas: checked structurally below.
CUSTOM_APIS = ("keda.sh/", "monitoring.googleapis.com/")
#: PodMonitoring's fields (Managed Service for Prometheus' CRD, monitoring.googleapis.com/v1).
POD_MONITORING_FIELDS = {"selector", "endpoints", "targetLabels", "limits", "filterRunning"}
ENDPOINT_FIELDS = {"port", "scheme", "path", "params", "interval", "timeout", "metricRelabeling", "authorization", "basicAuth", "oauth2", "tls", "proxyUrl"}
CORE_KINDS = {"Namespace", "ServiceAccount", "Secret", "Deployment", "PodDisruptionBudget", "NetworkPolicy"}

SCALED_OBJECT_FIELDS = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}  # fmt: skip
REDIS_TRIGGER_METADATA = {
    "address", "host", "port", "listName", "listLength", "activationListLength",
    "enableTLS", "unsafeSsl", "databaseIndex", "usernameFromEnv", "passwordFromEnv",
    "addressFromEnv", "hostFromEnv", "portFromEnv",
}  # fmt: skip
METRICS_API_METADATA = {
    "url", "format", "valueLocation", "targetValue", "activationTargetValue", "unsafeSsl", "authMode",
}  # fmt: skip
REDIS_AUTH_PARAMETERS = {
    "address", "host", "port", "username", "password", "tls", "ca", "cert", "key", "keyPassword",
}  # fmt: skip


def manifest(obj: dict) -> dict:
    """The object as sent to the API server: the inputs are the object's fields."""
    return copy.deepcopy(obj["inputs"])


def objects(inv, api_version_prefix: str | None = None) -> list[dict]:
    found = [manifest(o) for o in inv.kubernetes_objects()]
    if api_version_prefix is not None:
        found = [m for m in found if m["apiVersion"].startswith(api_version_prefix)]
    return found


def by_kind(inv, kind: str) -> list[dict]:
    return [m for m in objects(inv) if m["kind"] == kind]


@pytest.mark.parametrize("version", VERSIONS)
def test_core_objects_pass_strict_schema_validation(any_inventory, version):
    core = [m for m in objects(any_inventory) if not m["apiVersion"].startswith(CUSTOM_APIS)]
    assert CORE_KINDS <= {m["kind"] for m in core}
    for m in core:
        kubernetes_validate.validate(m, version, strict=True)


def test_strict_validation_rejects_an_unknown_field(dev):
    deployment = by_kind(dev, "Deployment")[0]
    kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0]["envs"] = []
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)
    assert "envs" in str(caught.value)


def test_all_objects_live_in_the_worker_namespace(any_inventory):
    namespace = by_kind(any_inventory, "Namespace")[0]["metadata"]["name"]
    for m in objects(any_inventory):
        if m["kind"] != "Namespace":
            assert m["metadata"]["namespace"] == namespace, m["kind"]


def test_deployment_references_resolve(any_inventory):
    deployment = by_kind(any_inventory, "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    secrets = {s["metadata"]["name"]: s for s in by_kind(any_inventory, "Secret")}
    accounts = {a["metadata"]["name"] for a in by_kind(any_inventory, "ServiceAccount")}
    assert pod["serviceAccountName"] in accounts
    for c in pod["containers"]:
        for e in c["env"]:
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"]
        volumes = {v["name"] for v in pod["volumes"]}
        assert {m["name"] for m in c["volumeMounts"]} <= volumes
    for v in pod["volumes"]:
        if "secret" in v:
            data = secrets[v["secret"]["secretName"]]["stringData"]
            assert {i["key"] for i in v["secret"]["items"]} <= set(data)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_pod_meets_the_restricted_pod_security_standard(any_inventory):
    namespace = by_kind(any_inventory, "Namespace")[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = by_kind(any_inventory, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
    assert all("hostPath" not in v for v in pod["volumes"])


def test_no_pod_gets_a_kubernetes_api_token(any_inventory):
    """Regression: the workers' pods mounted their service account's token, which nothing in them
    uses (Workload Identity's metadata server does not read it); a stolen token is API access."""
    workloads = by_kind(any_inventory, "Deployment") + by_kind(any_inventory, "Job")
    assert workloads
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, workload["metadata"]["name"]


def test_disruption_budget_and_autoscaler_target_the_deployment(any_inventory):
    deployments = by_kind(any_inventory, "Deployment")
    deployment = deployments[0]
    name, selector = deployment["metadata"]["name"], deployment["spec"]["selector"]
    # One budget per Deployment (the workers', and the queue-length service's where it runs).
    budgets = by_kind(any_inventory, "PodDisruptionBudget")
    assert sorted(b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for b in budgets) == sorted(
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for d in deployments
    )
    assert budgets[0]["spec"]["selector"] == selector
    hpas = by_kind(any_inventory, "HorizontalPodAutoscaler")
    scaled = by_kind(any_inventory, "ScaledObject")
    assert len(hpas) + len(scaled) == 1, "exactly one autoscaler"
    for hpa in hpas:
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
    for so in scaled:
        assert so["spec"]["scaleTargetRef"] == {"name": name}


@pytest.mark.parametrize("name", ["keda_stack", "byo", "team", "prod"])
def test_keda_objects_are_well_formed(request, name):
    inv = request.getfixturevalue(name)
    keda = objects(inv, "keda.sh/")
    assert {m["kind"] for m in keda} <= {"ScaledObject", "TriggerAuthentication"}
    secrets = {s["metadata"]["name"]: s for s in by_kind(inv, "Secret")}
    auths = {}
    for auth in by_kind(inv, "TriggerAuthentication"):
        assert auth["apiVersion"] == KEDA
        assert set(auth["spec"]) == {"secretTargetRef"}
        for ref in auth["spec"]["secretTargetRef"]:
            assert set(ref) == {"parameter", "name", "key"}
            assert ref["parameter"] in REDIS_AUTH_PARAMETERS
            assert ref["key"] in secrets[ref["name"]]["stringData"], ref
        auths[auth["metadata"]["name"]] = auth
    (so,) = by_kind(inv, "ScaledObject")
    assert so["apiVersion"] == KEDA
    spec = so["spec"]
    assert set(spec) <= SCALED_OBJECT_FIELDS
    assert isinstance(spec["minReplicaCount"], int) and isinstance(spec["maxReplicaCount"], int)
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["triggers"]
    services = {m["metadata"]["name"]: m for m in by_kind(inv, "Service")}
    for trigger in spec["triggers"]:
        metadata = trigger["metadata"]
        # KEDA's trigger metadata is a map of strings.
        assert all(isinstance(v, str) for v in metadata.values()), metadata
        if trigger["type"] == "metrics-api":
            assert set(metadata) <= METRICS_API_METADATA and "authenticationRef" not in trigger
            host, port = metadata["url"].split("//")[1].split("/")[0].split(":")
            name, namespace = host.split(".")[:2]
            assert services[name]["metadata"]["namespace"] == namespace
            assert int(port) in {p["port"] for p in services[name]["spec"]["ports"]}
            assert int(metadata["targetValue"]) >= 1
            continue
        assert trigger["type"] == "redis"
        assert set(metadata) <= REDIS_TRIGGER_METADATA
        # KEDA's trigger metadata is a map of strings.
        assert all(isinstance(v, str) for v in metadata.values()), metadata
        assert metadata["listName"] and int(metadata["listLength"]) >= 1
        auth = auths[trigger["authenticationRef"]["name"]]
        parameters = {r["parameter"] for r in auth["spec"]["secretTargetRef"]}
        # The connection comes from the TriggerAuthentication, not the metadata.
        assert "address" in parameters and "address" not in metadata
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    kubernetes_validate.validate(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "keda-hpa-check"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 1,
                     "behavior": behavior},
        },
        VERSIONS[-1],
        strict=True,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_pod_monitorings_are_well_formed(request, name):
    inv = request.getfixturevalue(name)
    monitors = [m for m in objects(inv, GMP) if m["kind"] == "PodMonitoring"]
    assert monitors
    namespace = by_kind(inv, "Namespace")[0]["metadata"]["name"]
    for m in monitors:
        assert m["apiVersion"] == GMP and m["metadata"]["namespace"] == namespace
        assert set(m["spec"]) <= POD_MONITORING_FIELDS and m["spec"]["selector"]["matchLabels"]
        for endpoint in m["spec"]["endpoints"]:
            assert set(endpoint) <= ENDPOINT_FIELDS and endpoint["port"]
            assert endpoint["interval"].endswith("s") and endpoint["path"] == "/metrics"
