"""The workloads, each measured once per call against one backend.

Every measurement returns a ``Sample``: the seconds it took, and the requests
the counting proxies saw during it, the worker's and this process's apart.

* ``store``, ``get_many``, ``join_native``, ``get``: the backend alone, from
  this process: store N results, read them back with ``get_many`` and with
  ``ResultSet.join_native``, and ``AsyncResult.get`` one at a time (the
  latency of one ``get``, median of a sample).
* ``tasks``: N independent ``add`` tasks sent to the worker, then gathered
  with ``ResultSet.get()`` (``join_native``, at Celery's default interval),
  from the first send to the last result in hand.
* ``chord``: a chord of N ``add`` parts and a ``collect`` callback, from
  sending it to the callback's result being stored (the worker records the
  time after the backend stored it, in ``task_postrun``); the client is told
  through the broker's Redis, so waiting adds no request to the backend.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import chord, states
from celery.result import AsyncResult, ResultSet

from . import tasks
from .counting import Counts
from .stack import BenchStack

#: Seconds between two looks at a chord's progress.
_PROGRESS_EVERY = 5


class WorkloadFailed(RuntimeError):
    """A workload returned a wrong answer or did not finish."""


@dataclass
class Sample:
    seconds: float | None  # None: not finished within its budget
    counts: Counts
    units: int  # tasks (or results, or gets) the counts are divided by
    extra: dict[str, Any] = field(default_factory=dict)


def _payload(i: int) -> dict[str, Any]:
    return {"i": i, "text": f"result-{i:06d}"}


def backend_only(stack: BenchStack, name: str, n: int, gets: int) -> dict[str, Sample]:
    """Store n results, read them with get_many, join_native, and `gets` single gets."""
    assert stack.proxies is not None
    app = stack.apps[name]
    backend = app.backend
    ids = [str(uuid.uuid4()) for _ in range(n)]
    samples: dict[str, Sample] = {}

    stack.proxies.reset()
    started = time.perf_counter()
    for i, task_id in enumerate(ids):
        backend.store_result(task_id, _payload(i), states.SUCCESS)
    samples["store"] = Sample(time.perf_counter() - started, stack.proxies.snapshot(), n)

    stack.proxies.reset()
    started = time.perf_counter()
    found = dict(backend.get_many(ids, timeout=120))
    samples["get_many"] = Sample(time.perf_counter() - started, stack.proxies.snapshot(), n)
    if len(found) != n or found[ids[-1]]["result"] != _payload(n - 1):
        raise WorkloadFailed(f"{name}: get_many returned {len(found)} of {n} results")

    stack.proxies.reset()
    started = time.perf_counter()
    values = ResultSet([AsyncResult(task_id, app=app) for task_id in ids], app=app).join_native(
        timeout=120
    )
    samples["join_native"] = Sample(time.perf_counter() - started, stack.proxies.snapshot(), n)
    if values != [_payload(i) for i in range(n)]:
        raise WorkloadFailed(f"{name}: join_native returned wrong results")

    stack.proxies.reset()
    latencies = []
    step = max(1, n // gets)
    for i in range(0, step * gets, step):
        started = time.perf_counter()
        value = AsyncResult(ids[i], app=app).get(timeout=30)
        latencies.append(time.perf_counter() - started)
        if value != _payload(i):
            raise WorkloadFailed(f"{name}: get returned {value!r} for result {i}")
    samples["get"] = Sample(statistics.median(latencies), stack.proxies.snapshot(), len(latencies))
    return samples


def independent_tasks(stack: BenchStack, name: str, n: int, timeout: float) -> Sample:
    """Send n add tasks and gather every result."""
    assert stack.proxies is not None
    app = stack.apps[name]
    add = app.signature(tasks.add.name)
    stack.proxies.reset()
    started = time.perf_counter()
    results = [add.clone(args=(i, i)).apply_async() for i in range(n)]
    values = ResultSet(results, app=app).get(timeout=timeout)
    seconds = time.perf_counter() - started
    counts = _settled(stack)
    if values != [2 * i for i in range(n)]:
        raise WorkloadFailed(f"{name}: {n} tasks returned wrong results")
    return Sample(seconds, counts, n)


def chord_of(
    stack: BenchStack,
    name: str,
    n: int,
    budget: float,
    settled: Callable[[BenchStack], Counts] | None = None,
    grow_every: int = 0,
    errback: bool = False,
) -> Sample:
    """A chord of n parts; time to the callback's stored result, or None past `budget` seconds.

    With ``grow_every``, every such part of the header adds one more part,
    ``add(0, 0)``, to the chord as it runs (``Task.add_to_chord``). With
    ``errback``, a chord that fails (a ``ChordError``) raises WorkloadFailed
    as soon as its callback's errback ran, rather than at the budget.

    While waiting it notes, every few seconds, how many parts the worker has
    stored (its GCS object writes), so that a chord stopped at its budget
    still says how far it got. Its requests are counted until ``settled``
    (by default, until they stop arriving for a moment), before the result
    is checked: the check's reads are not the chord's.
    """
    assert stack.proxies is not None
    app = stack.apps[name]
    broker = stack.broker()
    grows = [bool(grow_every) and i % grow_every == grow_every - 1 for i in range(n)]
    header = [
        app.signature((tasks.add_and_grow if grow else tasks.add).name, args=(i, i))
        for i, grow in enumerate(grows)
    ]
    added = sum(grows)
    callback = app.signature(tasks.collect.name)
    if errback:
        callback.link_error(app.signature(tasks.chord_failed.name))
    stack.proxies.reset()
    sent = time.time()
    result = chord(header)(callback)
    done_key = tasks.DONE_KEY.format(task_id=result.id)
    failed_key = tasks.FAILED_KEY.format(task_id=result.id)
    progress: list[tuple[float, int]] = []
    done = None
    while done is None and time.time() - sent < budget:
        wait = max(1, min(_PROGRESS_EVERY, int(budget - (time.time() - sent))))
        done = broker.blpop([done_key, failed_key], timeout=wait)
        if done is not None and done[0].decode() == failed_key:
            raise WorkloadFailed(f"{name}: chord of {n} failed after {time.time() - sent:.1f} s: {done[1].decode()}")
        if done is None and stack.by_name[name].uses_gcs:
            stored = stack.proxies.snapshot().side("worker").get("object.write", 0)
            progress.append((round(time.time() - sent, 2), stored))
    if done is None:
        extra = {"callback_id": result.id, "budget": budget, "progress": progress}
        extra["parts_stored"] = progress[-1][1] if progress else None
        extra["estimated_seconds"] = estimate_finish(progress, n)
        # Requests are per part stored so far, so that stopped runs still compare.
        return Sample(None, stack.proxies.snapshot(), extra["parts_stored"] or n, extra)
    seconds = float(done[1]) - sent
    counts = (settled or _settled)(stack)
    stored = broker.get(tasks.VALUE_KEY.format(task_id=result.id))
    value = json.loads(stored) if stored is not None else None
    if value != {"count": n + added, "sum": n * (n - 1)}:
        raise WorkloadFailed(f"{name}: chord of {n} (+{added} added) returned {value!r}")
    header_ids = [part.id for part in result.parent.results]  # the ids its counters hash
    extra = {"callback_id": result.id, "group_id": result.parent.id, "header_ids": header_ids, "added": added}
    return Sample(seconds, counts, n + added, extra)


def estimate_finish(progress: list[tuple[float, int]], n: int) -> float | None:
    """When a stopped chord would have finished: t = c + a*k + b*k^2 fitted to (parts, seconds).

    A part's cost may grow with the parts before it (a count over them, or
    a read of a group that size), so time grows up to quadratically with
    parts done; fitted by least squares, evaluated at n parts.
    """
    points = [(float(k), t) for t, k in progress if k > 0]
    if len(points) < 3 or points[-1][0] <= points[0][0]:
        return None
    # Normal equations of the least-squares fit, solved by Cramer's rule.
    sums = [sum(k**p for k, _ in points) for p in range(5)]
    rhs = [sum(t * k**p for k, t in points) for p in range(3)]
    matrix = [[sums[i + j] for j in range(3)] for i in range(3)]

    def det(m: list[list[float]]) -> float:
        return (
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        )

    d = det(matrix)
    if not d:
        return None
    coef = []
    for col in range(3):
        m = [row[:] for row in matrix]
        for row in range(3):
            m[row][col] = rhs[row]
        coef.append(det(m) / d)
    c, a, b = coef
    if b < 0:  # no sign of growth: a straight line through the last half
        half = points[len(points) // 2 :]
        (k0, t0), (k1, t1) = half[0], half[-1]
        if k1 <= k0:
            return None
        return round(t1 + (n - k1) * (t1 - t0) / (k1 - k0), 1)
    return round(c + a * n + b * n * n, 1)


def callback_runs(stack: BenchStack, callback_id: str) -> int:
    return int(stack.broker().get(tasks.RUNS_KEY.format(task_id=callback_id)) or 0)


def _settled(stack: BenchStack, quiet: float = 0.3, limit: float = 10.0) -> Counts:
    """Counts once requests stop arriving (a chord's clean-up runs after its callback)."""
    assert stack.proxies is not None
    deadline = time.monotonic() + limit
    last = stack.proxies.snapshot()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = stack.proxies.snapshot()
        if now.by_proxy == last.by_proxy:
            return now
        last = now
    return last
