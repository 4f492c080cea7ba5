"""The worker container's configuration: environment variables, checked once at start.

The image's entrypoint runs ``python -m celery_gcs.worker.env``. With a usable
environment it prints shell code for the entrypoint to ``eval``, every value
quoted::

    export CELERY_RESULT_BACKEND='gcs://my-bucket?gcs_project=my-project'
    set -- celery --app=proj.celery worker --loglevel=INFO --concurrency=auto \\
        --include=celery_gcs.worker.health,celery_gcs.telemetry.metrics "$@"

(``"$@"`` stands for the arguments given after ``worker`` in the container's
command; they are appended to the worker's.) Otherwise it prints every
problem to stderr, each naming its variable and the fix, and exits with 78
(``EX_CONFIG``): the container stops at start with a message, instead of
failing later deep inside Celery.

The broker URL stays in the environment, never on the command line, where
``ps`` and Celery's process title would show its password. Celery reads
``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` itself, ahead of the app's
own ``broker_url`` and ``result_backend``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import sys
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from .. import conventions, name_rules, settings
from ..errors import ConfigurationError
from ..telemetry import names as metric_names
from . import probe as worker_probe

#: Every variable the worker container reads, with what it means. Exactly one of
#: CELERY_RESULT_BACKEND and GCS_BUCKET is set.
VARIABLES: dict[str, str] = {
    "CELERY_BROKER_URL": "required; the broker, e.g. redis://:PASSWORD@10.0.0.3:6379/0",
    "CELERY_RESULT_BACKEND": "gcs://BUCKET[/PREFIX][?gcs_project=P&firestore_database=D...]",
    "GCS_BUCKET": "instead of CELERY_RESULT_BACKEND: the results bucket",
    "GOOGLE_CLOUD_PROJECT": "optional; the project of the bucket and Firestore database",
    "FIRESTORE_DATABASE": "optional, with GCS_BUCKET; the chord counters' database (default: (default))",
    "CELERY_APP": "required; the app module, as for `celery --app`: proj, proj.celery or proj.celery:app",
    "CELERY_CONCURRENCY": "optional; pool processes, a number or auto (the pod's CPU limit; the default)",
    "CELERY_QUEUES": "optional; comma-separated queues to consume (default: Celery's, `celery`)",
    "CELERY_LOGLEVEL": "optional; DEBUG, INFO (the default), WARNING, ERROR or CRITICAL",
    worker_probe.HEALTH_DIR_ENV: "optional; a writable directory for the probes' files (image: /run/celery-worker)",
    worker_probe.HEARTBEAT_INTERVAL_ENV: "optional; seconds between heartbeats (default 10)",
    metric_names.PORT_ENV: f"optional; the port of the worker's /metrics (default {metric_names.DEFAULT_PORT}), or off",
}

EX_CONFIG = 78

#: Broker URL schemes the image's libraries serve: redis-py and py-amqp.
BROKER_SCHEMES = ("redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp")
LOGLEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HEALTH_MODULE = "celery_gcs.worker.health"
METRICS_MODULE = metric_names.MODULE

_APP_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?$")
_QUEUE_RE = re.compile(r"^[\w.:@/+-]+$")

E_MISSING = "{name} is not set: {fix}"
E_BROKER = (
    "CELERY_BROKER_URL={url!r} is malformed: {reason}; expected e.g. redis://:PASSWORD@HOST:6379/0"
)
E_BACKEND_BOTH = (
    "CELERY_RESULT_BACKEND and GCS_BUCKET are both set: set only one "
    "(CELERY_RESULT_BACKEND=gcs://BUCKET[/PREFIX][?...], or GCS_BUCKET with GOOGLE_CLOUD_PROJECT and FIRESTORE_DATABASE)"
)
E_BACKEND_NONE = (
    "no result backend: set CELERY_RESULT_BACKEND=gcs://BUCKET[/PREFIX][?...], "
    "or GCS_BUCKET (with GOOGLE_CLOUD_PROJECT and FIRESTORE_DATABASE)"
)
E_DATABASE_WITH_URL = (
    "FIRESTORE_DATABASE is only read with GCS_BUCKET; with CELERY_RESULT_BACKEND put the "
    "database in the URL (gcs://BUCKET?firestore_database={database}) and unset FIRESTORE_DATABASE"
)
E_APP_SYNTAX = "CELERY_APP={app!r} is not a module path: use proj, proj.celery or proj.celery:app"
E_APP_MISSING = (
    "CELERY_APP={app!r}: no module named {module!r} in {where}; "
    "copy your app into /app (the worker's directory) or install it into the image"
)
E_CONCURRENCY = (
    "CELERY_CONCURRENCY={value!r} must be a whole number of processes (at least 1) or auto"
)
E_QUEUES = "CELERY_QUEUES={value!r} must be queue names separated by commas, e.g. default,emails"
E_LOGLEVEL = "CELERY_LOGLEVEL={value!r} must be one of " + ", ".join(LOGLEVELS)
E_HEALTH_DIR = (
    "{name}={path!r} is not a writable directory for uid {uid} ({reason}): "
    "mount a writable volume there (an emptyDir when the root filesystem is read-only) or point it elsewhere"
)
E_INTERVAL = "{name}={value!r} must be a number of seconds greater than 0"
E_METRICS_PORT = "{name}={value!r} must be a port number from 1 to 65535, or off (no metrics)"


class EnvironmentProblems(Exception):
    """The environment cannot start a worker; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def report(self) -> str:
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"celery-gcs worker: cannot start, fix the container's environment:\n{lines}"


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """What the worker is started with, validated."""

    app: str
    result_backend: str
    concurrency: str = "auto"
    queues: tuple[str, ...] = ()
    loglevel: str = "INFO"
    #: Serve /metrics (celery_gcs.telemetry.metrics reads its port from the environment).
    metrics: bool = True

    def argv(self) -> list[str]:
        """The worker's command line, without the container command's extra arguments."""
        argv = ["celery", f"--app={self.app}", "worker", f"--loglevel={self.loglevel}"]
        argv.append(f"--concurrency={self.concurrency}")
        if self.queues:
            argv.append(f"--queues={','.join(self.queues)}")
        argv.append(f"--include={HEALTH_MODULE},{METRICS_MODULE}" if self.metrics else f"--include={HEALTH_MODULE}")
        return argv

    def shell(self) -> str:
        """Shell code for the entrypoint's ``eval``: the backend URL, then the command."""
        command = " ".join(shlex.quote(arg) for arg in self.argv())
        return f'export CELERY_RESULT_BACKEND={shlex.quote(self.result_backend)}\nset -- {command} "$@"\n'


