"""Run the suite's files one pytest process each, against ``gcs://`` on the local stack.

As Celery's CI runs them: one pytest process per file, ``-p
celery.contrib.pytest``, the broker and backend in ``TEST_BROKER`` and
``TEST_BACKEND``, the suite's own reruns (pytest-rerunfailures) and
timeouts (pytest-timeout marks), and the suite's own session worker. Each
file's process is bounded in wall time, and killed with its process group
when it overruns, so one hang cannot eat the run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from celery_gcs.local import services
from celery_gcs.local.processes import free_port, signals_held, spawn, stop_group

#: The files the issue names, in the order Celery's CI lists them, each with the
#: wall time its pytest may take before it is killed: about twice the slowest
#: time measured on the shared 2-core machine (docs/conformance.md), so that a
#: hang costs minutes, not the half hour a hung test's 300 s timeout takes
#: with its five reruns, and .ci/run stays under an hour.
FILE_BOUNDS = {
    "test_canvas.py": 1000.0,
    "test_tasks.py": 480.0,
    "test_inspect.py": 180.0,
    "test_group_chains.py": 120.0,
}
FILES = tuple(FILE_BOUNDS)
#: Bound for a file not in FILE_BOUNDS.
DEFAULT_BOUND = 1200.0
#: Counts in pytest's last line: "== 131 passed, 8 failed, 95 skipped, 4 rerun in 812.33s ==".
_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|rerun|warnings?)\b")
_FINAL = re.compile(r"^=+ .*\b(passed|failed|errors?|skipped|no tests ran)\b.* in [\d.]+s.* =+$")
_PROBLEM = re.compile(r"^(FAILED|ERROR|SUBFAILED\[.*?\]) (t/[^\[\s]+(?:\[.*?\])?)(?: - (.*))?")
#: pytest -v writes a test's id when it starts and its outcome when it ends.
_OUTCOME = re.compile(r"(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS|RERUN)")
#: The GCS emulators a run can use (--gcs-emulator), as the summary names them.
GCS_EMULATORS = {
    "wrapper": "celery_gcs.local.gcs_emulator",
    "stock": "stock gcp-storage-emulator",
}
#: Our pytest plugins (modules of suite_plugins/) each emulator's runs load into
#: the suite's pytest; each module says why.
SUITE_PLUGINS = {"wrapper": ("upstream_races",), "stock": ("upstream_races", "empty_bucket_per_test")}
SUITE_PLUGIN_DIR = Path(__file__).with_name("suite_plugins")
#: What Celery's tox.ini sets for every integration run (its ``[testenv] setenv``).
#: WORKER_LOGLEVEL matters: the pytest plugin's session worker logs at
#: ``error`` without it, so the "received" and "succeeded" INFO records that
#: ``test_tasks.py::test_trace_log_arguments`` reads from caplog are never emitted.
CELERY_CI_ENV = {
    "WORKER_LOGLEVEL": "INFO",
    "PYTHONIOENCODING": "UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


@dataclass
class FileResult:
    """One file's outcome, read from its pytest output."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # "FAILED t/...::test"
    seconds: float = 0.0
    timed_out: bool = False
    returncode: int | None = None
    log: Path | None = None

    @property
    def ok(self) -> bool:
        # An unexpected pass is no failure: the suite marks tests xfail (not strict)
        # that fail on the rpc:// backend only; a strict one makes pytest exit non-zero.
        bad = self.counts.get("failed", 0) + self.counts.get("errors", 0)
        return not self.timed_out and self.returncode == 0 and bad == 0

    def line(self) -> str:
        order = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed", "rerun")
        counts = ", ".join(f"{self.counts[key]} {key}" for key in order if self.counts.get(key))
        status = "ok" if self.ok else ("TIMED OUT" if self.timed_out else "FAILED")
        return f"{self.name:<22} {status:<9} {counts or 'no result'} ({self.seconds:.0f}s)"


