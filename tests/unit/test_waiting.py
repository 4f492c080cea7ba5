"""waiting.py against a fake reader and a fake clock: how often it reads, how long it sleeps, what it yields."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection
from typing import Any

import pytest
from celery import states
from celery.exceptions import TimeoutError
from celery_gcs import deadline, waiting


class FakeClock:
    """Time that passes only when waiting sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.naps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds

    def clock(self) -> waiting.Clock:
        return waiting.Clock(monotonic=self.monotonic, sleep=self.sleep)


class FakeReader:
    """Results that become ready at given times; every read counted per task id and per call."""

    def __init__(self, clock: FakeClock, ready_at: dict[str, float]) -> None:
        self.clock = clock
        self.ready_at = ready_at
        self.reads: Counter[str] = Counter()
        self.calls = 0

    def _meta(self, task_id: str) -> dict[str, Any]:
        if self.clock.now >= self.ready_at[task_id]:
            return {"status": states.SUCCESS, "result": task_id, "task_id": task_id}
        return {"status": states.PENDING, "result": None}

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        self.reads[task_id] += 1
        self.calls += 1
        return self._meta(task_id)

    def read_ready(self, task_ids: list[str], ready_states: Collection[str]) -> dict[str, dict[str, Any]]:
        self.calls += 1
        self.reads.update(task_ids)
        metas = {task_id: self._meta(task_id) for task_id in task_ids}
        return {task_id: meta for task_id, meta in metas.items() if meta["status"] in ready_states}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_wait_for_looks_after_20_ms_then_backs_off_to_the_interval(clock: FakeClock) -> None:
    reader = FakeReader(clock, {"t": 2.0})
    meta = waiting.wait_for(reader, "t", timeout=None, interval=0.5, clock=clock.clock())
    assert meta["result"] == "t"
    assert clock.naps[:6] == [0.02, 0.04, 0.08, 0.16, 0.32, 0.5]
    assert set(clock.naps[5:]) == {0.5}
    assert reader.reads["t"] == len(clock.naps) + 1


def test_wait_for_gives_up_at_its_timeout_never_sleeping_past_it(clock: FakeClock) -> None:
    reader = FakeReader(clock, {"t": 100.0})
    calls = []
    with pytest.raises(TimeoutError):
        waiting.wait_for(reader, "t", timeout=1.0, interval=0.5, on_interval=lambda: calls.append(1), clock=clock.clock())
    assert clock.now == pytest.approx(1.0)
    assert len(calls) == reader.reads["t"]


def test_get_many_reads_results_finishing_in_order_about_once_each(clock: FakeClock) -> None:
    ids = [f"t{n}" for n in range(500)]
    reader = FakeReader(clock, {task_id: 0.01 * n for n, task_id in enumerate(ids)})  # 100 a second
    got = list(waiting.get_many(reader, ids, timeout=60, interval=0.5, clock=clock.clock()))
    assert [task_id for task_id, _ in got] == ids
    assert sum(reader.reads.values()) < 1.2 * len(ids)
    assert reader.calls < len(ids) / 10  # batches, not a round trip per result


def test_get_many_reads_a_finished_group_in_two_round_trips(clock: FakeClock) -> None:
    """Issue 24: a finished group was read in doubling batches, 1, 2, 4... (14 round trips for 100)."""
    ids = [f"t{n}" for n in range(100)]
    reader = FakeReader(clock, dict.fromkeys(ids, 0.0))
    got = dict(waiting.get_many(reader, ids, timeout=60, clock=clock.clock()))
    assert set(got) == set(ids)
    assert clock.naps == []  # all ready: no wait at all
    assert sum(reader.reads.values()) == len(ids)
    assert reader.calls == 2  # the last first, then the rest at once


def test_get_many_reads_a_group_larger_than_its_read_ahead_in_batches_of_it(clock: FakeClock) -> None:
    ids = [f"t{n}" for n in range(2 * waiting.MAX_READ_AHEAD + 10)]
    reader = FakeReader(clock, dict.fromkeys(ids, 0.0))
    assert len(dict(waiting.get_many(reader, ids, timeout=60, clock=clock.clock()))) == len(ids)
    assert sum(reader.reads.values()) == len(ids)
    assert reader.calls <= 6


def test_get_many_yields_what_it_already_knows_without_reading(clock: FakeClock) -> None:
    reader = FakeReader(clock, {"a": 0.0, "b": 0.0})
    known = {"a": {"status": states.SUCCESS, "result": "cached"}}
    got = dict(waiting.get_many(reader, ["a", "b"], known=known, clock=clock.clock()))
    assert got["a"]["result"] == "cached" and got["b"]["result"] == "b"
    assert reader.reads == Counter({"b": 1})


def test_get_many_while_nothing_is_ready_looks_only_at_the_earliest_pending(clock: FakeClock) -> None:
    ids = [f"t{n}" for n in range(50)]
    reader = FakeReader(clock, dict.fromkeys(ids, 1000.0))
    with pytest.raises(TimeoutError):
        list(waiting.get_many(reader, ids, timeout=5, interval=0.5, clock=clock.clock()))
    assert set(reader.reads) == {"t0", "t49"}  # the first read probes the last
    assert reader.reads["t49"] == 1


