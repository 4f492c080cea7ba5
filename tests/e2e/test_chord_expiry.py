"""Issue 25, item 5, through real workers: a chord whose header waits in the queue longer than results live."""

from __future__ import annotations

import time

import pytest
from celery import chord

from ..support import tasks
from ..support.chords import callback_runs, settle, sig

pytestmark = pytest.mark.usefixtures("stack")


def test_a_chord_whose_header_waited_in_the_queue_past_result_expires_completes(make_app, start_worker) -> None:
    """It failed with "GroupResult ... no longer exists" before any part had run."""
    app = make_app(result_expires=4)
    result = chord(sig(app, tasks.add, n, n) for n in range(20))(sig(app, tasks.collect))
    time.sleep(5)  # no worker yet: the header waits in the queue past result_expires
    start_worker(concurrency=2, result_expires=4)
    assert result.get(timeout=120) == [2 * n for n in range(20)]
    settle()
    assert callback_runs(app, result) == 1
