"""What the worker-image tests drive: the entrypoint as a process, podman, the locally made base image."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil
from celery_gcs.local.worker import WorkerProcess
from celery_gcs.worker.probe import HealthFiles

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "worker_image"
DOCKERFILE = IMAGE_DIR / "Dockerfile"
ENTRYPOINT = IMAGE_DIR / "entrypoint.sh"
#: The test's Celery app, a user's app in miniature; its module is APP.
APP_DIR = Path(__file__).resolve().parent / "app"
APP = "image_tasks"


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def run(argv: Sequence[object], **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, raise with its output, which `check=True` would hide."""
    kwargs.setdefault("capture_output", True)
    done = subprocess.run([str(arg) for arg in argv], text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


# ---------------------------------------------------------------------------
# The entrypoint in a virtualenv


#: How the image's builder stage exports its requirements from uv.lock.
EXPORT_ARGS = ("--frozen", "--no-dev", "--extra", "worker", "--no-emit-project")


def install_runtime_venv(venv: Path) -> Path:
    """Install the worker as the image's builder stage does; returns the virtualenv's bin directory."""
    uv = Path(sys.executable).parent / "uv"
    requirements = venv.parent / "requirements.txt"
    run([uv, "export", *EXPORT_ARGS, "-o", requirements], cwd=ROOT)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    run([uv, "venv", venv, "--python", sys.executable], env=env)
    python = venv / "bin" / "python"
    run([uv, "pip", "install", "--python", python, "--require-hashes", "-r", requirements], env=env)
    run([uv, "pip", "install", "--python", python, "--no-deps", ROOT], env=env)
    run([uv, "pip", "check", "--python", python], env=env)
    run(
        [
            python,
            "-c",
            "import celery_gcs.backend, celery_gcs.worker.health, kombu.transport.redis",
        ],
        env=env,
    )
    return venv / "bin"


class EntrypointWorker(WorkerProcess):
    """worker_image/entrypoint.sh run as the image runs it, minus tini: the virtualenv on PATH, the app in cwd.

    Ready when its health files say so, as the readiness probe reads them.
    """

    def __init__(
        self,
        *,
        bin_dir: Path,
        env: dict[str, str],
        log_path: Path,
        args: Sequence[str] = ("worker",),
    ):
        env = {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(log_path.parent),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(APP_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",
            **env,
        }
        self.health = HealthFiles(Path(env["CELERY_GCS_HEALTH_DIR"]))
        super().__init__(
            [str(ENTRYPOINT), *args],
            env=env,
            cwd=APP_DIR,
            log_path=log_path,
            ready=lambda _worker: self.health.ready_problem() is None,
        )

    def cmdline(self) -> list[str]:
        return psutil.Process(self.pid).cmdline()

    def probe(self, kind: str) -> subprocess.CompletedProcess[str]:
        """The Kubernetes exec probe, as the kubelet would run it in the container."""
        return subprocess.run(
            ["python", "-m", "celery_gcs.worker.probe", kind], env=self.env, capture_output=True, text=True,
            check=False, cwd=APP_DIR,
        )  # fmt: skip


# ---------------------------------------------------------------------------
# podman


class Podman:
    """podman as it works on this kind of machine: runc (crun fails here), no systemd, no registry."""

    GLOBAL = ("--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file")
    #: For `build` and `run`: host networking, and ulimits the runtime accepts here.
    SANDBOX = ("--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def __call__(self, *args: object, timeout: float = 600, check: bool = True, **kwargs):
        argv = [self.executable, *self.GLOBAL, *map(str, args)]
        if check:
            return run(argv, timeout=timeout, **kwargs)
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )

    def image_exists(self, tag: str) -> bool:
        return self("image", "exists", tag, check=False).returncode == 0

    def build(self, tag: str, context: Path, dockerfile: Path, build_args: dict[str, str] | None = None,
              log_path: Path | None = None) -> str:  # fmt: skip
        args: list[object] = ["build", "--pull=never", *self.SANDBOX, "-f", dockerfile, "-t", tag]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        done = self(*args, context, timeout=1500)
        if log_path is not None:
            log_path.write_text(done.stdout + done.stderr)
        return tag

    def run_detached(
        self, image: str, env: dict[str, str], args: Sequence[str] = (), volumes: Sequence[str] = ()
    ) -> str:
        name = f"celery-gcs-test-{uuid.uuid4().hex[:8]}"
        argv: list[object] = ["run", "-d", "--pull=never", *self.SANDBOX, "--name", name]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        for volume in volumes:
            argv += ["--volume", volume]
        self(*argv, image, *args)
        return name

    def logs(self, name: str) -> str:
        done = self("logs", name, check=False)
        return done.stdout + done.stderr

    def exit_code(self, name: str) -> int | None:
        state = self(
            "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name
        ).stdout.split()
        return int(state[1]) if state[0] in ("exited", "stopped") else None

    def remove(self, *names: str) -> None:
        if names:
            self("rm", "--force", "--time", "5", *names, check=False)


# ---------------------------------------------------------------------------
# The locally made base image

#: What the base holds: Debian's python3 (3.11 in bookworm) with venv, CA certificates.
#: It stands in for python:3.12-slim: python3 and apt-get on PATH, a POSIX shell, useradd.
BASE_SUITE = "bookworm"
BASE_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: The host's CA bundle goes into the base: this machine's egress to PyPI passes a
#: TLS-inspecting proxy whose CA only the host's bundle holds.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

BASE_ENV = """\
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8 \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
"""


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def base_image(podman: Podman, cache_dir: Path) -> str:
    """The tag of a base image made here (no registry is reachable), made or reused.

    debootstrap's root filesystem is cached as a tarball under ``cache_dir``;
    the podman images are reused while they exist. Tags carry a digest of the
    recipe (and of the host's CA bundle), so a changed recipe makes a new base.
    """
    recipe = _digest(BASE_SUITE, BASE_MIRROR, *BASE_PACKAGES)
    ca = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b""
    raw = f"localhost/celery-gcs-test-rootfs:{BASE_SUITE}-{recipe}"
    tag = f"localhost/celery-gcs-test-base:{BASE_SUITE}-{_digest(recipe, ca)}"
    with _locked(cache_dir / "base.lock"):
        if podman.image_exists(tag):
            return tag
        if not podman.image_exists(raw):
            tarball = cache_dir / f"rootfs-{BASE_SUITE}-{recipe}.tar"
            if not tarball.exists():
                _debootstrap(tarball)
            podman("import", tarball, raw, timeout=600)
        with tempfile.TemporaryDirectory(dir=cache_dir) as context:
            lines = [f"FROM {raw}"]
            if ca:
                Path(context, "ca-certificates.crt").write_bytes(ca)
                lines.append("COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt")
            Path(context, "Containerfile").write_text("\n".join(lines) + "\n" + BASE_ENV)
            podman.build(tag, Path(context), Path(context, "Containerfile"))
    return tag


def _debootstrap(tarball: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    try:
        rootfs = work / "rootfs"
        run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             BASE_SUITE, rootfs, BASE_MIRROR], timeout=1200)  # fmt: skip
        # As Debian's container images: no package lists or downloaded packages.
        for leftovers in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for path in (rootfs / leftovers).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = tarball.with_suffix(".partial")
        run(["tar", "-C", rootfs, "--numeric-owner", "-cf", partial, "."], timeout=600)
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
