"""``celery-gcs demo``: the whole stack on one machine, a sample workload, and what it cost.

Starts the GCS emulator, the Firestore emulator and Redis (or, with
``--use-env``, uses the ones a ``celery-gcs dev up`` left running), a counting
proxy in front of each emulator, and a real ``celery worker -P prefork`` that
loads ``celery_gcs.local.demo_tasks``. Then it runs a group, a chain and a chord
(1,000 parts by default), shows their progress, and ends with a summary whose
every number is counted, not assumed:

* tasks run and callbacks fired: the run's record in Redis, written by the
  worker after each result is stored (see ``demo_tasks``);
* results stored: the objects listed under the run's prefix in the bucket;
* chord documents: the documents left open in the run's Firestore collection (an ended
  chord's own stays, marked done, until its TTL);
* GCS and Firestore requests: the proxies' counts.

Ctrl-C or SIGTERM at any point stops everything the demo started: each
process is spawned with the signals held until it is recorded, and the first
signal unwinds into one cleanup that later signals cannot interrupt.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import conventions
from ..local import demo_tasks, processes, services
from ..local.processes import free_port
from ..local.proxy import Proxy
from ..local.worker import WorkerFailed, WorkerProcess, celery_worker_argv
from ..telemetry import names as metric_names
from .options import positive, seconds

#: Exit codes, besides 0.
EXIT_FAILED = 1
EXIT_PREREQUISITES = 2

E_WORKER_EXITED = "the worker exited with {code} while the workload ran; its log: {log}"
E_TIMEOUT = "the workload did not finish within {timeout:.0f}s (done: {done}); worker log: {log}"
E_USE_ENV = (
    "--use-env needs {missing} in the environment; start the local stack with "
    'eval "$(celery-gcs dev up)"'
)

#: Names of the services, as the summary and the log lines show them.
LABELS = {"gcs": "GCS emulator", "firestore": "Firestore emulator", "redis": "Redis"}


class DemoError(RuntimeError):
    """The demo could not run its workload to the end."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; everything started is being stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True, kw_only=True)
class Workload:
    """The sample workload: sizes of the group, the chain and the chord."""

    group: int = 100
    chain: int = 10
    chord: int = 1000

    def expected_runs(self) -> dict[str, int]:
        """How many times each task must run, by task name."""
        return {
            demo_tasks.add.name: self.group,
            demo_tasks.inc.name: self.chain,
            demo_tasks.square.name: self.chord,
            demo_tasks.total.name: 1,
        }

    def describe(self) -> str:
        return (
            f"a group of {self.group:,} adds, a chain of {self.chain:,} increments, "
            f"a chord of {self.chord:,} squares with a summing callback"
        )


