"""Worker metrics with prometheus-client: importing this module in a worker turns them on.

::

    celery -A proj worker --include=celery_gcs.telemetry.metrics   # the worker image does this
    # or app.conf.include = ["celery_gcs.telemetry.metrics"]

The worker's main process serves ``GET /metrics`` on ``$CELERY_GCS_METRICS_PORT``
(default 9808) at ``$CELERY_GCS_METRICS_ADDRESS`` (default all interfaces) from
``worker_init`` on. Every process counts into prometheus-client's multiprocess
files, so prefork's children, threads and greenlets all count, and the main
process sums them on each scrape. The directory is one made for this worker
run (under ``$PROMETHEUS_MULTIPROC_DIR`` if that is set), so a restart never
adds a previous run's files; it is removed when the worker exits.

What is counted: Celery's task signals (received, started, succeeded,
failed, retried, run time) and what the runtime reports through
``celery_gcs.observe`` (calls to GCS and Firestore, chord events). With a
celery-gcs result backend, the main process also serves the open chords,
read from Firestore at each scrape (``OpenChords``: two reads; under prefork
in a spawned process, as gRPC cannot be forked). The names are
``celery_gcs.telemetry.names``'.
"""

from __future__ import annotations

import atexit
import glob
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from .. import observe
from ..errors import ConfigurationError
from ..install import require_extra
from . import names

require_extra("metrics", ("prometheus_client",), __name__)

E_IMPORTED_BEFORE = (
    "prometheus_client was imported before celery_gcs.telemetry.metrics, without "
    f"{names.MULTIPROC_ENV} set: the pool's processes would count where the scrape cannot see. "
    f"Set {names.MULTIPROC_ENV} to an empty directory, or load celery_gcs.telemetry.metrics first"
)
E_PORT = f"{names.PORT_ENV}={{value!r}} is not a port number from 1 to 65535; unset it for {names.DEFAULT_PORT}"
E_LISTEN = f"worker metrics cannot listen on {{address}}:{{port}} ({{reason}}); set {names.PORT_ENV} to a free port"

log = logging.getLogger(__name__)


def _own_multiprocess_dir() -> None:
    """A fresh directory for this worker run's metric files, before prometheus-client reads the variable."""
    given = os.environ.get(names.MULTIPROC_ENV)
    if "prometheus_client" in sys.modules:
        if not given:
            raise ConfigurationError(E_IMPORTED_BEFORE)
        return  # the app's own choice, already in use
    path = tempfile.mkdtemp(prefix="celery-gcs-metrics-", dir=given or None)
    os.environ[names.MULTIPROC_ENV] = path
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(path, ignore_errors=True))


_own_multiprocess_dir()

from celery import signals
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

from .open_chords import OpenChords

_TYPES = {"counter": Counter, "histogram": Histogram}
_BACKEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _declare(metric: names.Metric, **options: Any) -> Any:
    return _TYPES[metric.type](metric.name, metric.help, metric.labels, **options)


received = _declare(names.TASKS_RECEIVED)
started = _declare(names.TASKS_STARTED)
succeeded = _declare(names.TASKS_SUCCEEDED)
failed = _declare(names.TASKS_FAILED)
retried = _declare(names.TASKS_RETRIED)
runtime = _declare(names.TASK_RUNTIME)
requests = _declare(names.BACKEND_REQUESTS)
latency = _declare(names.BACKEND_LATENCY, buckets=_BACKEND_BUCKETS)
errors = _declare(names.BACKEND_ERRORS)
_claims = _declare(names.CHORD_CLAIMS)
_events = {  # only the claims counter has labels: the others are declared here, once each
    event: _claims.labels(**labels) if labels else _declare(metric)
    for event, (metric, labels) in names.EVENT_METRICS.items()
}


@dataclass(frozen=True)
class Listen:
    """Where the worker serves its metrics, from the environment."""

    address: str
    port: int

    @classmethod
    def from_env(cls, environ: Any = None) -> Listen:
        environ = os.environ if environ is None else environ
        raw = environ.get(names.PORT_ENV) or str(names.DEFAULT_PORT)
        if not raw.isdigit() or not 1 <= int(raw) <= 65535:
            raise ConfigurationError(E_PORT.format(value=raw))
        return cls(environ.get(names.ADDRESS_ENV) or "0.0.0.0", int(raw))


