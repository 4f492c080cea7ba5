"""Where ``get_many``'s time goes at production latency: each process's CPU, for reads in flight side by side.

``python -m bench.read_floor [--results 1000] [--in-flight 32,64] [--rounds 3]``

One stack at ``bench.latency``'s model (every GCS read held 20 ms); ``results``
results stored once; then, for each round and each ``gcs_threadpool_maxsize``
in turn (the order alternating), ``get_many`` over all of them from this
process (the cache cleared), timed, with the CPU seconds this process, the
latency proxies and the GCS emulator used. A finished group is read in two
round trips (its last result, then the rest), so the waits are about
``results / in_flight x 20 ms``; what the CPU columns add up to is the rest.
About a minute at the defaults (bench/ANALYSIS.md has a run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from celery import Celery, states

from . import cpu, latency
from .stack import BenchStack
from .workloads import _payload

#: The process groups whose CPU is reported.
GROUPS = ("client", "proxies", "gcs-emulator")


def run(results: int, in_flight: list[int], rounds: int, workdir: Path) -> dict[int, dict[str, Any]]:
    stack = BenchStack(workdir, backends=("celery_gcs",), concurrency=1, latency=dict(latency.MODEL)).start()
    url = stack.by_name["celery_gcs"].url

    def client(size: int) -> Celery:
        app = Celery(f"bench-read-floor-{size}", set_as_current=False)
        app.conf.update(broker_url=stack.broker_url, result_backend=url, gcs_threadpool_maxsize=size)
        return app

    found: dict[int, dict[str, list[float]]] = {size: {"seconds": []} for size in in_flight}
    try:
        ids = [str(uuid.uuid4()) for _ in range(results)]
        writer = client(in_flight[0])
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda i: writer.backend.store_result(ids[i], _payload(i), states.SUCCESS), range(results)))
        writer.close()
        for round_ in range(rounds):
            for size in in_flight if round_ % 2 == 0 else in_flight[::-1]:
                app = client(size)  # a new one: nothing cached from the last round
                app.backend.warm_up()  # its client and a connection made before timing, as a worker's are
                groups = stack.measured_processes()
                before = cpu.cpu_by_tree(groups)
                started = time.perf_counter()
                read = dict(app.backend.get_many(ids, timeout=120))
                found[size]["seconds"].append(time.perf_counter() - started)
                used = cpu.used(before, cpu.cpu_by_tree(groups))
                app.close()
                for group in GROUPS:
                    found[size].setdefault(group, []).append(used.get(group, 0.0))
                if len(read) != results:
                    raise RuntimeError(f"get_many returned {len(read)} of {results} results")
    finally:
        stack.stop()
    return {
        size: {key: round(statistics.median(values), 3) for key, values in runs.items()} | {"runs": runs["seconds"]}
        for size, runs in found.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_floor", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--in-flight", default="32,64", help="gcs_threadpool_maxsize values, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.in_flight.split(",") if size.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-read-floor-") as workdir:
        summary = run(args.results, sizes, args.rounds, Path(workdir))
    for size, found in summary.items():
        waits = args.results / size * latency.MODEL["gcs.read"]
        print(
            f"{size} in flight: get_many of {args.results:,} {found['seconds']} s "
            f"(runs {[round(s, 2) for s in found['runs']]}; waits alone {waits:.2f} s); CPU s: "
            + ", ".join(f"{group} {found[group]}" for group in GROUPS)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