@dataclass(frozen=True)
class Endpoints:
    """Where the services listen, directly (the proxies go in front)."""

    project: str
    bucket: str
    gcs_host: str  # http://127.0.0.1:PORT
    firestore_host: str  # 127.0.0.1:PORT
    redis_url: str

    @classmethod
    def from_stack(cls, stack: services.LocalStack) -> Endpoints:
        return cls(
            stack.project, stack.bucket, stack.gcs_host, stack.firestore_host, stack.redis_url
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Endpoints:
        names = ("STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "CELERY_BROKER_URL")
        missing = [name for name in names if not env.get(name)]
        if missing:
            raise DemoError(E_USE_ENV.format(missing=", ".join(missing)))
        backend = env.get("CELERY_RESULT_BACKEND", "")
        bucket = urllib.parse.urlsplit(backend).netloc or services.BUCKET
        gcs_host = env["STORAGE_EMULATOR_HOST"].rstrip("/")
        if "://" not in gcs_host:
            gcs_host = f"http://{gcs_host}"  # the client accepts a bare host:port too
        return cls(
            project=env.get("GOOGLE_CLOUD_PROJECT") or services.PROJECT,
            bucket=bucket,
            gcs_host=gcs_host,
            firestore_host=env["FIRESTORE_EMULATOR_HOST"],
            redis_url=env["CELERY_BROKER_URL"],
        )


@dataclass
class Summary:
    """What the demo did, counted; ``ok`` when every result was right."""

    run: str
    workload: dict[str, int]
    bucket: str
    prefix: str
    firestore_collection: str
    tasks_expected: int
    tasks_run: int
    tasks_run_by_name: dict[str, int]
    results_stored: int
    results_by_kind: dict[str, int]
    chord_documents: int
    callbacks_fired: int
    gcs_requests: int
    gcs_requests_by_kind: dict[str, int]
    firestore_requests: int
    firestore_requests_by_method: dict[str, int]
    results_correct: dict[str, bool]
    seconds: dict[str, float]
    services: dict[str, int] = field(default_factory=dict)
    #: Where the worker served its metrics, and a few of them as scraped at the end.
    metrics_url: str = ""
    worker_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            all(self.results_correct.values())
            and self.tasks_run == self.tasks_expected
            and self.callbacks_fired == 1
        )

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


# -- signals ------------------------------------------------------------------


class _Signals:
    """The first SIGINT/SIGTERM raises Interrupted; later ones, and any during cleanup, wait."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.cleaning_up = False

    def handle(self, signum: int, _frame: Any) -> None:
        first = self.received is None
        self.received = self.received or signum
        if first and not self.cleaning_up:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {
            signum: signal.signal(signum, self.handle) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


# -- the run ------------------------------------------------------------------------


@dataclass
class Options:
    workload: Workload = field(default_factory=Workload)
    concurrency: int = 2
    use_env: bool = False
    json_path: Path | None = None
    timeout: float = 600.0


class Demo:
    """One run: start, run the workload, count, stop. Cleanups run last-in, first-out."""

    def __init__(self, options: Options, *, out: Console, err: Console) -> None:
        self.options = options
        self.out = out
        self.err = err
        self.run_id = uuid.uuid4().hex[:8]
        self.prefix = f"demo-{self.run_id}"
        # A stack of its own gets the default collection; a shared one, the run's own.
        self.collection = (
            f"demo-{self.run_id}" if options.use_env else conventions.FIRESTORE_COLLECTION
        )
        self.queue = f"{demo_tasks.DEFAULT_QUEUE}-{self.run_id}"
        self.workdir = Path(tempfile.mkdtemp(prefix="celery-gcs-demo-"))
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}
        self.services: dict[str, int] = {}
        self._cleanups: list[tuple[str, Callable[[], None]]] = []

    # -- cleanup --------------------------------------------------------------

    def on_exit(self, what: str, cleanup: Callable[[], None]) -> None:
        self._cleanups.append((what, cleanup))

    def stop_everything(self) -> None:
        while self._cleanups:
            what, cleanup = self._cleanups.pop()
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 (keep stopping the rest)
                with contextlib.suppress(OSError):
                    self.err.print(f"[yellow]could not stop {what}: {escape(str(exc))}[/]")

    # -- steps -----------------------------------------------------------------

    def start_services(self) -> Endpoints:
        if self.options.use_env:
            endpoints = Endpoints.from_env(os.environ)
            services.create_bucket(endpoints.gcs_host, endpoints.bucket)
            self.err.print(f"Using the running local stack: GCS {endpoints.gcs_host}, "
                           f"Firestore {endpoints.firestore_host}, broker {endpoints.redis_url}")  # fmt: skip
            return endpoints
        stack = services.LocalStack(self.workdir / "stack")
        self.on_exit("the local stack", lambda: _stop_stack(stack))
        for name in ("gcs", "firestore", "redis"):
            self.err.print(f"Starting {LABELS[name]}...")
            stack.start((name,))
            service = stack.services[name]
            assert service.process is not None
            self.services[name] = service.port
            pid = service.process.pid
            self.err.print(f"  {LABELS[name]} listening on 127.0.0.1:{service.port} (pid {pid})")
        services.configure_bucket(stack.gcs_host, stack.bucket)
        return Endpoints.from_stack(stack)

    def start_proxies(self, endpoints: Endpoints) -> tuple[Proxy, Proxy]:
        gcs_port = int(endpoints.gcs_host.rsplit(":", 1)[1])
        firestore_port = int(endpoints.firestore_host.rsplit(":", 1)[1])
        gcs = Proxy(gcs_port, "http1")
        self.on_exit("the GCS proxy", gcs.stop)
        gcs.start()
        firestore = Proxy(firestore_port, "grpc")
        self.on_exit("the Firestore proxy", firestore.stop)
        firestore.start()
        self.err.print(
            f"  counting proxies: GCS on 127.0.0.1:{gcs.port}, Firestore on 127.0.0.1:{firestore.port}"
        )
        return gcs, firestore

    def app_env(self, endpoints: Endpoints, gcs: Proxy, firestore: Proxy) -> dict[str, str]:
        return {
            "GOOGLE_CLOUD_PROJECT": endpoints.project,
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs.port}",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{firestore.port}",
            "CELERY_BROKER_URL": endpoints.redis_url,
            "CELERY_RESULT_BACKEND": conventions.backend_url(
                endpoints.bucket, self.prefix, firestore_collection=self.collection
            ),
            "CELERY_GCS_DEMO_RUN": self.run_id,
            "CELERY_GCS_DEMO_QUEUE": self.queue,
        }

    def start_worker(self, env: Mapping[str, str]) -> WorkerProcess:
        concurrency = self.options.concurrency
        self.err.print(
            f"Starting a worker: celery -A celery_gcs.local.demo_tasks worker -P prefork -c {concurrency}..."
        )
        argv = celery_worker_argv(
            demo_tasks.__name__, name=f"demo-{self.run_id}@%h", concurrency=concurrency
        )
        port = free_port()
        metrics = {metric_names.PORT_ENV: str(port), metric_names.ADDRESS_ENV: "127.0.0.1"}
        worker = WorkerProcess(
            [*argv, f"--include={metric_names.MODULE}"],
            env={**os.environ, **env, **metrics},
            log_path=self.workdir / "worker.log",
        )
        self.on_exit("the worker", worker.stop)
        worker.start()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self.err.print(f"  worker ready (pid {worker.pid}); its metrics: {self.metrics_url}")
        return worker

    def run_workload(self, app: Any, worker: WorkerProcess, record: _Record) -> dict[str, bool]:
        from celery import chain, chord, group

        workload = self.options.workload
        expected = workload.expected_runs()
        self.err.print(f"Running {workload.describe()}.")
        labels = {
            demo_tasks.add.name: "group: add",
            demo_tasks.inc.name: "chain: inc",
            demo_tasks.square.name: "chord: square",
            demo_tasks.total.name: "chord callback",
        }
        columns = (
            TextColumn("{task.description:<15}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        started = time.monotonic()
        deadline = started + self.options.timeout
        with Progress(*columns, console=self.err) as progress:
            bars = {
                name: progress.add_task(labels[name], total=count)
                for name, count in expected.items()
            }
            grouped = group(
                app.signature(demo_tasks.add.name, (i, i)) for i in range(workload.group)
            ).apply_async()
            chained = chain(
                app.signature(demo_tasks.inc.name, (0,)),
                *(app.signature(demo_tasks.inc.name) for _ in range(workload.chain - 1)),
            ).apply_async()
            chorded = chord(
                (app.signature(demo_tasks.square.name, (i,)) for i in range(workload.chord)),
                app.signature(demo_tasks.total.name),
            ).apply_async()
            progress.console.print(f"  workload submitted to queue {self.queue}")
            while True:
                done = record.ran()
                for name, bar in bars.items():
                    progress.update(bar, completed=done.get(name, 0))
                if all(done.get(name, 0) >= count for name, count in expected.items()):
                    break
                code = worker.poll()
                if code is not None:
                    raise DemoError(E_WORKER_EXITED.format(code=code, log=worker.log_path))
                if time.monotonic() > deadline:
                    raise DemoError(
                        E_TIMEOUT.format(
                            timeout=self.options.timeout, done=done, log=worker.log_path
                        )
                    )
                time.sleep(0.2)
        # Read every result back through the backend, as an application would.
        correct = {
            "group": grouped.get(timeout=120) == [2 * i for i in range(workload.group)],
            "chain": chained.get(timeout=120) == workload.chain,
            "chord": chorded.get(timeout=120) == sum(i * i for i in range(workload.chord)),
        }
        self.seconds["workload"] = round(time.monotonic() - started, 2)
        return correct

    def summarize(
        self,
        endpoints: Endpoints,
        gcs: Proxy,
        firestore: Proxy,
        record: _Record,
        correct: dict[str, bool],
    ) -> Summary:
        # The proxies' counts first: the counting below goes through them too.
        gcs_counts, firestore_counts = gcs.snapshot(), firestore.snapshot()
        objects = _count_objects(endpoints, self.prefix)
        documents = _count_documents(endpoints, self.collection)
        ran = record.ran()
        expected = self.options.workload.expected_runs()
        self.seconds["total"] = round(time.monotonic() - self.started, 2)
        return Summary(
            run=self.run_id,
            workload=asdict(self.options.workload),
            bucket=endpoints.bucket,
            prefix=self.prefix,
            firestore_collection=self.collection,
            tasks_expected=sum(expected.values()),
            tasks_run=sum(ran.values()),
            tasks_run_by_name=ran,
            results_stored=sum(objects.values()),
            results_by_kind=objects,
            chord_documents=documents,
            callbacks_fired=record.callbacks(),
            gcs_requests=sum(gcs_counts.values()),
            gcs_requests_by_kind=dict(sorted(gcs_counts.items())),
            firestore_requests=sum(firestore_counts.values()),
            firestore_requests_by_method=dict(sorted(firestore_counts.items())),
            results_correct=correct,
            seconds=dict(self.seconds),
            services=dict(self.services),
            metrics_url=self.metrics_url,
            worker_metrics=scrape_totals(self.metrics_url),
        )

    def run(self) -> Summary:
        self.err.print(
            f"celery-gcs demo, run {self.run_id}: results under {self.prefix}/, "
            f"chord documents in Firestore collection {self.collection!r}"
        )
        endpoints = self.start_services()
        gcs, firestore = self.start_proxies(endpoints)
        env = self.app_env(endpoints, gcs, firestore)
        # This process reads results as a client would, through the proxies.
        os.environ.update(env)
        worker = self.start_worker(env)
        self.seconds["startup"] = round(time.monotonic() - self.started, 2)
        app = demo_tasks.create_app(
            env, main=f"celery_gcs_demo_client_{self.run_id}", set_as_current=False
        )
        self.on_exit("the client app", app.close)
        record = _Record(endpoints.redis_url, self.run_id)
        self.on_exit("the Redis connection", record.close)
        if self.options.use_env:
            # A shared broker keeps no messages of an interrupted run.
            self.on_exit("the run's queue", lambda: record.drop_queue(self.queue))
        correct = self.run_workload(app, worker, record)
        return self.summarize(endpoints, gcs, firestore, record, correct)


class _Record:
    """The run's record in Redis (see ``demo_tasks``), read by the demo."""

    def __init__(self, url: str, run: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url)
        self._ran, self._callbacks = demo_tasks.record_keys(run)

    def ran(self) -> dict[str, int]:
        return {
            name.decode(): int(count) for name, count in self._client.hgetall(self._ran).items()
        }

    def callbacks(self) -> int:
        return int(self._client.get(self._callbacks) or 0)

    def drop_queue(self, queue: str) -> None:
        self._client.delete(queue)

    def close(self) -> None:
        self._client.close()


def _stop_stack(stack: services.LocalStack) -> None:
    stack.stop()
    # A service whose leader has exited may have left the rest of its group.
    for service in stack.services.values():
        if service.process is not None:
            processes.stop_group(service.process.pid, timeout=5)


def _count_objects(endpoints: Endpoints, prefix: str) -> dict[str, int]:
    """Objects under the run's prefix, by what they hold."""
    from ..settings import parse
    from ..stores.result_store import ResultStore

    kinds = {
        conventions.TASK_KEY_PREFIX: "task results",
        conventions.GROUP_KEY_PREFIX: "group results",
        conventions.CHORD_KEY_PREFIX: "chord state",
    }
    counts = dict.fromkeys([*kinds.values(), "other"], 0)
    store = ResultStore(parse(conventions.backend_url(endpoints.bucket, prefix, gcs_project=endpoints.project), {}))
    try:
        for listed in store.list():
            kind = next((label for start, label in kinds.items() if listed.name.startswith(start)), "other")
            counts[kind] += 1
    finally:
        store.close()
    return counts


def _count_documents(endpoints: Endpoints, collection: str) -> int:
    """Chord documents left open in the run's Firestore collection, and their parts and counters.

    An ended chord's own document stays, marked done, until its TTL: it is not counted.
    """
    from ..settings import parse
    from ..stores.chord_store import ChordStore

    url = conventions.backend_url(endpoints.bucket, gcs_project=endpoints.project, firestore_collection=collection)
    store = ChordStore(parse(url, {}))
    try:
        return store.left_open()
    finally:
        store.close()


# -- output ---------------------------------------------------------------------


#: What the summary shows of the worker's metrics, summed over their labels.
SHOWN_METRICS = (
    metric_names.TASKS_SUCCEEDED, metric_names.TASKS_FAILED, metric_names.CHORD_PARTS_COUNTED,
    metric_names.CHORD_CALLBACKS_PUBLISHED, metric_names.BACKEND_REQUESTS, metric_names.CHORDS_OPEN,
)  # fmt: skip


def scrape_totals(url: str) -> dict[str, float]:
    """A few of the worker's metrics, each summed over its labels (empty if it cannot be read)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    totals = {str(metric): 0.0 for metric in SHOWN_METRICS}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals


def render(summary: Summary, console: Console) -> None:
    table = Table(
        title=f"celery-gcs demo, run {summary.run}", show_header=True, header_style="bold"
    )
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("details")
    kinds = ", ".join(
        f"{count:,} {kind}" for kind, count in summary.results_by_kind.items() if count
    )
    gcs_kinds = ", ".join(
        f"{kind} {count:,}" for kind, count in summary.gcs_requests_by_kind.items()
    )
    fs_methods = ", ".join(
        f"{m.removeprefix('firestore.')} {c:,}"
        for m, c in summary.firestore_requests_by_method.items()
    )
    checks = ", ".join(
        f"{name} {'ok' if ok else 'WRONG'}" for name, ok in summary.results_correct.items()
    )
    rows = [
        ("Tasks run", summary.tasks_run, f"expected {summary.tasks_expected:,}"),
        (
            "Results stored",
            summary.results_stored,
            f"objects in gs://{summary.bucket}/{summary.prefix}/: {kinds}",
        ),
        (
            "Chord documents",
            summary.chord_documents,
            f"left open in Firestore collection {summary.firestore_collection!r}",
        ),
        (
            "Callbacks fired",
            summary.callbacks_fired,
            "the chord's callback, counted each time it ran",
        ),
        ("GCS requests", summary.gcs_requests, gcs_kinds or "none"),
        (
            "Firestore requests",
            summary.firestore_requests,
            fs_methods or "none (Celery's chord_unlock polling)",
        ),
    ]
    for label, count, details in rows:
        table.add_row(label, f"{count:,}", details)
    seconds = summary.seconds
    table.add_row(
        "Time taken",
        f"{seconds.get('total', 0):.1f}s",
        f"start-up {seconds.get('startup', 0):.1f}s, workload {seconds.get('workload', 0):.1f}s",
    )
    if summary.worker_metrics:
        shown = ", ".join(f"{name} {value:,.0f}" for name, value in summary.worker_metrics.items())
        table.add_row("Worker metrics", "", f"{shown} (from {summary.metrics_url})")
    table.add_row("Results", "ok" if summary.ok else "FAILED", checks)
    console.print(table)


def _finish(demo: Demo | None, err: Console, *, keep_logs: bool) -> None:
    if demo is None:
        return
    demo.stop_everything()
    if not keep_logs:
        shutil.rmtree(demo.workdir, ignore_errors=True)
    with contextlib.suppress(OSError):  # stderr may be a closed pipe by now
        if keep_logs:
            err.print(f"Logs kept in {demo.workdir}")
        err.print("Stopped everything the demo started.")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-gcs demo",
        description="Start the GCS and Firestore emulators, Redis and a real prefork worker, run a group, "
        "a chain and a chord, and summarise what it took. Ctrl-C stops everything it started.",
    )
    parser.add_argument("--chord-size", type=positive, default=1000, help="parts in the chord (default 1000)")
    parser.add_argument("--group-size", type=positive, default=100, help="tasks in the group (default 100)")
    parser.add_argument("--chain-length", type=positive, default=10, help="tasks in the chain (default 10)")
    parser.add_argument("--concurrency", type=positive, default=2, help="worker pool processes (default 2)")
    parser.add_argument(
        "--timeout", type=seconds, default=600.0, help="seconds the workload may take (default 600)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the summary as JSON to PATH")
    parser.add_argument(
        "--use-env",
        action="store_true",
        help="use the emulators and Redis named by STORAGE_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST and "
        'CELERY_BROKER_URL (eval "$(celery-gcs dev up)") instead of starting them',
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    workload = Workload(group=args.group_size, chain=args.chain_length, chord=args.chord_size)
    return run(
        Options(
            workload=workload,
            concurrency=args.concurrency,
            use_env=args.use_env,
            json_path=args.json,
            timeout=args.timeout,
        )
    )


def run(options: Options, *, out: Console | None = None, err: Console | None = None) -> int:
    out = out or Console()
    err = err or Console(stderr=True, soft_wrap=True)
    if not options.use_env:
        missing = services.missing_prerequisites()
        if missing:
            for problem in missing:
                err.print(
                    f"[red]missing prerequisite:[/] {problem}", highlight=False, soft_wrap=True
                )
            return EXIT_PREREQUISITES
    signals = _Signals()
    demo: Demo | None = None
    failed = True
    with signals.installed():
        try:
            try:
                demo = Demo(options, out=out, err=err)
                summary = demo.run()
                failed = not summary.ok
                render(summary, out)
                if options.json_path:
                    options.json_path.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
            except (
                DemoError,
                WorkerFailed,
                services.ServiceFailed,
                services.PrerequisiteMissing,
            ) as exc:
                err.print(f"[red]demo failed:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            except Exception:  # noqa: BLE001 (shown, then everything is stopped)
                err.print_exception()
                err.print("[red]demo failed[/] (the traceback above)")
        except Interrupted as exc:
            err.print(f"\n[yellow]{exc}: stopping everything the demo started...[/]")
        finally:
            while True:  # a signal before the flag is set is caught here, once
                try:
                    signals.cleaning_up = True
                    _finish(demo, err, keep_logs=failed and signals.received is None)
                    break
                except Interrupted:
                    continue
    if signals.received is not None:
        return 128 + signals.received
    return EXIT_FAILED if failed else 0
