"""Process facts and process groups: who is in a group, when a process started, stopping a group.

The local stack's services and workers each run in a process group of their
own and are stopped as a group: ending gcloud's wrapper alone would leave the
Java Firestore emulator running, ending a worker's main process would leave
its pool. Facts about processes come from psutil, not from parsing /proc, so
that they read the same on Linux and macOS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil

#: The unit of ``start_time``.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_time(pid: int) -> int | None:
    """When a process started, in clock ticks since boot; None if there is no such process.

    Since boot (Linux's /proc/PID/stat ``starttime``), not since the epoch:
    psutil's ``create_time`` adds the boot time, which moves when the clock is
    set, and a start time recorded now is compared with one read hours later.
    """
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
    return round((created - psutil.boot_time()) * CLOCK_TICKS)


def children(pid: int) -> list[int]:
    """Pids of a process's direct children; none once it is gone."""
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


@contextlib.contextmanager
def signals_held(signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a child is spawned and recorded.

    A KeyboardInterrupt raised between fork and ``self.process = ...`` would
    leave a child nobody knows to stop. Signals arriving meanwhile are passed
    to the previous handlers once the block ends. Only the main thread can
    handle signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, _frame: pending.append(signum))
        for signum in signums
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in pending:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process leading a new process group (and session), its output appended to a log.

    stdin is /dev/null; without a log, its output goes to /dev/null too. Call
    it, and record what it returns, inside ``signals_held()``.
    """
    with open(log_path, "ab") if log_path else contextlib.nullcontext(subprocess.DEVNULL) as log:
        return subprocess.Popen(
            list(argv),
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_group(pgid: int, timeout: float = 10.0, reap: Callable[[], object] | None = None) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left of it.

    ``reap`` collects the group leader if it is our child, so that its zombie
    does not keep the group alive.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reap:
            reap()
        if not group_running(pgid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def group_running(pgid: int) -> bool:
    """True while a process group has a member that is not a zombie.

    Members whose parent has exited are reaped by PID 1, which in some
    containers takes seconds; until then they are zombies that ``kill(0)``
    still finds, though they no longer run.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """Pids of the running (not zombie) members of a process group."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE or os.getpgid(process.pid) != pgid:
                continue
        except OSError:
            continue  # exited meanwhile, or not ours to look at
        members.append(process.pid)
    return members


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port`` (within a second)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