class BackendObserver:
    """Counts and times what the stores and the chord coordinator report (``celery_gcs.observe``)."""

    def start(self, kind: str) -> None:
        return None

    def end(self, token: None, kind: str, outcome: str, seconds: float, error: BaseException | None) -> None:
        if kind.startswith("chord."):
            return  # a step: a span in traces, not a request
        requests.labels(kind, outcome).inc()
        latency.labels(kind).observe(seconds)
        if outcome == observe.ERROR and error is not None:
            errors.labels(kind, type(error).__name__).inc()

    def event(self, name: str) -> None:
        counter = _events.get(name)
        if counter is not None:
            counter.inc()


# -- Celery's task signals -------------------------------------------------------------

#: When each run started, by task id and retry: a retry may start before the run that asked for it ends.
_started_at: dict[tuple[str, int], float] = {}


def _run(task_id: str, task: Any) -> tuple[str, int]:
    return task_id, getattr(task.request, "retries", 0) or 0


@signals.task_received.connect(weak=False)
def _received(sender: Any = None, request: Any = None, **_: Any) -> None:
    received.labels(getattr(request, "name", None) or "unknown").inc()


@signals.task_prerun.connect(weak=False)
def _prerun(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
    started.labels(task.name).inc()
    if task_id:
        _started_at[_run(task_id, task)] = time.perf_counter()


@signals.task_postrun.connect(weak=False)
def _postrun(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
    began = _started_at.pop(_run(task_id, task), None) if task_id else None
    if began is not None:
        runtime.labels(task.name).observe(time.perf_counter() - began)


@signals.task_success.connect(weak=False)
def _success(sender: Any = None, **_: Any) -> None:
    succeeded.labels(sender.name).inc()


@signals.task_failure.connect(weak=False)
def _failure(sender: Any = None, **_: Any) -> None:
    failed.labels(getattr(sender, "name", None) or "unknown").inc()


@signals.task_retry.connect(weak=False)
def _retry(sender: Any = None, **_: Any) -> None:
    retried.labels(getattr(sender, "name", None) or "unknown").inc()


@signals.worker_init.connect(weak=False)
def _serve(sender: Any = None, **_: Any) -> None:
    """The main process serves every process's counts, summed from the multiprocess files, and the open chords."""
    listen = Listen.from_env()
    registry = CollectorRegistry()
    EveryProcess(registry, os.environ[names.MULTIPROC_ENV])
    open_chords = OpenChords.of(sender.app, forks=_forks(sender)) if sender is not None else None
    if open_chords is not None:
        registry.register(open_chords)
        open_chords.start()
    try:
        start_http_server(listen.port, listen.address, registry=registry)
    except OSError as exc:
        raise ConfigurationError(E_LISTEN.format(address=listen.address, port=listen.port, reason=exc)) from exc
    log.info("metrics: http://%s:%d/metrics", listen.address, listen.port)


class EveryProcess(multiprocess.MultiProcessCollector):
    """Every process's counts, summed from their files as prometheus-client does; files not sized yet left out.

    A process creates its file and sizes it only afterwards: a scrape reading it
    in between failed whole, an HTTP 500 (``struct.error``, prometheus/client_python
    issue 1199), and prefork starts children all the time with
    ``--max-tasks-per-child``. An empty file holds nothing yet.
    """

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        self._pattern = os.path.join(path, "*.db")
        super().__init__(registry, path)

    def collect(self) -> Any:
        return self.merge([file for file in glob.glob(self._pattern) if _sized(file)], accumulate=True)


def _sized(file: str) -> bool:
    try:
        return os.path.getsize(file) > 0
    except FileNotFoundError:  # a dead process's live gauges, removed since the listing
        return False


def _forks(worker: Any) -> bool:
    """Whether ``worker``'s main process forks pool children after start (prefork replaces exited ones)."""
    pool = get_implementation(worker.pool_cls)
    return isinstance(pool, type) and issubclass(pool, PreforkPool)


@signals.worker_process_shutdown.connect(weak=False)
def _process_gone(pid: int | None = None, **_: Any) -> None:
    multiprocess.mark_process_dead(pid or os.getpid())


observer = BackendObserver()
observe.add(observer)
