"""`celery-gcs demo` (what `make demo` runs), end to end on the emulators.

Its summary is checked against what is really in the bucket, in Firestore and
in the run's record in Redis; interrupted at any point, it leaves nothing running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from celery_gcs import conventions
from celery_gcs.cli import demo
from celery_gcs.local import demo_tasks, processes, services
from google.cloud import firestore

from ..support import gcs
from .conftest import MARKER, clean_env, marked_processes, port_open, run_cli

WORKLOAD = demo.Workload()  # the defaults: what `make demo` runs

#: Minutes, not seconds: run by `make test-package` (and .ci/run), not `make test`.
pytestmark = pytest.mark.package


def test_the_summary_matches_the_bucket_firestore_and_the_record(
    stack: Any, tmp_path: Path, marker: str
) -> None:
    env = clean_env({**stack.local_stack.env(), MARKER: marker})
    summary_path = tmp_path / "summary.json"
    done = run_cli("demo", "--use-env", "--json", str(summary_path), env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_path.read_text())
    expected_runs = WORKLOAD.expected_runs()
    tasks = sum(expected_runs.values())
    assert summary["ok"] is True
    assert summary["workload"] == {"group": 100, "chain": 10, "chord": 1000}
    assert summary["results_correct"] == {"group": True, "chain": True, "chord": True}

    # Results stored: the objects under the run's prefix: every task's result, and the chord's
    # record that its callback went out. The chord's header GroupResult, which the callback reads
    # its parts' ids from, is deleted as it ends.
    client = gcs.client(project=stack.local_stack.project)
    prefix = summary["prefix"] + "/"
    blobs = list(client.list_blobs(summary["bucket"], prefix=prefix))
    assert len(blobs) == summary["results_stored"] == tasks + 1
    task_results = [
        blob for blob in blobs if blob.name[len(prefix) :].startswith("celery-task-meta-")
    ]
    assert len(task_results) == summary["results_by_kind"]["task results"] == tasks
    assert summary["results_by_kind"]["group results"] == 0
    assert summary["results_by_kind"]["chord state"] == 1
    # (Listed objects carry media links naming the demo's proxy, gone now: read by name.)
    bucket = client.bucket(summary["bucket"])
    with ThreadPoolExecutor(8) as pool:
        metas = list(
            pool.map(
                lambda blob: json.loads(bucket.blob(blob.name).download_as_bytes()), task_results
            )
        )
    assert {meta["status"] for meta in metas} == {"SUCCESS"}
    assert (
        sum(1 for meta in metas if meta["result"] == sum(i * i for i in range(1000))) == 1
    )  # the callback's

    # Chord documents: only the ended chord's own is left, marked done, without parts or counters.
    client = firestore.Client(project=stack.local_stack.project)
    documents = list(client.collection(summary["firestore_collection"]).list_documents())
    assert [doc.get().to_dict()["done"] for doc in documents] == [True]
    for group in (conventions.FIRESTORE_PARTS_COLLECTION, conventions.FIRESTORE_COUNTERS_COLLECTION):
        assert list(documents[0].collection(group).list_documents()) == []
    assert summary["chord_documents"] == 0

    # Tasks run and callbacks fired: the record the worker kept in Redis.
    record = redis.Redis.from_url(stack.local_stack.redis_url)
    ran_key, callbacks_key = demo_tasks.record_keys(summary["run"])
    ran = {name.decode(): int(count) for name, count in record.hgetall(ran_key).items()}
    assert ran == summary["tasks_run_by_name"] == expected_runs
    assert summary["tasks_run"] == summary["tasks_expected"] == tasks
    assert int(record.get(callbacks_key)) == summary["callbacks_fired"] == 1

    # Requests: by kind, adding up; every stored object took at least one write.
    by_kind = summary["gcs_requests_by_kind"]
    assert summary["gcs_requests"] == sum(by_kind.values())
    assert by_kind["object.write"] >= summary["results_stored"]
    assert by_kind["object.read"] >= WORKLOAD.group + 2  # the client read every result back
    assert summary["firestore_requests"] == sum(summary["firestore_requests_by_method"].values())
    # The chord was counted in Firestore: a commit per part at least (part documents).
    assert summary["firestore_requests_by_method"]["firestore.Commit"] >= 1000

    # The worker's own metrics, scraped at the end, say the same.
    metrics = summary["worker_metrics"]
    assert summary["metrics_url"].startswith("http://127.0.0.1:")
    assert metrics["celery_tasks_succeeded_total"] == tasks and metrics["celery_tasks_failed_total"] == 0
    assert metrics["celery_gcs_chord_parts_counted_total"] == 1000
    assert metrics["celery_gcs_chord_callbacks_published_total"] == 1
    assert metrics["celery_gcs_chords_open"] == 0  # read from Firestore as it was scraped: the chord ended
    assert "Worker metrics" in done.stdout

    # The table says the same, and nothing the demo started is left running.
    table = done.stdout
    assert re.search(r"Tasks run\s+│\s+1,111", table) and re.search(
        r"Callbacks fired\s+│\s+1 ", table
    )
    assert re.search(r"Results stored\s+│\s+1,112", table) and re.search(
        r"Chord documents\s+│\s+0 ", table
    )
    assert f"{summary['gcs_requests']:,}" in table
    assert "Stopped everything the demo started." in done.stderr
    assert marked_processes(marker) == []


def _started_groups(stderr: str) -> dict[str, int]:
    """Process groups the demo reported starting: each service's and the worker's."""
    groups = {
        name: int(pid)
        for name, pid in re.findall(
            r"(GCS emulator|Firestore emulator|Redis) listening on \S+ \(pid (\d+)\)", stderr
        )
    }
    worker = re.search(r"worker ready \(pid (\d+)\)", stderr)
    if worker:
        groups["worker"] = int(worker.group(1))
    return groups


def _count_objects(gcs_port: int, bucket: str, prefix: str) -> int:
    query = urllib.parse.urlencode({"prefix": prefix})
    with urllib.request.urlopen(
        f"http://127.0.0.1:{gcs_port}/storage/v1/b/{bucket}/o?{query}", timeout=10
    ) as response:
        return len(json.loads(response.read()).get("items", []))


def _assert_nothing_left(marker: str, stderr: str) -> None:
    groups = _started_groups(stderr)
    assert not [name for name, pgid in groups.items() if processes.group_running(pgid)]
    ports = [int(port) for port in re.findall(r"listening on 127\.0\.0\.1:(\d+)", stderr)]
    ports += [int(port) for port in re.findall(r"on 127\.0\.0\.1:(\d+)", stderr)]  # the proxies too
    assert ports and not [port for port in ports if port_open(port)]
    assert marked_processes(marker) == []


def test_ctrl_c_mid_run_stops_everything_it_started(
    tmp_path: Path, marker: str, background: Any
) -> None:
    running = background("demo", env=clean_env({MARKER: marker}), cwd=tmp_path)
    prefix = re.search(r"results under (\S+)/", running.wait_for_line("results under")).group(1)
    gcs_port = int(
        re.search(r":(\d+) ", running.wait_for_line("GCS emulator listening on")).group(1)
    )
    running.wait_for_line("workload submitted")
    deadline = time.monotonic() + 180
    while (
        _count_objects(gcs_port, services.BUCKET, prefix + "/") < 50
    ):  # the worker is storing results
        assert time.monotonic() < deadline, running.stderr
        time.sleep(0.2)
    assert running.process.poll() is None
    running.process.send_signal(signal.SIGINT)
    assert running.wait(timeout=120) == 128 + signal.SIGINT
    assert "SIGINT: stopping everything the demo started" in running.stderr
    assert "Stopped everything the demo started." in running.stderr
    assert "Tasks run" not in running.stdout  # interrupted before its summary
    assert set(_started_groups(running.stderr)) == {
        "GCS emulator",
        "Firestore emulator",
        "Redis",
        "worker",
    }
    _assert_nothing_left(marker, running.stderr)


def test_sigterm_while_starting_stops_everything_it_started(
    tmp_path: Path, marker: str, background: Any
) -> None:
    running = background("demo", env=clean_env({MARKER: marker}), cwd=tmp_path)
    running.wait_for_line("Starting Firestore emulator")
    running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=120) == 128 + signal.SIGTERM
    assert "Stopped everything the demo started." in running.stderr
    assert "worker ready" not in running.stderr
    _assert_nothing_left(marker, running.stderr)


def _bin_with(tmp_path: Path, *programs: str) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    for program in programs:
        os.symlink(services.require(program), directory / program)
    return directory


def _sdk_without_the_firestore_emulator(tmp_path: Path) -> Path:
    """A gcloud that exists, in an SDK that lacks platform/cloud-firestore-emulator."""
    sdk_bin = tmp_path / "sdk" / "bin"
    sdk_bin.mkdir(parents=True)
    gcloud = sdk_bin / "gcloud"
    gcloud.write_text("#!/bin/sh\nexit 1\n")
    gcloud.chmod(0o755)
    directory = _bin_with(tmp_path, "java", "redis-server")
    os.symlink(gcloud, directory / "gcloud")
    return directory


@pytest.mark.parametrize(
    ("make_path", "message"),
    [
        (lambda tmp: _bin_with(tmp, "java", "gcloud"),
         "redis-server not found; install it with: apt-get install -y redis-server"),
        (lambda tmp: _bin_with(tmp, "gcloud", "redis-server"),
         "java not found; install it with: apt-get install -y openjdk-17-jre-headless"),
        (_sdk_without_the_firestore_emulator,
         ("the gcloud Firestore emulator is not installed in {tmp}/sdk; "
          "install it with: gcloud components install cloud-firestore-emulator")),
    ],
    ids=["redis", "java", "firestore-emulator"],
)  # fmt: skip
def test_a_missing_prerequisite_is_reported_with_its_install_command(
    tmp_path: Path, marker: str, make_path: Any, message: str
) -> None:
    env = clean_env({MARKER: marker}, PATH=str(make_path(tmp_path)))
    done = run_cli("demo", env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == demo.EXIT_PREREQUISITES
    assert message.format(tmp=tmp_path) in done.stderr.replace("\n", "")
    assert done.stdout == ""
    assert marked_processes(marker) == []
