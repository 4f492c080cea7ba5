"""How celery-gcs chords scale: time per part at two sizes, requests per part at four.

``python -m bench --chords`` (``make bench-chords``) writes
``bench/results/chord-scaling.{json,md}`` from four passes, on two local
stacks with one celery-gcs worker each (``prefork -c 2``):

* **timing**, with no counting proxies in the path (``BenchStack(counted=False)``):
  chords of the two timed sizes (500 and 5,000 parts) alternate, the
  smaller first in even rounds and last in odd ones, so that both sizes
  see the machine's load drift alike. Each round gives the time to callback
  per part of both sizes and their ratio; the run reports the medians.
* **counting**, through the counting proxies (``bench.counting``): one chord
  of each counted size, its requests by kind from sending it until its
  clean-up's deletes have landed (worker and client apart, then summed),
  divided by its parts. Each kind's totals are fitted to ``a * parts + b``:
  ``a`` is what a part costs, ``b`` what the chord costs once.
* **refreshing**, on the same stack, its worker restarted with
  ``result_expires`` set (``ChordPlan.refresh_expires``, the same at every
  size) shorter than the larger chords run, so their expiry is pushed back
  while they run; and one header part in ``grow_every`` adds a part to its
  own chord (``Task.add_to_chord``). Counted as above, divided by the parts
  including those added; each chord's refreshes read from its document.
  A fixed expiry makes a larger chord not only bigger but longer in
  expiries (a 20,000-part chord runs many of them, a 100-part one none),
  so this pass mixes the two.
* **expiry scaled to the chord**, on the same stack: as the refreshing pass,
  but each size's chord runs under a ``result_expires`` of its own: right
  before it, a calibration chord with no refresh measures what that size
  takes under the load of the moment (``calibrated_expires``), and the
  worker restarts with that time divided by ``ChordPlan.expiries_per_run``
  (``scaled_expires``); so every chord runs about the same number of its
  expiries and only its size differs. Reported with each chord's
  ``result_expires``, its calibration, and how many expiries it ran beside
  how many it was set to run.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from celery_gcs.stores import chord_tree

from . import cpu, workloads
from .counting import Counts
from .stack import BenchStack

BACKEND = "celery_gcs"
#: The issue's target: a part of the large chord takes at most this many times one of the small.
TARGET_RATIO = 1.25
#: Firestore RPCs always shown, seen or not (a zero says none was made).
FIRESTORE_KINDS = (
    "firestore.Commit",
    "firestore.BeginTransaction",
    "firestore.BatchGetDocuments",
    "firestore.RunQuery",
    "firestore.RunAggregationQuery",
    "firestore.Rollback",
)
#: A per-part cost counts as flat when no larger size pays more than this much more per part.
FLAT_TOLERANCE = 0.05
#: In the scaled pass, chords whose expiries run differ by more than this (the most over the least)
#: are not at comparable lengths: the report says so beside its verdict on flatness.
EXPIRIES_SPREAD = 0.25
#: The calibration chords' ``result_expires``: Celery's default, as in the counting pass (no refresh).
CALIBRATION_EXPIRES = 86_400.0
#: Seconds without a new request after which a chord's clean-up is taken as finished.
_QUIET = 1.5


@dataclass(frozen=True)
class ChordPlan:
    """Sizes, rounds and budgets of one chord-scaling run."""

    mode: str
    timed: tuple[int, int]  # (small, large): time per part compared
    rounds: int
    counted: tuple[int, ...]  # requests per part at each
    warm_up: int  # parts of an untimed chord first on each stack (0: none)
    budget: float  # seconds a chord may take
    #: The refreshing pass's ``result_expires``, in seconds: a chord running longer than half of it is refreshed.
    refresh_expires: float = 20.0
    #: In the refreshing pass, one header part in this many adds a part to its chord.
    grow_every: int = 50
    #: In the scaled pass, how many of its ``result_expires`` each chord runs (``scaled_expires``).
    expiries_per_run: float = 4.0
    #: The scaled pass's shortest ``result_expires``, in seconds. The backend takes any (0: never
    #: expires), but a chord's first refresh comes at half its expiry and must rewrite the earliest
    #: results within the other half. That refresh took 0.1-0.3 s for a chord of 4 and 0.7 s for a
    #: chord of 100 under load 6-12 (2026-12-07 19:15 run: at a 1 s floor its results expired
    #: first and the chord failed). 3 s leaves 1.5 s, twice that 0.7 s, so the pass measures the
    #: refresh rule and not that race; a chord shorter than 4 floors then runs fewer expiries than
    #: ``expiries_per_run``, which the report shows beside what it ran.
    expires_floor: float = 3.0
    #: The largest size calibrated with a chord of its own size; a larger size is calibrated with
    #: the largest counted size not above this, its time multiplied by the two sizes' ratio in the
    #: counting pass (``calibrated_expires``). 0: every size at its own size.
    calibrate_up_to: int = 0


PLANS = {
    # A minute or so: for developing the harness.
    "quick": ChordPlan(
        "quick", timed=(20, 200), rounds=2, counted=(10, 50, 200), warm_up=10, budget=300,
        refresh_expires=3.0, grow_every=10, calibrate_up_to=50,
    ),
    # What `make bench-chords` runs: the sizes.
    # A 20,000-part chord takes 4.5-7 minutes under load here: calibrating it at its own size would
    # add as much again to the pass, so it is calibrated with a chord of 5,000 (1-2.5 minutes).
    "default": ChordPlan(
        "default", timed=(500, 5000), rounds=5, counted=(100, 500, 5000, 20_000), warm_up=100,
        budget=1800, calibrate_up_to=5000,
    ),
    "full": ChordPlan(
        "full", timed=(500, 5000), rounds=9, counted=(100, 500, 5000, 20_000), warm_up=100,
        budget=1800, calibrate_up_to=5000,
    ),
}


def run(plan: ChordPlan, workdir: Path, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every pass; the summary as a JSON-able dict."""
    started, load_before = time.time(), os.getloadavg()
    timing = _timing_pass(plan, workdir / "timing", say)
    counting, refreshing, scaled = _counting_passes(plan, workdir / "counting", say)
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            "mode": plan.mode,
            "plan": asdict(plan),
            "run_seconds": round(time.time() - started, 1),
            "machine": cpu.machine(),
            "load_average": {"start": cpu.load(load_before), "end": cpu.load()},
            "worker": "celery worker -P prefork -c 2 (celery-gcs), GCS and Firestore emulators",
        },
        "timing": timing,
        "counting": counting,
        "refreshing": refreshing,
        "scaled_expiry": scaled,
    }


