"""make conformance's runner: each file's pytest gets Celery's CI environment, and is killed at its bound."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import psutil
import pytest
from celery_gcs.local import services

from tests.conformance.runner import (
    SUITE_PLUGIN_DIR,
    plugin_args,
    run_file,
    running_test,
    suite_env,
)


def stack_on(tmp_path: Path) -> services.LocalStack:
    """A stack whose services are known by port only: suite_env starts nothing."""
    stack = services.LocalStack(tmp_path)
    for name, port in (("gcs", 9001), ("firestore", 9002), ("redis", 9003)):
        stack.services[name] = services.Service(name, [], port)
    return stack


def test_the_session_worker_logs_at_info_as_in_celerys_tox_ini(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without it the plugin's worker logs at "error", and test_trace_log_arguments
    # finds none of the INFO records it looks for.
    monkeypatch.delenv("WORKER_LOGLEVEL", raising=False)
    env = suite_env(stack_on(tmp_path), "gcs://celery-results/conformance/test_tasks")
    assert env["WORKER_LOGLEVEL"] == "INFO"


def test_broker_and_backend_come_from_the_stack_and_no_celery_setting_leaks_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://elsewhere/1")
    env = suite_env(stack_on(tmp_path), "gcs://celery-results/conformance/test_tasks")
    assert env["TEST_BROKER"] == "redis://127.0.0.1:9003/0"
    assert env["TEST_BACKEND"] == "gcs://celery-results/conformance/test_tasks"
    assert env["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:9001"
    assert env["FIRESTORE_EMULATOR_HOST"] == "127.0.0.1:9002"
    assert (env["REDIS_HOST"], env["REDIS_PORT"]) == ("127.0.0.1", "9003")
    assert not [key for key in env if key.startswith("CELERY_")]


def test_only_stock_emulator_runs_empty_the_bucket_before_each_test(tmp_path: Path) -> None:
    assert plugin_args("wrapper") == ["-p", "upstream_races"]
    assert plugin_args("stock") == ["-p", "upstream_races", "-p", "empty_bucket_per_test"]
    env = suite_env(stack_on(tmp_path), "gcs://celery-results/conformance/test_canvas")
    assert env["PYTHONPATH"].split(":")[0] == str(SUITE_PLUGIN_DIR)
    assert (SUITE_PLUGIN_DIR / "empty_bucket_per_test.py").is_file()
    assert (SUITE_PLUGIN_DIR / "upstream_races.py").is_file()


HANGS = """
import os, subprocess, sys, time
from pathlib import Path

def test_quick():
    pass

def test_hangs():
    # A child of pytest's own, as the suite's session worker has its pool.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    Path(os.environ["CHILD_PID_FILE"]).write_text(str(child.pid))
    time.sleep(600)
"""


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_hung_file_is_killed_at_its_bound_with_its_children_and_the_running_test_named(
    tmp_path: Path,
) -> None:
    root = tmp_path / "suite"
    (root / "t" / "integration").mkdir(parents=True)
    (root / "t" / "integration" / "test_hangs.py").write_text(textwrap.dedent(HANGS))
    logs = tmp_path / "logs"
    logs.mkdir()
    child_pid_file = tmp_path / "child.pid"
    env = {"PATH": "/usr/bin:/bin", "CHILD_PID_FILE": str(child_pid_file)}
    started = time.monotonic()
    result = run_file(root, "test_hangs.py", env, bound=15, test_timeout=300, logs=logs, extra=[])
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 60
    assert result.problems == [
        "TIMED OUT after 15s, killed while running t/integration/test_hangs.py::test_hangs"
    ]
    # The file's whole process group is stopped, its pytest's own child included.
    assert gone(int(child_pid_file.read_text()))


def test_the_running_test_is_the_last_one_started_without_an_outcome() -> None:
    output = (
        "t/integration/test_canvas.py::test_chord::test_a PASSED [ 1%]\n"
        "t/integration/test_canvas.py::test_chord::test_b[body is a chain] RERUN [ 2%]\n"
        "t/integration/test_canvas.py::test_chord::test_b[body is a chain] "
    )
    assert (
        running_test(output) == "t/integration/test_canvas.py::test_chord::test_b[body is a chain]"
    )
    assert running_test(output + "PASSED [ 2%]\n") is None
