"""The benchmark harness on tiny sizes: it runs end to end, writes its files, and counts requests right.

No timings are asserted: only that every workload ran against every backend in
each pass (timed, counted, production-like), and that the counting proxies saw
the requests each backend is known to make.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import harness, latency, report
from bench.stack import NAMES

pytestmark = pytest.mark.bench

# The metrics' cost at 100 tasks a round: fewer take less CPU than the kernel's 10 ms tick can see.
TINY = harness.Plan(
    "smoke", repeats=1, results=6, gets=2, tasks=5, chords=(4,), default_budget=120, metrics_tasks=100
)
#: Held times small enough for a smoke run, large enough to be held at all.
HELD = {kind: 0.002 for kind in latency.MODEL}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Path]]:
    out = tmp_path_factory.mktemp("bench")
    summary = harness.run(
        TINY, out / "tmp", NAMES, say=lambda line: None, production=HELD, production_concurrency=2
    )
    (out / "README.md").write_text("# project\n\n## Layout\n")
    return summary, report.write(summary, out, readme=out / "README.md")


def counts(summary: dict[str, Any], workload: str, backend: str, side: str) -> dict[str, int]:
    """The requests of the one round, as counted by the proxies on that side."""
    return summary["workloads"][workload]["backends"][backend]["totals"][side][0]


def test_every_workload_ran_against_every_backend(run) -> None:
    summary, _ = run
    assert set(summary["workloads"]) == {
        "store",
        "get_many",
        "join_native",
        "get",
        "tasks",
        "chord4",
    }
    for entry in summary["workloads"].values():
        for name in NAMES:
            assert entry["backends"][name]["seconds"]["n"] == 1
        assert set(entry["ratios"]) == {"celery_gcs/redis", "builtin/celery_gcs"}
    # Each callback ran once in each pass: the timed, the counted, and the production-like
    # pass at -c 16 and again at -c 4.
    assert summary["callback_runs"] == {name: [1, 1, 1, 1] for name in NAMES}


def test_requests_are_counted_in_a_pass_of_their_own_and_production_is_timed_beside(run) -> None:
    summary, _ = run
    assert summary["meta"]["counted_separately"]
    production = summary["production"]
    assert production["latency"]["ms"] == {kind: 2.0 for kind in latency.MODEL}
    assert set(production["workloads"]) == set(summary["workloads"])
    for entry in production["workloads"].values():
        assert set(entry["ratios"]) == {"celery_gcs/redis", "builtin/celery_gcs"}
        assert all(entry["backends"][name]["seconds"]["n"] == 1 for name in NAMES)


def test_the_metrics_cost_is_measured_side_by_side_in_the_same_run(run) -> None:
    """celery-gcs's worker and its twin with metrics on, alternating: the CPU of each, and their ratio per round."""
    summary, paths = run
    found = summary["metrics_overhead"]
    assert found["tasks"] == TINY.metrics_tasks and len(found["rounds"]) == TINY.repeats
    assert found["ratio"]["n"] == TINY.repeats and found["ratio"]["median"] > 0
    assert found["counted"] == found["ran"] == 4 + TINY.metrics_tasks * TINY.repeats  # the twin's metrics were on
    target = next(t for t in summary["targets"] if t["target"].startswith("worker CPU per task with the metrics on"))
    assert "on / off" in target["measured"]
    assert "Metrics' cost" in paths["md"].read_text()


def test_the_files_appear(run) -> None:
    _, paths = run
    assert json.loads(paths["json"].read_text())["meta"]["mode"] == "smoke"
    text = paths["md"].read_text()
    assert "## Targets" in text and "celery-gcs time / Redis time" in text
    assert "## Production-like" in text and "gcs.write 2 ms" in text
    readme = (paths["md"].parent / "README.md").read_text()
    assert "celery-gcs / Redis, local | production-like" in readme
    assert "](bench/results/latest.png)" in readme
    png = paths["png"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and int.from_bytes(png[16:20], "big") == 1200


def test_storing_n_results_counts_n_object_writes(run) -> None:
    summary, _ = run
    assert counts(summary, "store", "celery_gcs", "client") == {"object.write": TINY.results}
    builtin = counts(summary, "store", "builtin", "client")
    # The built-in backend reads each result before writing it (a 404 for a new one).
    assert (
        builtin["object.write"]
        == builtin["object.read"]
        == builtin["object.read!404"]
        == TINY.results
    )
    assert counts(summary, "get_many", "celery_gcs", "client") == {"object.read": TINY.results}
    assert counts(summary, "get", "celery_gcs", "client") == {"object.read": TINY.gets}
    assert counts(summary, "store", "redis", "client") == {}  # Redis goes around the proxies


def test_the_worker_stores_each_task_with_one_write(run) -> None:
    summary, _ = run
    assert counts(summary, "tasks", "celery_gcs", "worker") == {"object.write": TINY.tasks}
    gathered = counts(summary, "tasks", "celery_gcs", "client")
    assert gathered["object.read"] - gathered.get("object.read!404", 0) == TINY.tasks


def test_a_chord_is_counted_part_by_part(run) -> None:
    summary, _ = run
    n = 4
    worker, client = (
        counts(summary, "chord4", "celery_gcs", "worker"),
        counts(summary, "chord4", "celery_gcs", "client"),
    )
    # The parts' results, the record that the callback went out ("~sent", written before the
    # chord is marked done, so a holder that could not mark it never sends twice), the callback's.
    assert worker["object.write"] == n + 2
    assert client["object.write"] == 1  # the header's GroupResult
    # The GroupResult, and every other part's result once; a part counted but not stored yet
    # (the other pool process is between the two) is read again: a 404 first.
    assert worker["object.read"] - worker.get("object.read!404", 0) == n
    # Four parts make one counter (chord_tree.FAN_IN is 16), written with the chord's document.
    assert client["doc.write"] == 2
    # Each part creates its document and counts the counter down, in one commit; settling
    # marks the chord complete and the counter reported, claims, and then renews and ends.
    assert worker["doc.write"] == 2 * n + 2 + 1 + 1
    assert worker["firestore.Commit"] == n + 3 + 1  # parts; settle, renew, end; the clean-up
    assert worker["doc.delete"] == n + 1  # every part document and the counter
    assert "firestore.RunAggregationQuery" not in worker  # nothing counts the parts by query


def test_the_readme_section_is_replaced_not_repeated(run, tmp_path: Path) -> None:
    summary, _ = run
    readme = tmp_path / "README.md"
    readme.write_text("# project\n\n## Layout\n\nfiles\n")
    report.update_readme(readme, summary)
    report.update_readme(readme, summary)
    text = readme.read_text()
    assert text.count("## Benchmarks") == 1 and text.count(report.README_START) == 1
    assert text.index("## Benchmarks") < text.index("## Layout")
