"""celery_gcs.local.worker and .processes, with small stand-ins for a worker: readiness, errors, stopping."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from celery_gcs.local import processes
from celery_gcs.local.worker import (
    WorkerExited,
    WorkerNotReady,
    WorkerProcess,
    celery_worker_argv,
)

#: A "worker" that logs, starts a child in its group (its pool), says it is ready, and waits.
POOLED = """
import subprocess, sys, time
print("starting", flush=True)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print("celery@here ready.", flush=True)
time.sleep(300)
"""


def stand_in(code: str, log_path: Path, **kwargs) -> WorkerProcess:
    return WorkerProcess([sys.executable, "-c", code], log_path=log_path, **kwargs)


def test_the_argv_names_app_pool_concurrency_level_and_name() -> None:
    argv = celery_worker_argv("proj.app", name="w@h", concurrency=3, pool="solo", loglevel="DEBUG")
    assert argv[:6] == [sys.executable, "-m", "celery", "-A", "proj.app", "worker"]
    assert argv[6:] == [
        "-P", "solo", "-c", "3", "-l", "DEBUG", "-n", "w@h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


def test_ready_from_its_log_then_stop_ends_the_whole_group(tmp_path: Path) -> None:
    worker = stand_in(POOLED, tmp_path / "w.log").start(timeout=30)
    pool = worker.children()
    assert len(pool) == 1
    assert "ready." in worker.log()
    assert set(processes.group_members(worker.pid)) == {worker.pid, *pool}
    worker.stop()
    assert worker.poll() is not None
    assert not processes.group_running(worker.pid)


def test_an_early_exit_raises_with_the_end_of_the_log(tmp_path: Path) -> None:
    worker = stand_in("import sys; print('no broker here'); sys.exit(3)", tmp_path / "w.log")
    with pytest.raises(WorkerExited) as raised:
        worker.start(timeout=30)
    assert "exited with 3" in str(raised.value)
    assert str(raised.value).endswith("no broker here")


def test_not_ready_in_time_raises_and_leaves_nothing_running(tmp_path: Path) -> None:
    worker = stand_in(POOLED.replace("ready.", "busy."), tmp_path / "w.log")
    with pytest.raises(WorkerNotReady) as raised:
        worker.start(timeout=1)
    assert "not ready after 1s" in str(raised.value)
    assert "celery@here busy." in str(raised.value)
    assert not processes.group_running(worker.pid)


def test_an_interrupted_wait_leaves_nothing_running(tmp_path: Path) -> None:
    """Ctrl-C (or a readiness check that raises) while waiting: the worker is stopped, not orphaned."""

    def interrupted(worker: WorkerProcess) -> bool:
        if worker.children():
            raise KeyboardInterrupt
        return False

    worker = stand_in(POOLED, tmp_path / "w.log", ready=interrupted)
    with pytest.raises(KeyboardInterrupt):
        worker.start(timeout=30)
    assert worker.poll() is not None
    assert not processes.group_running(worker.pid)


def test_a_readiness_predicate_and_a_log_of_this_run_only(tmp_path: Path) -> None:
    log_path = tmp_path / "w.log"
    log_path.write_text("an earlier run: celery@here ready.\n")
    flag = tmp_path / "ready"
    code = f"import pathlib, time; time.sleep(0.5); pathlib.Path({str(flag)!r}).touch(); time.sleep(300)"
    worker = stand_in(code, log_path, ready=lambda _worker: flag.exists()).start(timeout=30)
    assert worker.log() == ""
    assert worker.terminate(timeout=10) == -15  # SIGTERM, not handled by the stand-in
    worker.stop()  # after terminate: the group is already gone, and stopping is quiet


def test_start_time_is_the_kernels_and_none_for_no_process() -> None:
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert processes.start_time(os.getpid()) == int(stat.rsplit(")", 1)[1].split()[19])
    assert processes.start_time(2**22 + 1) is None  # above Linux's largest pid