# -- timing ----------------------------------------------------------------------------


def _timing_pass(plan: ChordPlan, workdir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    small, large = plan.timed
    stack = BenchStack(workdir, backends=(BACKEND,), counted=False)
    say(f"timing: starting a stack without counting proxies in {workdir}")
    stack.start()
    rounds: list[dict[str, Any]] = []
    try:
        if plan.warm_up:
            _chord(stack, plan.warm_up, plan.budget)
        for round_ in range(plan.rounds):
            order = (small, large) if round_ % 2 == 0 else (large, small)
            seconds = {}
            for size in order:
                seconds[size] = _chord(stack, size, plan.budget).seconds
                say(f"  round {round_ + 1}, chord of {size:>6,}: {seconds[size]:8.2f} s, "
                    f"{seconds[size] / size * 1000:7.2f} ms per part")  # fmt: skip
            rounds.append(timed_round(round_ + 1, order, seconds))
            say(f"  round {round_ + 1}: ratio per part {rounds[-1]['ratio']:.3f}")
    finally:
        stack.stop()
    return summarise_timing(plan.timed, rounds)


def timed_round(number: int, order: tuple[int, ...], seconds: dict[int, float]) -> dict[str, Any]:
    small, large = sorted(seconds)
    per_part = {size: seconds[size] / size for size in (small, large)}
    return {
        "round": number,
        "order": list(order),
        "seconds": {str(size): round(value, 6) for size, value in seconds.items()},
        "per_part_ms": {str(size): round(value * 1000, 4) for size, value in per_part.items()},
        "ratio": round(per_part[large] / per_part[small], 4),
    }


def summarise_timing(sizes: tuple[int, int], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds; the ratio is the median of the ratios within rounds."""
    small, large = sizes
    ratios = [r["ratio"] for r in rounds]
    medians = {
        str(size): round(statistics.median(r["per_part_ms"][str(size)] for r in rounds), 4)
        for size in sizes
    }
    ratio = statistics.median(ratios)
    return {
        "sizes": list(sizes),
        "rounds": rounds,
        "median_per_part_ms": medians,
        "ratio": {
            "median": round(ratio, 4), "min": min(ratios), "max": max(ratios), "n": len(ratios)
        },
        "ratio_of_medians": round(medians[str(large)] / medians[str(small)], 4),
        "target": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
    }


# -- counting --------------------------------------------------------------------------


def _counting_passes(
    plan: ChordPlan, workdir: Path, say: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The counting pass, then the refreshing pass and the scaled one on the same stack."""
    stack = BenchStack(workdir, backends=(BACKEND,))
    say(f"counting: starting a stack with counting proxies in {workdir}")
    stack.start()
    try:
        counting = _counted_sizes(stack, plan, say)
        say(f"refreshing: result_expires={plan.refresh_expires:g} s, one part in {plan.grow_every} "
            "adds a part to its chord")  # fmt: skip
        stack.reconfigure(result_expires=plan.refresh_expires)
        refreshing = _counted_sizes(stack, plan, say, grow_every=plan.grow_every)
        say(f"expiry scaled to the chord: each chord runs about {plan.expiries_per_run:g} of its "
            f"result_expires, calibrated right before it; one part in {plan.grow_every} adds a part")  # fmt: skip

        def calibrate(size: int) -> dict[str, Any]:
            return _calibrate(stack, plan, size, counting["sizes"], say)

        scaled = _counted_sizes(stack, plan, say, grow_every=plan.grow_every, expires=calibrate)
    finally:
        stack.stop()
    settings = {"result_expires": plan.refresh_expires, "grow_every": plan.grow_every}
    scaling = {
        "expiries_per_run": plan.expiries_per_run,
        "expires_floor": plan.expires_floor,
        "calibrate_up_to": plan.calibrate_up_to,
        "expiries_spread": EXPIRIES_SPREAD,
        "grow_every": plan.grow_every,
    }
    return counting, {**settings, **refreshing}, {**scaling, **scaled}


def scaled_expires(seconds: float, plan: ChordPlan) -> float:
    """The scaled pass's ``result_expires`` for a size whose chord takes ``seconds`` with no refresh.

    That size's own chord time, not one time per part for every size: it
    holds what a chord of that size costs once (applying it, the workers
    picking it up, the join), which makes a 100-part chord take about twice
    as long per part as a 20,000-part one here. One time per part would give
    the small chords twice as many expiries as the large, mixing length with
    size again, the other way round. No less than ``expires_floor``.
    """
    return round(max(plan.expires_floor, seconds / plan.expiries_per_run), 3)


def calibration_size(size: int, plan: ChordPlan) -> int:
    """The chord that calibrates ``size``: itself, or the largest counted size up to ``calibrate_up_to``."""
    if not plan.calibrate_up_to or size <= plan.calibrate_up_to:
        return size
    return max((n for n in plan.counted if n <= plan.calibrate_up_to), default=min(plan.counted))


def calibrated_expires(size: int, calibration: dict[str, Any], counting: dict[str, Any], plan: ChordPlan) -> dict[str, Any]:
    """``size``'s expiry from a calibration chord (``parts``, ``seconds``) run just before, under the same load.

    Not the counting pass's time alone: that ran minutes earlier, and the
    load here moves within minutes (2026-12-07: a 5,000-part chord took 61 s
    there and 163 s a quarter of an hour later, so it ran 10.75 of its
    expiries instead of 4). A calibration of a smaller size is multiplied by
    the two sizes' ratio in the counting pass, which ran both under one load.
    """
    parts, seconds = calibration["parts"], calibration["seconds"]
    ratio = counting[str(size)]["seconds"] / counting[str(parts)]["seconds"] if parts != size else 1.0
    estimate = seconds * ratio
    expires = scaled_expires(estimate, plan)
    return {
        "result_expires": expires,
        "expected_expiries": round(estimate / expires, 2),
        "calibration": {**calibration, "counting_ratio": round(ratio, 4), "estimate_seconds": round(estimate, 4)},
    }


def _calibrate(
    stack: BenchStack, plan: ChordPlan, size: int, counting: dict[str, Any], say: Callable[[str], None]
) -> dict[str, Any]:
    """A chord with no refresh (the counting pass's expiry) on a warmed worker, timed, just before ``size``'s scaled chord.

    Its requests are not counted: the scaled chord's counts start at its own sending.
    """
    parts = calibration_size(size, plan)
    stack.reconfigure(result_expires=CALIBRATION_EXPIRES)
    _warm_up(stack, plan, say)
    seconds = _chord(stack, parts, plan.budget, settled=_quiet).seconds
    assert seconds is not None  # _chord raises past the budget
    found = calibrated_expires(size, {"parts": parts, "seconds": round(seconds, 4)}, counting, plan)
    say(f"  calibration for {size:,}: a chord of {parts:,} took {seconds:.2f} s; "
        f"result_expires {found['result_expires']:g} s")  # fmt: skip
    return found


def _counted_sizes(
    stack: BenchStack,
    plan: ChordPlan,
    say: Callable[[str], None],
    grow_every: int = 0,
    expires: Callable[[int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One counted chord per size; with ``expires``, each size under the ``result_expires`` it gives (calibrated)."""
    sizes: dict[str, Any] = {}
    if plan.warm_up and expires is None:
        _chord(stack, plan.warm_up, plan.budget, settled=_quiet)
    for size in plan.counted:
        scaling: dict[str, Any] = {}
        if expires is not None:
            # A worker restarted with this size's expiry, warmed up as in the other passes.
            scaling = expires(size)
            stack.reconfigure(result_expires=scaling["result_expires"])
            _warm_up(stack, plan, say)
        try:
            sizes[str(size)] = counted_chord(stack, size, plan.budget, grow_every)
        except workloads.WorkloadFailed as exc:
            if not grow_every:
                raise
            # A chord that failed (results expired while refreshes ran, say) is a finding, reported as
            # such, with its requests until then per part stored.
            say(f"  chord of {size:>6,}: FAILED: {exc}")
            sizes[str(size)] = failed_chord(stack, str(exc))
            stack.restart_worker(BACKEND)
        entry = sizes[str(size)]
        if scaling:
            entry.update(scaling)
            if "failed" not in entry:
                entry["expiries"] = round(entry["seconds"] / scaling["result_expires"], 2)
        if "failed" in entry:
            continue
        say(f"  chord of {size:>6,}: {entry['seconds']:8.2f} s, {entry['added']} added, "
            f"{entry['refreshes']} refreshes; per part: "
            f"{entry['firestore']['round_trips']:.4f} Firestore round trips, "
            f"{entry['gcs']['requests']:.4f} GCS requests")  # fmt: skip
    return summarise_counting(sizes)


def _warm_up(stack: BenchStack, plan: ChordPlan, say: Callable[[str], None]) -> None:
    """A chord to warm a restarted worker's processes up; under a short expiry it may fail, and has warmed them all the same.

    A cold process's first part comes late (its clients connect first),
    later than a short ``result_expires``: its chord's early results expire.
    """
    if not plan.warm_up:
        return
    try:
        workloads.chord_of(stack, BACKEND, plan.warm_up, plan.budget, _quiet, errback=True)
    except workloads.WorkloadFailed as exc:
        say(f"  warm-up chord of {plan.warm_up:,} failed (a cold worker under a short expiry): {exc}"[:300])
        _quiet(stack)


def counted_chord(stack: BenchStack, size: int, budget: float, grow_every: int = 0) -> dict[str, Any]:
    """One chord's requests, from sending it until its clean-up's deletes have landed; per part, added ones included."""
    sample = _chord(stack, size, budget, settled=_quiet, grow_every=grow_every)
    counts = sample.counts
    worker, client = counts.side("worker"), counts.side("client")
    both = {kind: worker.get(kind, 0) + client.get(kind, 0) for kind in {*worker, *client}}
    leaves = chord_tree.leaf_count(size)
    counters = len(chord_tree.initial_counts(sample.extra["header_ids"], leaves))
    added = sample.extra["added"]
    return {
        "seconds": round(sample.seconds, 4),
        "counters": counters,
        "added": added,
        "parts": size + added,
        "refreshes": _refreshes(stack, sample.extra["group_id"]),
        # The completer deletes every part and counter by id: fewer, and counting stopped early.
        "cleaned_up": both.get("doc.delete", 0) == size + added + counters,
        "totals": {"worker": worker, "client": client},
        **per_part(both, size + added),
    }


def failed_chord(stack: BenchStack, reason: str) -> dict[str, Any]:
    """A chord that failed: why, and its requests so far per part stored (left out of the fit)."""
    assert stack.proxies is not None
    counts = stack.proxies.snapshot()
    worker, client = counts.side("worker"), counts.side("client")
    both = {kind: worker.get(kind, 0) + client.get(kind, 0) for kind in {*worker, *client}}
    stored = worker.get("object.write", 0)
    return {
        "failed": reason,
        "parts_stored": stored,
        "totals": {"worker": worker, "client": client},
        **per_part(both, max(stored, 1)),
    }


def _refreshes(stack: BenchStack, group_id: str) -> int:
    """How many times the chord's expiry was pushed back, as its (ended) document says; read after counting."""
    chords = stack.apps[BACKEND].backend.chords
    found = chords.store.read(chords.key(group_id))
    return found.refreshes if found is not None else 0


def per_part(counts: dict[str, int], size: int) -> dict[str, Any]:
    """Firestore RPCs and documents, and GCS requests, per part."""

    def each(kinds: list[str]) -> dict[str, float]:
        return {kind: round(counts.get(kind, 0) / size, 4) for kind in kinds}

    def total(kinds: list[str]) -> float:
        return round(sum(counts.get(kind, 0) for kind in kinds) / size, 4)

    rpcs = sorted({*FIRESTORE_KINDS, *(k for k in counts if k.startswith("firestore."))})
    gcs = sorted(k for k in counts if not k.startswith(("firestore.", "doc.")))
    requests = [kind for kind in gcs if "!" not in kind]  # `read!404` is one of the reads
    return {
        "firestore": {
            "rpcs": each(rpcs),
            "round_trips": total(rpcs),
            "documents": each(["doc.write", "doc.delete", "doc.read"]),
        },
        "gcs": {"kinds": each(gcs), "requests": total(requests)},
    }


def summarise_counting(sizes: dict[str, Any]) -> dict[str, Any]:
    """Each kind's totals fitted to ``a * parts + b``, and whether its cost per part stays flat (chords that failed left out)."""
    finished = {size: entry for size, entry in sizes.items() if "failed" not in entry}
    parts = [entry.get("parts", int(size)) for size, entry in finished.items()]
    by_size = [_totals(entry) for entry in finished.values()]
    fits = {}
    for kind in sorted({kind for totals in by_size for kind in totals}):
        totals = [found.get(kind, 0) for found in by_size]
        slope, intercept = fit_line(parts, totals)
        fits[kind] = {
            "per_part": round(slope, 4),
            "per_chord": round(intercept, 2),
            "flat": is_flat([total / n for n, total in zip(parts, totals)]),
        }
    return {"sizes": sizes, "fit": fits, "flat_tolerance": FLAT_TOLERANCE}


def _totals(entry: dict[str, Any]) -> dict[str, int]:
    """One chord's requests by kind, worker and client together, with the two sums."""
    both: dict[str, int] = {}
    for side in entry["totals"].values():
        for kind, n in side.items():
            both[kind] = both.get(kind, 0) + n
    both["firestore round trips"] = sum(n for k, n in both.items() if k.startswith("firestore."))
    both["gcs requests"] = sum(
        n for k, n in both.items() if not k.startswith(("firestore", "doc.")) and "!" not in k
    )
    return both


def fit_line(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least squares ``y = a * x + b``; with one point, all of it per part."""
    if len(xs) < 2:
        return (ys[0] / xs[0] if xs else 0.0), 0.0
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread
    return slope, mean_y - slope * mean_x


def is_flat(per_part_by_size: list[float]) -> bool:
    """No size pays more per part than a smaller one, beyond ``FLAT_TOLERANCE``.

    A cost per chord spread over more parts falls with size; a cost that
    grows with the chord (a read of all its parts by each, say) rises.
    """
    return all(
        later <= earlier * (1 + FLAT_TOLERANCE) + 1e-9
        for i, earlier in enumerate(per_part_by_size)
        for later in per_part_by_size[i + 1 :]
    )


# -- one chord -------------------------------------------------------------------------


def _chord(
    stack: BenchStack,
    size: int,
    budget: float,
    settled: Callable[[BenchStack], Counts] | None = None,
    grow_every: int = 0,
) -> workloads.Sample:
    sample = workloads.chord_of(stack, BACKEND, size, budget, settled, grow_every, errback=bool(grow_every))
    if sample.seconds is None:
        raise workloads.WorkloadFailed(
            f"chord of {size:,} did not finish in {budget:.0f} s "
            f"({sample.extra.get('parts_stored') or '?'} parts stored); see {stack.workdir}"
        )
    return sample


def _quiet(stack: BenchStack, limit: float = 600.0) -> Counts:
    """The proxies' counts once no request has arrived for ``_QUIET`` seconds."""
    assert stack.proxies is not None
    deadline = time.monotonic() + limit
    last = stack.proxies.snapshot()
    while time.monotonic() < deadline:
        time.sleep(_QUIET)
        now = stack.proxies.snapshot()
        if now.by_proxy == last.by_proxy:
            return now
        last = now
    raise workloads.WorkloadFailed(f"requests still arriving {limit:.0f} s after a callback")
