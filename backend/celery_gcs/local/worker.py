"""The one launcher of ``celery worker`` processes: started in a process group, awaited, stopped.

The tests, the benchmarks, ``celery-gcs demo`` and the worker-image tests all
run real workers. They differ only in the command line, the environment and
how readiness shows; starting, waiting, reporting a worker that died
(with the end of its log), a warm shutdown, and stopping what a worker leaves
behind (its pool) are the same, and live here.

Errors::

    WorkerFailed (RuntimeError)
    ├── WorkerExited     the worker exited before it was ready
    └── WorkerNotReady   it was not ready in time (it has been stopped)
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn, Self

from .processes import children, signals_held, spawn, stop_group

#: What Celery logs (at INFO) once the worker consumes: ``celery@host ready.``
READY_LINE = " ready."
#: How many of the log's last lines an error quotes.
LOG_TAIL_LINES = 40

E_EXITED = "the worker exited with {code} before it was ready; the end of its log {path}:\n{tail}"
E_NOT_READY = "the worker was not ready after {timeout:.0f}s; the end of its log {path}:\n{tail}"


class WorkerFailed(RuntimeError):
    """A worker did not start; the message ends with the tail of its log."""


class WorkerExited(WorkerFailed):
    """The worker exited before it was ready."""


class WorkerNotReady(WorkerFailed):
    """The worker was not ready in time."""


def celery_worker_argv(
    app: str,
    *,
    name: str,
    concurrency: int = 2,
    pool: str = "prefork",
    loglevel: str = "INFO",
    python: str = sys.executable,
) -> list[str]:
    """``python -m celery -A APP worker``, quiet about its peers (no gossip, mingle, heartbeat)."""
    return [
        python, "-m", "celery", "-A", app, "worker",
        "-P", pool, "-c", str(concurrency), "-l", loglevel, "-n", name,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


def said_ready(worker: WorkerProcess) -> bool:
    """The default readiness: Celery's ``ready.`` line in the worker's log (needs ``-l INFO``)."""
    return READY_LINE in worker.log()


class WorkerProcess:
    """One worker process leading its own process group, its output in a log file.

    ``env`` is its whole environment (None: this process's); ``ready`` tells
    when it is ready, from the worker (default: ``said_ready``).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready: Callable[[WorkerProcess], bool] = said_ready,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = None if env is None else dict(env)
        self.cwd = cwd
        self.ready = ready
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where this run's output begins in the (appended) log
        self._stopped = False

    @property
    def pid(self) -> int:
        assert self.process is not None, "the worker was not started"
        return self.process.pid

    def start(self, timeout: float = 120.0) -> Self:
        """Start the worker and wait until it is ready; on failure nothing is left running."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with signals_held():
            self.process = spawn(self.argv, env=self.env, cwd=self.cwd, log_path=self.log_path)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    self._fail(WorkerExited, E_EXITED, code=self.process.returncode)
                if self.ready(self):
                    return self
                if time.monotonic() > deadline:
                    self._fail(WorkerNotReady, E_NOT_READY, timeout=timeout)
                time.sleep(0.1)
        except BaseException:
            # Ctrl-C, or a readiness check that raised: the caller never gets
            # this worker to stop, so stop it here (stop() is idempotent).
            self.stop()
            raise

    def _fail(self, error: type[WorkerFailed], template: str, **values: object) -> NoReturn:
        tail = "\n".join(self.log().splitlines()[-LOG_TAIL_LINES:])
        self.stop()
        raise error(template.format(path=self.log_path, tail=tail, **values))

    def log(self) -> str:
        """What the worker has written to its log since it started."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def poll(self) -> int | None:
        """The exit code once the worker has exited, else None."""
        return None if self.process is None else self.process.poll()

    def children(self) -> list[int]:
        """Pids of the worker's direct children: its pool's processes."""
        return [] if self.process is None else children(self.process.pid)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (a warm shutdown) and wait; returns the exit code."""
        assert self.process is not None, "the worker was not started"
        self.process.terminate()
        return self.process.wait(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """A warm shutdown for up to ``timeout`` seconds, then the whole group stopped.

        The pool's processes keep the group alive after the worker exits, so
        the group is stopped whatever the worker's state. Once is enough.
        """
        if self.process is None or self._stopped:
            return
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(timeout)
        stop_group(self.process.pid, timeout=5, reap=self.process.poll)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self._stopped = True
