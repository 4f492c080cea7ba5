"""gRPC (Firestore's transport) under Celery's green pools.

gRPC's core runs its own threads and blocking polls: under gevent's
monkey-patching every call would block all greenlets, and a streaming call
never completes, unless gRPC's gevent integration is on before the first
channel. gRPC has no eventlet integration at all, so an eventlet worker is
refused at start with the pools that work.

gRPC under prefork: a process that made gRPC calls and then forks leaves its
children gRPC state they cannot use (a child's first Firestore call can wait
forever), unless gRPC's fork support is on: ``FORK_SUPPORT_ENV``, in the
environment before gRPC is imported (grpc's doc/fork_support.md). A prefork
worker's main process calls Firestore only when it serves the open-chord
metrics (``celery_gcs.telemetry.open_chords``); the worker image sets it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping

from ..errors import ConfigurationError

E_EVENTLET = (
    "the eventlet pool (-P eventlet) cannot run celery-gcs: Firestore's gRPC client blocks every green "
    "thread under eventlet and gRPC offers no eventlet support; run the worker with -P gevent, -P threads "
    "or -P prefork"
)

#: gRPC's client-side fork support, as grpc's doc/fork_support.md gives it; read when grpc is imported.
FORK_SUPPORT_ENV = {"GRPC_ENABLE_FORK_SUPPORT": "true", "GRPC_POLL_STRATEGY": "poll"}
_TRUE = ("1", "true", "yes")  # what grpc takes as on

_lock = threading.Lock()
_prepared = False


def check() -> None:
    """Refuse a process that eventlet has monkey-patched; gRPC cannot work in it."""
    if _patched_by("eventlet"):
        raise ConfigurationError(E_EVENTLET)


def prepare() -> None:
    """Call before the first gRPC channel of this process: turns on gRPC's gevent support when gevent patched."""
    global _prepared
    check()
    if _prepared or not _patched_by("gevent"):
        return
    with _lock:
        if not _prepared:
            from grpc.experimental import gevent as grpc_gevent

            grpc_gevent.init_gevent()
            _prepared = True


def fork_support_on(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``environ`` (this process's) turns gRPC's fork support on."""
    environ = os.environ if environ is None else environ
    return environ.get("GRPC_ENABLE_FORK_SUPPORT", "").lower() in _TRUE


def _patched_by(library: str) -> bool:
    """Whether ``library`` (gevent or eventlet) replaced the socket module; never imports it."""
    if library == "gevent":
        monkey = sys.modules.get("gevent.monkey")
        return bool(monkey and monkey.is_module_patched("socket"))
    patcher = sys.modules.get("eventlet.patcher")
    return bool(patcher and patcher.is_monkey_patched("socket"))
