"""Results files: ``latest.json``, ``latest.md`` (tables), ``latest.png`` (chart), and README's section."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import chart

#: Hand-written analysis of the committed run, copied into latest.md when present.
ANALYSIS = Path(__file__).resolve().parent / "ANALYSIS.md"

README_INTRO = (
    "`make bench` (about 25 minutes here; `python -m bench --quick` for a smoke run, `--full` for\n"
    "more rounds and every 10,000-part chord run to the end)."
)
README_START = "<!-- bench:start (written by `make bench`) -->"
README_END = "<!-- bench:end -->"


# -- targets ---------------------------------------------------------------------------


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with what was measured and whether it was met."""
    work = summary["workloads"]
    found: list[dict[str, Any]] = []

    def ratio(key: str, which: str) -> dict[str, float] | None:
        return work.get(key, {}).get("ratios", {}).get(which)

    def add(target: str, value: str, met: bool | None, note: str = "") -> None:
        found.append({"target": target, "measured": value, "met": met, "note": note})

    chord = next((key for key in work if key == "chord1000"), None)
    if chord:
        r = ratio(chord, "celery_gcs/redis")
        if r:
            add("chord of 1,000: time to callback within 1.5x of Redis", _x(r), r["median"] <= 1.5,
                _by(r["median"], 1.5, lower=True))  # fmt: skip
        r = ratio(chord, "builtin/celery_gcs")
        if r:
            add("chord of 1,000: at least 4x faster than built-in gs://", _x(r), r["median"] >= 4,
                _by(r["median"], 4, lower=False))  # fmt: skip
    r = ratio("tasks", "celery_gcs/redis")
    if r:
        add(f"{work['tasks']['label']}: within 1.5x of Redis", _x(r), r["median"] <= 1.5,
            _by(r["median"], 1.5, lower=True))  # fmt: skip

    ours = work.get("tasks", {}).get("backends", {}).get("celery_gcs")
    if ours:
        worker = ours["per_unit"]["worker"]
        writes = worker.get("object.write", 0)
        reads = sum(
            worker.get(kind, 0) for kind in ("object.read", "object.metadata", "bucket.read")
        )
        add("worker: at most 1 GCS write and no read per stored state",
            f"{writes:g} writes, {reads:g} reads per task", writes <= 1 and reads == 0)  # fmt: skip
        client = ours["per_unit"]["client"]
        polls = client.get("object.read!404", 0)
        per_result = {work["tasks"]["label"]: client.get("object.read", 0)}
        for key in ("get_many", "join_native"):
            per = work.get(key, {}).get("backends", {}).get("celery_gcs", {}).get("per_unit", {})
            if per:
                per_result[work[key]["label"]] = per["client"].get("object.read", 0)
        worst = max(per_result.values())
        add("client: at most 1.05 reads per gathered result (none wasted on results not stored yet)",
            "; ".join(f"{label}: {n:g}" for label, n in per_result.items())
            + f" (of them {polls:g} per task answered 404)",
            worst <= 1.05)  # fmt: skip
        cpu = _worker_cpu_ms(work["tasks"])
        if "celery_gcs" in cpu and "redis" in cpu:
            above = cpu["celery_gcs"] - cpu["redis"]
            add("worker CPU per stored result: at most 1.5 ms above Redis's",
                f"{cpu['celery_gcs']:.2f} ms against Redis's {cpu['redis']:.2f} ms: {above:+.2f} ms",
                above <= 1.5, f"missed by {above - 1.5:.2f} ms" if above > 1.5 else "")  # fmt: skip

    metrics = summary.get("metrics_overhead") or {}
    if metrics.get("added_us") and metrics.get("ratio"):
        added = metrics["added_us"]["median"]
        missing = metrics["ran"] - metrics["counted"]
        add("worker CPU per task with the metrics on: at most 0.2 ms above the same worker's without",
            f"{metrics['on_us']['median']:.0f} µs on, {metrics['off_us']['median']:.0f} µs off: {added:+.0f} µs; "
            f"on / off {_x(metrics['ratio'])} ({metrics['tasks']:,} tasks a round)",
            added <= 200 and not missing,
            f"the metrics counted {metrics['counted']:g} of the {metrics['ran']:,} tasks run" if missing else "")  # fmt: skip

    constants = []
    for key, entry in work.items():
        if not key.startswith("chord"):
            continue
        mine = entry["backends"].get("celery_gcs")
        if not mine or mine["seconds"] is None or counted_stopped(mine):
            continue
        n = mine["units"]
        per = {kind: mine["per_unit"]["worker"].get(kind, 0) + mine["per_unit"]["client"].get(kind, 0)
               for kind in ("firestore.Commit",)}  # fmt: skip
        # docs/chords.md: one commit per part, one per 16 counters filled, a few per chord.
        constants.append((n, round(per["firestore.Commit"] * n - n * 16 / 15, 1)))
    if constants:
        text = ", ".join(f"{n:,} parts: n x 16/15 + {c:g}" for n, c in constants)
        add("one Firestore commit per chord part (its document and its counter), one per 16 counters filled, "
            "and a constant per chord",
            f"Firestore commits per chord: {text}", all(c <= 10 + n / 400 for n, c in constants))  # fmt: skip (the clean-up: n / 470 commits)

    worse, equal, partial, compared = [], [], [], 0
    for entry in work.values():
        mine, theirs = entry["backends"].get("celery_gcs"), entry["backends"].get("builtin")
        if not mine or not theirs:
            continue
        ours_n, theirs_n = mine["requests_per_unit"], theirs["requests_per_unit"]
        if counted_stopped(mine) or counted_stopped(theirs):
            # A stopped chord never reached its gather and clean-up: not comparable.
            partial.append(f"{entry['label']} (per part stored so far: {ours_n:g} vs {theirs_n:g})")
            continue
        compared += 1
        if ours_n == theirs_n and ours_n <= 1:
            equal.append(entry["label"])  # one read per result: nothing does fewer
        elif ours_n >= theirs_n:
            worse.append(f"{entry['label']} ({ours_n:g} vs {theirs_n:g} per {entry['unit']})")
    if compared:
        text = (
            "fewer on every workload that writes"
            if not worse
            else "not fewer on: " + "; ".join(worse)
        )
        if equal:
            text += "; as few (1 read per result, the least possible) on: " + ", ".join(equal)
        note = ("not compared, a backend was stopped: " + "; ".join(partial)) if partial else ""
        add("fewer requests than gs:// on every workload", text, not worse, note)
    return found


