"""The chord-scaling run's results: ``chord-scaling.json``, and ``chord-scaling.md`` (tables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NAME = "chord-scaling"
SCALED_TITLE = "Requests per part with refreshes and add_to_chord, expiry scaled to the chord"
#: The per-part sums whose flatness each counting section states in words.
_HEADLINES = (("gcs requests", ["gcs", "requests"], "GCS requests"),
              ("firestore round trips", ["firestore", "round_trips"], "Firestore round trips"))  # fmt: skip


def write(summary: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{NAME}.json", "md": out / f"{NAME}.md"}
    paths["json"].write_text(json.dumps(summary, indent=2) + "\n")
    paths["md"].write_text(markdown(summary))
    return paths


def markdown(summary: dict[str, Any]) -> str:
    meta, timing, counting = summary["meta"], summary["timing"], summary["counting"]
    load = meta["load_average"]
    intro = (
        f"Run {meta['date']}, mode `{meta['mode']}`, {meta['run_seconds'] / 60:.1f} minutes, on "
        f"{meta['machine']}, shared with other work (load average {load['start'][0]:g} at the "
        f"start, {load['end'][0]:g} at the end). One worker: {meta['worker']}. "
        "`make bench-chords` (`python -m bench --chords`) writes this file; "
        "bench/chord_scaling.py says how it measures."
    )
    counted = (
        "A separate pass through the counting proxies: one chord of each size, counted from "
        "sending it until its clean-up's deletes have landed, worker and client together, divided "
        "by its parts. Firestore: RPCs by method (their sum is the round trips) and the documents "
        "they write, delete and read. GCS: JSON API requests by kind (`read!404`: reads answered "
        "404, a result read before it was stored; already among the reads). Fit: the totals at "
        "every size fitted to `a * parts + b`; `a` is what a part costs, `b` what a chord costs "
        "once. Flat: no larger size pays more per part than a smaller one (by more than "
        f"{counting['flat_tolerance']:.0%})."
    )
    timed = (
        "No counting proxies in the path. The two sizes alternate within each round (the order "
        "swaps from round to round); the ratio is taken within a round, and its median reported."
    )
    sections = [
        "# Chord scaling: celery-gcs",
        intro,
        "## Time to callback per part",
        timed,
        timing_table(timing),
        target_line(timing),
        "## Requests per part",
        counted,
        counting_table(counting),
        flat_lines(counting),
    ]
    refreshing = summary.get("refreshing")
    if refreshing:
        sections += ["## Requests per part with refreshes and add_to_chord", _refreshing_intro(refreshing),
                     counting_table(refreshing), flat_lines(refreshing)]  # fmt: skip
    before = summary.get("refreshing_before")
    if before:  # kept by hand from an earlier run (see its note)
        sections += ["### The same pass on the refresh rule before 2026-12-07", before.get("note", ""),
                     counting_table(before)]  # fmt: skip
    scaled = summary.get("scaled_expiry")
    if scaled:
        verdict = "\n".join(line for line in (flat_lines(scaled), expiries_line(scaled)) if line)
        sections += [f"## {SCALED_TITLE}", _scaled_intro(scaled), counting_table(scaled), verdict]
    return "\n\n".join(section for section in sections if section) + "\n"


def _refreshing_intro(refreshing: dict[str, Any]) -> str:
    return _noted(
        refreshing,
        "The same stack, its worker restarted with `result_expires` = "
        f"{refreshing['result_expires']:g} s at every size, shorter than the larger chords run: a "
        "chord past half its expiry is refreshed (its expiry pushed back, its stored results "
        f"rewritten). One header part in {refreshing['grow_every']} adds a part, `add(0, 0)`, to its "
        "own chord (`Task.add_to_chord`). Counted as above, divided by the parts including those "
        "added; a chord's refreshes are read from its document once it ended. With one expiry for "
        "every size a larger chord is also longer in expiries (the small ones may end before "
        "their first refresh is due), so this pass mixes size with length: the section below, "
        f"\"{SCALED_TITLE}\", compares sizes at the same multiple of their expiry.",
    )


def _scaled_intro(scaled: dict[str, Any]) -> str:
    if "calibrate_up_to" not in scaled:  # a run before calibration (2026-12-07 19:15)
        source = (
            "the time its chord took in the counting pass (same proxies, same size, no refresh) "
            f"divided by {scaled['expiries_per_run']:g}"
        )
    else:
        larger = (
            f"; a size above {scaled['calibrate_up_to']:,} parts is calibrated with a chord of the largest "
            "counted size up to that, its time multiplied by the two sizes' ratio in the counting pass"
            if scaled["calibrate_up_to"] else ""
        )
        source = (
            "the time a calibration chord took right before it, on the same worker restarted with no "
            f"refresh due (so under the same load; its requests are not counted{larger}), divided by "
            f"{scaled['expiries_per_run']:g}"
        )
    return _noted(
        scaled,
        "The same stack, as the refreshing pass (one header part in "
        f"{scaled['grow_every']} adds a part to its own chord), but before each size its worker "
        f"restarts with a `result_expires` of that size's own: {source}, and no less than "
        f"{scaled['expires_floor']:g} s (a chord's first refresh, at half its expiry, must rewrite "
        "the earliest results within the other half). So every chord runs about "
        f"{scaled['expiries_per_run']:g} of its expiries and only its size differs; the rows "
        "`result_expires` and \"time to callback / result_expires\" show what each chord got, ran "
        "and was set to run (the load on the machine moves what it ran; the floor lowers what a "
        "short chord is set to run). A warm-up chord runs after each restart.",
    )


def expiries_line(scaled: dict[str, Any]) -> str:
    """Whether the scaled pass's chords ran comparable numbers of their expiries, in words (empty when they did)."""
    spread = scaled.get("expiries_spread")
    ran = {int(size): entry["expiries"] for size, entry in scaled["sizes"].items() if "expiries" in entry}
    if spread is None or len(ran) < 2 or not min(ran.values()):
        return ""
    low, high = min(ran, key=ran.__getitem__), max(ran, key=ran.__getitem__)
    if ran[high] <= ran[low] * (1 + spread):
        return (f"- Expiries run: comparable ({ran[low]:.2f} to {ran[high]:.2f}, within {spread:.0%} "
                "of each other), so the sizes above are compared at about the same length.")  # fmt: skip
    return (
        f"- Expiries run: **not comparable**: {ran[low]:.2f} ({low:,} parts) to {ran[high]:.2f} "
        f"({high:,} parts), more than {spread:.0%} apart, against {scaled['expiries_per_run']:g} "
        "set: a chord's refreshes, and with them its requests per part, follow the expiries it "
        "ran, so the verdicts above mix size with length."
    )


