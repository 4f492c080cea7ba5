"""The Kubernetes objects the Pulumi program renders, run with ``podman kube play`` against the local stack.

:func:`rendered_objects` runs a scenario's program (tests/infra) in a fresh
interpreter and returns the objects it would send to the API server.
:func:`localize` keeps every pod as rendered (image entrypoint, command,
environment, securityContext, mounts, probes, resources) and changes only
what stands in for GKE here, each for a stated reason:

- the image is the one built here as the stack builds it (no registry);
- the pods share the host's network (``hostNetwork``): the emulators and the
  Memorystore-like TLS Redis listen on its loopback, not at the addresses the
  mocks gave the broker;
- the broker Secret's values become the local Redis's (its address, AUTH
  string and CA) and are given inline and as a ConfigMap: podman 4.3's
  ``kube play`` stores a Secret it is given in a form its own ``secretKeyRef``
  and secret volumes cannot read back;
- the smoke-test Job is played as the Pod its controller would create (podman
  4.3's ``kube play`` knows no Jobs);
- the workers and the smoke test get the emulators' hosts (``STORAGE_EMULATOR_HOST``,
  ``FIRESTORE_EMULATOR_HOST``) in place of Workload Identity, a metrics port
  of their own (several helpers share this host's network), two processes
  instead of eight (two cores here), and one replica of each Deployment
  (replicas on one host network would share the port); no declared
  ``ports`` (podman 4.3 turns them into mappings, refused on the host network).
"""

from __future__ import annotations

import copy
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from celery_gcs_infra import settings

from ..infra.infra_scenarios import ROOT, render, scenarios, stack_config

#: podman's settings for ``kube play``, which takes no --ulimit or --runtime of its own:
#: what tests/image's ``podman run`` passes on its command line (support.Podman).
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

Manifest = dict[str, Any]


def stack_args(stack: str) -> settings.CeleryStackArgs:
    """What `pulumi up` on an example stack passes the program: Pulumi.yaml's defaults, then its file."""
    return settings.load(stack_config(stack), stack=stack, build_context=str(ROOT))


def rendered_objects(tmp: Path, scenario: str) -> list[Manifest]:
    """The Kubernetes objects ``scenario``'s program sends, as the API server would get them."""
    inventory = render(tmp, scenario, scenarios()[scenario])
    assert inventory["error"] is None, inventory["error"]["traceback"]
    return [
        r["inputs"]
        for r in inventory["resources"]
        if r["type"].startswith("kubernetes:")
        and r["custom"]
        and not r["type"].startswith(("pulumi:providers:", "kubernetes:helm.sh/"))
    ]


def one(objects: Iterable[Manifest], kind: str, name_suffix: str) -> Manifest:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}"
    return found[0]


def local_broker_values(secret: Manifest, *, port: int, password: str, ca_pem: str) -> dict[str, str]:
    """The broker Secret's values for a Redis on 127.0.0.1:``port``: same keys, same URL options."""
    data = dict(secret["stringData"])
    address, old_password = data["address"], data["password"]
    data["url"] = data["url"].replace(f":{urllib.parse.quote(old_password, safe='')}@", f":{password}@", 1)
    data["url"] = data["url"].replace(f"@{address}/", f"@127.0.0.1:{port}/", 1)
    assert f"@127.0.0.1:{port}/" in data["url"] and f":{password}@" in data["url"], "the URL's shape changed"
    data.update(address=f"127.0.0.1:{port}", password=password, **{"ca.pem": ca_pem})
    return data


def localize(
    objects: list[Manifest],
    *,
    image: str,
    broker_values: dict[str, str],
    worker_env: dict[str, str],
    queue_length_port: int,
) -> list[Manifest]:
    """The Deployments and the Job (as its Pod), and the ConfigMaps they mount, as podman runs them here."""
    secret = one(objects, "Secret", "-broker")
    rendered_host, rendered_port = secret["stringData"]["address"].rsplit(":", 1)
    local_host, local_port = broker_values["address"].rsplit(":", 1)
    files = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{secret['metadata']['name']}-files"},
        "data": {"ca.pem": broker_values["ca.pem"]},
    }
    out: list[Manifest] = [files]
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            out.append(copy.deepcopy(obj))
        if obj["kind"] == "Deployment":
            workload = copy.deepcopy(obj)
            workload["spec"]["replicas"] = 1
            pod = workload["spec"]["template"]["spec"]
        elif obj["kind"] == "Job":
            # podman 4.3 plays Pods and Deployments, not Jobs: the pod the Job controller would make.
            template = copy.deepcopy(obj["spec"]["template"])
            workload = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": obj["metadata"]["name"], **template["metadata"]}, "spec": template["spec"]}
            pod = workload["spec"]
        else:
            continue
        pod["hostNetwork"] = True
        for volume in pod["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] == secret["metadata"]["name"]
                volume["configMap"] = {"name": files["metadata"]["name"], "items": volume.pop("secret")["items"]}
        for container in pod["containers"]:
            container["image"] = image
            # Declared ports only name what the container listens on; podman 4.3 makes them
            # port mappings, which it refuses on the host network.
            container.pop("ports", None)
            env = []
            for var in container["env"]:
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"]
                    var = {"name": var["name"], "value": broker_values[ref["key"]]}
                elif var["name"] == "BROKER_HOST" and var["value"] == rendered_host:
                    var = {**var, "value": local_host}
                elif var["name"] == "BROKER_PORT" and var["value"] == rendered_port:
                    var = {**var, "value": local_port}
                elif var["name"] == "PORT":
                    var = {**var, "value": str(queue_length_port)}
                env.append(var)
            if any(v["name"] == "CELERY_RESULT_BACKEND" for v in env):  # the workers and the smoke test
                env = [v for v in env if v["name"] not in worker_env] + [
                    {"name": k, "value": v} for k, v in worker_env.items()
                ]
            container["env"] = env
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                http = container.get(probe, {}).get("httpGet")
                if http:
                    http["port"] = queue_length_port
        out.append(workload)
    return out


def write(path: Path, objects: list[Manifest]) -> Path:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path