def load(environ: Mapping[str, str]) -> WorkerConfig:
    """Validate ``environ``; raise :class:`EnvironmentProblems` listing everything wrong."""

    def get(name: str) -> str:
        return environ.get(name, "").strip()

    problems: list[str] = []
    problems += _broker_problems(get("CELERY_BROKER_URL"))
    backend, backend_problems = _result_backend(
        get("CELERY_RESULT_BACKEND"),
        get("GCS_BUCKET"),
        get("GOOGLE_CLOUD_PROJECT"),
        get("FIRESTORE_DATABASE"),
    )
    problems += backend_problems
    problems += _app_problems(get("CELERY_APP"))

    concurrency = get("CELERY_CONCURRENCY").lower() or "auto"
    if concurrency != "auto" and not (concurrency.isdigit() and int(concurrency) >= 1):
        problems.append(E_CONCURRENCY.format(value=environ.get("CELERY_CONCURRENCY")))

    queues = (
        tuple(name.strip() for name in get("CELERY_QUEUES").split(","))
        if get("CELERY_QUEUES")
        else ()
    )
    if not all(_QUEUE_RE.match(name) for name in queues):
        problems.append(E_QUEUES.format(value=environ.get("CELERY_QUEUES")))

    loglevel = get("CELERY_LOGLEVEL").upper() or "INFO"
    if loglevel not in LOGLEVELS:
        problems.append(E_LOGLEVEL.format(value=environ.get("CELERY_LOGLEVEL")))

    problems += _health_problems(environ)
    metrics_port = get(metric_names.PORT_ENV).lower()
    if metrics_port not in ("", "off") and not (metrics_port.isdigit() and 1 <= int(metrics_port) <= 65535):
        problems.append(E_METRICS_PORT.format(name=metric_names.PORT_ENV, value=environ.get(metric_names.PORT_ENV)))
    if problems:
        raise EnvironmentProblems(problems)
    return WorkerConfig(
        app=get("CELERY_APP"),
        result_backend=backend,
        concurrency=concurrency,
        queues=queues,
        loglevel=loglevel,
        metrics=metrics_port != "off",
    )


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _broker_problems(url: str) -> list[str]:
    if not url:
        return [
            E_MISSING.format(
                name="CELERY_BROKER_URL", fix="set it to the broker's URL, e.g. redis://HOST:6379/0"
            )
        ]

    def bad(reason: str) -> list[str]:
        return [E_BROKER.format(url=redact(url), reason=reason)]

    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # parsing the port is the check
    except ValueError as exc:
        return bad(str(exc))
    if parts.scheme not in BROKER_SCHEMES:
        return bad(f"the scheme must be one of {', '.join(s + '://' for s in BROKER_SCHEMES)}")
    if not parts.hostname:
        return bad("it names no host")
    if (
        parts.scheme in ("redis", "rediss")
        and parts.path.strip("/")
        and not parts.path.strip("/").isdigit()
    ):
        return bad(f"the Redis database is a number, not {parts.path.strip('/')!r}")
    return []


