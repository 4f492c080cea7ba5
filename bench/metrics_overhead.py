"""Worker CPU per task added by the metrics: a micro-benchmark, metrics on against off.

``python -m bench.metrics_overhead`` runs, in two fresh processes, the same
loop: a task run through Celery's tracer (``Task.apply``: the ``task_prerun``,
``task_postrun`` and ``task_success`` signals), a ``task_received`` signal and
one reported GCS write (what storing the result reports through
``celery_gcs.observe``). One process has ``celery_gcs.telemetry.metrics``
loaded (prometheus-client in multiprocess mode, as in a worker); the other
does not. The difference in CPU time per task is what metrics cost a worker;
the issue allows 0.2 ms. Writes bench/results/metrics-overhead.md.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

TASKS, ROUNDS = 20_000, 5
RESULTS = Path(__file__).resolve().parent / "results"

_LOOP = """
import json, sys, time
if sys.argv[1] == "on":
    import celery_gcs.telemetry.metrics
from celery import Celery, signals
from celery_gcs import observe
app = Celery("bench", set_as_current=False)
app.conf.task_store_eager_result = False
@app.task
def add(x, y):
    return x + y
class Request:
    name = add.name
rounds = []
for _ in range({rounds}):
    began = time.process_time()
    for n in range({tasks}):
        signals.task_received.send(sender=None, request=Request)
        add.apply((n, n))
        with observe.request(observe.GCS_WRITE):
            pass
    rounds.append((time.process_time() - began) / {tasks})
print(json.dumps(rounds))
"""


def cpu_per_task(mode: str) -> list[float]:
    code = _LOOP.format(rounds=ROUNDS, tasks=TASKS)
    done = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> int:
    off, on = cpu_per_task("off"), cpu_per_task("on")
    added = statistics.median(on) - statistics.median(off)
    lines = [
        "# Worker CPU per task added by the metrics",
        "",
        (
            f"`python -m bench.metrics_overhead`, {time.strftime('%Y-%m-%d')}: {ROUNDS} rounds of {TASKS:,} tasks "
            "through Celery's tracer, a task_received signal and one reported GCS write each."
        ),
        "",
        "| metrics | CPU per task (median of rounds) |",
        "|---|---|",
        f"| off | {statistics.median(off) * 1e6:.1f} µs |",
        f"| on  | {statistics.median(on) * 1e6:.1f} µs |",
        f"| added | **{added * 1e6:.1f} µs** (allowed: 200 µs) |",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "metrics-overhead.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
