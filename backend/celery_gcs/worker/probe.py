"""Kubernetes probes for the worker container, read from files the worker writes.

The worker (through :mod:`celery_gcs.worker.health`) keeps three files in
``$CELERY_GCS_HEALTH_DIR``:

``heartbeat``
    touched every ``$CELERY_GCS_HEARTBEAT_INTERVAL`` seconds by a timer of the
    worker's event loop, so it goes stale when the main process is stuck;
``ready``
    present while the consumer is connected to the broker and consuming;
``stopping``
    created when a shutdown starts: the event loop stops, the heartbeat with
    it, while running tasks finish within the pod's grace period.

A probe reads files and nothing else: no broker round trip, no Celery import,
so probing every pod every few seconds costs the broker nothing. Run it as::

    python -m celery_gcs.worker.probe live  [--max-age SECONDS]
    python -m celery_gcs.worker.probe ready [--max-age SECONDS]

It prints why it fails (the kubelet records that in the pod's events) and
exits 1; 0 when healthy. This module imports only the standard library.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: The directory of the health files; the image sets it to /run/celery-worker.
HEALTH_DIR_ENV = "CELERY_GCS_HEALTH_DIR"
#: Seconds between heartbeats; the worker reads it.
HEARTBEAT_INTERVAL_ENV = "CELERY_GCS_HEARTBEAT_INTERVAL"

DEFAULT_HEALTH_DIR = "/tmp/celery-gcs-worker"
DEFAULT_HEARTBEAT_INTERVAL = 10.0
#: A heartbeat older than this fails the probes: several missed beats, not one late one.
DEFAULT_MAX_AGE = 60.0


@dataclass(frozen=True)
class HealthFiles:
    """The files one worker writes and its probes read."""

    directory: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> HealthFiles:
        environ = os.environ if environ is None else environ  # type: ignore[assignment]
        return cls(Path(environ.get(HEALTH_DIR_ENV) or DEFAULT_HEALTH_DIR))

    @property
    def heartbeat(self) -> Path:
        return self.directory / "heartbeat"

    @property
    def ready(self) -> Path:
        return self.directory / "ready"

    @property
    def stopping(self) -> Path:
        return self.directory / "stopping"

    # The worker's side.

    def reset(self) -> None:
        """Forget a previous run: an emptyDir outlives a container restart."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in (self.heartbeat, self.ready, self.stopping):
            path.unlink(missing_ok=True)

    def beat(self) -> None:
        self.heartbeat.touch()  # sets the time of an existing file too

    def mark_ready(self) -> None:
        self.ready.touch()

    def mark_not_ready(self) -> bool:
        """Remove the ready file; whether there was one."""
        try:
            self.ready.unlink()
        except FileNotFoundError:
            return False
        return True

    def mark_stopping(self) -> None:
        self.stopping.touch()

    # The probes' side.

    def heartbeat_age(self, now: float | None = None) -> float | None:
        """Seconds since the last heartbeat, or None before the first."""
        try:
            mtime = self.heartbeat.stat().st_mtime
        except FileNotFoundError:
            return None
        return max(0.0, (time.time() if now is None else now) - mtime)

    def live_problem(
        self, max_age: float = DEFAULT_MAX_AGE, now: float | None = None
    ) -> str | None:
        """Why the worker is not alive, or None if it is."""
        if self.stopping.exists():
            return None  # shutting down: the grace period bounds it, not this probe
        age = self.heartbeat_age(now)
        if age is None:
            return f"no heartbeat yet in {self.directory} (the worker is starting)"
        if age > max_age:
            return f"last heartbeat {age:.0f}s ago (over {max_age:.0f}s): the worker's event loop is stuck"
        return None

    def ready_problem(
        self, max_age: float = DEFAULT_MAX_AGE, now: float | None = None
    ) -> str | None:
        """Why the worker is not ready to take tasks, or None if it is."""
        if self.stopping.exists():
            return "the worker is shutting down"
        if not self.ready.exists():
            return "the worker is not consuming (starting, or reconnecting to the broker)"
        return self.live_problem(max_age, now)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m celery_gcs.worker.probe",
        description="Liveness and readiness of the Celery worker in this container, from its health files.",
    )
    parser.add_argument("probe", choices=("live", "ready"))
    parser.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE,
        help=f"seconds after which the heartbeat is stale (default {DEFAULT_MAX_AGE:.0f})",
    )
    args = parser.parse_args(argv)
    files = HealthFiles.from_env()
    problem = (
        files.live_problem(args.max_age)
        if args.probe == "live"
        else files.ready_problem(args.max_age)
    )
    if problem:
        print(f"{args.probe}: {problem}")
        return 1
    print(f"{args.probe}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
