"""A local stack on free ports: the GCS emulator, the Firestore emulator, Redis.

Used by the tests, ``celery-gcs dev`` and ``make demo``/``make bench``. Every
service runs in its own process group and is stopped by group: ending gcloud's
wrapper alone would leave the Java Firestore emulator running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import conventions
from .processes import free_port, port_open, signals_held, spawn, stop_group

PROJECT = "celery-gcs-local"
BUCKET = "celery-results"

#: What to run when a prerequisite is missing, by executable.
INSTALL_HINTS = {
    "redis-server": "apt-get install -y redis-server",
    "java": "apt-get install -y openjdk-17-jre-headless",
    "gcloud": "install the Google Cloud SDK (https://cloud.google.com/sdk/docs/install), "
    "then: gcloud components install cloud-firestore-emulator",
}

#: Installing the Firestore emulator into an SDK from Debian's packages, or into
#: one installed by Google's installer (where `gcloud components` works).
FIRESTORE_EMULATOR_HINT_APT = "apt-get install -y google-cloud-cli-firestore-emulator"
FIRESTORE_EMULATOR_HINT_SDK = "gcloud components install cloud-firestore-emulator"


E_PORT_TAKEN = (
    "port {port}, where {service} ran before, is now taken by another process; stop that process, "
    "or start afresh on free ports (celery-gcs dev down, then celery-gcs dev up)"
)


class PrerequisiteMissing(RuntimeError):
    """A program the local stack needs is not installed."""


class ServiceFailed(RuntimeError):
    """A local service did not start."""


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise PrerequisiteMissing(f"{program} not found; install it with: {INSTALL_HINTS[program]}")
    return path


def require_firestore_emulator() -> str:
    """gcloud, with its Firestore emulator component installed; returns gcloud's path."""
    gcloud = require("gcloud")
    sdk_root = Path(gcloud).resolve().parent.parent
    if not (sdk_root / "platform" / "cloud-firestore-emulator").is_dir():
        # Debian's google-cloud-cli lives in /usr/lib/google-cloud-sdk and
        # disables `gcloud components`; its emulator is a package of its own.
        apt = sdk_root == Path("/usr/lib/google-cloud-sdk")
        hint = FIRESTORE_EMULATOR_HINT_APT if apt else FIRESTORE_EMULATOR_HINT_SDK
        raise PrerequisiteMissing(
            f"the gcloud Firestore emulator is not installed in {sdk_root}; install it with: {hint}"
        )
    return gcloud


#: What each service needs, as checks that raise PrerequisiteMissing.
PREREQUISITES: dict[str, tuple[Callable[[], object], ...]] = {
    "gcs": (),
    "firestore": (lambda: require("java"), require_firestore_emulator),
    "redis": (lambda: require("redis-server"),),
}


def missing_prerequisites(which: Sequence[str] = ("gcs", "firestore", "redis")) -> list[str]:
    """Every missing prerequisite of these services, each with its install command."""
    problems: list[str] = []
    for name in which:
        for check in PREREQUISITES[name]:
            try:
                check()
            except PrerequisiteMissing as exc:
                problems.append(str(exc))
    return problems


@dataclass
class Service:
    """One process group, started on a known port, stopped as a group."""

    name: str
    argv: Sequence[str]
    port: int
    ready_path: str | None = None  # HTTP path that answers 200 once ready; None: TCP only
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        with signals_held():
            self.process = spawn(self.argv, env={**os.environ, **self.env}, log_path=self.log_path)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServiceFailed(
                    f"{self.name} exited with {self.process.returncode} at start; "
                    f"see {self.log_path or 'its output'}"
                )
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise ServiceFailed(f"{self.name} did not answer on port {self.port} within {timeout:.0f}s")

    def _answers(self) -> bool:
        try:
            if self.ready_path is None:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            url = f"http://127.0.0.1:{self.port}{self.ready_path}"
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        stop_group(self.process.pid, timeout, reap=self.process.poll)
        self.process.wait(timeout)


def gcs_emulator(port: int, log_path: Path | None = None) -> Service:
    argv = [sys.executable, "-m", "celery_gcs.local.gcs_emulator", str(port)]
    return Service("gcs-emulator", argv, port, ready_path="/", log_path=log_path)


def firestore_emulator(port: int, log_path: Path | None = None) -> Service:
    require("java")
    gcloud = require_firestore_emulator()
    argv = [gcloud, "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}", "--quiet"]
    return Service("firestore-emulator", argv, port, ready_path="/", log_path=log_path)


def redis_server(port: int, log_path: Path | None = None) -> Service:
    argv = [
        require("redis-server"),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "yes",
    ]  # fmt: skip
    return Service("redis", argv, port, log_path=log_path)


