"""Workers killed in the middle of a large chord, with ``task_acks_late``: the chord completes once.

* SIGKILL of pool children: with ``task_reject_on_worker_lost`` the worker's
  main process requeues the message of the task the child was running, at
  once; the replay finds its part counted (or not) and goes on.
* SIGTERM of the whole worker: a warm shutdown lets running tasks finish and
  gives the messages it had prefetched back to the queue when it closes its
  broker connection (kombu's Redis transport restores unacknowledged
  messages at shutdown), so a new worker carries on at once.

Neither needs the Redis transport's ``visibility_timeout``: that is only how
messages held by a worker that died without closing its connection (SIGKILL
of the main process, a lost node) come back, an hour later by default.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from celery import chord

from ..support import tasks
from ..support.chords import callback_runs, settle, sig

pytestmark = pytest.mark.usefixtures("stack")

ACKS_LATE = {"task_acks_late": True}
LOST = "Worker exited prematurely: signal 9 (SIGKILL)"


def wait_until(condition: Callable[[], bool], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def done(*workers: Any) -> int:
    """Tasks the workers finished so far, from their logs."""
    return sum(worker.log().count(" succeeded in ") for worker in workers)


def run_chord_killing_children(app: Any, start_worker: Any, size: int, kills: int) -> None:
    worker = start_worker(concurrency=2, task_reject_on_worker_lost=True, **ACKS_LATE)
    result = chord(sig(app, tasks.add, n, n) for n in range(size))(sig(app, tasks.collect))
    for kill in range(1, kills + 1):
        wait_until(lambda kill=kill: done(worker) >= kill * size // (kills + 1))
        # A child between two tasks dies without losing one: kill again until
        # one dies mid-task (the worker logs the loss), a few tries at most.
        for _ in range(10):
            lost_before = worker.log().count(LOST)
            victim = worker.children()[0]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda victim=victim: victim not in worker.children())  # the pool starts another
            time.sleep(0.2)  # the loss is logged once the main process has handled it
            if worker.log().count(LOST) > lost_before or done(worker) >= size:
                break
    assert result.get(timeout=900) == [2 * n for n in range(size)]
    settle()
    assert callback_runs(app, result) == 1
    assert worker.process.poll() is None
    assert worker.log().count(LOST) >= 1, "a child was killed while running a task"


def run_chord_terminating_the_worker(app: Any, start_worker: Any, size: int) -> None:
    first = start_worker(concurrency=2, **ACKS_LATE)
    result = chord(sig(app, tasks.add, n, n) for n in range(size))(sig(app, tasks.collect))
    wait_until(lambda: done(first) >= size // 3)
    assert first.terminate() == 0  # a warm shutdown
    assert "unacknowledged message(s)" in first.log()  # "Restoring N unacknowledged message(s)"
    finished_by_first = done(first)
    assert finished_by_first < size
    second = start_worker(concurrency=2, **ACKS_LATE)
    assert result.get(timeout=900) == [2 * n for n in range(size)]
    settle()
    assert callback_runs(app, result) == 1
    assert done(second) >= size - finished_by_first  # the rest, requeued at the shutdown, ran here


def test_sigkilled_pool_children_in_a_chord_of_two_hundred(app, start_worker) -> None:
    run_chord_killing_children(app, start_worker, size=200, kills=3)


def test_a_worker_sigtermed_in_a_chord_of_two_hundred(app, start_worker) -> None:
    run_chord_terminating_the_worker(app, start_worker, size=200)


@pytest.mark.slow
def test_sigkilled_pool_children_in_a_chord_of_a_thousand(app, start_worker) -> None:
    run_chord_killing_children(app, start_worker, size=1000, kills=6)


@pytest.mark.slow
def test_a_worker_sigtermed_in_a_chord_of_a_thousand(app, start_worker) -> None:
    run_chord_terminating_the_worker(app, start_worker, size=1000)