def counted_stopped(data: dict[str, Any]) -> bool:
    """Whether the run whose requests were counted was stopped before the end (per part stored so far)."""
    if "counted_unfinished" in data:
        return bool(data["counted_unfinished"])
    return bool(data["unfinished"]) and not data["seconds"]  # a summary counted in the timed rounds


def _worker_cpu_ms(entry: dict[str, Any]) -> dict[str, float]:
    """Each backend's worker CPU per unit of a workload, in milliseconds (its pool processes included)."""
    found = {}
    for name, data in entry["backends"].items():
        used = data["cpu_seconds"].get(f"worker.{name}")
        if used is not None and data["units"]:
            found[name] = used / data["units"] * 1000
    return found


def _x(r: dict[str, float]) -> str:
    return f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"


def _by(value: float, target: float, *, lower: bool) -> str:
    if lower and value > target:
        return f"missed by {value / target:.2f}x ({value:.2f}x against {target:g}x)"
    if not lower and value < target:
        return f"missed by {target / value:.2f}x ({value:.2f}x against {target:g}x)"
    return ""


# -- markdown -------------------------------------------------------------------------


def _ratio_cell(entry: dict[str, Any], key: str) -> str:
    ratios = entry["ratios"]
    r = ratios.get(key)
    guess = chart.extrapolated_ratio(entry) if key == "builtin/celery_gcs" else None
    if not r and guess:
        value, stopped = guess
        return (
            f"about {value:.1f}x (built-in stopped at {stopped['budget']:.0f} s with "
            f"{stopped['parts_stored']:,} parts stored; its time extrapolated)"
        )
    if r:
        spread = f" ({r['min']:.2f}-{r['max']:.2f})" if r["n"] > 1 else ""
        return f"{r['median']:.2f}x{spread}"
    bound = ratios.get(key + ">=")
    if bound:
        return f">= {bound['median']:.1f}x (did not finish)"
    return "-"


