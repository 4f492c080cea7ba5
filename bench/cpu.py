"""CPU seconds used by each part of the stack, read with psutil.

On a shared two-core machine wall-clock time depends on what else runs;
the CPU time each process tree spends on a workload depends much less on
it, and says where the time goes: the worker, the GCS emulator, the
Firestore emulator, the proxies, or this process (the client).
"""

from __future__ import annotations

import psutil


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
