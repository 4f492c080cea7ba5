"""gRPC (Firestore's transport) under Celery's green pools.

gRPC's core runs its own threads and blocking polls: under gevent's
monkey-patching every call would block all greenlets, and a streaming call
never completes, unless gRPC's gevent integration is on before the first
channel. gRPC has no eventlet integration at all, so an eventlet worker is
refused at start with the pools that work.
"""

from __future__ import annotations

import sys
import threading

from ..errors import ConfigurationError

E_EVENTLET = (
    "the eventlet pool (-P eventlet) cannot run celery-gcs: Firestore's gRPC client blocks every green "
    "thread under eventlet and gRPC offers no eventlet support; run the worker with -P gevent, -P threads "
    "or -P prefork"
)

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


def _patched_by(library: str) -> bool:
    """Whether ``library`` (gevent or eventlet) replaced the socket module; never imports it."""
    if library == "gevent":
        monkey = sys.modules.get("gevent.monkey")
        return bool(monkey and monkey.is_module_patched("socket"))
    patcher = sys.modules.get("eventlet.patcher")
    return bool(patcher and patcher.is_monkey_patched("socket"))
