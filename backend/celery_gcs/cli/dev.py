"""``celery-gcs dev up|down|status``: the local stack, left running between commands.

``up`` starts the GCS emulator, the Firestore emulator and Redis (see
``celery_gcs.local.services``), each in a process group of its own that outlives the command,
gives the bucket a deployment's lifecycle rules and uniform access, records
what it started in a state file, and prints the ``export`` lines that point an
app at the stack (so ``eval "$(celery-gcs dev up)"`` works; everything else
goes to stderr). Run again, it restarts only the services that died, each on
the port it had, so the others keep their data and a running worker's
environment stays true. ``status`` reads the state file and looks at each
service; ``down`` stops each process group, removes the state file and prints
the ``unset`` lines for ``eval "$(celery-gcs dev down)"``.

The state lives in ``--state-dir``, else ``$CELERY_GCS_DEVSTACK_DIR``, else
the nearest ``.devstack/state.json`` in the working directory or one of its
parents (as git finds its repository), else ``./.devstack`` (``make clean``
removes it; a ``.gitignore`` in it, or in a state directory ``up`` creates, keeps it out of the
user's repository).
``down`` warns about workers still connected to Redis, and leaves the ports it
stopped in ``ports.json``, where the next ``up`` starts again when they are free
(a worker left running reconnects); the data is new, and ``up`` says so.
``--result-backend`` picks what ``CELERY_RESULT_BACKEND`` is: ``gcs://`` on
the emulator (the default), Celery's built-in ``gs://`` backend on it, or the
app's own (unset). A recorded process is only
signalled while it is still the one that was started: its group must exist and
its leader, if alive, must have the start time recorded for it, so a stale
state file never stops a stranger that reused the pid.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..local import builtin, processes
from ..local import services as localstack
from ..telemetry import names as metric_names

STATE_FILE = "state.json"
#: The ports of the last stack `down` stopped, for the next `up` to start on again.
PORTS_FILE = "ports.json"
#: What CELERY_RESULT_BACKEND points at, by --result-backend.
RESULT_BACKENDS = ("gcs", "gs", "app")
STATE_DIR_ENV = "CELERY_GCS_DEVSTACK_DIR"
DEFAULT_STATE_DIR = ".devstack"
#: Order in which services start; they stop in reverse.
SERVICES = ("gcs", "firestore", "redis")
LABELS = {"gcs": "GCS emulator", "firestore": "Firestore emulator", "redis": "Redis"}

#: ``dev status`` exit codes: all up / some service down / no stack recorded.
STATUS_UP, STATUS_DEGRADED, STATUS_NOT_RUNNING = 0, 1, 3
#: ``dev up`` exit codes besides 0.
EXIT_FAILED, EXIT_PREREQUISITES = 1, 2

E_STATE_UNREADABLE = (
    "the state file {path} is unreadable ({reason}); remove it once its services are stopped"
)


@dataclass(frozen=True)
class ServiceRecord:
    """One started process group, as recorded in the state file."""

    pid: int  # also the process group id: each service leads its own group
    port: int
    started: int  # the leader's start time, in clock ticks since boot (processes.start_time)
    log: str


@dataclass(frozen=True)
class State:
    project: str
    bucket: str
    services: dict[str, ServiceRecord]

    def stack(self) -> localstack.LocalStack:
        """A LocalStack describing these services (for its ``env()``); it owns no process."""
        services = {
            name: localstack.Service(LABELS[name], (), record.port)
            for name, record in self.services.items()
        }
        return localstack.LocalStack(
            Path("."), project=self.project, bucket=self.bucket, services=services
        )

    def env(self) -> dict[str, str]:
        return self.stack().env()

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "bucket": self.bucket,
            "services": {k: asdict(v) for k, v in self.services.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        services = {name: ServiceRecord(**record) for name, record in data["services"].items()}
        return cls(project=data["project"], bucket=data["bucket"], services=services)


#: Told on every ``up``: Celery reads these two variables before the app's own settings.
NOTE_ENV_WINS = (
    "Note: while CELERY_RESULT_BACKEND and CELERY_BROKER_URL are exported, Celery uses them instead of "
    "your app's result_backend and broker_url (the environment takes precedence), whatever the app's "
    "scheme: an app on Celery's built-in gs:// backend runs on gcs:// here. To keep the app's own "
    "result_backend (another prefix, gcs_* query settings), use `dev up --result-backend app` (or unset "
    "CELERY_RESULT_BACKEND); to run on the built-in gs:// backend, on the emulators, `--result-backend gs`."
)
NOTE_APP_BACKEND = (
    "Note: CELERY_RESULT_BACKEND is unset (--result-backend app): your app's own result_backend is used; "
    "STORAGE_EMULATOR_HOST points Google's clients at the emulator."
)
NOTE_BUILTIN_BACKEND = (
    "Note: CELERY_RESULT_BACKEND selects Celery's built-in gs:// backend, on the emulators "
    "(celery_gcs.local.builtin: its start-up call to the Firestore Admin API, which the emulator lacks, is "
    "skipped). `celery-gcs results list --backend gs://{bucket}` reads what it stores."
)
NOTE_METRICS = (
    f"Worker metrics: start your worker with --include={metric_names.MODULE} and read them at "
    f"http://127.0.0.1:{metric_names.DEFAULT_PORT}/metrics ({metric_names.PORT_ENV} for another port; "
    "celery-gcs chords list shows the chords in the Firestore emulator)"
)
NOTE_FRESH = (
    "The stack is new: no results, chord documents or queued tasks from before `dev down` are in it."
)
NOTE_SAME_PORTS = (
    "It runs on the ports the last one had, so a worker left running reconnects to it."
)
NOTE_NEW_PORTS = (
    "{names} could not have {their} last port{s} back (taken): export the new addresses again "
    "(eval \"$(celery-gcs dev up)\") and restart your worker."
)
W_CLIENTS = (
    "Warning: {count} still connected to Redis: {who}. Stopped under them, a worker retries its "
    "connection in a loop until the stack is back (`dev up` starts it on the same ports); stop them first."
)


def resolve_state_dir(explicit: Path | None = None, cwd: Path | None = None) -> Path:
    """``explicit``, else $CELERY_GCS_DEVSTACK_DIR, else the nearest recorded stack, else ./.devstack."""
    if explicit is not None:
        return explicit
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    here = (cwd or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / DEFAULT_STATE_DIR / STATE_FILE).is_file():
            return directory / DEFAULT_STATE_DIR
    return here / DEFAULT_STATE_DIR


def exports_for(state: State, result_backend: str) -> tuple[dict[str, str], list[str]]:
    """The variables to export and to unset for ``--result-backend``."""
    env = state.env()
    if result_backend == "gs":
        env["CELERY_RESULT_BACKEND"] = builtin.url(state.bucket, state.project)
    elif result_backend == "app":
        env.pop("CELERY_RESULT_BACKEND", None)
        return env, ["CELERY_RESULT_BACKEND"]
    return env, []


def exported_names() -> list[str]:
    """Every variable ``up`` exports, whichever services run."""
    return sorted(State(localstack.PROJECT, localstack.BUCKET, {
        name: ServiceRecord(pid=0, port=0, started=0, log="") for name in SERVICES
    }).env())  # fmt: skip


def read_state(directory: Path) -> State | None:
    path = directory / STATE_FILE
    try:
        return State.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(E_STATE_UNREADABLE.format(path=path, reason=exc)) from exc


def write_state(directory: Path, state: State) -> None:
    path = directory / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    tmp.replace(path)


# -- processes --------------------------------------------------------------------


def group_alive(record: ServiceRecord) -> bool:
    """True while the recorded process group exists and is still the one we started."""
    leader_started = processes.start_time(record.pid)
    if leader_started is not None and leader_started != record.started:
        return False  # the pid now belongs to someone else
    return processes.group_running(record.pid)


def service_state(record: ServiceRecord) -> str:
    """``up``, ``not answering`` (running, port closed) or ``down``."""
    if not group_alive(record):
        return "down"
    return "up" if processes.port_open(record.port) else "not answering"


# -- commands ---------------------------------------------------------------------


def up(directory: Path, err: Console) -> State:
    """Start what is not running of the stack, each service on its recorded port; return its state."""
    state = read_state(directory)
    kept: dict[str, ServiceRecord] = {}
    ports: dict[str, int] = {}
    if state is not None:
        for name, record in state.services.items():
            current = service_state(record)
            if current == "up":
                kept[name] = record
                continue
            if current == "not answering":
                processes.stop_group(record.pid, timeout=10)
            ports[name] = record.port
            err.print(f"{LABELS.get(name, name)} is {current}; restarting it on port {record.port}.")
        if set(kept) == set(SERVICES):
            err.print(f"The local stack is already running (state in {directory / STATE_FILE}).")
            return state
    make_state_dir(directory)
    project = state.project if state else localstack.PROJECT
    bucket = state.bucket if state else localstack.BUCKET
    last = read_ports(directory) if state is None else {}
    reused = {name: port for name, port in last.items() if name in SERVICES and not processes.port_open(port)}
    ports.update(reused)
    stack = localstack.LocalStack(directory, project=project, bucket=bucket)
    try:
        for name in SERVICES:
            if name not in kept:
                err.print(f"Starting {LABELS[name]}...")
                stack.start((name,), ports=ports)
        if "gcs" in stack.services:
            localstack.configure_bucket(stack.gcs_host, stack.bucket)
        records = dict(kept)
        for name, service in stack.services.items():
            assert service.process is not None
            started = processes.start_time(service.process.pid)
            assert started is not None, f"{service.name} exited right after starting"
            records[name] = ServiceRecord(
                service.process.pid, service.port, started, str(service.log_path)
            )
        state = State(project=project, bucket=bucket, services={n: records[n] for n in SERVICES})
        write_state(directory, state)
    except BaseException:
        stack.stop()
        raise
    # The services run on in their own sessions; the Popen objects just go away.
    err.print(f"Started the local stack (state in {directory / STATE_FILE}).")
    if last:
        moved = [LABELS[name] for name in SERVICES if name in last and name not in reused]
        err.print(NOTE_FRESH, highlight=False)
        if moved:
            many = len(moved) > 1
            err.print(NOTE_NEW_PORTS.format(names=" and ".join(moved), their="their" if many else "its",
                                            s="s" if many else ""), highlight=False)  # fmt: skip
        else:
            err.print(NOTE_SAME_PORTS, highlight=False)
    with contextlib.suppress(FileNotFoundError):
        (directory / PORTS_FILE).unlink()
    return state


def make_state_dir(directory: Path) -> None:
    """Create the state directory; one of the stack's own ignores itself, so it never shows in the user's repository.

    Its own: ``.devstack``, or one ``up`` creates. An existing directory named
    by ``--state-dir`` is the user's: a ``*`` there would hide their files from git.
    """
    ours = directory.name == DEFAULT_STATE_DIR or not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    ignore = directory / ".gitignore"
    if ours and not ignore.exists():
        ignore.write_text("# Written by celery-gcs dev: the local stack's state and logs.\n*\n")


def read_ports(directory: Path) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads((directory / PORTS_FILE).read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def down(directory: Path, err: Console) -> list[str]:
    """Stop every recorded process group and forget them; return the services stopped."""
    state = read_state(directory)
    if state is None:
        err.print(f"No local stack recorded in {directory / STATE_FILE}; nothing to stop.")
        return []
    redis = state.services.get("redis")
    if redis is not None and group_alive(redis):
        clients = localstack.broker_clients(redis.port)
        if clients:
            count = f"{len(clients)} client{'s are' if len(clients) > 1 else ' is'}"
            err.print(W_CLIENTS.format(count=count, who="; ".join(clients)), style="yellow", highlight=False)
    stopped = []
    for name in reversed(list(state.services)):
        record = state.services[name]
        if group_alive(record):
            processes.stop_group(record.pid, timeout=10)
            stopped.append(name)
            err.print(f"Stopped {LABELS.get(name, name)} (process group {record.pid}).")
        else:
            err.print(f"{LABELS.get(name, name)} was not running.")
    ports = {name: record.port for name, record in state.services.items()}
    (directory / PORTS_FILE).write_text(json.dumps(ports) + "\n")
    with contextlib.suppress(FileNotFoundError):
        (directory / STATE_FILE).unlink()
    return stopped


def exports(env: Mapping[str, str]) -> str:
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(env.items()))


def unsets(names: Sequence[str]) -> str:
    return "".join(f"unset {name}\n" for name in names)


def status_table(state: State) -> tuple[Table, bool]:
    table = Table(title="celery-gcs local stack", header_style="bold")
    for column in ("service", "state", "address", "process group"):
        table.add_column(column)
    all_up = True
    for name in SERVICES:
        record = state.services.get(name)
        if record is None:
            table.add_row(LABELS[name], "[red]missing[/]", "", "")
            all_up = False
            continue
        current = service_state(record)
        all_up &= current == "up"
        style = {"up": "green", "down": "red"}.get(current, "yellow")
        table.add_row(
            LABELS[name], f"[{style}]{current}[/]", f"127.0.0.1:{record.port}", str(record.pid)
        )
    return table, all_up


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-gcs dev",
        description="The GCS emulator, the Firestore emulator and Redis on free ports, left running "
        'between commands. `eval "$(celery-gcs dev up)"` starts them (or restarts those that died, on '
        'their ports) and exports their addresses; `eval "$(celery-gcs dev down)"` stops them and unsets them.',
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="where the state file and logs live (default: $CELERY_GCS_DEVSTACK_DIR, else the nearest "
        ".devstack with a state file here or in a parent directory, else ./.devstack)",
    )
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument(
        "--result-backend",
        choices=RESULT_BACKENDS,
        default="gcs",
        help="what CELERY_RESULT_BACKEND points at: gcs (celery-gcs on the emulator, the default), gs "
        "(Celery's built-in gs:// backend on the emulators, to compare), or app (unset: your app's own)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    return run(args.action, state_dir=args.state_dir, as_json=args.json, result_backend=args.result_backend)


def run(action: str, *, state_dir: Path | None = None, as_json: bool = False, result_backend: str = "gcs") -> int:
    directory = resolve_state_dir(state_dir)
    out, err = Console(), Console(stderr=True, soft_wrap=True)
    if action == "up":
        missing = localstack.missing_prerequisites()
        if missing:
            for problem in missing:
                err.print(f"[red]missing prerequisite:[/] {escape(problem)}", highlight=False)
            return EXIT_PREREQUISITES
        try:
            state = up(directory, err)
        except localstack.ServiceFailed as exc:
            err.print(f"[red]could not start the local stack:[/] {escape(str(exc))}", highlight=False)
            return EXIT_FAILED
        exported, unset = exports_for(state, result_backend)
        out.file.write(exports(exported) + unsets(unset))
        out.file.flush()
        err.print(
            'Point your app at it with: eval "$(celery-gcs dev up)"; '
            'stop it with: eval "$(celery-gcs dev down)"'
        )
        note = {"gcs": NOTE_ENV_WINS, "app": NOTE_APP_BACKEND, "gs": NOTE_BUILTIN_BACKEND}[result_backend]
        err.print(note.format(bucket=state.bucket), highlight=False)
        err.print(NOTE_METRICS, highlight=False)
        return 0
    if action == "down":
        down(directory, err)
        # Whether or not anything ran: the shell may still hold the addresses.
        out.file.write(unsets(exported_names()))
        return 0
    state = read_state(directory)
    if state is None:
        if as_json:
            out.file.write(json.dumps({"running": False, "services": {}}) + "\n")
        else:
            err.print(
                f"No local stack recorded in {directory / STATE_FILE}; start one with: celery-gcs dev up"
            )
        return STATUS_NOT_RUNNING
    if as_json:
        services = {
            name: {
                "state": service_state(record),
                "port": record.port,
                "pid": record.pid,
                "log": record.log,
            }
            for name, record in state.services.items()
        }
        all_up = set(services) == set(SERVICES) and all(
            s["state"] == "up" for s in services.values()
        )
        payload = {"running": True, "all_up": all_up, "services": services, "env": state.env()}
        out.file.write(json.dumps(payload, indent=2) + "\n")
        return STATUS_UP if all_up else STATUS_DEGRADED
    table, all_up = status_table(state)
    out.print(table)
    if all_up:
        out.file.write(exports(state.env()))
    return STATUS_UP if all_up else STATUS_DEGRADED
