"""`celery worker -P prefork` subprocesses running ``bench.tasks``, each in its own process group."""

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


class Worker:
    """One worker consuming one queue, for one backend."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        backend_url: str,
        conf: dict[str, Any],
        concurrency: int,
        log_path: Path,
    ) -> None:
        self.name = f"bench{uuid.uuid4().hex[:6]}@localhost"
        self.log_path = log_path
        self.argv = [
            sys.executable, "-m", "celery", "-A", "bench.tasks", "worker",
            "-P", "prefork", "-c", str(concurrency), "-l", "WARNING", "-n", self.name,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.env = {
            **os.environ,
            **env,
            "PYTHONPATH": str(ROOT),
            "CELERY_RESULT_BACKEND": backend_url,
            "CELERY_BENCH_CONF": json.dumps(conf),
            "CELERY_BENCH_READY": str(log_path.with_suffix(".ready")),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 120.0) -> Worker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._ready_file().unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.process.returncode}:\n{self.log()[-4000:]}"
                )
            if len(self.children()) >= 1 and self._consuming():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log()[-4000:]}")

    def _consuming(self) -> bool:
        # At -l WARNING the "ready." line is not logged: bench.tasks writes a file.
        return self._ready_file().exists()

    def _ready_file(self) -> Path:
        return self.log_path.with_suffix(".ready")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def children(self) -> list[int]:
        """PIDs of the pool's processes."""
        if self.process is None:
            return []
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            pass
        stop_group(self.process.pid, timeout=5, reap=self.process.poll)
        self.process.wait(10)
        self._ready_file().unlink(missing_ok=True)