def _result_backend(url: str, bucket: str, project: str, database: str) -> tuple[str, list[str]]:
    problems: list[str] = []
    if project and (problem := name_rules.project_problem(project)):
        problems.append(f"GOOGLE_CLOUD_PROJECT={project!r}: {problem}")
    if url and bucket:
        return "", [*problems, E_BACKEND_BOTH]
    if url:
        if database:
            problems.append(E_DATABASE_WITH_URL.format(database=database))
        try:
            settings.parse(url, {})
        except ConfigurationError as exc:
            problems.append(f"CELERY_RESULT_BACKEND={url!r}: {exc}")
        return url, problems
    if not bucket:
        return "", [*problems, E_BACKEND_NONE]
    if problem := name_rules.bucket_problem(bucket):
        problems.append(f"GCS_BUCKET={bucket!r}: {problem}")
    if database and (problem := name_rules.database_problem(database)):
        problems.append(f"FIRESTORE_DATABASE={database!r}: {problem}")
    return conventions.backend_url(bucket, gcs_project=project, firestore_database=database), problems


def _app_problems(app: str) -> list[str]:
    if not app:
        return [
            E_MISSING.format(
                name="CELERY_APP", fix="set it to your Celery app's module, e.g. proj.celery"
            )
        ]
    if not _APP_RE.match(app):
        return [E_APP_SYNTAX.format(app=app)]
    top = app.split(":")[0].split(".")[0]
    # The top-level package only: finding it imports nothing of the app.
    if importlib.util.find_spec(top) is None:
        pythonpath = os.environ.get("PYTHONPATH")
        where = (
            os.getcwd()
            + (f" or PYTHONPATH={pythonpath}" if pythonpath else "")
            + " or site-packages"
        )
        return [E_APP_MISSING.format(app=app, module=top, where=where)]
    return []


def _health_problems(environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    name = worker_probe.HEARTBEAT_INTERVAL_ENV
    if raw := environ.get(name, "").strip():
        try:
            ok = float(raw) > 0
        except ValueError:
            ok = False
        if not ok:
            problems.append(E_INTERVAL.format(name=name, value=raw))
    directory = worker_probe.HealthFiles.from_env(dict(environ)).directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as exc:
        problems.append(
            E_HEALTH_DIR.format(
                name=worker_probe.HEALTH_DIR_ENV,
                path=str(directory),
                uid=os.getuid(),
                reason=exc.strerror or exc,
            )
        )
    return problems


def main() -> int:
    try:
        config = load(os.environ)
    except EnvironmentProblems as exc:
        print(exc.report(), file=sys.stderr)
        return EX_CONFIG
    sys.stdout.write(config.shell())
    return 0


if __name__ == "__main__":
    sys.exit(main())
