"""Runs the workloads against every backend, interleaved and repeated, and summarises them.

A run is made of passes, each on a stack of its own (fresh emulators and workers):

* **local** (timed): the clients reach the emulators directly, with no proxy in
  the path; workers ``-c 2``. Its times and CPU give the ratios and targets.
  After its workloads, the metrics' cost: the same tasks through celery-gcs's
  worker and its twin with the worker metrics on (``stack.METRICS_TWIN``),
  alternating within each round; the twin's CPU per task over the other's,
  round by round, is the ratio reported.
* **counted**: one round of every workload through the counting proxies, for
  the requests and documents each one makes (and what they cost).
* **production** (timed, with ``latency``): the answers held as long as GCS and
  Firestore in one region would take (``bench.latency``), workers ``-c 16``;
  its ratios are reported beside the local ones.

For each workload, each round measures every backend once, in an order that
rotates from round to round, so that a backend is never always first or
last while the machine's load drifts. Ratios are taken within a round
(celery-gcs against Redis and against the built-in backend, measured
minutes apart at most) and reported as their median and range over rounds.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from celery_gcs.local import builtin

from . import cpu, latency, pricing, profile, timeline, workloads
from .stack import LABELS, METRICS_TWIN, BenchStack
from .workloads import Sample

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Plan:
    """Sizes, repeats and time budgets of one run."""

    mode: str
    repeats: int
    results: int  # backend only: results stored and read back
    gets: int  # backend only: single gets timed
    tasks: int  # independent tasks through the worker
    chords: tuple[int, ...]
    #: Rounds for a chord size, when not ``repeats``.
    chord_repeats: dict[int, int] = field(default_factory=dict)
    #: Seconds a chord may take before it is stopped and reported as not finished.
    chord_budget: dict[int, float] = field(default_factory=dict)
    default_budget: float = 600.0
    #: A shorter budget for the built-in backend's chords, by size (it is expected to be slow).
    builtin_budget: dict[int, float] = field(default_factory=dict)
    #: Chord size profiled with py-spy after the rounds, when py-spy is available.
    profile: int | None = None
    #: Tasks per round of the metrics' cost (metrics off, then on); 0: ``tasks``.
    metrics_tasks: int = 0

    def counting(self) -> Plan:
        """One round of every workload: requests vary little from round to round."""
        return replace(self, repeats=1, chord_repeats={}, profile=None)

    def production(self, repeats: int = 2) -> Plan:
        """The production-like pass: chords up to 1,000 parts, at most ``repeats`` rounds."""
        return replace(
            self,
            repeats=min(self.repeats, repeats),
            chords=tuple(size for size in self.chords if size <= 1000),
            chord_repeats={},
            profile=None,
        )

    def rounds(self, size: int) -> int:
        return self.chord_repeats.get(size, self.repeats)

    def budget(self, size: int, backend: str) -> float:
        if backend == "builtin" and size in self.builtin_budget:
            return self.builtin_budget[size]
        return self.chord_budget.get(size, self.default_budget)


PLANS = {
    # Seconds, for developing the harness: every workload, tiny.
    "quick": Plan(
        "quick", repeats=2, results=40, gets=10, tasks=30, chords=(10, 40), default_budget=120
    ),
    # What `make bench` runs: every workload the issue names, in about 20 minutes here.
    "default": Plan(
        "default",
        repeats=3,
        results=1000,
        gets=100,
        tasks=500,
        chords=(100, 1000, 10_000),
        chord_repeats={10_000: 1},
        chord_budget={10_000: 900.0},
        builtin_budget={10_000: 180.0},
        profile=1000,
        metrics_tasks=2000,
    ),
    # Every 10,000-part chord run to the end (hours for the GCS backends on the emulators).
    "full": Plan(
        "full",
        repeats=5,
        results=1000,
        gets=100,
        tasks=500,
        chords=(100, 1000, 10_000),
        chord_repeats={10_000: 2},
        chord_budget={10_000: 4 * 3600.0},
        profile=1000,
        metrics_tasks=5000,
    ),
}


@dataclass
class Measured:
    """Every sample of one workload, by backend, in round order."""

    workload: str
    label: str
    unit: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    cpu: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def add(self, backend: str, sample: Sample, cpu_used: dict[str, float]) -> None:
        self.samples.setdefault(backend, []).append(sample)
        self.cpu.setdefault(backend, []).append(cpu_used)


@dataclass
class Run:
    plan: Plan
    backends: tuple[str, ...]
    concurrency: int = 2
    measured: dict[str, Measured] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    #: The machine's load average (1, 5, 15 minutes) when the pass started: CPU seconds grow with it.
    load_start: tuple[float, float, float] = field(default_factory=os.getloadavg)
    callbacks: dict[str, list[str]] = field(default_factory=dict)  # backend -> chord callback ids
    callback_runs: dict[str, list[int]] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    #: The production-like pass's timeline of one chord (bench.timeline).
    timeline: dict[str, Any] = field(default_factory=dict)
    #: Worker CPU per task with metrics off and on (``_measure_metrics``).
    metrics: dict[str, Any] = field(default_factory=dict)

    def measure(self, workload: str, label: str, unit: str) -> Measured:
        return self.measured.setdefault(workload, Measured(workload, label, unit))


def rotated(names: tuple[str, ...], round_: int) -> list[str]:
    shift = round_ % len(names)
    return list(names[shift:] + names[:shift])


#: Worker concurrency in the production-like pass (``-c 16``, a typical I/O-bound worker).
PRODUCTION_CONCURRENCY = 16
#: The production-like pass again at a low concurrency, one round, so that its ratios are
#: not an artefact of one setting.
LOW_CONCURRENCY = 4
#: Batches a round of the metrics' cost alternates its tasks in (``_measure_metrics``).
METRICS_BATCHES = 10
#: The chord size that warms the Firestore emulator's JIT before timing, in a plan with chords this large.
EMULATOR_WARM_UP_CHORD = 1000
#: At most this many such chords; warm once one costs the emulator at least EMULATOR_WARM of the last.
EMULATOR_WARM_UP_MAX, EMULATOR_WARM = 6, 0.85
#: The chord whose phases the production-like pass records (bench.timeline), or the
#: plan's largest if smaller.
TIMELINE_CHORD = 1000


def run(
    plan: Plan,
    workdir: Path,
    backends: tuple[str, ...],
    say: Callable[[str], None] = print,
    production: dict[str, float] | None = None,
    production_concurrency: int = PRODUCTION_CONCURRENCY,
) -> dict[str, Any]:
    """Every pass (see the module's docstring); the summary as a JSON-able dict.

    ``production``: seconds each answer is held, by kind (``bench.latency.MODEL``);
    None leaves the production-like pass out.
    """
    started = time.time()
    say("pass 1: timed on the local stack, no proxy in the path")
    local_stack = BenchStack(workdir / "local", backends=backends, counted=False, metrics_twin=True)
    local = _run_pass(plan, local_stack, say)
    say("pass 2: requests counted through the proxies, one round")
    counted = _run_pass(plan.counting(), BenchStack(workdir / "counted", backends=backends), say)
    passes, production_summaries = [counted], []
    if production is not None:
        for concurrency, production_plan in (
            (production_concurrency, plan.production()),
            (LOW_CONCURRENCY, plan.production(repeats=1)),
        ):
            say(f"pass 3: production-like, answers held as in one region, workers -c {concurrency}")
            stack = BenchStack(
                workdir / f"production-c{concurrency}", backends=backends, concurrency=concurrency,
                counted=False, latency=production,
            )  # fmt: skip
            timed_production = _run_pass(production_plan, stack, say)
            passes.append(timed_production)
            production_summaries.append(summarise_production(timed_production, production))
    summary = summarise(local, time.time() - started, counted=counted)
    if production_summaries:
        summary["production"], *others = production_summaries
        summary["production_more"] = others
    for other in passes:
        for name, runs in other.callback_runs.items():
            summary["callback_runs"].setdefault(name, []).extend(runs)
    return summary


def _run_pass(plan: Plan, stack: BenchStack, say: Callable[[str], None]) -> Run:
    """Start the stack, measure everything, stop the stack."""
    backends = stack.backends
    say(
        f"starting the stack and {len(backends)} workers (prefork, -c {stack.concurrency}) in {stack.workdir}"
    )
    stack.start()
    result = Run(plan, backends, concurrency=stack.concurrency)
    try:
        _warm_up(stack, backends, min(100, min(plan.chords, default=4)))
        if max(plan.chords, default=0) >= EMULATOR_WARM_UP_CHORD:
            _warm_firestore_emulator(stack, say)
        _measure_all(stack, result, say)
        if METRICS_TWIN in stack.workers:
            result.metrics = _measure_metrics(stack, plan, say)
        if stack.latency is not None and "celery_gcs" in backends and plan.chords:
            result.timeline = _timeline(stack, min(TIMELINE_CHORD, max(plan.chords)), say)
        if plan.profile and "celery_gcs" in backends:
            result.profile = _profile(stack, plan.profile, stack.workdir, say)
        say("counting callback runs")
        time.sleep(1.0)  # a duplicate callback, were one coming, would have run by now
        for name, ids in result.callbacks.items():
            result.callback_runs[name] = [
                workloads.callback_runs(stack, callback_id) for callback_id in ids
            ]
    finally:
        stack.stop()
    return result


def _warm_up(stack: BenchStack, backends: Iterable[str], chord: int) -> None:
    """Clients, connections, pool processes, and the emulators' JIT, made before anything is timed."""
    for name in backends:
        workloads.backend_only(stack, name, 4, 1)
        workloads.independent_tasks(stack, name, 4, 120)
        workloads.chord_of(stack, name, chord, 300)


def _warm_firestore_emulator(stack: BenchStack, say: Callable[[str], None]) -> None:
    """Chords of 1,000 until the Firestore emulator's CPU per chord stops falling (its JVM compiling).

    A chord of 100 leaves it cold: on one stack its CPU per chord of 1,000 fell
    from 7.5 to 5.7, 4.7, 2.8 and 2.8 s over the first five (bench/ANALYSIS.md),
    which the first timed rounds would otherwise count against the GCS backends.
    """
    name = next((n for n in stack.backends if stack.by_name[n].uses_gcs), None)
    if name is None:
        return
    groups = stack.measured_processes()
    spent: list[float] = []
    while len(spent) < EMULATOR_WARM_UP_MAX and not emulator_warm(spent):
        before = cpu.cpu_by_tree(groups)
        workloads.chord_of(stack, name, EMULATOR_WARM_UP_CHORD, 300)
        spent.append(cpu.used(before, cpu.cpu_by_tree(groups)).get("firestore-emulator", 0.0))
    per_chord = ", ".join(f"{seconds:.2f}" for seconds in spent)
    say(f"warm-up: the Firestore emulator's CPU per chord of {EMULATOR_WARM_UP_CHORD:,}: {per_chord} s")


def emulator_warm(spent: list[float]) -> bool:
    """Whether the last warm-up chord cost the emulator no less than ``EMULATOR_WARM`` of the one before."""
    return len(spent) >= 2 and spent[-1] >= spent[-2] * EMULATOR_WARM


def _measure_all(stack: BenchStack, result: Run, say: Callable[[str], None]) -> None:
    plan, names = result.plan, result.backends
    groups = stack.measured_processes()

    def timed(measured: Measured, name: str, action: Callable[[], Sample]) -> Sample:
        before = cpu.cpu_by_tree(groups)
        sample = action()
        measured.add(name, sample, cpu.used(before, cpu.cpu_by_tree(groups)))
        return sample

    for round_ in range(plan.repeats):
        for name in rotated(names, round_):
            samples = workloads.backend_only(stack, name, plan.results, plan.gets)
            for key, sample in samples.items():
                label = {
                    "store": f"store {plan.results:,} results",
                    "get_many": f"get_many over {plan.results:,}",
                    "join_native": f"join_native over {plan.results:,}",
                    "get": "one get (latency)",
                }[key]
                unit = "get" if key == "get" else "result"
                result.measure(key, label, unit).add(name, sample, {})  # CPU: worker workloads only
            say(_line(f"backend only, round {round_ + 1}", name, samples["store"], extra=samples))

    tasks = result.measure("tasks", f"{plan.tasks:,} tasks, send to all gathered", "task")
    for round_ in range(plan.repeats):
        for name in rotated(names, round_):
            sample = timed(
                tasks,
                name,
                lambda name=name: workloads.independent_tasks(stack, name, plan.tasks, 600),
            )
            say(_line(f"{plan.tasks} tasks, round {round_ + 1}", name, sample))

    for size in plan.chords:
        measured = result.measure(f"chord{size}", f"chord of {size:,}: time to callback", "part")
        for round_ in range(plan.rounds(size)):
            for name in rotated(names, round_):
                sample = timed(
                    measured,
                    name,
                    lambda name=name, size=size: workloads.chord_of(
                        stack, name, size, plan.budget(size, name)
                    ),
                )
                if sample.seconds is None:
                    say(_line(f"chord of {size}, round {round_ + 1}", name, sample) + " (stopped)")
                    stack.restart_worker(name)
                    groups = stack.measured_processes()
                else:
                    result.callbacks.setdefault(name, []).append(sample.extra["callback_id"])
                    say(_line(f"chord of {size}, round {round_ + 1}", name, sample))


def _measure_metrics(stack: BenchStack, plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    """Worker CPU per task, metrics off and on: the same tasks through two celery-gcs workers, alternating.

    Both workers are alike but for ``celery_gcs.telemetry.metrics``. Each
    round runs its tasks in ``METRICS_BATCHES`` batches through one worker,
    then the other (the order rotating), so that the machine's load, which
    drifts over seconds, falls on both alike; only the measured worker's CPU
    is read (its process tree). Nothing scrapes during the rounds (a collector
    scrapes every 30 s); the twin is scraped after them, to check it counted
    every task.
    """
    n, pair = plan.metrics_tasks or plan.tasks, ("celery_gcs", METRICS_TWIN)
    batch = max(1, n // METRICS_BATCHES)
    n = batch * max(1, n // batch)
    workloads.independent_tasks(stack, METRICS_TWIN, 4, 120)  # its pool and clients warmed up
    rounds: list[dict[str, float]] = []
    for round_ in range(plan.repeats):
        used = dict.fromkeys(pair, 0.0)
        for step in range(n // batch):
            for name in rotated(pair, round_ + step):
                groups = {name: stack.workers[name].pid}
                before = cpu.cpu_by_tree(groups)
                workloads.independent_tasks(stack, name, batch, 600)
                used[name] += cpu.used(before, cpu.cpu_by_tree(groups))[name]
        per_task = {name: seconds / n for name, seconds in used.items()}
        rounds.append(per_task)
        off, on = per_task["celery_gcs"], per_task[METRICS_TWIN]
        say(f"  metrics' cost, round {round_ + 1}: worker CPU per task {off * 1e6:.0f} µs off, "
            f"{on * 1e6:.0f} µs on ({on / off if off else float('nan'):.3f}x)")  # fmt: skip
    off_on = [(r["celery_gcs"], r[METRICS_TWIN]) for r in rounds]
    return {
        "tasks": n,
        "rounds": rounds,
        "off_us": _stats([off * 1e6 for off, _ in off_on]),
        "on_us": _stats([on * 1e6 for _, on in off_on]),
        "ratio": _stats([on / off for off, on in off_on if off > 0]),
        "added_us": _stats([(on - off) * 1e6 for off, on in off_on]),
        "counted": stack.metrics_counted(),
        "ran": 4 + n * plan.repeats,
        "batches": n // batch,
    }


def _timeline(stack: BenchStack, size: int, say: Callable[[str], None]) -> dict[str, Any]:
    """One more celery-gcs chord, its phases and each process's CPU (bench.timeline)."""
    groups = stack.measured_processes()
    before = cpu.cpu_by_tree(groups)
    sent = time.time()
    sample = workloads.chord_of(stack, "celery_gcs", size, 600)
    used = cpu.used(before, cpu.cpu_by_tree(groups))
    if sample.seconds is None:
        return {"skipped": f"the chord of {size} did not finish"}
    calls = timeline.read(stack.timeline_dir, since=sent)
    found = {
        "size": size,
        "concurrency": stack.concurrency,
        "phases": timeline.phases(calls, sent, sent + sample.seconds),
        # Over the whole pass: each pool process's very first calls (its clients and connections made).
        "first_calls": timeline.first_calls(
            timeline.read(stack.timeline_dir), ("gcs.write", "gcs.read", "firestore.commit")
        ),
        "cpu": used,
    }
    say(f"timeline: chord of {size} at -c {stack.concurrency}: {found['phases']}; CPU {used}")
    return found


def _profile(
    stack: BenchStack, size: int, workdir: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """One more celery-gcs chord, with py-spy sampling the worker's pool processes."""
    raw = workdir / f"profile-chord{size}.txt"
    spy = profile.record(stack.workers["celery_gcs"].pid, raw)
    if spy is None:
        say("profile: py-spy not found (set PY_SPY=/path/to/py-spy to profile a celery-gcs chord)")
        return {"skipped": "py-spy not found"}
    time.sleep(2)  # attached before the chord starts
    sample = workloads.chord_of(stack, "celery_gcs", size, 600)
    errors = profile.finish(spy)
    found = profile.summarise(raw) if raw.exists() else {}
    if not found:
        say(f"profile: py-spy recorded nothing ({errors.strip()[-300:]})")
        return {"skipped": f"py-spy recorded nothing: {errors.strip()[-300:]}"}
    say(
        f"profile: chord of {size} under py-spy took {sample.seconds:.1f} s; {found['samples']} samples"
    )
    return {"workload": f"chord of {size:,}", "seconds": sample.seconds, **found}


def _line(what: str, name: str, sample: Sample, extra: dict[str, Sample] | None = None) -> str:
    if sample.seconds is None:
        done = sample.extra.get("parts_stored") or "?"
        return f"  {what:<28} {LABELS[name]:<15} not finished in {sample.extra['budget']:.0f} s ({done} parts stored)"
    text = f"  {what:<28} {LABELS[name]:<15} {sample.seconds:8.3f} s"
    if extra:
        text += "  " + "  ".join(
            f"{key} {s.seconds:.3f}" for key, s in extra.items() if key != "store"
        )
    return text


# -- summary --------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def _per_unit(samples: list[Sample], side: str) -> dict[str, float]:
    """Median over samples of requests per unit (task, result, part...), by kind."""
    finished = [s for s in samples if s.seconds is not None] or samples
    kinds = sorted({kind for s in finished for kind in s.counts.side(side)})
    return {
        kind: round(
            statistics.median(s.counts.side(side).get(kind, 0) / s.units for s in finished), 4
        )
        for kind in kinds
    }


def _totals(samples: list[Sample], side: str) -> list[dict[str, int]]:
    return [s.counts.side(side) for s in samples]


def summarise(result: Run, seconds: float, counted: Run | None = None) -> dict[str, Any]:
    """Times, ratios and CPU from ``result``; requests per unit from ``counted`` (default: ``result``)."""
    names = result.backends
    counted = counted or result
    summary: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(result.started)),
            "mode": result.plan.mode,
            "plan": asdict(result.plan),
            "backends": {name: LABELS[name] for name in names},
            "run_seconds": round(seconds, 1),
            "machine": cpu.machine(),
            "load_average": {"start": cpu.load(result.load_start), "end": cpu.load()},
            "builtin_note": builtin.NOTE,
            "worker": f"celery worker -P prefork -c {result.concurrency}, one per backend, each consuming "
            "its own queue; all three stay up, only the measured backend's queue has messages",
            "counted_separately": counted is not result,
        },
        "prices": {
            "usd_per_operation": pricing.PRICES,
            "sources": pricing.SOURCES,
            "retrieved": pricing.RETRIEVED,
        },
        "workloads": {},
        "callback_runs": {name: list(runs) for name, runs in result.callback_runs.items()},
        "profile": result.profile,
        "metrics_overhead": result.metrics,
    }
    for key, measured in result.measured.items():
        entry: dict[str, Any] = {
            "label": measured.label,
            "unit": measured.unit,
            "backends": {},
            "ratios": {},
        }
        counted_samples = counted.measured.get(key, measured).samples
        for name in names:
            samples = measured.samples.get(name, [])
            seconds_list = [s.seconds for s in samples if s.seconds is not None]
            unfinished = [s.extra for s in samples if s.seconds is None]
            requests = counted_samples.get(name, [])
            worker = _per_unit(requests, "worker")
            client = _per_unit(requests, "client")
            both = {
                kind: round(worker.get(kind, 0) + client.get(kind, 0), 4)
                for kind in {*worker, *client}
            }
            cpu_samples = [c for c in measured.cpu.get(name, []) if c]
            entry["backends"][name] = {
                "seconds": _stats(seconds_list),
                "samples": [s.seconds for s in samples],
                "unfinished": unfinished,
                "units": samples[0].units if samples else 0,
                "per_unit": {"worker": worker, "client": client},
                "totals": {
                    "worker": _totals(requests, "worker"),
                    "client": _totals(requests, "client"),
                },
                "counted_unfinished": [s.extra for s in requests if s.seconds is None],
                "requests_per_unit": round(_requests(both), 4),
                "usd_per_million_units": round(pricing.cost(both) * 1e6, 4)
                if name != "redis"
                else None,
                "cpu_seconds": {
                    group: statistics.median(c.get(group, 0.0) for c in cpu_samples)
                    for group in sorted({g for c in cpu_samples for g in c})
                }
                if cpu_samples
                else {},
            }
        entry["ratios"] = _ratios(measured, names)
        summary["workloads"][key] = entry
    return summary


def summarise_production(result: Run, model: dict[str, float]) -> dict[str, Any]:
    """The production-like pass: times and ratios by workload, and the latency model."""
    workloads_: dict[str, Any] = {}
    for key, measured in result.measured.items():
        workloads_[key] = {
            "label": measured.label,
            "unit": measured.unit,
            "backends": {
                name: {
                    "seconds": _stats([s.seconds for s in samples if s.seconds is not None]),
                    "samples": [s.seconds for s in samples],
                    "unfinished": [s.extra for s in samples if s.seconds is None],
                }
                for name, samples in measured.samples.items()
            },
            "ratios": _ratios(measured, result.backends),
            # CPU seconds by process group, median over rounds (worker workloads only).
            "cpu": {
                name: _median_cpu(used) for name, used in measured.cpu.items() if any(used)
            },
        }
    return {
        "latency": latency.describe(model),
        "concurrency": result.concurrency,
        "timeline": result.timeline,
        "plan": asdict(result.plan),
        "workloads": workloads_,
    }


def _median_cpu(used: list[dict[str, float]]) -> dict[str, float]:
    """Median CPU seconds per process group over rounds."""
    groups = sorted({group for one in used for group in one})
    return {group: round(statistics.median(one.get(group, 0.0) for one in used), 3) for group in groups}


def _requests(counts: dict[str, float]) -> float:
    """Requests per unit: GCS requests and Firestore RPCs (not the derived document counts)."""
    return sum(n for kind, n in counts.items() if "!" not in kind and not kind.startswith("doc."))


def _ratios(measured: Measured, names: tuple[str, ...]) -> dict[str, Any]:
    """Paired, round by round: celery-gcs / Redis and built-in / celery-gcs."""
    ours = measured.samples.get("celery_gcs", [])
    ratios: dict[str, Any] = {}
    for other, key in (("redis", "celery_gcs/redis"), ("builtin", "builtin/celery_gcs")):
        if other not in names or not ours:
            continue
        theirs = measured.samples.get(other, [])
        pairs, lower_bounds = [], []
        for mine, their in zip(ours, theirs):
            if mine.seconds is None and their.seconds is None:
                continue
            if other == "redis":
                if mine.seconds is None:  # ours did not finish: at least budget / theirs
                    lower_bounds.append(mine.extra["budget"] / their.seconds)
                else:
                    pairs.append(mine.seconds / their.seconds)
            elif their.seconds is None:
                if mine.seconds is not None:
                    lower_bounds.append(their.extra["budget"] / mine.seconds)
            elif mine.seconds is not None:
                pairs.append(their.seconds / mine.seconds)
        ratios[key] = _stats(pairs)
        if lower_bounds:
            ratios[key + ">="] = _stats(lower_bounds)
    return ratios
