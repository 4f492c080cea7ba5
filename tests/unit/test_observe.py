"""The telemetry seam: observers see each call's kind, outcome and error, and each event."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from celery_gcs import observe
from celery_gcs.telemetry import names


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def start(self, kind: str) -> str:
        self.seen.append(("start", kind))
        return f"token-{kind}"

    def end(self, token: Any, kind: str, outcome: str, seconds: float, error: BaseException | None) -> None:
        assert seconds >= 0
        self.seen.append(("end", token, kind, outcome, type(error).__name__ if error else None))

    def event(self, name: str) -> None:
        self.seen.append(("event", name))


@pytest.fixture
def recorder():
    recorder = Recorder()
    observe.add(recorder)
    yield recorder
    observe.remove(recorder)


def test_a_call_is_reported_with_its_outcome(recorder) -> None:
    with observe.request(observe.GCS_READ, (KeyError,)):
        pass
    with pytest.raises(KeyError), observe.request(observe.GCS_READ, (KeyError,)):
        raise KeyError("missing")
    with pytest.raises(ValueError), observe.request(observe.GCS_WRITE, (KeyError,)):
        raise ValueError("boom")
    ends = [entry for entry in recorder.seen if entry[0] == "end"]
    assert ends == [
        ("end", "token-gcs.read", "gcs.read", observe.OK, None),
        ("end", "token-gcs.read", "gcs.read", observe.REFUSED, "KeyError"),
        ("end", "token-gcs.write", "gcs.write", observe.ERROR, "ValueError"),
    ]


def test_events_reach_every_observer(recorder) -> None:
    other = Recorder()
    observe.add(other)
    try:
        observe.event(observe.PART_COUNTED)
    finally:
        observe.remove(other)
    assert recorder.seen == other.seen == [("event", observe.PART_COUNTED)]


def test_with_no_observer_nothing_is_timed() -> None:
    assert observe.request(observe.GCS_READ) is observe.request(observe.FIRESTORE_COMMIT)


def test_every_event_has_a_metric_and_the_worker_registers_what_names_lists() -> None:
    """Checked in a fresh process: importing the metrics module turns them on."""
    assert set(names.EVENT_METRICS) == set(observe.CHORD_EVENTS)
    code = (
        "import json, itertools, celery_gcs.telemetry.metrics as m; from prometheus_client import REGISTRY; "
        "families = itertools.chain(REGISTRY.collect(), m.OpenChords(None).describe()); "
        "print(json.dumps([[f.name, f.type] for f in families if f.name.startswith('celery')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    registered = {tuple(family) for family in json.loads(out)}
    assert registered == {(metric.name, metric.type) for metric in names.ALL if metric.source == "worker"}


def test_the_docs_table_lists_every_metric_as_exported() -> None:
    """docs/observability.md's table, row for row, from ``names``."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()
    table = doc.split("<!-- metrics-table")[1].split("<!-- end metrics-table -->")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    expected = [
        f"| `{metric.series[0] if metric.type != 'histogram' else metric.name}` | {metric.type} | "
        f"{', '.join(metric.labels)} | {metric.source} | {metric.help} |"
        for metric in names.ALL
    ]
    assert rows == expected



def test_only_prefork_counts_as_forking_after_start() -> None:
    """Its main process reads the open chords in a spawned process (gRPC cannot be forked safely)."""
    code = (
        "import types, celery_gcs.telemetry.metrics as m; "
        "print([m._forks(types.SimpleNamespace(pool_cls=p)) for p in ('prefork', 'threads', 'solo')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[True, False, False]"


def test_a_scrape_skips_a_process_file_not_sized_yet() -> None:
    """make test-chords, under load: a scrape answered HTTP 500 (struct.error) when it read the file of a
    prefork child just started (--max-tasks-per-child), which prometheus-client creates before sizing."""
    code = (
        "import os, celery_gcs.telemetry.metrics as m; from prometheus_client import CollectorRegistry, generate_latest; "
        "m.retried.labels('t').inc(); d = os.environ['PROMETHEUS_MULTIPROC_DIR']; "
        "open(os.path.join(d, 'counter_99999999.db'), 'wb').close(); "
        "r = CollectorRegistry(); m.EveryProcess(r, d); "
        "print([line for line in generate_latest(r).decode().splitlines() if line.startswith('celery_tasks_retried_total')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "task=\"t\"} 1.0" in out
