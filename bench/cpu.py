"""CPU seconds used by each part of the stack, read from /proc.

On a shared two-core machine wall-clock time depends on what else runs;
the CPU time each process group spends on a workload depends much less on
it, and says where the time goes: the worker, the GCS emulator, the
Firestore emulator, the proxies, or this process (the client).
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_group(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of named process groups: their live processes and the children they reaped.

    ``"client"`` (any pgid) is this process, every thread of it.
    """
    ticks = dict.fromkeys(groups, 0)
    names = {pgid: name for name, pgid in groups.items() if name != "client"}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp, ... utime, stime, cutime, cstime (stat fields 14-17).
        name = names.get(int(fields[2]))
        if name:
            ticks[name] += sum(int(value) for value in fields[11:15])
    seconds = {name: n / _TICKS for name, n in ticks.items()}
    if "client" in groups:
        mine = os.times()
        seconds["client"] = mine.user + mine.system
    return seconds


def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 3) for name in after}
