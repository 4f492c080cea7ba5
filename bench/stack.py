"""The benchmark's world: emulators, brokers, counting proxies, and one worker per backend.

* the local stack (``celery_gcs.local.services``): the GCS emulator, the Firestore
  emulator, and Redis as the broker;
* a second Redis, for Celery's Redis result backend only;
* the counting proxies (``bench.counting``): the workers reach the
  emulators through one pair, this process through another (a stack made
  with ``counted=False`` leaves them out: everything is timed, nothing counted;
  one made with ``latency`` puts ``bench.latency``'s proxies there instead,
  which hold each answer as long as the service would in production);
* three workers (``celery worker -P prefork -c 2``), one per backend, each
  consuming its own queue. They stay up for the whole run; only the one
  whose backend is being measured has messages, so the others sit idle in
  a blocking read of the broker;
* with ``metrics_twin``, a fourth: celery-gcs again, with the worker metrics
  loaded (``celery_gcs.telemetry.metrics``), for the metrics' cost measured
  side by side (``harness``); the other workers run without them.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery_gcs.local import builtin, processes, services
from celery_gcs.local.worker import WorkerProcess, celery_worker_argv

from . import timeline
from .counting import ChildProxies, ProxySet, Uncounted
from .latency import LatencyProxies

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Backend:
    """One result backend under test."""

    name: str  # celery_gcs, builtin, redis
    label: str
    url: str
    uses_gcs: bool

    @property
    def queue(self) -> str:
        return f"bench.{self.name}"


#: The order backends are listed in, and their labels.
NAMES = ("celery_gcs", "builtin", "redis")
#: celery-gcs's worker again, metrics on: not a backend of the comparisons, only of the metrics' cost.
METRICS_TWIN = "celery_gcs_metrics"
LABELS = {"celery_gcs": "celery-gcs", "builtin": "built-in gs://", "redis": "Redis", METRICS_TWIN: "celery-gcs, metrics on"}


@dataclass
class BenchStack:
    """Everything the workloads need, started and stopped together."""

    workdir: Path
    backends: tuple[str, ...] = NAMES
    concurrency: int = 2
    #: The workers' pool (-P).
    pool: str = "prefork"
    #: Settings added to every app's and worker's configuration (bench.first_task turns gcs_warm_up off and on).
    extra_conf: dict[str, Any] = field(default_factory=dict)
    #: False: no counting proxies; clients reach the emulators directly.
    counted: bool = True
    #: Seconds each answer is held, by kind (bench.latency.MODEL); None: no latency added.
    latency: dict[str, float] | None = None
    #: Also start ``METRICS_TWIN`` (with celery_gcs among the backends).
    metrics_twin: bool = False
    #: Where ``METRICS_TWIN`` serves its metrics.
    metrics_port: int = 0
    run_id: str = field(
        default_factory=lambda: time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    )
    local: services.LocalStack | None = None
    result_redis: services.Service | None = None
    proxies: ProxySet | Uncounted | LatencyProxies | None = None
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    apps: dict[str, Celery] = field(default_factory=dict)
    by_name: dict[str, Backend] = field(default_factory=dict)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> BenchStack:
        """Start everything; whatever started is stopped again if something fails."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.local = services.LocalStack(self.workdir / "stack")
        self.local.start()
        if "redis" in self.backends:
            self.result_redis = services.redis_server(
                processes.free_port(), self.workdir / "result-redis.log"
            )
            self.result_redis.start()
        if self.latency is not None:
            self.proxies = LatencyProxies(
                self.local.services["gcs"].port, self.local.services["firestore"].port, self.latency,
                redis_ports=self._redis_ports(),
            ).start()  # fmt: skip
        elif self.counted:
            self.proxies = ProxySet(
                self.local.services["gcs"].port, self.local.services["firestore"].port
            ).start()
        else:
            self.proxies = Uncounted(self.local.gcs_host, self.local.firestore_host)
        # This process's Google clients go through the client-side proxies.
        os.environ.update(
            {"GOOGLE_CLOUD_PROJECT": self.local.project, **self.proxies.env("client")}
        )
        names = self.backends + ((METRICS_TWIN,) if self.metrics_twin and "celery_gcs" in self.backends else ())
        for name in names:
            self.by_name[name] = self._backend(name)
        for name in names:
            self.start_worker(name)
            self.apps[name] = self._app(self.by_name[name])

    def stop(self) -> None:
        for app in self.apps.values():
            _forget_subscriptions(app)
            app.close()
        for name in self.workers:
            self._stop_worker(name)
        if self.proxies:
            self.proxies.stop()
        if self.result_redis:
            self.result_redis.stop()
        if self.local:
            self.local.stop()

    def _redis_ports(self) -> dict[str, int]:
        """The Redis servers by name: the broker, and Celery's Redis backend if it runs."""
        assert self.local is not None
        ports = {"broker": self.local.services["redis"].port}
        if self.result_redis is not None:
            ports["result-redis"] = self.result_redis.port
        return ports

    def _redis_url(self, name: str) -> str:
        """A Redis server's URL, through its latency proxy in the production-like pass."""
        port = self._redis_ports()[name]
        if isinstance(self.proxies, LatencyProxies):
            return self.proxies.redis_url(name, port)
        return f"redis://127.0.0.1:{port}/0"

    @property
    def timeline_dir(self) -> Path:
        """Where the production-like pass's workers record their calls (``bench.timeline``)."""
        return self.workdir / "timeline"

    @property
    def broker_url(self) -> str:
        return self._redis_url("broker")

    def broker(self) -> redis.Redis:
        # No socket timeout: a BLPOP may wait as long as a capped chord.
        return redis.Redis.from_url(self.broker_url, socket_timeout=None)

    # -- backends, apps and workers ------------------------------------------------------

    def _backend(self, name: str) -> Backend:
        assert self.local is not None
        bucket, prefix = self.local.bucket, f"bench-{self.run_id}/{name}"
        if name in ("celery_gcs", METRICS_TWIN):
            url = f"gcs://{bucket}/{prefix}"
        elif name == "builtin":
            url = builtin.url(bucket, self.local.project, prefix)
        elif name == "redis":
            url = self._redis_url("result-redis")
        else:
            raise ValueError(f"unknown backend {name!r}; known: {', '.join(NAMES)}")
        return Backend(name, LABELS[name], url, uses_gcs=name != "redis")

    def metrics_counted(self) -> float:
        """Tasks ``METRICS_TWIN`` counted as succeeded, scraped from its /metrics (proof they were on)."""
        from celery_gcs.telemetry import names
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        wanted = str(names.TASKS_SUCCEEDED)
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == wanted)

    def _conf(self, backend: Backend) -> dict[str, Any]:
        return {"task_default_queue": backend.queue, **self.extra_conf}

    def _app(self, backend: Backend) -> Celery:
        app = Celery(f"bench-client-{backend.name}", set_as_current=False)
        app.conf.update(
            broker_url=self.broker_url, result_backend=backend.url, **self._conf(backend)
        )
        return app

    def start_worker(self, name: str) -> WorkerProcess:
        """``celery -A bench.tasks worker -l WARNING`` for one backend, consuming its queue.

        At WARNING Celery does not log its ``ready.`` line: ``bench.tasks``
        writes a file instead, once the worker consumes.
        """
        assert self.local is not None and self.proxies is not None
        backend = self.by_name[name]
        log_path = self.workdir / f"worker-{name}-{len(self.workers)}.log"
        ready_file = _ready_file(log_path)
        ready_file.unlink(missing_ok=True)
        argv = celery_worker_argv(
            "bench.tasks",
            name=f"bench{uuid.uuid4().hex[:6]}@localhost",
            concurrency=self.concurrency,
            pool=self.pool,
            loglevel="WARNING",
        )
        env = {
            **os.environ,
            **self.local.env(),
            **self.proxies.env("worker"),
            "CELERY_BROKER_URL": self.broker_url,
            "PYTHONPATH": str(ROOT),
            "CELERY_RESULT_BACKEND": backend.url,
            "CELERY_BENCH_CONF": json.dumps(self._conf(backend)),
            "CELERY_BENCH_READY": str(ready_file),
        }
        if self.latency is not None:
            self.timeline_dir.mkdir(parents=True, exist_ok=True)
            env[timeline.ENV] = str(self.timeline_dir)
        if name == METRICS_TWIN:
            from celery_gcs.telemetry import names

            argv += ["--include", names.MODULE]
            self.metrics_port = self.metrics_port or processes.free_port()
            env.update({names.PORT_ENV: str(self.metrics_port), names.ADDRESS_ENV: "127.0.0.1"})
        worker = WorkerProcess(
            argv,
            env=env,
            cwd=ROOT,
            log_path=log_path,
            # A prefork worker is ready once its children are; other pools have none.
            ready=lambda worker: (self.pool != "prefork" or bool(worker.children())) and ready_file.exists(),
        )
        self.workers[name] = worker.start()
        return worker

    def _stop_worker(self, name: str) -> None:
        worker = self.workers[name]
        worker.stop()
        _ready_file(worker.log_path).unlink(missing_ok=True)

    def restart_worker(self, name: str) -> None:
        """Stop a worker, drop its queue's messages, start a fresh one (after a capped run)."""
        self._stop_worker(name)
        with self.apps[name].connection_for_write() as conn:
            conn.default_channel.queue_purge(self.by_name[name].queue)
        self.start_worker(name)

    def reconfigure(self, **conf: Any) -> None:
        """Add settings to every app and worker: each worker started afresh, each client app built anew."""
        self.extra_conf.update(conf)
        for name in list(self.workers):
            self.restart_worker(name)
            _forget_subscriptions(self.apps[name])
            self.apps[name].close()
            self.apps[name] = self._app(self.by_name[name])

    def measured_processes(self) -> dict[str, int]:
        """The processes whose CPU time (each with its descendants) is measured, by name (see bench.cpu)."""
        assert self.local is not None and self.proxies is not None
        groups = {"client": os.getpid()}
        if isinstance(self.proxies, ChildProxies):
            groups["proxies"] = self.proxies.pid
        for name, service in self.local.services.items():
            assert service.process is not None
            groups[
                {"gcs": "gcs-emulator", "firestore": "firestore-emulator", "redis": "broker"}[name]
            ] = service.process.pid
        if self.result_redis and self.result_redis.process:
            groups["result-redis"] = self.result_redis.process.pid
        for name in self.backends:  # not METRICS_TWIN: idle but for the metrics' own rounds
            groups[f"worker.{name}"] = self.workers[name].pid
        return groups


def _ready_file(log_path: Path) -> Path:
    """Where ``bench.tasks`` announces that the worker logging to ``log_path`` is ready."""
    return log_path.with_suffix(".ready")


def _forget_subscriptions(app: Celery) -> None:
    """Let the Redis backend's results go quietly once its Redis is stopped.

    Each AsyncResult unsubscribes from its channel when garbage collected,
    at interpreter exit too; with the result Redis gone that would retry
    and then print a RuntimeError. Nothing is subscribed after the run.
    """
    consumer = getattr(app._backend, "result_consumer", None)  # None: no backend made yet
    if consumer is not None and hasattr(consumer, "subscribed_to"):
        consumer.stop()
        consumer.subscribed_to.clear()