def _seconds_cell(stats: dict[str, Any], unfinished: list[dict[str, Any]]) -> str:
    if unfinished and not stats:
        first = unfinished[0]
        estimate = first.get("estimated_seconds")
        text = f"not finished in {first['budget']:.0f} s ({first.get('parts_stored') or '?'} parts stored"
        return text + (f"; about {estimate / 60:.0f} min extrapolated)" if estimate else ")")
    if not stats:
        return "-"
    value = stats["median"]
    text = f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if stats["n"] > 1:
        lo, hi = stats["min"], stats["max"]
        text += f" ({lo * 1000:.1f}-{hi * 1000:.1f} ms)" if value < 1 else f" ({lo:.2f}-{hi:.2f})"
    return text


def ratio_table(summary: dict[str, Any]) -> str:
    lines = [
        "| workload | celery-gcs time / Redis time | built-in gs:// time / celery-gcs time |",
        "|---|---|---|",
    ]
    for entry in summary["workloads"].values():
        lines.append(
            f"| {entry['label']} | {_ratio_cell(entry, 'celery_gcs/redis')} "
            f"| {_ratio_cell(entry, 'builtin/celery_gcs')} |"
        )
    return "\n".join(lines)


def combined_table(summary: dict[str, Any]) -> str:
    """Each workload's ratios on the local stack and, where they ran, in the production-like passes."""
    passes = [summary[key] for key in ("production",) if summary.get(key)] + list(summary.get("production_more", []))
    if not passes:
        return ratio_table(summary)
    names = [f"production-like -c {one['concurrency']}" for one in passes]
    head = (
        "| workload | celery-gcs / Redis, local | " + " | ".join(names)
        + " | built-in gs:// / celery-gcs, local | " + " | ".join(names) + " |"
    )
    lines = [head, "|---|---|" + "---|" * len(names) + "---|" + "---|" * len(names)]
    for key, entry in summary["workloads"].items():
        there = [one["workloads"].get(key) for one in passes]
        cells = [_ratio_cell(entry, "celery_gcs/redis")]
        cells += [_ratio_cell(one, "celery_gcs/redis") if one else "not run" for one in there]
        cells += [_ratio_cell(entry, "builtin/celery_gcs")]
        cells += [_ratio_cell(one, "builtin/celery_gcs") if one else "not run" for one in there]
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timeline_section(production: dict[str, Any]) -> str:
    """One celery-gcs chord's phases at latency, and the CPU each process spent on it (bench.timeline)."""
    found = production.get("timeline") or {}
    if not found or "phases" not in found:
        return found.get("skipped", "No timeline recorded.") + "\n"
    phases = found["phases"]
    rows = ["| phase | from (s) | to (s) | what |", "|---|---|---|---|"]
    notes = {
        "parts": f"{phases['counts']:,} Firestore commits (counts, counters reported) and {phases['stores']:,} GCS PUTs (results)",
        "settle": "the transaction(s) claiming the callback, after the last count",
        "gather": f"{phases['gather_reads']:,} GCS reads by the holder, at most {phases['gather_in_flight']} in flight",
        "publish": "renewal, publish, broker, until the callback task starts",
        "callback": "the callback runs and stores its result",
    }
    for phase, what in notes.items():
        span = phases.get(phase)
        cells = (f"{span['from']:.2f}", f"{span['to']:.2f}") if span else ("-", "-")
        rows.append(f"| {phase} | {cells[0]} | {cells[1]} | {what} |")
    firsts = ", ".join(
        f"{kind} {v['first_ms']:g} ms first against {v['later_ms']:g} ms later ({v['processes']} processes)"
        for kind, v in found.get("first_calls", {}).items()
    )
    used = ", ".join(f"{group} {seconds:.2f}" for group, seconds in sorted(found.get("cpu", {}).items()) if seconds)
    return f"""A chord of {found['size']:,} on celery-gcs at `-c {found['concurrency']}`, its callback stored
{phases['done']:.2f} s after it was sent (one run, after the timed rounds; `bench/timeline.py`):

{chr(10).join(rows)}

Each pool process's first call of the pass (its clients and connections made then) against its
later ones, median: {firsts or 'not recorded'}.
CPU seconds spent during that chord, by process group: {used}.
"""


