"""The worker's side of the container probes: a consumer bootstep that keeps the health files.

The image's worker command line loads this module with
``--include=celery_gcs.worker.health``. Importing it connects two signals:

- ``worker_init`` clears the files of a previous run and adds :class:`HealthStep`
  to the app's consumer blueprint;
- ``worker_shutting_down`` (SIGTERM, SIGINT, SIGQUIT) marks the worker as stopping.

:class:`HealthStep` starts after the task consumer, so ``ready`` means
"connected and consuming"; a broker connection loss restarts the consumer,
which stops the step (not ready) and starts it again once reconnected. The
heartbeat is a timer on the consumer's event loop, in the main process, so a
wedged loop shows as a stale heartbeat while tasks run in the pool's children.
:mod:`celery_gcs.worker.probe` reads the files.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import bootsteps, signals

from .probe import DEFAULT_HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL_ENV, HealthFiles

logger = logging.getLogger(__name__)


def heartbeat_interval(environ: Any = None) -> float:
    """Seconds between heartbeats, from ``$CELERY_GCS_HEARTBEAT_INTERVAL``."""
    raw = (os.environ if environ is None else environ).get(HEARTBEAT_INTERVAL_ENV)
    return float(raw) if raw else DEFAULT_HEARTBEAT_INTERVAL


class HealthStep(bootsteps.StartStopStep):
    """Ready while consuming; a heartbeat from the consumer's event-loop timer."""

    label = "health files"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.files = HealthFiles.from_env()
        self.interval = heartbeat_interval()
        self.timer_entry: Any = None

    def start(self, c: Any) -> None:
        self._beat()
        self.files.mark_ready()
        logger.info(
            "health: ready (consuming); heartbeat every %ss in %s",
            self.interval,
            self.files.directory,
        )
        self.timer_entry = c.timer.call_repeatedly(self.interval, self._beat)

    def stop(self, c: Any) -> None:
        if self.files.mark_not_ready():
            logger.info("health: not ready (the consumer stopped)")
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    def shutdown(self, c: Any) -> None:
        self.stop(c)

    def _beat(self) -> None:
        try:
            self.files.beat()
        except OSError as exc:  # the liveness probe reports the stale heartbeat
            logger.warning("cannot write the heartbeat file %s: %s", self.files.heartbeat, exc)


@signals.worker_init.connect
def _install(sender: Any, **_: Any) -> None:
    HealthFiles.from_env().reset()
    sender.app.steps["consumer"].add(HealthStep)


@signals.worker_shutting_down.connect
def _stopping(**_: Any) -> None:
    try:
        HealthFiles.from_env().mark_stopping()
    except OSError as exc:  # in a signal handler: never stand in the way of the shutdown
        logger.warning("cannot write the stopping file: %s", exc)