def _noted(pass_: dict[str, Any], text: str) -> str:
    """A pass's introduction, with what was noted of its run by hand (its ``note``) after it."""
    return f"{text} {pass_['note']}" if pass_.get("note") else text


def flat_lines(counting: dict[str, Any]) -> str:
    """Whether GCS requests and Firestore round trips per part stay flat across sizes, in words, with the steepest rise."""
    finished = {int(size): entry for size, entry in counting["sizes"].items() if "failed" not in entry}
    lines = []
    for key, path, label in _HEADLINES:
        fit = counting["fit"].get(key)
        if fit is None or len(finished) < 2:
            continue
        values = [(size, _dig(entry, path)) for size, entry in sorted(finished.items())]
        rise, small, large = max(
            ((later / earlier - 1 if earlier else 0.0), (a, earlier), (b, later))
            for i, (a, earlier) in enumerate(values)
            for b, later in values[i + 1 :]
        )
        steepest = (
            f"{large[0]:,} parts against {small[0]:,}, {rise:+.1%} per part "
            f"({large[1]:.4f} against {small[1]:.4f})"
        )
        if fit["flat"]:
            lines.append(f"- {label} per part: **flat** (no larger size paid more than "
                         f"{counting['flat_tolerance']:.0%} more per part than a smaller one; the "
                         f"most a larger one paid over a smaller: {steepest}).")  # fmt: skip
        else:
            lines.append(f"- {label} per part: **not flat**: {steepest}.")
    return "\n".join(lines)


def timing_table(timing: dict[str, Any]) -> str:
    small, large = (str(size) for size in timing["sizes"])
    a, b = f"{int(small):,}", f"{int(large):,}"
    head = (
        f"| round | order | {a} parts: s (ms per part) | {b} parts: s (ms per part) "
        f"| ratio per part, {b} / {a} |"
    )
    lines = [head, "|---|---|---|---|---|"]
    for r in timing["rounds"]:
        cells = [
            f"{r['seconds'][size]:.2f} s ({r['per_part_ms'][size]:.2f} ms)"
            for size in (small, large)
        ]
        order = " then ".join(f"{size:,}" for size in r["order"])
        lines.append(f"| {r['round']} | {order} | {cells[0]} | {cells[1]} | {r['ratio']:.3f} |")
    medians, ratio = timing["median_per_part_ms"], timing["ratio"]
    lines.append(
        f"| median | | {medians[small]:.2f} ms | {medians[large]:.2f} ms "
        f"| {ratio['median']:.3f} ({ratio['min']:.3f}-{ratio['max']:.3f}) |"
    )
    return "\n".join(lines)


def target_line(timing: dict[str, Any]) -> str:
    small, large = timing["sizes"]
    ratio = timing["ratio"]["median"]
    verdict = "**met**" if timing["met"] else "**MISSED**"
    return (
        f"- {verdict}: time per part of a {large:,}-part chord within {timing['target']:g}x of a "
        f"{small:,}-part chord's: {ratio:.3f}x (median of {timing['ratio']['n']} rounds; "
        f"{timing['ratio_of_medians']:.3f}x as a ratio of the medians)."
    )


