"""celery_gcs.worker.probe: liveness and readiness from the health files; pure logic, no worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery_gcs.worker.probe import HealthFiles


@pytest.fixture
def files(tmp_path: Path) -> HealthFiles:
    files = HealthFiles(tmp_path / "health")
    files.reset()
    return files


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_not_alive_before_the_first_heartbeat_then_alive(files: HealthFiles) -> None:
    assert "no heartbeat yet" in files.live_problem()
    files.beat()
    assert files.live_problem() is None


def test_a_stale_heartbeat_fails_liveness_and_a_fresh_one_restores_it(files: HealthFiles) -> None:
    files.beat()
    age(files.heartbeat, 61)
    assert "last heartbeat 61s ago (over 60s)" in files.live_problem()
    assert files.live_problem(max_age=120) is None
    files.beat()
    assert files.live_problem() is None


def test_ready_needs_the_ready_file_and_a_fresh_heartbeat(files: HealthFiles) -> None:
    files.beat()
    assert "not consuming" in files.ready_problem()
    files.mark_ready()
    assert files.ready_problem() is None
    age(files.heartbeat, 90)
    assert "last heartbeat" in files.ready_problem()
    files.beat()
    files.mark_not_ready()
    assert "not consuming" in files.ready_problem()


def test_while_stopping_alive_but_not_ready(files: HealthFiles) -> None:
    files.beat()
    files.mark_ready()
    files.mark_stopping()
    age(files.heartbeat, 600)  # the event loop has stopped; running tasks finish
    assert files.live_problem() is None
    assert files.ready_problem() == "the worker is shutting down"


def test_reset_forgets_a_previous_run(files: HealthFiles) -> None:
    files.beat()
    files.mark_ready()
    files.mark_stopping()
    files.reset()
    assert sorted(files.directory.iterdir()) == []


def run_probe(kind: str, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CELERY_GCS_HEALTH_DIR": str(directory)}
    return subprocess.run(
        [sys.executable, "-m", "celery_gcs.worker.probe", kind, *args], env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip


def test_the_command_exits_0_or_1_and_says_why(files: HealthFiles) -> None:
    done = run_probe("ready", files.directory)
    assert (done.returncode, done.stdout.strip()) == (
        1,
        "ready: the worker is not consuming (starting, or reconnecting to the broker)",
    )
    files.beat()
    files.mark_ready()
    assert [run_probe(kind, files.directory).returncode for kind in ("live", "ready")] == [0, 0]
    age(files.heartbeat, 30)
    assert run_probe("live", files.directory, "--max-age", "20").returncode == 1
    assert run_probe("live", files.directory).returncode == 0


def test_the_probe_imports_neither_celery_nor_google_clients(files: HealthFiles) -> None:
    # A probe runs in every pod every few seconds: it must stay cheap.
    code = "import sys, celery_gcs.worker.probe as p; print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'google', 'kombu')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
