"""chords.py's pure parts: the publish budget, header shapes flattened and rebuilt."""

from __future__ import annotations

import pytest
from celery.result import AsyncResult, GroupResult
from celery_gcs import chords


def test_the_publish_budget_follows_the_publish_retry_policy() -> None:
    default = chords.publish_budget(
        {"task_publish_retry_policy": {"max_retries": 3, "interval_start": 0, "interval_max": 1, "interval_step": 0.2}}
    )
    assert default == pytest.approx((0 + 0.2 + 0.4) + 4 * 4)
    slow = chords.publish_budget(
        {
            "task_publish_retry_policy": {"max_retries": 10, "interval_start": 1, "interval_step": 1, "interval_max": 5},
            "broker_connection_timeout": 10,
        }
    )
    assert slow == pytest.approx(sum(min(1 + n, 5) for n in range(10)) + 11 * 10)
    # An unbounded policy is capped by Celery at three retries for callbacks.
    assert chords.publish_budget({"task_publish_retry_policy": {"max_retries": None}}) == pytest.approx(default)


def test_header_shapes_flatten_and_rebuild() -> None:
    shape = [
        AsyncResult("a"),
        GroupResult("g", [AsyncResult("b"), GroupResult("h", [AsyncResult("c")])]),
        AsyncResult("d"),
    ]
    assert list(chords.leaf_ids(shape)) == ["a", "b", "c", "d"]
    values = {"a": 1, "b": 2, "c": 3, "d": 4}
    assert chords.rebuild(shape, values) == [1, [2, [3]], 4]
