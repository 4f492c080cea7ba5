"""The results chart: each workload's time relative to celery-gcs, per backend, on a log scale."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

COLORS = {"redis": "#d64541", "celery_gcs": "#4285f4", "builtin": "#828282"}
ORDER = ("redis", "celery_gcs", "builtin")  # top to bottom within a workload
KEY = ("~ extrapolated (stopped)", "< > a bound (did not finish)")  # marks before a value
WIDTH, DPI = 12.0, 100  # 1200 pixels wide
BAR = 0.26  # bar height, in workload rows


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
    entries = [(e["label"], e) for e in summary["workloads"].values()]
    for production in [summary.get("production"), *summary.get("production_more", [])]:
        if production:
            suffix = f", production-like -c {production['concurrency']}"
            entries += [(e["label"] + suffix, e) for e in production["workloads"].values()]
    for label, entry in entries:
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
            rows.append((label, bars))
    return rows


def _times(value: float, _position: float) -> str:
    return f"{value:g}×"


def draw(summary: dict[str, Any], path: Path) -> None:
    """Write the chart as a PNG: grouped horizontal bars, median with a min-max whisker."""
    rows = relative_times(summary)
    meta = summary["meta"]
    labels = meta["backends"]
    order = [name for name in ORDER if name in labels]
    values = [v for _, bars in rows for bar in bars.values() for v in bar[:3]] or [1.0]
    low = 10 ** math.floor(math.log10(max(min(values), 1e-4)))
    high = 10 ** math.ceil(math.log10(max(max(values), 10.0)))

    figure = Figure(figsize=(WIDTH, 2.4 + 0.62 * max(len(rows), 1)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    figure.suptitle("time relative to celery-gcs (lower is faster)", x=0.01, ha="left", fontsize=15)
    axes.set_title(
        f"{meta['date']}, mode {meta['mode']}: median of paired rounds, whiskers span min to max",
        loc="left",
        fontsize=10,
        color="#555555",
    )
    axes.set_xscale("log")
    axes.set_xlim(low, high)
    axes.xaxis.set_major_formatter(FuncFormatter(_times))
    axes.set_xlabel("workload time / celery-gcs time (×, log scale)")
    axes.set_ylabel("workload")
    axes.grid(axis="x", which="major", color="#d7d7d7")
    axes.set_axisbelow(True)
    axes.axvline(1.0, color="#1e1e1e", linewidth=1)

    for i, (_, bars) in enumerate(rows):
        for j, name in enumerate(order):
            if name not in bars:
                continue
            median, lo, hi, bound = bars[name]
            y = i + (j - (len(order) - 1) / 2) * BAR
            axes.barh(y, median - low, left=low, height=BAR * 0.9, color=COLORS[name])
            if hi > lo:
                axes.errorbar(
                    median, y, xerr=[[median - lo], [hi - median]],
                    fmt="none", ecolor="#1e1e1e", elinewidth=1, capsize=3,
                )  # fmt: skip
            axes.annotate(
                f"{bound}{median:.2g}×",
                (max(median, hi), y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
    axes.set_yticks(range(len(rows)), [label for label, _ in rows])
    axes.set_ylim(max(len(rows), 1) - 0.5, -0.5)  # the first workload at the top
    if not rows:
        axes.text(0.5, 0.5, "no ratios to show", transform=axes.transAxes, ha="center")
    marks = [Line2D([], [], linestyle="none", label=text) for text in KEY]
    figure.legend(
        handles=[Patch(color=COLORS[name], label=labels[name]) for name in order] + marks,
        loc="outside lower center",
        ncols=len(order) + len(marks),
        frameon=False,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
