"""Gathering a group's results from real workers: each result read about once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from celery import chord, group

from ..support import tasks
from ..support.chords import callback_runs, settle, sig

pytestmark = pytest.mark.usefixtures("stack")


def test_a_group_is_gathered_reading_each_result_about_once(app, start_worker, stack) -> None:
    """Issue 17: Celery's get_many read every pending result again each interval (0.87 wasted reads a task)."""
    start_worker(concurrency=2)
    size = 300
    result = group(sig(app, tasks.sleep, 0.01, n) for n in range(size)).apply_async()
    stack.gcs.reset_counts()
    assert result.get(timeout=120) == list(range(size))
    reads = stack.gcs.snapshot().get("object.read", 0)
    # Every result once, and a few looks at results not stored yet (Celery's own read 3.7 x size here).
    assert size <= reads <= 1.1 * size


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


#: Each pool as users run it (tests/e2e/test_chords.py's POOLS).
POOLS = {"prefork": 2, "threads": 20, "gevent": 50}
#: Header results read while the callback gathers: held by the proxy until this many are in flight.
IN_FLIGHT = 8
#: A header result's download (object names are URL-encoded in the path).
HEADER_READ = "GET /download/storage/v1/b/[^/]+/o/.*celery-task-meta-.*"


@pytest.mark.parametrize("pool", list(POOLS))
def test_the_callback_gathers_its_values_with_reads_in_flight_together(app, start_worker, stack, pool) -> None:
    """Issue 24 item 3: the gather's reads overlap (bounded by gcs_threadpool_maxsize) under every pool,
    and each value is read about once."""
    start_worker(pool=pool, concurrency=POOLS[pool])
    size = 40
    # Nothing else reads a task's result while the chord runs (the client waits on Redis, below).
    held = stack.gcs.delay(HEADER_READ, None, calls=range(1, IN_FLIGHT + 1))
    stack.gcs.reset_counts()
    result = chord(sig(app, tasks.add, n, n) for n in range(size))(sig(app, tasks.collect))
    held.wait(timeout=60)  # IN_FLIGHT reads held at once: one read after another would never get there
    assert held.struck == IN_FLIGHT
    held.release()
    wait_until(lambda: callback_runs(app, result) == 1)
    reads = stack.gcs.snapshot().get("object.read", 0)
    # The GroupResult, then the other parts' values about once each (a part counted but not yet
    # stored is looked at again).
    assert size <= reads <= 1.1 * size + 1
    assert result.get(timeout=60) == [2 * n for n in range(size)]
    settle()
    assert callback_runs(app, result) == 1