@dataclass
class LocalStack:
    """The three services, their ports, and the environment that points at them."""

    workdir: Path
    project: str = PROJECT
    bucket: str = BUCKET
    services: dict[str, Service] = field(default_factory=dict)
    #: Firestore databases that `reset` empties; tests add the ones they use.
    firestore_databases: set[str] = field(default_factory=lambda: {"(default)"})

    @property
    def gcs_host(self) -> str:
        return f"http://127.0.0.1:{self.services['gcs'].port}"

    @property
    def firestore_host(self) -> str:
        return f"127.0.0.1:{self.services['firestore'].port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.services['redis'].port}/0"

    @property
    def result_backend(self) -> str:
        return f"gcs://{self.bucket}"

    def env(self) -> dict[str, str]:
        """Variables that point Google's clients and Celery at the running services."""
        env = {"GOOGLE_CLOUD_PROJECT": self.project}
        if "gcs" in self.services:
            env["STORAGE_EMULATOR_HOST"] = self.gcs_host
            env["CELERY_RESULT_BACKEND"] = self.result_backend
        if "firestore" in self.services:
            env["FIRESTORE_EMULATOR_HOST"] = self.firestore_host
        if "redis" in self.services:
            env["CELERY_BROKER_URL"] = self.redis_url
        return env

    def start(
        self, which: Sequence[str] = ("gcs", "firestore", "redis"), *, ports: Mapping[str, int] | None = None
    ) -> None:
        """Start these services, each on its port in ``ports``, else on a free one."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        makers = {"gcs": gcs_emulator, "firestore": firestore_emulator, "redis": redis_server}
        ports = ports or {}
        try:
            for name in which:
                port = ports.get(name) or free_port()
                if name in ports and port_open(port):
                    raise ServiceFailed(E_PORT_TAKEN.format(service=name, port=port))
                service = makers[name](port, self.workdir / f"{name}.log")
                self.services[name] = service
                service.start()
            if "gcs" in which:
                create_bucket(self.gcs_host, self.bucket)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()

    def reset(self) -> None:
        """Empty every service, keeping the bucket, so tests start from nothing."""
        if "gcs" in self.services:
            _http("GET", f"{self.gcs_host}/wipe?keep-buckets=true")
        if "firestore" in self.services:
            for database in self.firestore_databases:
                _delete_all_documents(
                    f"http://{self.firestore_host}/emulator/v1/projects/{self.project}"
                    f"/databases/{database}/documents"
                )
        if "redis" in self.services:
            with socket.create_connection(("127.0.0.1", self.services["redis"].port)) as sock:
                sock.sendall(b"FLUSHALL\r\n")
                sock.recv(64)


def _delete_all_documents(url: str, *, patience: float = 60.0) -> None:
    """Empty a Firestore emulator database, waiting out locks a killed client left.

    A process killed inside a transaction leaves its locks on the emulator
    until the emulator gives up on them; meanwhile it refuses to delete those
    documents with 409 Conflict.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            _http("DELETE", url)
            return
        except urllib.error.HTTPError as refused:
            if refused.code != 409 or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def _http(method: str, url: str, body: bytes | None = None) -> bytes:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def create_bucket(gcs_host: str, bucket: str) -> None:
    """Create a bucket on the emulator; an existing one is fine."""
    body = json.dumps({"name": bucket}).encode()
    try:
        _http("POST", f"{gcs_host}/storage/v1/b?project={PROJECT}", body)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise


def configure_bucket(gcs_host: str, bucket: str) -> None:
    """Give an emulator bucket a deployment's settings: lifecycle rules, uniform access."""
    body = {
        "lifecycle": {"rule": conventions.lifecycle_rules()},
        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}},
    }
    _http("PATCH", f"{gcs_host}/storage/v1/b/{bucket}", json.dumps(body).encode())


@contextlib.contextmanager
def running(workdir: Path, which: Sequence[str] = ("gcs", "firestore", "redis")) -> Iterator[LocalStack]:
    stack = LocalStack(workdir)
    stack.start(which)
    try:
        yield stack
    finally:
        stack.stop()


def broker_clients(port: int) -> list[str]:
    """Who else is connected to the stack's Redis: workers and producers, by process where it can be told."""
    import psutil
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        own = client.client_id()
        ports = {int(c["addr"].rsplit(":", 1)[1]) for c in client.client_list() if int(c["id"]) != own}
    except redis.RedisError:
        return []
    finally:
        client.close()
    pids: dict[int, str] = {}
    with contextlib.suppress(psutil.Error):  # the connections of other users' processes may be hidden
        for conn in psutil.net_connections("tcp"):
            if conn.pid and conn.laddr and conn.laddr.port in ports and conn.raddr and conn.raddr.port == port:
                ports.discard(conn.laddr.port)
                with contextlib.suppress(psutil.Error):
                    pids[conn.pid] = " ".join(psutil.Process(conn.pid).cmdline())[:100]
    found = [f"pid {pid} ({cmdline})" for pid, cmdline in sorted(pids.items())]
    return found + [f"a client at 127.0.0.1:{other}" for other in sorted(ports)]
