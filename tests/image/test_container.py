"""The real image, built with podman on a base made here, run with host networking against the local stack.

Skipped, with the reason, unless podman can run here (root, podman, runc,
debootstrap) and tests/image runs on its own (`make image-test`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from celery import chord

from .conftest import worker_env
from .support import APP, APP_DIR, Podman, wait_for

pytestmark = pytest.mark.timeout(1800)  # a first run debootstraps the base

PROBE = ("python", "-m", "celery_gcs.worker.probe")


def send(app, name: str, *args):
    return app.send_task(f"{APP}.{name}", args=args)


def start(podman: Podman, containers: list[str], image: str, env: dict[str, str]) -> str:
    """Run the image detached; return once its readiness probe (run as the kubelet would) passes."""
    name = podman.run_detached(image, env)
    containers.append(name)

    def ready() -> bool:
        if podman.exit_code(name) is not None:
            raise AssertionError(
                f"the container exited with {podman.exit_code(name)}:\n{podman.logs(name)}"
            )
        return podman("exec", name, *PROBE, "ready", check=False).returncode == 0

    wait_for(ready, 120, "the readiness probe", interval=0.5)
    return name


def wait_exit(podman: Podman, name: str, timeout: float = 60) -> int:
    wait_for(lambda: podman.exit_code(name) is not None, timeout, f"{name} to exit", interval=0.2)
    code = podman.exit_code(name)
    assert code is not None
    return code


def container_env(stack, backend_url: str | None, **overrides: str) -> dict[str, str]:
    # No CELERY_GCS_HEALTH_DIR: the image's own.
    return worker_env(stack, None, backend_url=backend_url, **overrides)


def test_the_image_runs_tini_as_pid_1_as_a_fixed_non_root_user_with_no_caches(
    podman, worker_image
) -> None:
    config = json.loads(
        podman("image", "inspect", "--format", "{{json .Config}}", worker_image).stdout
    )
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "/usr/local/bin/celery-gcs-entrypoint"]
    assert config["Cmd"] == ["worker"]
    assert config["StopSignal"] == "SIGTERM"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == "0.1.0-test"
    assert labels["org.opencontainers.image.revision"] == "test-revision"
    assert labels["org.opencontainers.image.title"] == "celery-gcs-worker"

    script = """
    echo "uid=$(id -u)"
    echo "gid=$(id -g)"
    printf 'pid1=%s\\n' "$(tr '\\0' ' ' < /proc/1/cmdline | cut -d' ' -f1-3)"
    echo "apt-lists=$(find /var/lib/apt/lists -type f | wc -l)"
    echo "debs=$(find / -xdev -name '*.deb' 2>/dev/null | wc -l)"
    echo "caches=$(find / -xdev -type d \\( -path '*/.cache/pip' -o -path '*/.cache/uv' \\) 2>/dev/null | wc -l)"
    echo "builder-only=$(ls -d /opt/uv /src 2>/dev/null | wc -l)"
    echo "python=$(python -c 'import sys; print(sys.prefix)')"
    echo "packages=$(python -c 'import importlib.util as u; print(",".join(m for m in ("celery_gcs", "celery_gcs_infra", "rich", "pulumi") if u.find_spec(m)))')"
    touch /app/x 2>/dev/null && echo app-writable=yes || echo app-writable=no
    """
    done = podman("run", "--rm", "--pull=never", *Podman.SANDBOX, worker_image, "sh", "-c", script)
    facts = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert facts == {
        "pid1": "/usr/bin/tini -- /usr/local/bin/celery-gcs-entrypoint",
        "uid": "10001", "gid": "10001", "apt-lists": "0", "debs": "0", "caches": "0", "builder-only": "0",
        "python": "/opt/venv", "packages": "celery_gcs", "app-writable": "no",
    }  # fmt: skip


def test_a_missing_or_malformed_variable_stops_the_container_naming_it(
    podman, worker_image
) -> None:
    done = podman("run", "--rm", "--pull=never", *Podman.SANDBOX, worker_image, check=False)
    assert done.returncode == 78
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_APP"):
        assert name in done.stderr
    done = podman(
        "run", "--rm", "--pull=never", *Podman.SANDBOX, "--env", "CELERY_BROKER_URL=redis://:pw@redis:port/0",
        "--env", "GCS_BUCKET=results", "--env", "CELERY_APP=json", worker_image, check=False,
    )  # fmt: skip
    assert done.returncode == 78
    assert "CELERY_BROKER_URL='redis://:***@redis:port/0' is malformed" in done.stderr
    assert "pw" not in done.stderr


def test_an_image_built_on_it_with_the_app_copied_in_runs_a_chord_and_stops_warm(
    podman, worker_image, containers, stack, backend_url, make_app, tmp_path: Path
) -> None:
    # The first way to bring tasks: FROM the image, COPY the app into /app.
    context = tmp_path / "context"
    context.mkdir()
    (context / "image_tasks.py").write_text((APP_DIR / "image_tasks.py").read_text())
    (context / "Containerfile").write_text(
        f"FROM {worker_image}\nCOPY image_tasks.py /app/\nENV CELERY_APP={APP}\n"
    )
    image = f"{worker_image}-derived"
    podman.build(image, context, context / "Containerfile")
    try:
        env = container_env(
            stack,
            backend_url,
            IMAGE_TASKS_CONF=json.dumps({"task_acks_late": True, "task_track_started": True}),
        )
        del env["CELERY_APP"]
        name = start(podman, containers, image, env)
        assert podman("exec", name, *PROBE, "live", check=False).returncode == 0

        app = make_app()
        result = chord([app.signature(f"{APP}.add", (n, n)) for n in range(6)])(
            app.signature(f"{APP}.tsum")
        )
        assert result.get(timeout=60) == 30
        assert send(app, "identity").get(timeout=30) == {"uid": 10001, "cwd": "/app"}

        running = send(app, "sleep", 3, "finished")
        wait_for(lambda: running.state == "STARTED", 30, "the task to start")
        podman("kill", "--signal", "TERM", name)  # what the kubelet does: SIGTERM to PID 1, tini
        assert wait_exit(podman, name) == 0
        assert running.get(timeout=1) == "finished"
        assert "Warm shutdown" in podman.logs(name)
    finally:
        podman("rmi", "--force", image, check=False)


def test_a_build_argument_names_the_app_and_bucket_variables_name_the_backend(
    podman, build_image, containers, stack, make_app
) -> None:
    # The second way: build this Dockerfile with APP_DIR and CELERY_APP.
    image = build_image(APP_DIR="tests/image/app", CELERY_APP=APP)
    env = container_env(
        stack,
        None,
        GCS_BUCKET=stack.bucket,
        GOOGLE_CLOUD_PROJECT=stack.local_stack.project,
        FIRESTORE_DATABASE="(default)",
    )
    del env["CELERY_APP"]  # the image's default, from the build argument
    name = start(podman, containers, image, env)
    app = make_app(url=f"gcs://{stack.bucket}")
    assert send(app, "add", 2, 3).get(timeout=60) == 5
    assert "image_tasks.add" in podman.logs(name)
    podman("kill", "--signal", "TERM", name)
    assert wait_exit(podman, name) == 0
