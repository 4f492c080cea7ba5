"""Fixtures of the worker-image tests.

- ``runtime_bin``: a virtualenv installed as the image's builder stage installs
  /opt/venv (the lock's runtime requirements, hash-checked, then the project).
- ``start_entrypoint``: worker_image/entrypoint.sh run with that virtualenv, the
  test app (tests/image/app) and the local stack, as the container runs it.
- ``podman``, ``worker_image``: podman and the image built with it on a base made
  here with debootstrap (no registry is reachable). The container tests run as
  root, when podman, runc and debootstrap are installed (``make image-deps``),
  and when tests/image is selected on its own (``make image-test`` or
  ``pytest tests/image``), so that ``make test`` does not build images; they are
  skipped otherwise, with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery_gcs.local.processes import free_port

from .support import (
    APP,
    DOCKERFILE,
    ROOT,
    EntrypointWorker,
    Podman,
    base_image,
    install_runtime_venv,
)

HERE = Path(__file__).resolve().parent
#: debootstrap's output is cached here between runs (gitignored).
CACHE_DIR = Path(os.environ.get("CELERY_GCS_IMAGE_CACHE") or ROOT / ".cache" / "image-test")


@pytest.fixture(scope="session")
def runtime_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a virtualenv holding exactly what the image's /opt/venv holds."""
    return install_runtime_venv(tmp_path_factory.mktemp("runtime") / "venv")


def worker_env(stack: Any, health_dir: Path | None, *, backend_url: str | None, conf: dict | None = None,
               **overrides: str) -> dict[str, str]:  # fmt: skip
    """The container's environment for a worker on the local stack."""
    env = {
        **stack.env(),  # CELERY_BROKER_URL, GOOGLE_CLOUD_PROJECT, the emulators' hosts
        "CELERY_APP": APP,
        "CELERY_CONCURRENCY": "2",
        "CELERY_GCS_HEARTBEAT_INTERVAL": "0.5",
        # Metrics are on in the image; each worker here serves them on a port of its own.
        "CELERY_GCS_METRICS_PORT": str(free_port()),
        "CELERY_GCS_METRICS_ADDRESS": "127.0.0.1",
        "IMAGE_TASKS_CONF": json.dumps(conf or {}),
    }
    if health_dir is not None:
        env["CELERY_GCS_HEALTH_DIR"] = str(health_dir)
    if backend_url:
        env["CELERY_RESULT_BACKEND"] = backend_url
    env.update(overrides)
    return env


@pytest.fixture
def start_entrypoint(
    stack: Any, backend_url: str, runtime_bin: Path, tmp_path: Path
) -> Iterator[Any]:
    """Start workers through the entrypoint; keyword arguments become environment variables."""
    workers: list[EntrypointWorker] = []

    def start(*, conf: dict | None = None, wait: bool = True, **overrides: str) -> EntrypointWorker:
        n = len(workers)
        env = worker_env(
            stack, tmp_path / f"health-{n}", backend_url=backend_url, conf=conf, **overrides
        )
        worker = EntrypointWorker(
            bin_dir=runtime_bin, env=env, log_path=tmp_path / f"worker-{n}.log"
        )
        workers.append(worker)
        return worker.start() if wait else worker

    yield start
    for worker in workers:
        worker.stop()


# ---------------------------------------------------------------------------
# podman


def _container_skip_reason(session: pytest.Session) -> str | None:
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (`make image-deps` installs them)"
    if os.geteuid() != 0:
        return (
            "podman builds and runs containers here as root only (runc, debootstrap): run as root"
        )
    if any(HERE not in Path(item.path).resolve().parents for item in session.items):
        return "container builds run when tests/image is selected on its own: `make image-test`"
    return None


@pytest.fixture(scope="session")
def podman(request: pytest.FixtureRequest) -> Podman:
    reason = _container_skip_reason(request.session)
    if reason:
        pytest.skip(reason)
    return Podman(shutil.which("podman") or "podman")


@pytest.fixture(scope="session")
def base(podman: Podman) -> str:
    """A base made with debootstrap, standing in for python:3.12-slim."""
    return base_image(podman, CACHE_DIR)


@pytest.fixture(scope="session")
def image_tags(podman: Podman) -> Iterator[list[str]]:
    """Tags this session builds; removed at its end (their layers stay cached)."""
    tags: list[str] = []
    yield tags
    if tags:
        # --no-prune keeps the layers: they are the next run's build cache.
        podman("rmi", "--force", "--no-prune", *tags, check=False)


@pytest.fixture(scope="session")
def build_image(
    podman: Podman, base: str, image_tags: list[str], tmp_path_factory: pytest.TempPathFactory
):
    """Build worker_image/Dockerfile (from the repository root) on the local base."""
    logs = tmp_path_factory.mktemp("builds")

    def build(**build_args: str) -> str:
        tag = f"localhost/celery-gcs-worker:test-{uuid.uuid4().hex[:8]}"
        image_tags.append(tag)
        args = {
            "BASE_IMAGE": base,
            "VERSION": "0.1.0-test",
            "REVISION": "test-revision",
            **build_args,
        }
        return podman.build(
            tag, ROOT, DOCKERFILE, args, log_path=logs / f"{tag.rsplit(':', 1)[1]}.log"
        )

    return build


@pytest.fixture(scope="session")
def worker_image(build_image: Any) -> str:
    """The image as released: no app of its own."""
    return build_image()


@pytest.fixture
def containers(podman: Podman) -> Iterator[list[str]]:
    """Names of containers a test started; removed after it."""
    names: list[str] = []
    yield names
    podman.remove(*names)
