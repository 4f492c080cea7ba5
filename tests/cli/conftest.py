"""Helpers for the ``celery-gcs`` command's tests: the console script, processes left behind, buckets.

They run the installed console script, find processes a run left behind,
and make buckets on the emulator.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from celery_gcs.local import processes, services

from ..support.factories import made_then_undone
from ..support.processes import with_env

#: The console script pyproject declares, as installed in the virtualenv.
CLI = str(Path(sys.executable).parent / "celery-gcs")
#: Environment variable set on every command a test starts; its children inherit it.
MARKER = "CELERY_GCS_TEST_MARKER"
#: Variables that would point a command at some other stack.
STACK_VARS = (
    "STORAGE_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "GOOGLE_CLOUD_PROJECT",
)


def clean_env(extra: Mapping[str, str] | None = None, **more: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in STACK_VARS}
    env.update(extra or {})
    env.update(more)
    return env


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def marked_processes(marker: str) -> list[tuple[int, str]]:
    """Running (not zombie) processes whose environment carries this test's marker."""
    return [(p.pid, " ".join(p.cmdline())) for p in with_env(MARKER, marker)]


port_open = processes.port_open


@pytest.fixture
def marker() -> str:
    return uuid.uuid4().hex


class Running:
    """A command started in the background, its stderr read line by line as it comes."""

    def __init__(self, *args: str, env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(
            [CLI, *args],
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.stdout = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, text: str, timeout: float = 120) -> str:
        """The first stderr line containing ``text``; fails if the command ends first."""
        for line in self.lines:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"the command ended before printing {text!r}:\n{''.join(self.lines)}"
                )
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {timeout}s:\n{''.join(self.lines)}")

    def wait(self, timeout: float = 120) -> int:
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()
        code = self.process.wait(timeout)
        self._reader.join(10)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def background() -> Iterator[Any]:
    """Start commands in the background; any still running at the end is killed."""
    yield from made_then_undone(Running, Running.kill)


@pytest.fixture
def make_bucket(stack: Any) -> Any:
    """Create a uniquely named bucket on the GCS emulator with the given settings."""

    def make(*, lifecycle: list[dict[str, Any]] | None = None, uniform: bool = True) -> str:
        name = f"doctor-{uuid.uuid4().hex[:12]}"
        host = stack.local_stack.gcs_host
        services.create_bucket(host, name)
        body = {
            "lifecycle": {"rule": lifecycle or []},
            "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": uniform}},
        }
        request = urllib.request.Request(
            f"{host}/storage/v1/b/{name}",
            data=json.dumps(body).encode(),
            method="PATCH",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        return name

    return make
