"""Workers killed in the middle of a large chord, with ``task_acks_late``: the chord completes once.

The chords are large enough for a tree of counters (13 leaves under a top
counter at 200 parts), so a kill can land between a part's count, its
leaf's report to the top and the settling of the chord; and every header
part's result is checked, and the counters and parts are cleaned up after.

* SIGKILL of pool children: with ``task_reject_on_worker_lost`` the worker's
  main process requeues the message of the task the child was running, at
  once; the replay's count is refused if its part was counted, and it walks
  up its counters to finish what the dead child left.
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
from celery import chord, states
from celery_gcs.stores import chord_tree

from ..support import tasks
from ..support.chords import callback_runs, ended_only, settle, sig

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


#: What the chord code logs when a chord's counting went wrong.
MISCOUNTS = ("went below zero", "is not one of its parts", "is gone while the chord is open")


def check_ended_once(app: Any, result: Any, size: int, firestore_docs: Any, *workers: Any) -> None:
    """The chord completed once, every part stored its result, nothing miscounted, its documents cleaned up."""
    assert chord_tree.top_level(chord_tree.leaf_count(size)) >= 1  # a tree, not a single counter
    assert result.get(timeout=900) == [2 * n for n in range(size)]
    settle()
    assert callback_runs(app, result) == 1
    metas = [app.backend.get_task_meta(part.id, cache=False) for part in result.parent.results]
    assert [meta["status"] for meta in metas] == [states.SUCCESS] * size
    logs = "".join(worker.log() for worker in workers)
    assert not [line for line in logs.splitlines() if any(text in line for text in MISCOUNTS)]
    assert ended_only(firestore_docs())


def run_chord_killing_children(app: Any, start_worker: Any, firestore_docs: Any, size: int, kills: int) -> None:
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
    check_ended_once(app, result, size, firestore_docs, worker)
    assert worker.process.poll() is None
    assert worker.log().count(LOST) >= 1, "a child was killed while running a task"


def run_chord_terminating_the_worker(app: Any, start_worker: Any, firestore_docs: Any, size: int) -> None:
    first = start_worker(concurrency=2, **ACKS_LATE)
    result = chord(sig(app, tasks.add, n, n) for n in range(size))(sig(app, tasks.collect))
    wait_until(lambda: done(first) >= size // 3)
    assert first.terminate() == 0  # a warm shutdown
    assert "unacknowledged message(s)" in first.log()  # "Restoring N unacknowledged message(s)"
    finished_by_first = done(first)
    assert finished_by_first < size
    second = start_worker(concurrency=2, **ACKS_LATE)
    check_ended_once(app, result, size, firestore_docs, first, second)
    assert done(second) >= size - finished_by_first  # the rest, requeued at the shutdown, ran here


def test_sigkilled_pool_children_in_a_chord_of_two_hundred(app, start_worker, firestore_docs) -> None:
    run_chord_killing_children(app, start_worker, firestore_docs, size=200, kills=3)


def test_a_worker_sigtermed_in_a_chord_of_two_hundred(app, start_worker, firestore_docs) -> None:
    run_chord_terminating_the_worker(app, start_worker, firestore_docs, size=200)


@pytest.mark.slow
def test_sigkilled_pool_children_in_a_chord_of_a_thousand(app, start_worker, firestore_docs) -> None:
    run_chord_killing_children(app, start_worker, firestore_docs, size=1000, kills=6)


@pytest.mark.slow
def test_a_worker_sigtermed_in_a_chord_of_a_thousand(app, start_worker, firestore_docs) -> None:
    run_chord_terminating_the_worker(app, start_worker, firestore_docs, size=1000)
