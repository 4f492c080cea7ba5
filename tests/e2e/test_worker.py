"""Real `celery worker -P prefork -c 2` processes with a Redis broker store results we read back."""

from __future__ import annotations

import time

import pytest
from celery import chain, group, states

from ..support import tasks

pytestmark = pytest.mark.usefixtures("stack")


def _send(app, task, *args, **options):
    return app.send_task(task.name, args=args, **options)


def test_tasks_run_by_a_prefork_worker_are_stored_and_read_back(app, start_worker, stack) -> None:
    start_worker(concurrency=2)
    # Issue 24: each pool child connects as it starts, not on its first task.
    wait_for_warm_up(stack, processes=2)
    results = [_send(app, tasks.add, n, n) for n in range(20)]
    assert [result.get(timeout=30) for result in results] == [2 * n for n in range(20)]
    pids = {_send(app, tasks.pid).get(timeout=30) for _ in range(8)}
    assert len(pids) >= 1  # children of the pool, each with its own clients


def test_failures_are_stored_with_their_exception(app, start_worker) -> None:
    start_worker()
    result = _send(app, tasks.fail, "kaboom")
    with pytest.raises(ValueError, match="kaboom"):
        result.get(timeout=30)
    assert result.state == states.FAILURE


def test_groups_and_chains_through_the_worker(app, start_worker) -> None:
    start_worker()
    job = group(app.signature(tasks.add.name, (n, 1)) for n in range(10)).apply_async()
    assert job.get(timeout=30) == [n + 1 for n in range(10)]
    flow = chain(
        app.signature(tasks.add.name, (1, 2)),
        app.signature(tasks.mul.name, (10,)),
        app.signature(tasks.add.name, (5,)),
    ).apply_async()
    assert flow.get(timeout=30) == 35


def test_a_result_over_the_limit_is_reported_as_the_task_failure(app, start_worker) -> None:
    start_worker(gcs_max_result_bytes=10_000)
    result = _send(app, tasks.blob, 50_000)
    with pytest.raises(Exception, match="gcs_max_result_bytes") as caught:
        result.get(timeout=30)
    assert result.state == states.FAILURE
    assert "ResultTooLarge" in type(caught.value).__name__ or "limit" in str(caught.value)


def test_task_track_started_and_extended_results(app, start_worker) -> None:
    start_worker(task_track_started=True, result_extended=True)
    result = _send(app, tasks.add, 2, 3)
    assert result.get(timeout=30) == 5
    assert (result.name, result.args) == (tasks.add.name, [2, 3])
    assert result.worker and result.worker.startswith("w")


def wait_for_warm_up(stack, *, processes: int) -> None:
    """Until each of ``processes`` has read the warm-up object and document (no task sent yet): nothing else."""
    deadline = time.monotonic() + 30
    while stack.firestore.snapshot().get("firestore.BatchGetDocuments", 0) < processes:
        assert time.monotonic() < deadline, f"no warm-up: {stack.gcs.snapshot()} {stack.firestore.snapshot()}"
        time.sleep(0.05)
    # Reads only (a retried one counts twice), of the warm-up object and document.
    assert set(stack.gcs.snapshot()) == {"object.metadata"} and stack.gcs.snapshot()["object.metadata"] >= processes
    assert set(stack.firestore.snapshot()) == {"firestore.BatchGetDocuments"}


@pytest.mark.parametrize("pool", ["threads", "gevent"])
def test_a_thread_or_green_pool_connects_at_start_and_shares_one_backend(app, start_worker, stack, pool) -> None:
    """Issue 24: the worker's first task paid for connecting to GCS and Firestore, and each thread
    (under gevent each task) built a backend of its own and connected again."""
    start_worker(pool=pool, concurrency=8)
    wait_for_warm_up(stack, processes=1)
    ran = group(app.signature(tasks.backend_identity.name) for _ in range(24)).apply_async().get(timeout=60)
    assert len({backend for _pid, backend in ran}) == 1
