"""Gathering a group's results from real workers: each result read about once."""

from __future__ import annotations

import pytest
from celery import group

from ..support import tasks
from ..support.chords import sig

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
