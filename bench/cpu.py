"""CPU seconds used by each part of the stack, read with psutil.

On a shared two-core machine wall-clock time depends on what else runs;
the CPU time each process tree spends on a workload depends much less on
it, and says where the time goes: the worker, the GCS emulator, the
Firestore emulator, the proxies, or this process (the client).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import psutil

#: Fields of /proc/cpuinfo that tell one host's processor from another's.
_CPUINFO_FIELDS = ("model name", "cpu family", "model", "stepping", "cache size")


def cpu_by_tree(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of named processes: each with its live descendants and the children they reaped.

    ``"client"`` is this process alone, every thread of it (the stack's
    services are its children, measured under their own names).
    """
    return {name: _own() if name == "client" else _tree(pid) for name, pid in roots.items()}


def _own() -> float:
    mine = psutil.Process().cpu_times()
    return mine.user + mine.system


def _tree(pid: int) -> float:
    """A process's CPU seconds, its live descendants', and those of the children each has reaped."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:  # gone, or not ours to read
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:  # exited since it was listed
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 3) for name in after}


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The machine a run measured, its processor and kernel included.

    The same code's CPU seconds differ by tens of percent from one host to
    another (bench/ANALYSIS.md, "Local ratios across machines"), so runs are
    compared only once their machines are known to match.
    """
    described = f"{platform.machine()}, {os.cpu_count() or 0} CPUs"
    processor = describe_processor(cpuinfo.read_text() if cpuinfo.exists() else "")
    if processor:
        described += f" ({processor})"
    return f"{described}, kernel {platform.release()}, Python {platform.python_version()}"


def describe_processor(cpuinfo: str) -> str:
    """The first processor's model, family, model number, stepping and cache, from /proc/cpuinfo's text."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor only: on one host the others are alike
        key, _, value = line.partition(":")
        if key.strip() in _CPUINFO_FIELDS:
            fields[key.strip()] = value.strip()
    return ", ".join(f"{key} {fields[key]}" for key in _CPUINFO_FIELDS if key in fields)


def load(values: tuple[float, float, float] | None = None) -> list[float]:
    """The load average (1, 5, 15 minutes), now or as read before, rounded: CPU seconds grow with it."""
    return [round(value, 2) for value in (values or os.getloadavg())]
