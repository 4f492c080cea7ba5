"""The results chart: each workload's time relative to celery-gcs, per backend, on a log scale."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .png import Canvas

COLORS = {"redis": (214, 69, 65), "celery_gcs": (66, 133, 244), "builtin": (130, 130, 130)}
_INK, _GRID, _LIGHT = (30, 30, 30), (215, 215, 215), (110, 110, 110)


def extrapolated_ratio(entry: dict[str, Any]) -> tuple[float, dict[str, Any]] | None:
    """Built-in time / celery-gcs time when the built-in was stopped and extrapolated, with its note."""
    mine, theirs = entry["backends"].get("celery_gcs"), entry["backends"].get("builtin")
    if (
        not mine
        or not theirs
        or not mine["seconds"]
        or theirs["seconds"]
        or not theirs["unfinished"]
    ):
        return None
    stopped = theirs["unfinished"][0]
    if not stopped.get("estimated_seconds"):
        return None
    return stopped["estimated_seconds"] / mine["seconds"]["median"], stopped


def relative_times(
    summary: dict[str, Any],
) -> list[tuple[str, dict[str, tuple[float, float, float, str]]]]:
    """Per workload: backend -> (median, min, max, bound) of its time / celery-gcs's time.

    ``bound`` is ``""`` for a measured ratio, ``">"`` or ``"<"`` when a backend
    did not finish within its budget and the ratio is a bound, ``"~"`` when
    the built-in backend's time is extrapolated from its progress.
    """
    rows = []
    for entry in summary["workloads"].values():
        ratios = entry["ratios"]
        bars: dict[str, tuple[float, float, float, str]] = {"celery_gcs": (1.0, 1.0, 1.0, "")}
        redis = ratios.get("celery_gcs/redis")
        if redis:  # Redis's time relative to ours is the inverse
            bars["redis"] = (1 / redis["median"], 1 / redis["max"], 1 / redis["min"], "")
        elif ratios.get("celery_gcs/redis>="):
            bound = ratios["celery_gcs/redis>="]
            bars["redis"] = (1 / bound["median"], 1 / bound["max"], 1 / bound["min"], "<")
        builtin = ratios.get("builtin/celery_gcs")
        if builtin:
            bars["builtin"] = (builtin["median"], builtin["min"], builtin["max"], "")
        elif extrapolated_ratio(entry):
            value = extrapolated_ratio(entry)[0]  # type: ignore[index]
            bars["builtin"] = (value, value, value, "~")
        elif ratios.get("builtin/celery_gcs>="):
            bound = ratios["builtin/celery_gcs>="]
            bars["builtin"] = (bound["median"], bound["min"], bound["max"], ">")
        if len(bars) > 1:
            rows.append((entry["label"], bars))
    return rows


def draw(summary: dict[str, Any], path: Path) -> None:
    rows = relative_times(summary)
    labels = summary["meta"]["backends"]
    order = [name for name in ("redis", "celery_gcs", "builtin") if name in labels]
    values = [v for _, bars in rows for bar in bars.values() for v in bar[:3]] or [1.0]
    low = 10 ** math.floor(math.log10(max(min(values), 1e-4)))
    high = 10 ** math.ceil(math.log10(max(max(values), 10.0)))

    left, right, top = 440, 60, 120
    bar_h, gap = 14, 16
    row_h = bar_h * len(order) + gap
    height = top + row_h * len(rows) + 80
    width = 1200
    canvas = Canvas(width, height)
    plot_w = width - left - right

    def x_of(value: float) -> int:
        return left + int(
            plot_w * (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
        )

    canvas.text(20, 16, "TIME RELATIVE TO CELERY-GCS (LOWER IS FASTER), LOG SCALE", _INK, 3)
    meta = summary["meta"]
    canvas.text(
        20,
        50,
        f"{meta['date']}, MODE {meta['mode']}: MEDIAN OF PAIRED ROUNDS, LINES SPAN MIN-MAX",
        _LIGHT,
        2,
    )
    x = 20
    for name in order:
        canvas.rect(x, 80, x + 24, 94, COLORS[name])
        canvas.text(x + 32, 81, labels[name], _INK, 2)
        x += 32 + canvas.text_width(labels[name]) + 40
    canvas.text(x, 81, "~: EXTRAPOLATED (STOPPED)  > <: A BOUND", _LIGHT, 2)

    decade = low
    while decade <= high * 1.0001:
        gx = x_of(decade)
        canvas.vline(gx, top - 6, top + row_h * len(rows), _GRID)
        label = f"{decade:g}x"
        canvas.text(
            gx - canvas.text_width(label) // 2, top + row_h * len(rows) + 10, label, _INK, 2
        )
        decade *= 10
    canvas.vline(x_of(1.0), top - 6, top + row_h * len(rows), _INK)

    for i, (label, bars) in enumerate(rows):
        y = top + i * row_h
        canvas.text(20, y + (bar_h * len(order)) // 2 - 7, label[:34], _INK, 2)
        for j, name in enumerate(order):
            if name not in bars:
                continue
            median, lo, hi, bound = bars[name]
            by = y + j * bar_h
            canvas.rect(left, by + 2, x_of(median), by + bar_h - 1, COLORS[name])
            if hi > lo:
                mid = by + bar_h // 2
                canvas.hline(x_of(lo), x_of(hi), mid, _INK)
                canvas.vline(x_of(lo), mid - 3, mid + 3, _INK)
                canvas.vline(x_of(hi), mid - 3, mid + 3, _INK)
            text = bound + f"{median:.2g}x"
            canvas.text(max(x_of(median), x_of(hi)) + 6, by + 1, text, _INK, 1 if bar_h < 14 else 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