def counting_table(counting: dict[str, Any]) -> str:
    sizes = list(counting["sizes"])
    header = " | ".join(f"{int(size):,} parts" for size in sizes)
    lines = [f"| per part | {header} | fit: a per part + b per chord | flat |",
             "|---|" + "---|" * len(sizes) + "---|---|"]  # fmt: skip
    failed = [size for size in sizes if "failed" in counting["sizes"][size]]
    if failed:
        cells = [_cell(counting["sizes"][size].get("failed", ""), 200) or "finished" for size in sizes]
        lines.append(f"| **chord failed** (its figures †: per part stored until then) | {' | '.join(cells)} | | |")
    entries = [entry for entry in counting["sizes"].values() if "failed" not in entry]
    if any("added" in entry for entry in entries):
        for key, label in (("added", "parts added (`add_to_chord`), per chord"), ("refreshes", "refreshes, per chord")):
            cells = [_count(counting["sizes"][size], key) for size in sizes]
            lines.append(f"| {label} | {' | '.join(cells)} | | |")
    if any("result_expires" in entry for entry in counting["sizes"].values()):
        expiry = [f"{counting['sizes'][size].get('result_expires', 0):g} s" for size in sizes]
        ran = [_expiries(counting["sizes"][size]) for size in sizes]
        lines.append(f"| `result_expires`, per chord | {' | '.join(expiry)} | | |")
        if any("calibration" in entry for entry in counting["sizes"].values()):
            calibrated = [_calibration(counting["sizes"][size]) for size in sizes]
            lines.append(f"| calibration chord: parts, s (x counting-pass ratio) | {' | '.join(calibrated)} | | |")
            lines.append(f"| time to callback / result_expires (set to run) | {' | '.join(ran)} | | |")
        else:
            lines.append(f"| time to callback / result_expires | {' | '.join(ran)} | | |")
    rows: list[tuple[str, str, list[str]]] = []  # (label, fit key, path into a size's entry)
    for kind in sorted({k for entry in entries for k in entry["firestore"]["rpcs"]}):
        rows.append((f"Firestore {kind.split('.', 1)[1]}", kind, ["firestore", "rpcs", kind]))
    trips = ["firestore", "round_trips"]
    rows.append(("**Firestore round trips**", "firestore round trips", trips))
    for kind, label in (("doc.write", "writes"), ("doc.delete", "deletes"), ("doc.read", "reads")):
        rows.append((f"Firestore documents: {label}", kind, ["firestore", "documents", kind]))
    kinds = sorted({k for entry in entries for k in entry["gcs"]["kinds"]})
    for kind in kinds:
        label = f"GCS {kind}" + (" (among the reads)" if "!" in kind else "")
        rows.append((label, kind, ["gcs", "kinds", kind]))
    rows.append(("**GCS requests**", "gcs requests", ["gcs", "requests"]))
    for label, key, path in rows:
        cells = [_per_part(counting["sizes"][size], path) for size in sizes]
        fit = counting["fit"].get(key)
        fit_cell = f"{fit['per_part']:.4f} + {fit['per_chord']:g}" if fit else "-"
        flat = ("yes" if fit["flat"] else "**no**") if fit else "-"
        lines.append(f"| {label} | {' | '.join(cells)} | {fit_cell} | {flat} |")
    seconds = [
        f"{entry['seconds'] / entry.get('parts', int(size)) * 1000:.2f} ms" if "failed" not in entry else "-"
        for size, entry in counting["sizes"].items()
    ]
    lines.append(f"| time to callback (through the proxies) | {' | '.join(seconds)} | | |")
    cleaned = [
        "-" if "failed" in entry else "yes" if entry["cleaned_up"] else "**no**"
        for entry in counting["sizes"].values()
    ]
    lines.append(f"| every part and counter document deleted | {' | '.join(cleaned)} | | |")
    return "\n".join(lines)


def _per_part(entry: dict[str, Any], path: list[str]) -> str:
    if "failed" not in entry:
        return f"{_dig(entry, path):.4f}"
    return f"{_dig(entry, path):.4f} †" if "totals" in entry else "-"


def _expiries(entry: dict[str, Any]) -> str:
    """Expiries a chord ran, with those it was set to run where known."""
    ran = f"{entry['expiries']:.2f}" if "expiries" in entry else "-"
    return f"{ran} ({entry['expected_expiries']:g})" if "expected_expiries" in entry else ran


def _calibration(entry: dict[str, Any]) -> str:
    found = entry.get("calibration")
    if not found:
        return "-"
    ratio = f" (x {found['counting_ratio']:.2f})" if found["counting_ratio"] != 1 else ""
    return f"{found['parts']:,}, {found['seconds']:.2f} s{ratio}"


def _count(entry: dict[str, Any], key: str) -> str:
    return "-" if "failed" in entry else f"{entry.get(key, 0):,}"


def _cell(text: str, limit: int) -> str:
    """Text fit for a table cell: one line, no pipes, at most ``limit`` characters."""
    flat = " ".join(text.split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _dig(entry: dict[str, Any], path: list[str]) -> float:
    value: Any = entry
    for key in path:
        value = value.get(key, 0) if isinstance(value, dict) else 0
    return float(value)