def test_get_many_stops_after_max_iterations(clock: FakeClock) -> None:
    reader = FakeReader(clock, {"t": 1000.0})
    assert list(waiting.get_many(reader, ["t"], max_iterations=3, clock=clock.clock())) == []
    assert len(clock.naps) == 3


class _Node:
    """A result as iter_native sees it: an id, a state, parents."""

    def __init__(self, task_id: str, state: str = states.PENDING, parent: Any = None) -> None:
        self.id, self.state, self.parent = task_id, state, parent
        self.result = ValueError("boom") if state == states.FAILURE else None
        self.traceback = None

    def ready(self) -> bool:
        return self.state in states.READY_STATES


class _Group:
    """A group's result as iter_native sees it: its members and its parent."""

    def __init__(self, results: list[Any], parent: Any = None) -> None:
        self.results, self.parent = results, parent


def test_a_group_after_a_failed_parent_ends_with_the_parents_failure(clock: FakeClock) -> None:
    group = _Group([_Node("a"), _Node("b")], parent=_Node("p", states.FAILURE))
    reader = FakeReader(clock, {"a": 1000.0, "b": 1000.0})
    got = dict(waiting.iter_native(reader, group, timeout=None, interval=0.5, clock=clock.clock()))
    assert set(got) == {"a", "b"}
    assert all(meta["status"] == states.FAILURE and meta["task_id"] == "p" for meta in got.values())
    assert clock.naps == []  # nothing waited for


def test_a_group_without_parents_yields_its_members_in_order(clock: FakeClock) -> None:
    group = _Group([_Node("a"), _Node("b"), _Node("c")])
    reader = FakeReader(clock, {"a": 0.3, "b": 0.1, "c": 0.2})
    members = waiting.iter_native(reader, group, timeout=10, interval=0.5, clock=clock.clock())
    got = [task_id for task_id, _ in members]
    assert sorted(got) == ["a", "b", "c"]


def test_parents_are_polled_until_finished_within_the_grace(clock: FakeClock) -> None:
    parent = _Node("p")
    child = _Node("c", parent=parent)
    looks = []

    def on_interval() -> None:
        looks.append(clock.now)
        if clock.now >= 1.0:
            parent.state = states.FAILURE

    waiting.parents_fail_first(
        child, on_interval, propagate=True, timeout=None, waited=0.0, interval=0.5, clock=clock.clock()
    )
    assert looks[-1] >= 1.0 and clock.now < waiting.PARENT_ERROR_GRACE


def test_parents_are_not_polled_past_the_callers_timeout(clock: FakeClock) -> None:
    child = _Node("c", parent=_Node("p"))
    waiting.parents_fail_first(
        child, lambda: None, propagate=True, timeout=3.0, waited=2.0, interval=0.5, clock=clock.clock()
    )
    assert clock.now == pytest.approx(1.0)


def test_parents_are_not_polled_without_propagate(clock: FakeClock) -> None:
    looks = []
    child = _Node("c", parent=_Node("p"))
    waiting.parents_fail_first(
        child, lambda: looks.append(1), propagate=False, timeout=None, waited=0.0, interval=0.5, clock=clock.clock()
    )
    assert looks == [] and clock.naps == []


class DeadlineReader(FakeReader):
    """Notes how much time the caller's deadline leaves each read."""

    def __init__(self, clock: FakeClock, ready_at: dict[str, float]) -> None:
        super().__init__(clock, ready_at)
        self.left: list[float | None] = []

    def _note(self) -> None:
        ends = deadline.current()
        self.left.append(None if ends is None else ends - time.monotonic())

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        self._note()
        return super().get_task_meta(task_id)

    def read_ready(self, task_ids: list[str], ready_states: Collection[str]) -> dict[str, dict[str, Any]]:
        self._note()
        return super().read_ready(task_ids, ready_states)


@pytest.mark.parametrize("how", ["wait_for", "get_many"])
def test_every_read_runs_within_the_callers_remaining_time(clock: FakeClock, how: str) -> None:
    reader = DeadlineReader(clock, {"a": 3.0})
    if how == "wait_for":
        waiting.wait_for(reader, "a", timeout=5.0, interval=0.5, clock=clock.clock())
    else:
        list(waiting.get_many(reader, ["a"], timeout=5.0, interval=0.5, clock=clock.clock()))
    assert len(reader.left) > 2 and all(left is not None for left in reader.left)
    # What is left shrinks as the fake clock runs, but never below the least a read may take.
    assert reader.left[0] == pytest.approx(5.0, abs=0.5)
    assert reader.left[-1] == pytest.approx(max(5.0 - 3.0, waiting.LEAST_READ_TIME), abs=0.5)
    assert deadline.current() is None  # nothing leaks to the caller


def test_reads_without_a_timeout_have_no_deadline_of_the_callers(clock: FakeClock) -> None:
    reader = DeadlineReader(clock, {"a": 1.0})
    waiting.wait_for(reader, "a", timeout=None, interval=0.5, clock=clock.clock())
    assert set(reader.left) == {None}