def production_section(summary: dict[str, Any]) -> str:
    """The production-like pass: what it models, its ratios beside the local ones, its times."""
    production = summary.get("production")
    if not production:
        return "Not run (`python -m bench --no-production`).\n"
    model = production["latency"]
    held = ", ".join(f"{kind} {ms:g} ms" for kind, ms in model["ms"].items())
    labels = summary["meta"]["backends"]
    names = list(labels)
    times = ["| workload | " + " | ".join(labels[n] for n in names) + " |", "|---|" + "---|" * len(names)]
    for entry in production["workloads"].values():
        cells = [_seconds_cell(entry["backends"][n]["seconds"], entry["backends"][n]["unfinished"])
                 if n in entry["backends"] else "-" for n in names]  # fmt: skip
        times.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    rounds = production["plan"]["repeats"]
    more = "".join(
        f", and again at `-c {one['concurrency']}` ({one['plan']['repeats']} round)"
        for one in summary.get("production_more", [])
    )
    cpu_rows = ["| workload | " + " | ".join(labels[n] for n in names) + " |", "|---|" + "---|" * len(names)]
    for entry in production["workloads"].values():
        used = entry.get("cpu") or {}
        if used:
            cpu_rows.append(f"| {entry['label']} | " + " | ".join(_cpu_cell(used.get(n), n) for n in names) + " |")
    return f"""The same workloads on a fresh stack whose proxies hold each answer as long as the
service would take in one region (`bench/latency.py`), with workers at `-c {production["concurrency"]}`,
{rounds} rounds{more}, chords up to 1,000 parts. Held per request: {held}. {model["sources"]}

{combined_table(summary)}

Absolute times in the production-like pass at `-c {production["concurrency"]}` (median, and range over rounds):

{chr(10).join(times)}

CPU seconds at `-c {production["concurrency"]}` (median over rounds; worker: its pool processes too):

{chr(10).join(cpu_rows)}

{timeline_section(production)}"""


def _cpu_cell(used: dict[str, float] | None, name: str) -> str:
    """A backend's worker (with its pool processes) and client CPU seconds for one workload."""
    if not used:
        return "-"
    worker = used.get(f"worker.{name}", 0.0)
    return f"worker {worker:.2f}, client {used.get('client', 0.0):.2f}"


