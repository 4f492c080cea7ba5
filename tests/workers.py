"""Real `celery worker` processes for the end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from celery_gcs.local.services import stop_group

ROOT = Path(__file__).resolve().parent.parent
#: The Celery app module the workers load; tasks live there.
APP = "tests.e2e.tasks"


class Worker:
    """One `celery worker -P prefork` in its own process group."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        backend_url: str,
        conf: dict[str, Any],
        concurrency: int,
        log_path: Path,
        app: str = APP,
    ) -> None:
        self.name = f"w{uuid.uuid4().hex[:6]}@localhost"
        self.log_path = log_path
        self.argv = [
            sys.executable, "-m", "celery", "-A", app, "worker",
            "-P", "prefork", "-c", str(concurrency), "-l", "INFO", "-n", self.name,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.env = {
            **os.environ,
            **env,
            "PYTHONPATH": str(ROOT),
            "CELERY_RESULT_BACKEND": backend_url,
            "CELERY_GCS_TEST_CONF": json.dumps(conf),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            if " ready." in self.log():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def children(self) -> list[int]:
        """PIDs of the pool's child processes."""
        assert self.process is not None
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout
        return [int(pid) for pid in out.split()]

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (a warm shutdown) and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.terminate(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        stop_group(self.process.pid, timeout=5, reap=self.process.poll)
        self.process.wait(10)
