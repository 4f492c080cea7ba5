"""``python -m celery_gcs.worker.smoke``: after a deploy, do a result and a chord go through?

The stack runs it as a Kubernetes Job after every ``pulumi up`` (infra's
``smoke_test.py``), in the workers' namespace, from their image, with their
environment, Google identity and egress policy, so what it reaches is what a
worker reaches. It checks, in order, and stops at the first failure:

=========  ===============================================================
resolve    the result store's and the chord store's endpoints resolve and
           accept a connection (GCS and Firestore, or the emulators)
store      a result stored through the backend (``CELERY_RESULT_BACKEND``)
           reads back, then is forgotten
chord      a chord of ``--parts`` parts completes through the deployed
           workers on their first queue (``CELERY_QUEUES``), within
           ``--timeout`` seconds; its parts and callback are Celery's
           built-in ``celery.accumulate``, which every worker has
=========  ===============================================================

One line per check, PASS or FAIL with what failed; exit 0 when every check
passes, 1 otherwise (the Job then fails, and ``pulumi up`` with it).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from celery import Celery, chord, states

#: Exit codes: every check passed / one failed.
EXIT_OK, EXIT_FAILED = 0, 1
ACCUMULATE = "celery.accumulate"
#: Where the stores are when no emulator is named.
GOOGLE_ENDPOINTS = {"gcs": ("storage.googleapis.com", 443), "firestore": ("firestore.googleapis.com", 443)}
EMULATOR_ENV = {"gcs": "STORAGE_EMULATOR_HOST", "firestore": "FIRESTORE_EMULATOR_HOST"}


def endpoints(env: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Each store's host and port: the emulator's when its variable is set, Google's otherwise."""
    found = {}
    for store, variable in EMULATOR_ENV.items():
        value = env.get(variable)
        if value:
            parts = urlsplit(value if "://" in value else f"http://{value}")
            found[store] = (parts.hostname or "", parts.port or 80)
        else:
            found[store] = GOOGLE_ENDPOINTS[store]
    return found


def check_endpoints(env: dict[str, str], timeout: float = 10) -> str:
    reached = []
    for store, (host, port) in endpoints(env).items():
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise SmokeFailure(f"{store}: {host} does not resolve ({exc})") from exc
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            raise SmokeFailure(f"{store}: {host}:{port} resolves but refuses or drops a connection ({exc})") from exc
        reached.append(f"{host}:{port} ({addresses[0][4][0]})")
    return ", ".join(reached)


def check_store(app: Celery) -> str:
    task_id = f"celery-gcs-smoke-{uuid.uuid4()}"
    value = {"smoke": task_id}
    backend = app.backend
    backend.store_result(task_id, value, states.SUCCESS)
    meta = backend.get_task_meta(task_id)
    if meta.get("status") != states.SUCCESS or meta.get("result") != value:
        raise SmokeFailure(f"stored {value!r} as {task_id}, read back {meta!r}")
    backend.forget(task_id)
    return f"{task_id} stored, read back and forgotten"


def check_chord(app: Celery, *, queue: str, parts: int, timeout: float) -> str:
    header = [app.signature(ACCUMULATE, args=(i,), kwargs={"index": 0}, queue=queue) for i in range(parts)]
    body = app.signature(ACCUMULATE, kwargs={"index": 0}, queue=queue)
    started = time.monotonic()
    result = chord(header)(body)
    try:
        value = result.get(timeout=timeout, propagate=True)
    except Exception as exc:
        raise SmokeFailure(
            f"a chord of {parts} on queue {queue!r} did not complete within {timeout:g} s "
            f"({type(exc).__name__}: {exc}); are workers consuming {queue!r}?"
        ) from exc
    if sorted(value) != list(range(parts)):
        raise SmokeFailure(f"a chord of {parts} returned {value!r}, not the parts 0..{parts - 1}")
    return f"a chord of {parts} on {queue!r} in {time.monotonic() - started:.1f} s"


class SmokeFailure(Exception):
    """A check failed; the message says what, for the Job's log."""


def run(checks: Sequence[tuple[str, Callable[[], str]]]) -> int:
    for name, check in checks:
        try:
            detail = check()
        except SmokeFailure as exc:
            print(f"FAIL {name}: {exc}", flush=True)
            return EXIT_FAILED
        print(f"PASS {name}: {detail}", flush=True)
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m celery_gcs.worker.smoke",
        description="After a deploy: the stores reachable, a result stored and read, a chord "
        "through the workers. Configured by the workers' environment.",
    )
    parser.add_argument("--parts", type=int, default=10, help="parts of the chord (default: 10)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds the chord may take (default: 300)")
    return parser


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.parts < 1 or args.timeout <= 0:
        parser().error(f"--parts {args.parts} --timeout {args.timeout:g}: use at least 1 part and a timeout above 0")
    env = dict(os.environ if env is None else env)
    queue = (env.get("CELERY_QUEUES") or "celery").split(",")[0].strip()
    # The broker and backend come from CELERY_BROKER_URL and CELERY_RESULT_BACKEND, as in the workers.
    app = Celery("celery-gcs-smoke", set_as_current=False)
    try:
        return run(
            [
                ("resolve", lambda: check_endpoints(env)),
                ("store", lambda: check_store(app)),
                ("chord", lambda: check_chord(app, queue=queue, parts=args.parts, timeout=args.timeout)),
            ]
        )
    finally:
        app.close()


if __name__ == "__main__":
    sys.exit(main())
