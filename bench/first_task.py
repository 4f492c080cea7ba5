"""What a fresh worker's first tasks pay, with and without the warm-up (``gcs_warm_up``).

``python -m bench.first_task [--pool prefork] [--concurrency 4] [--parts 16] [--rounds 3]``

At production latency (``bench.latency``'s model: every GCS request and
Firestore RPC held as long as in one region), for each round and each
setting in turn (the order alternating): a fresh celery-gcs worker, given a
few seconds after it is ready (the warm-up runs in the background, as a
worker KEDA starts would have before its first message), then a chord of
``parts`` parts, then a second one, its processes connected either way. It
reports the median time of each chord and, from the workers' timeline
(``bench.timeline``), each process's first GCS write and Firestore commit
against the later ones: the cost a new process pays on its first task.
About a minute at the defaults.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import latency, timeline, workloads
from .stack import BenchStack

#: Seconds a fresh worker is left after it is ready, before its first chord.
SETTLE = 3.0
#: The calls whose first-per-process cost is reported.
KINDS = ("gcs.write", "firestore.commit")


def run(pool: str, concurrency: int, parts: int, rounds: int, workdir: Path) -> dict[str, Any]:
    stack = BenchStack(
        workdir, backends=("celery_gcs",), concurrency=concurrency, pool=pool, latency=dict(latency.MODEL),
        extra_conf={"gcs_warm_up": False},
    ).start()  # fmt: skip
    found: dict[bool, dict[str, list[Any]]] = {
        warm: {"first_chord": [], "second_chord": [], "first_calls": []} for warm in (False, True)
    }
    try:
        for round_ in range(rounds):
            for warm in (False, True) if round_ % 2 == 0 else (True, False):
                stack.extra_conf["gcs_warm_up"] = warm
                stack.restart_worker("celery_gcs")
                time.sleep(SETTLE)
                since = time.time()
                first = workloads.chord_of(stack, "celery_gcs", parts, 120)
                second = workloads.chord_of(stack, "celery_gcs", parts, 120)
                calls = timeline.read(stack.timeline_dir, since=since)
                found[warm]["first_chord"].append(first.seconds)
                found[warm]["second_chord"].append(second.seconds)
                found[warm]["first_calls"].append(timeline.first_calls(calls, KINDS))
                print(
                    f"round {round_ + 1}, warm-up {'on' if warm else 'off'}: first chord {first.seconds:.3f} s, "
                    f"second {second.seconds:.3f} s; {found[warm]['first_calls'][-1]}",
                    flush=True,
                )
    finally:
        stack.stop()
    return {
        "pool": pool, "concurrency": concurrency, "parts": parts, "rounds": rounds,
        "warm_up": {("on" if warm else "off"): _summary(runs) for warm, runs in found.items()},
    }  # fmt: skip


def _summary(runs: dict[str, list[Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        key: round(statistics.median(runs[key]), 3) for key in ("first_chord", "second_chord")
    }
    for kind in KINDS:
        seen = [calls[kind] for calls in runs["first_calls"] if kind in calls]
        if seen:
            summary[kind] = {
                "first_ms": round(statistics.median(c["first_ms"] for c in seen), 1),
                "later_ms": round(statistics.median(c["later_ms"] for c in seen), 1),
            }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_task", description=__doc__.splitlines()[0])
    parser.add_argument("--pool", choices=("prefork", "threads", "gevent"), default="prefork")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--parts", type=int, default=16, help="parts of each chord")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-first-task-") as workdir:
        summary = run(args.pool, args.concurrency, args.parts, args.rounds, Path(workdir))
    print(summary)
    for setting, found in summary["warm_up"].items():
        calls = "; ".join(
            f"{kind} first {found[kind]['first_ms']} ms, later {found[kind]['later_ms']} ms"
            for kind in KINDS if kind in found
        )  # fmt: skip
        print(
            f"warm-up {setting}: first chord of {summary['parts']} {found['first_chord']} s, "
            f"second {found['second_chord']} s; {calls}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
