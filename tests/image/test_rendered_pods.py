"""The prod example's worker Deployment, queue-length service and smoke-test Job, as the Pulumi program renders them, run with `podman kube play`.

The objects come from the program run under Pulumi's mocks in a fresh
interpreter (tests/infra's ``prod`` scenario); rendered.py says what changes
to run them here and why. Everything else is as rendered: the image built as
the prod stack builds it, the worker's environment (the ``gcs://`` URL the stack
builds, acks-late settings, queues), the broker URL's verified TLS with the
mounted CA, the restricted securityContext (non-root, read-only root
filesystem), the emptyDir mounts, the exec probes. The broker is a
Memorystore-like TLS Redis (tests/support/tls_redis.py), the stores the
emulators.

Skipped, with the reason, unless podman can run here (root, podman, runc,
catatonit, debootstrap) and tests/image runs on its own (`make image-test`).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from celery import Celery, chord
from celery_gcs.local import services
from celery_gcs.local.processes import free_port

from ..support import tls_redis
from .rendered import (
    CONTAINERS_CONF,
    local_broker_values,
    localize,
    one,
    rendered_objects,
    stack_args,
    write,
)
from .support import Podman, wait_for

pytestmark = pytest.mark.timeout(1800)  # a first run debootstraps the base

PROBE = ("python", "-m", "celery_gcs.worker.probe")


@pytest.fixture
def kube(podman: Podman, tmp_path: Path):
    """``podman kube play`` with tests/image's runtime settings; every pod played is removed after the test."""
    if shutil.which("catatonit") is None:
        pytest.skip("catatonit not installed (`make image-deps` installs it): podman's pods need it")
    conf = tmp_path / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    pods: list[str] = []

    def play(name: str, objects: list[dict]) -> None:
        # podman names a Deployment's pod NAME-pod-0 (a Pod's: NAME), and its containers POD-CONTAINER.
        pods.extend(f"{d['metadata']['name']}-pod-0" for d in objects if d["kind"] == "Deployment")
        pods.extend(d["metadata"]["name"] for d in objects if d["kind"] == "Pod")
        podman("kube", "play", write(tmp_path / f"{name}.yaml", objects), env=env)

    yield play
    if pods:
        podman("pod", "rm", "--force", "--time", "5", *pods, check=False, env=env)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_the_rendered_worker_queue_length_service_and_smoke_test_run_on_verified_tls(
    podman, kube, build_image, stack, tmp_path, monkeypatch
) -> None:
    # Celery prefers these to the app's own settings: the client uses the TLS broker below.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    objects = rendered_objects(tmp_path, "prod")
    image = build_image(**stack_args("prod").app_build_args())
    worker = one(objects, "Deployment", "-worker")
    rendered_env = {v["name"]: v.get("value") for v in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    backend_url = rendered_env["CELERY_RESULT_BACKEND"]
    local_env = stack.env()
    services.create_bucket(local_env["STORAGE_EMULATOR_HOST"], urllib.parse.urlsplit(backend_url).netloc)

    with tls_redis.memorystore_like(tmp_path) as redis_server:
        broker = local_broker_values(
            one(objects, "Secret", "-broker"),
            port=redis_server["port"],
            password=redis_server["password"],
            ca_pem=Path(redis_server["ca"]).read_text(),
        )
        port = free_port()
        pods = localize(
            objects,
            image=image,
            broker_values=broker,
            queue_length_port=port,
            worker_env={
                "STORAGE_EMULATOR_HOST": local_env["STORAGE_EMULATOR_HOST"],
                "FIRESTORE_EMULATOR_HOST": local_env["FIRESTORE_EMULATOR_HOST"],
                "CELERY_GCS_METRICS_PORT": str(free_port()),
                "CELERY_GCS_METRICS_ADDRESS": "127.0.0.1",
                "CELERY_CONCURRENCY": "2",
            },
        )
        # The client: the same broker URL, with the CA where this host has it.
        client_broker = broker["url"].replace(
            urllib.parse.quote("/etc/celery-broker/ca.pem", safe=""), urllib.parse.quote(redis_server["ca"], safe="")
        )
        app = Celery("client", broker=client_broker, backend=backend_url, set_as_current=False)
        try:
            # The queue-length service first: it counts a task no worker has taken yet.
            config_maps = [o for o in pods if o["kind"] == "ConfigMap"]
            kube("queue-length", [*config_maps, one(pods, "Deployment", "-queue-length")])
            wait_for(lambda: healthy(f"http://127.0.0.1:{port}/healthz"), 120, "the queue-length service")
            early = app.send_task("acme.tasks.add", args=(2, 3), queue="priority")
            assert get_json(f"http://127.0.0.1:{port}/queues") == {"celery": 0, "priority": 1}

            kube("worker", [*config_maps, one(pods, "Deployment", "-worker")])
            container = f"{worker['metadata']['name']}-pod-0-worker"
            ready = lambda: podman("exec", container, *PROBE, "ready", check=False).returncode == 0
            wait_for(ready, 180, "the worker's readiness probe", interval=1)

            assert early.get(timeout=60) == 5
            parts = [app.signature("acme.tasks.add", args=(i, i)) for i in range(10)]
            result = chord(parts)(app.signature("acme.tasks.total"))
            assert result.get(timeout=120) == 90
            assert get_json(f"http://127.0.0.1:{port}/queues") == {"celery": 0, "priority": 0}

            # The post-deploy smoke test as rendered, beside the running worker: every check passes.
            job = one(pods, "Pod", "-smoke-test")
            kube("smoke-test", [*config_maps, job])
            check = f"{job['metadata']['name']}-smoke-test"
            wait_for(lambda: podman.exit_code(check) is not None, 240, "the smoke test to finish", interval=1)
            log = podman.logs(check)
            assert podman.exit_code(check) == 0, log
            assert [line.split(":")[0] for line in log.splitlines() if line.startswith(("PASS", "FAIL"))] == [
                "PASS resolve", "PASS store", "PASS chord",
            ], log

            # The pod's securityContext as rendered: the image's non-root user, a read-only root.
            uid = podman("exec", container, "id", "-u").stdout.strip()
            assert uid != "0"
            assert podman("exec", container, "touch", "/app/x", check=False).returncode != 0
        finally:
            app.close()
