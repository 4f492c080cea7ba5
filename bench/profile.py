"""Where celery-gcs's worker spends a chord: py-spy on the pool processes, summarised.

Runs only when py-spy is available (``PY_SPY=/path/to/py-spy``, the one the
dev group installs beside this interpreter, or ``py-spy`` on PATH) and allowed
to attach (ptrace: as root, or with ``kernel.yama.ptrace_scope`` 0).
It samples the worker's pool processes during one extra chord, after the
measured rounds, and reports the main thread's time by the function it was
in: the frames of celery_gcs that matter, and the top frames overall.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Frames whose inclusive share of the pool's main thread is reported, with what they are.
FRAMES = {
    "trace_task": "Celery runs a task (all of it)",
    "mark_as_done": "storing the result (for a chord part: counting it too)",
    "ChordCoordinator.part_ready": "a chord part: count it, and settle the chord if it was the last",
    "ChordStore.count": "count: create the part's document and count its leaf down (one commit)",
    "ChordStore.report": "report a filled counter to its parent",
    "ChordCoordinator._settle": "claim the callback (a transaction)",
    "ChordCoordinator._complete": "gather the results, publish the callback, end the chord",
    "ChordStore.clean_up": "delete the chord's parts and counters",
    "ResultStore.put": "store the result in GCS",
    "ResultStore.get": "read results from GCS",
}


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return os.environ.get("PY_SPY") or (str(beside) if beside.exists() else shutil.which("py-spy"))


def record(pid: int, output: Path, rate: int = 100) -> subprocess.Popen[bytes] | None:
    """Start sampling a process and its children; None when py-spy is missing."""
    tool = py_spy()
    if not tool:
        return None
    argv = [tool, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--format", "raw"]
    argv += ["--rate", str(rate), "--output", str(output)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(spy: subprocess.Popen[bytes]) -> str:
    """Stop sampling; py-spy writes its file on SIGINT. Returns its error output."""
    time.sleep(0.5)
    spy.send_signal(signal.SIGINT)
    try:
        _, err = spy.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        spy.kill()
        _, err = spy.communicate()
    return err.decode(errors="replace")


def summarise(raw: Path, top: int = 12) -> dict[str, Any]:
    """Shares of the pool processes' main-thread samples (the worker's parent is left out)."""
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        # py-spy's raw format starts with the process, then its child's process entry.
        if not n.isdigit() or len(frames) < 3 or not frames[1].startswith("process "):
            continue
        if any("Thread._bootstrap" in frame for frame in frames[:5]):
            continue  # threads: the result-gathering pool, gRPC's own
        count = int(n)
        total += count
        joined = ";".join(frames[2:])
        for name in FRAMES:
            if name + " " in joined:
                inclusive[name] += count
        leaf[frames[-1]] += count
    if not total:
        return {}
    return {
        "samples": total,
        "frames": {name: round(inclusive[name] / total, 3) for name in FRAMES if inclusive[name]},
        "meaning": {name: FRAMES[name] for name in FRAMES if inclusive[name]},
        "top_leaf_frames": [(frame, round(n / total, 3)) for frame, n in leaf.most_common(top)],
    }