def parse_output(name: str, text: str) -> FileResult:
    """Counts from pytest's final line, and the FAILED/ERROR lines of its short summary."""
    result = FileResult(name)
    finals = [line for line in text.splitlines() if _FINAL.match(line.strip())]
    if finals:
        for number, kind in _COUNT.findall(finals[-1]):
            kind = {"error": "errors", "warning": "warnings"}.get(kind, kind)
            result.counts[kind] = int(number)
    # With its reason (" - ChordError: ..."): a failure in CI must say what went wrong.
    result.problems = [
        f"{m[1]} {m[2]}" + (f" - {m[3]}" if m[3] else "")
        for line in text.splitlines()
        if (m := _PROBLEM.match(line))
    ]
    return result


def bound(name: str) -> float:
    """How long a file's pytest may take before it is killed."""
    return FILE_BOUNDS.get(name, DEFAULT_BOUND)


def running_test(text: str) -> str | None:
    """The test pytest was running when its output stops: its id without an outcome."""
    started = [line for line in text.splitlines() if line.startswith("t/integration/")]
    if started and not _OUTCOME.search(started[-1]):
        return started[-1].strip()
    return None


def plugin_args(emulator: str) -> list[str]:
    """``-p`` options loading our plugins for a run on this emulator (see SUITE_PLUGINS)."""
    return [arg for name in SUITE_PLUGINS[emulator] for arg in ("-p", name)]


def gcs_service(emulator: str, port: int, log_path: Path) -> services.Service:
    """The project's GCS emulator wrapper, or the stock ``gcp-storage-emulator`` (see GCS_EMULATORS)."""
    if emulator == "wrapper":
        return services.gcs_emulator(port, log_path)
    argv = [
        str(Path(sys.executable).with_name("gcp-storage-emulator")), "start",
        "--host", "127.0.0.1", "--port", str(port), "--in-memory",
    ]  # fmt: skip
    return services.Service("gcp-storage-emulator", argv, port, ready_path="/", log_path=log_path)


def start_stack(workdir: Path, *, gcs_emulator: str) -> services.LocalStack:
    stack = services.LocalStack(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    gcs = gcs_service(gcs_emulator, free_port(), workdir / "gcs.log")
    stack.services["gcs"] = gcs
    try:
        gcs.start()
        stack.start(("firestore", "redis"))
        services.create_bucket(stack.gcs_host, stack.bucket)
    except BaseException:
        stack.stop()
        raise
    return stack


def suite_env(stack: services.LocalStack, backend: str) -> dict[str, str]:
    """The environment of one file's pytest: Celery's TEST_* variables and the emulators."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}
    env.update({key: value for key, value in stack.env().items() if not key.startswith("CELERY_")})
    redis_port = stack.services["redis"].port
    env.update(CELERY_CI_ENV)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(SUITE_PLUGIN_DIR), env.get("PYTHONPATH")])
    )
    env.update(
        TEST_BROKER=stack.redis_url,
        TEST_BACKEND=backend,
        REDIS_HOST="127.0.0.1",  # what the suite's redis_* tasks and helpers connect to
        REDIS_PORT=str(redis_port),
    )
    return env


def run_file(
    root: Path,
    name: str,
    env: Mapping[str, str],
    *,
    bound: float,
    test_timeout: float,
    logs: Path,
    extra: list[str],
) -> FileResult:
    """One pytest process for one file, killed with its group when it overruns ``bound``."""
    log = logs / f"{name.removesuffix('.py')}.log"
    argv = [
        sys.executable, "-m", "pytest", f"t/integration/{name}",
        "-p", "celery.contrib.pytest", "-p", "no:cacheprovider",
        "-v", "-rfEsxR", "--durations=10", f"--timeout={test_timeout:g}", *extra,
    ]  # fmt: skip
    log.unlink(missing_ok=True)
    started = time.monotonic()
    with signals_held():
        process = spawn(argv, env=env, cwd=root, log_path=log)
    timed_out = False
    try:
        process.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        stop_group(process.pid, timeout=20, reap=process.poll)
        process.wait()
    output = log.read_text(errors="replace")
    result = parse_output(name, output)
    result.seconds, result.timed_out, result.returncode, result.log = (
        time.monotonic() - started, timed_out, process.returncode, log,
    )  # fmt: skip
    if timed_out:
        running = running_test(output) or "no test (collecting or finishing)"
        result.problems.append(f"TIMED OUT after {bound:.0f}s, killed while running {running}")
    return result