def cost_table(summary: dict[str, Any]) -> str:
    """Requests and list-price cost per unit: celery-gcs against the built-in backend."""
    lines = [
        "| workload | per | celery-gcs: requests, $ per million | built-in gs://: requests, $ per million |",
        "|---|---|---|---|",
    ]
    for entry in summary["workloads"].values():
        cells = []
        for name in ("celery_gcs", "builtin"):
            data = entry["backends"].get(name)
            if not data:
                cells.append("-")
                continue
            stopped = " (stopped; per part stored)" if counted_stopped(data) else ""
            cells.append(
                f"{_g(data['requests_per_unit'])}, ${data['usd_per_million_units']:.2f}{stopped}"
            )
        lines.append(f"| {entry['label']} | {entry['unit']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def seconds_table(summary: dict[str, Any]) -> str:
    names = list(summary["meta"]["backends"])
    labels = summary["meta"]["backends"]
    lines = [
        "| workload | " + " | ".join(labels[n] for n in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for entry in summary["workloads"].values():
        cells = [
            _seconds_cell(entry["backends"][n]["seconds"], entry["backends"][n]["unfinished"])
            for n in names
        ]
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_COLUMNS = [
    ("GCS writes", ("object.write",)),
    ("GCS reads (404)", ("object.read",)),
    ("GCS metadata", ("object.metadata", "bucket.read")),
    ("GCS deletes", ("object.delete",)),
    ("Firestore RPCs", ("firestore.",)),
    ("Firestore docs written / read / deleted", ("doc.write", "doc.read", "doc.delete")),
]


def _sum(counts: dict[str, float], kinds: tuple[str, ...]) -> float:
    return sum(
        n
        for kind, n in counts.items()
        if "!" not in kind and any(kind.startswith(k) for k in kinds)
    )


def _g(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def requests_table(summary: dict[str, Any]) -> str:
    labels = summary["meta"]["backends"]
    lines = [
        (
            "| workload | backend | per | GCS writes | GCS reads (of them 404) | GCS object + bucket metadata "
            "| GCS deletes | Firestore RPCs | Firestore docs written / read / deleted | requests | $ per million |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in summary["workloads"].values():
        for name, data in entry["backends"].items():
            if name == "redis":
                continue
            both: dict[str, float] = {}
            for side in ("worker", "client"):
                for kind, n in data["per_unit"][side].items():
                    both[kind] = both.get(kind, 0) + n
            reads = _sum(both, ("object.read",))
            misses = both.get("object.read!404", 0)
            docs = " / ".join(_g(both.get(k, 0)) for k in ("doc.write", "doc.read", "doc.delete"))
            cost = data["usd_per_million_units"]
            note = " (partial: stopped)" if counted_stopped(data) else ""
            lines.append(
                f"| {entry['label']}{note} | {labels[name]} | {entry['unit']} | {_g(_sum(both, ('object.write',)))} "
                f"| {_g(reads)} ({_g(misses)}) | {_g(_sum(both, ('object.metadata', 'bucket.read')))} "
                f"| {_g(_sum(both, ('object.delete',)))} | {_g(_sum(both, ('firestore.',)))} | {docs} "
                f"| {_g(data['requests_per_unit'])} | {f'${cost:.2f}' if cost is not None else '-'} |"
            )
    return "\n".join(lines)


def worker_table(summary: dict[str, Any]) -> str:
    """The 500-task workload split: the worker's requests per task, the client's per result."""
    entry = summary["workloads"].get("tasks")
    if not entry:
        return ""
    labels = summary["meta"]["backends"]
    lines = ["| backend | worker, per task | client (gathering), per result |", "|---|---|---|"]
    for name, data in entry["backends"].items():
        if name == "redis":
            continue
        cells = []
        for side in ("worker", "client"):
            counts = data["per_unit"][side]
            cells.append(", ".join(f"{kind} {n:g}" for kind, n in sorted(counts.items())) or "none")
        lines.append(f"| {labels[name]} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def cpu_table(summary: dict[str, Any]) -> str:
    labels = summary["meta"]["backends"]
    groups = [
        "worker",
        "gcs-emulator",
        "firestore-emulator",
        "proxies",
        "client",
        "broker",
        "result-redis",
    ]
    lines = [
        "| workload | backend | " + " | ".join(groups) + " | total |",
        "|---|---|" + "---|" * (len(groups) + 1),
    ]
    for entry in summary["workloads"].values():
        for name, data in entry["backends"].items():
            used = data["cpu_seconds"]
            if not used:
                continue
            row = {g: used.get(g, 0.0) for g in groups if g != "worker"}
            row["worker"] = used.get(f"worker.{name}", 0.0)
            total = sum(row.values())
            lines.append(
                f"| {entry['label']} | {labels[name]} | " + " | ".join(f"{row[g]:.2f}" for g in groups)
                + f" | {total:.2f} |"
            )  # fmt: skip
    return "\n".join(lines) if len(lines) > 2 else ""


def analysis() -> str:
    if not ANALYSIS.exists():
        return ""
    return ANALYSIS.read_text().strip() + "\n\n"


def profile_section(summary: dict[str, Any]) -> str:
    found = summary.get("profile") or {}
    if not found or "frames" not in found:
        reason = found.get("skipped", "not run in this mode")
        return f"Not profiled: {reason}."
    lines = [
        (
            f"py-spy sampled celery-gcs's pool processes (main thread) during one extra {found['workload']} "
            f"({found['seconds']:.1f} s under the profiler, {found['samples']} samples; py-spy comes with "
            "the dev group, as root or where ptrace is allowed). Share of samples inside, waiting included:"
        ),
        "",
        "| frame | what it is | share |",
        "|---|---|---|",
    ]
    for name, share in found["frames"].items():
        lines.append(f"| `{name}` | {found['meaning'][name]} | {share:.0%} |")
    lines += ["", "Top frames where the samples were (leaf):", ""]
    lines += [f"- {share:.0%} `{frame}`" for frame, share in found["top_leaf_frames"]]
    return "\n".join(lines)


def firestore_per_part(summary: dict[str, Any]) -> str:
    """How the Firestore emulator's work per chord part grows with the chord (celery-gcs)."""
    found = []
    for key, entry in summary["workloads"].items():
        mine = entry["backends"].get("celery_gcs")
        if not key.startswith("chord") or not mine or not mine["cpu_seconds"]:
            continue
        done = mine["units"]  # parts stored, for a stopped chord
        per = mine["cpu_seconds"].get("firestore-emulator", 0.0) / max(done, 1) * 1000
        found.append(f"{done:,} parts: {per:.1f} ms" + (" (stopped)" if mine["unfinished"] else ""))
    if not found:
        return ""
    return "Firestore emulator CPU per celery-gcs chord part: " + ", ".join(found) + "."


def targets_list(summary: dict[str, Any]) -> str:
    lines = []
    for t in summary.get("targets", []):
        mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        note = f"; {t['note']}" if t["note"] else ""
        lines.append(f"- **{mark}**: {t['target']}: {t['measured']}{note}.")
    return "\n".join(lines)


def markdown(summary: dict[str, Any]) -> str:
    meta = summary["meta"]
    plan = meta["plan"]
    prices = summary["prices"]
    runs = summary.get("callback_runs", {})
    run_counts = ", ".join(
        f"{meta['backends'][n]}: {sorted(set(v)) if v else '-'}" for n, v in runs.items()
    )  # fmt: skip
    budget = plan["chord_budget"]
    budget_text = ", ".join(f"{int(k):,} parts: {v:.0f} s" for k, v in budget.items()) or "none"
    return f"""# Benchmarks: celery-gcs, Celery's built-in `gs://` backend and Celery's Redis backend

Run {meta["date"]}, mode `{meta["mode"]}`, {meta["run_seconds"] / 60:.1f} minutes, on {meta["machine"]}
shared with other work{_load_text(meta)}. The same workloads ran against the three backends in one run, interleaved
(each round measures every backend once, in rotating order) and repeated ({plan["repeats"]} rounds;
chords of 10,000 parts: {plan["chord_repeats"].get("10000", plan["chord_repeats"].get(10000, plan["repeats"]))}).
Ratios are the median over rounds of ratios measured within one round, with their range.
The GCS and Firestore emulators stand in for the services, and the GCS emulator serves one
request at a time: absolute times say little about production, ratios and request counts say more.

## Time, as ratios

Above 1 in the first column: celery-gcs is slower than Redis. Above 1 in the second: celery-gcs is
faster than the built-in backend.

{ratio_table(summary)}

![time relative to celery-gcs](latest.png)

## Production-like: latency as in one region, workers at -c 16

{production_section(summary)}
## Targets

{targets_list(summary)}

## Requests per unit, and cost

Worker and client together, median over rounds. GCS: JSON API requests by kind (reads include
those answered 404: a result not stored yet). Firestore: RPCs, and the documents they bill (a commit
bills each document it writes or deletes; a `count()` bills one read per 1,000 entries counted).
Cost: GCS Class A and B operations and Firestore document operations at list prices (below),
per million units (tasks, results, gets, or chord parts); error answers priced as if billed (an
upper bound). Redis is priced per instance, not per request.

{cost_table(summary)}

By kind:

{requests_table(summary)}

The {plan["tasks"]:,}-task workload split between the worker (storing states) and the client (gathering):

{worker_table(summary)}

## CPU seconds by process, per run of the workload (median)

On a shared machine CPU time moves less than wall time, and it shows where the time goes.

{cpu_table(summary)}

{firestore_per_part(summary)}

## Profile

{profile_section(summary)}

{analysis()}## Absolute times (median, and range over rounds)

{seconds_table(summary)}

## How it was measured

- Backends: celery-gcs (`gcs://`); {meta["builtin_note"]} Celery's Redis result backend on its own
  Redis instance (the broker is another one).
- Workers: {meta["worker"]}.
- Backend only: this process stores {plan["results"]:,} results one by one, reads them with
  `get_many` and with `ResultSet.join_native`, and times {plan["gets"]} single `AsyncResult.get()`s.
- Tasks: {plan["tasks"]:,} `add` tasks sent one by one, gathered with `ResultSet.get()` (which uses
  `join_native`), from the first send until every result is in hand.
- Chords: `chord(add x N)(collect)`, from sending until the callback's result is stored (the worker
  notes the time in `task_postrun`, which Celery sends after storing the result, and tells the client
  through the broker's Redis, so waiting adds no request to the backend under test). Callback runs per
  chord: {run_counts or "-"}. Chords stopped at a time budget ({budget_text}) are reported as not
  finished, with the parts stored by then and an extrapolation (least squares fit of time against
  parts stored).
- Metrics' cost: after the workloads, {(summary.get("metrics_overhead") or {}).get("tasks", 0):,} `add` tasks a
  round through celery-gcs's worker and through a twin with the worker metrics on
  (`celery_gcs.telemetry.metrics`, prometheus-client in multiprocess mode), alternating, the order
  rotating; each worker's CPU (its process tree) per task, and their ratio within each round.
- Times and CPU: with no proxy in the path (the clients reach the emulators directly), so that
  forwarding costs no CPU and no hop in the timed rounds.
- Requests: a separate pass of one round on a fresh stack, through counting proxies
  (`bench/counting.py`, built on `celery_gcs.local.proxy`) in front of the emulators, one pair for
  the workers and one for this process.
- Prices (retrieved {prices["retrieved"]}; check them against the live pages): GCS {prices["sources"]["gcs"]};
  Firestore {prices["sources"]["firestore"]}.
"""


# -- files -------------------------------------------------------------------------------


def write(summary: dict[str, Any], out: Path, readme: Path | None = None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    summary["targets"] = targets(summary)
    paths = {"json": out / "latest.json", "md": out / "latest.md", "png": out / "latest.png"}
    paths["json"].write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    paths["md"].write_text(markdown(summary))
    chart.draw(summary, paths["png"])
    if readme is not None:
        update_readme(readme, summary)
    return paths


def readme_section(summary: dict[str, Any]) -> str:
    meta = summary["meta"]
    production = summary.get("production")
    settings = " and ".join(
        f"`-c {one['concurrency']}`" for one in [production, *summary.get("production_more", [])] if one
    )
    redis_ms = (production or {}).get("latency", {}).get("ms", {}).get("redis")
    redis = f"Redis's {redis_ms:g} ms round trip" if redis_ms else "Redis's not at all"
    where = (
        f"on the local emulators (workers `-c 2`, no proxy in the path) and production-like (each GCS "
        f"and Firestore answer held as long as in one region, {redis}, workers {settings})"
        if production
        else "on the local emulators"
    )
    return f"""{README_START}
Latest `make bench` ({meta["date"]}, {meta["run_seconds"] / 60:.0f} minutes): the same workloads against
celery-gcs, Celery's built-in `gs://` backend and Celery's Redis backend, {where};
ratios measured within one run (median, and range over rounds).

{combined_table(summary)}

![time relative to celery-gcs](bench/results/latest.png)

{targets_list(summary)}

Requests and their cost, CPU by process, the latency model and its sources, absolute times, why
a target is missed and the method: [bench/results/latest.md](bench/results/latest.md) (data:
`latest.json`).
{README_END}"""


def update_readme(readme: Path, summary: dict[str, Any]) -> None:
    """Replace the section between the markers, or add a "## Benchmarks" section before "## Layout"."""
    text = readme.read_text()
    section = readme_section(summary)
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        block = f"## Benchmarks\n\n{README_INTRO}\n\n{section}\n\n"
        text = (
            text.replace("## Layout", block + "## Layout", 1)
            if "## Layout" in text
            else text + "\n" + block
        )
    readme.write_text(text)


def _load_text(meta: dict[str, Any]) -> str:
    """The load average the local pass started and the run ended with, where the run recorded it."""
    load = meta.get("load_average")
    if not load:
        return ""
    return f" (load average {load['start'][0]:g} at the start, {load['end'][0]:g} at the end)"
