"""The chart renders a PNG from a tiny results dict, without the stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import chart

BACKENDS = {"celery_gcs": "celery-gcs", "builtin": "built-in gs://", "redis": "Redis"}


def ratio(median: float, low: float, high: float) -> dict[str, float]:
    return {"median": median, "min": low, "max": high, "n": 3}


def tiny() -> dict[str, Any]:
    """Three workloads: measured ratios, a Redis bound, and a stopped built-in run extrapolated."""
    measured = {"seconds": {"median": 2.0}, "unfinished": []}
    stopped = {"seconds": None, "unfinished": [{"budget": 60.0, "estimated_seconds": 9.0}]}
    return {
        "meta": {"date": "2026-01-01 00:00 UTC", "mode": "smoke", "backends": BACKENDS},
        "workloads": {
            "store": {
                "label": "store 6 results",
                "ratios": {
                    "celery_gcs/redis": ratio(4.0, 3.0, 5.0),
                    "builtin/celery_gcs": ratio(2.5, 2.0, 3.0),
                },
                "backends": {},
            },
            "tasks": {
                "label": "5 tasks",
                "ratios": {"celery_gcs/redis>=": ratio(20.0, 20.0, 20.0)},
                "backends": {},
            },
            "chord4": {
                "label": "chord of 4",
                "ratios": {"celery_gcs/redis": ratio(8.0, 8.0, 8.0)},
                "backends": {"celery_gcs": measured, "builtin": stopped},
            },
        },
    }


def test_relative_times_marks_bounds_and_extrapolations() -> None:
    rows = dict(chart.relative_times(tiny()))
    assert rows["store 6 results"]["redis"] == (0.25, 0.2, 1 / 3, "")
    assert rows["5 tasks"]["redis"][3] == "<"
    assert rows["chord of 4"]["builtin"] == (4.5, 4.5, 4.5, "~")


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "charts" / "latest.png"
    chart.draw(tiny(), path)
    png = path.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == 1200 and 300 <= height <= 1000
    assert 10_000 < len(png) < 1_000_000
