"""The chord-scaling benchmark on tiny sizes: every pass runs, files appear, requests are counted right.

No timing is asserted: only that the rounds alternate and that a chord's
requests are what the design says a chord costs (chords.py, chord_tree.py).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from bench import chord_report, chord_scaling

#: No refresh at these sizes in the fixed pass (a chord of 20 runs for a second or so): the counts
#: stay exact. The scaled pass would give each chord half its calibrated time, 0.1-0.25 s, less than a
#: refresh takes: the floor, 2 s, holds them up, and the run shows it applied. Under load the chords
#: still fail here (a part of the just-restarted worker came 7 s late, at 0.05, 0.5 and 2 s alike), so
#: what is asserted is the expiry each got. The chord of 20 is calibrated with one of 4, times their
#: counting-pass ratio.
TINY = chord_scaling.ChordPlan(
    "smoke", timed=(3, 6), rounds=2, counted=(4, 20), warm_up=3, budget=120, refresh_expires=60, grow_every=4,
    expiries_per_run=2, expires_floor=2, calibrate_up_to=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Path]]:
    out = tmp_path_factory.mktemp("chords")
    summary = chord_scaling.run(TINY, out / "tmp", say=lambda line: None)
    return summary, chord_report.write(summary, out)


def test_the_timed_sizes_alternate_and_each_round_has_its_ratio(run) -> None:
    timing = run[0]["timing"]
    assert [r["order"] for r in timing["rounds"]] == [[3, 6], [6, 3]]
    for r in timing["rounds"]:
        per_part = {size: r["seconds"][str(size)] / size for size in (3, 6)}
        assert r["ratio"] == pytest.approx(per_part[6] / per_part[3], rel=1e-3, abs=1e-4)  # rounded to 4 places
    assert timing["ratio"]["median"] == pytest.approx(
        statistics.median(r["ratio"] for r in timing["rounds"]), abs=1e-4
    )
    assert timing["met"] == (timing["ratio"]["median"] <= chord_scaling.TARGET_RATIO)


@pytest.mark.parametrize("size", TINY.counted)
def test_a_counted_chord_costs_what_the_design_says(run, size: int) -> None:
    entry = run[0]["counting"]["sizes"][str(size)]
    worker, client = entry["totals"]["worker"], entry["totals"]["client"]
    counters = entry["counters"]
    # Applying it: the GroupResult, and one commit writing the counters and the chord document,
    # after reading that document (is the chord open already?) and, as there is none, one query
    # for a part document an earlier run of the group id left (none: billed as one read).
    writing = ("object.write", "firestore.Commit", "doc.write")
    writes = {kind: n for kind, n in client.items() if kind in writing}
    assert writes == {"object.write": 1, "firestore.Commit": 1, "doc.write": counters + 1}
    assert client["firestore.RunQuery"] == 1 and client["doc.read"] == 2
    assert "object.read" not in client
    # The parts' results, the callback's, and the record that the callback went out.
    assert worker["object.write"] == size + 2
    # The completer reads the GroupResult and every part's result once (a 404 is read again),
    # and looks for a record of the callback sent before (a 404).
    assert worker["object.read"] - worker.get("object.read!404", 0) == size
    # A commit per part, one per full counter below the top, settle, renew and end
    # (transactions), one batch of deletes; nothing rolled back.
    assert worker["firestore.Commit"] == size + (counters - 1) + 3 + 1
    assert worker["firestore.BeginTransaction"] == 3
    assert "firestore.Rollback" not in worker
    assert worker["doc.delete"] == size + counters and entry["cleaned_up"]
    per_part = entry["firestore"]["rpcs"]
    commits = worker["firestore.Commit"] + client["firestore.Commit"]
    assert per_part["firestore.Commit"] == round(commits / size, 4)
    assert per_part["firestore.Rollback"] == 0  # always shown, seen or not


@pytest.mark.parametrize("size", TINY.counted)
def test_a_refreshing_chord_counts_its_added_parts(run, size: int) -> None:
    refreshing = run[0]["refreshing"]
    assert refreshing["result_expires"] == 60 and refreshing["grow_every"] == 4
    entry = refreshing["sizes"][str(size)]
    worker = entry["totals"]["worker"]
    added = size // 4
    assert entry["added"] == added and entry["parts"] == size + added
    assert entry["refreshes"] == 0  # 60 s: none falls due
    # Every part's result, the added ones' too, the callback's and the record that it went out;
    # the completer reads them once.
    assert worker["object.write"] == size + added + 2
    assert worker["object.read"] - worker.get("object.read!404", 0) == size + added
    assert entry["cleaned_up"]  # added parts' documents deleted too
    assert entry["gcs"]["kinds"]["object.write"] == round((worker["object.write"] + 1) / (size + added), 4)


def test_a_failed_refreshing_chord_is_reported_and_left_out_of_the_fit() -> None:
    finished = {"parts": 10, "totals": {"worker": {"object.write": 20}, "client": {}}}
    summary = chord_scaling.summarise_counting({"10": finished, "100": {"failed": "chord of 100 failed: expired"}})
    assert summary["fit"]["object.write"]["per_part"] == 2.0
    table = chord_report.counting_table({**summary, "sizes": {
        "10": {**finished, "seconds": 1.0, "cleaned_up": True, "added": 1, "refreshes": 0,
               **chord_scaling.per_part({"object.write": 20}, 10)},
        "100": {"failed": "chord of 100 failed: expired"},
    }})  # fmt: skip
    assert "| finished | chord of 100 failed: expired |" in table
    assert "| refreshes, per chord | 0 | - |" in table


@pytest.mark.parametrize("size", TINY.counted)
def test_the_scaled_pass_runs_each_size_under_its_own_calibrated_share(run, size: int) -> None:
    counting, scaled = run[0]["counting"]["sizes"], run[0]["scaled_expiry"]
    assert (scaled["expiries_per_run"], scaled["expires_floor"], scaled["grow_every"]) == (2, 2, 4)
    assert scaled["calibrate_up_to"] == 4
    entry = scaled["sizes"][str(size)]
    calibration = entry["calibration"]
    # A chord of 4 timed right before, at both sizes (20 is above calibrate_up_to), not the counting pass's time.
    assert calibration["parts"] == 4 and calibration["seconds"] > 0
    ratio = counting[str(size)]["seconds"] / counting["4"]["seconds"]
    assert calibration["counting_ratio"] == round(ratio, 4)
    # Held up by the floor where half the calibrated time is shorter.
    assert entry["result_expires"] == round(max(2, calibration["seconds"] * ratio / 2), 3)
    assert entry["expected_expiries"] == round(calibration["seconds"] * ratio / entry["result_expires"], 2)
    if "failed" in entry:  # its results expired before the join read them: short indeed
        assert "expired" in entry["failed"]
        return
    assert entry["expiries"] == round(entry["seconds"] / entry["result_expires"], 2)
    # The worker ran under it: refreshed once past its expiry, where the fixed pass's 60 s made none.
    assert entry["refreshes"] >= 1 or entry["seconds"] < entry["result_expires"]
    assert entry["added"] == size // 4 and entry["cleaned_up"]


def test_the_expiry_follows_the_calibration_not_the_counting_pass() -> None:
    plan = chord_scaling.PLANS["default"]
    counting = {"5000": {"seconds": 60.0}, "20000": {"seconds": 270.0}}
    # The load rose since the counting pass: the 5,000-part calibration took 150 s, not 60.
    own = chord_scaling.calibrated_expires(5000, {"parts": 5000, "seconds": 150.0}, counting, plan)
    assert own["result_expires"] == 37.5 and own["expected_expiries"] == 4
    assert chord_scaling.calibration_size(20_000, plan) == 5000 and chord_scaling.calibration_size(500, plan) == 500
    larger = chord_scaling.calibrated_expires(20_000, {"parts": 5000, "seconds": 150.0}, counting, plan)
    assert larger["result_expires"] == 150.0 * 4.5 / 4 and larger["calibration"]["counting_ratio"] == 4.5


def test_the_scaled_expiry_has_a_floor_a_first_refresh_fits_in() -> None:
    plan = chord_scaling.PLANS["default"]
    # A chord of 100's first refresh took 0.7 s under load; it has half the expiry to finish.
    assert plan.expires_floor / 2 >= 2 * 0.7
    assert chord_scaling.scaled_expires(100.0, plan) == 100.0 / plan.expiries_per_run
    assert chord_scaling.scaled_expires(1.4, plan) == plan.expires_floor
    short = chord_scaling.calibrated_expires(100, {"parts": 100, "seconds": 1.4}, {"100": {"seconds": 1.0}}, plan)
    # Held at the floor, the chord is set to run fewer expiries than the plan's, and says so.
    assert short["result_expires"] == plan.expires_floor and short["expected_expiries"] == round(1.4 / 3, 2)


def test_the_report_says_when_the_expiries_run_are_not_comparable() -> None:
    def scaled(ran: dict[str, float]) -> dict[str, Any]:
        sizes = {size: {"expiries": n} for size, n in ran.items()}
        return {"sizes": {**sizes, "100": {"failed": "expired"}}, "expiries_spread": 0.25, "expiries_per_run": 4}

    apart = chord_report.expiries_line(scaled({"500": 2.55, "5000": 10.75, "20000": 6.52}))
    assert apart.startswith("- Expiries run: **not comparable**: 2.55 (500 parts) to 10.75 (5,000 parts)")
    assert "comparable (3.80 to 4.40" in chord_report.expiries_line(scaled({"500": 3.8, "5000": 4.4}))


def test_the_flat_lines_name_the_steepest_rise() -> None:
    def entry(gcs: float) -> dict[str, Any]:
        return {"gcs": {"requests": gcs}, "firestore": {"round_trips": 1.0}}

    def summary(values: dict[str, float], flat: bool) -> dict[str, Any]:
        fit = {"per_part": 1.0, "per_chord": 0.0, "flat": flat}
        sizes = {size: entry(gcs) for size, gcs in values.items()}
        return {"sizes": sizes, "fit": {"gcs requests": fit, "firestore round trips": {**fit, "flat": True}},
                "flat_tolerance": 0.05}  # fmt: skip

    rising = chord_report.flat_lines(summary({"100": 8.0, "500": 8.2, "5000": 8.8, "20000": 8.6}, flat=False))
    assert "- GCS requests per part: **not flat**: 5,000 parts against 100, +10.0% per part (8.8000 against" in rising
    assert "- Firestore round trips per part: **flat**" in rising
    falling = chord_report.flat_lines(summary({"100": 8.0, "500": 7.0, "5000": 7.1}, flat=True))
    assert "**flat**" in falling and "over a smaller: 5,000 parts against 500, +1.4% per part" in falling


def test_the_fit_splits_a_part_cost_from_a_chord_cost(run) -> None:
    counting = run[0]["counting"]
    commits = counting["fit"]["firestore.Commit"]
    # Two sizes: the line goes through both totals.
    totals = {
        size: sum(side.get("firestore.Commit", 0) for side in entry["totals"].values())
        for size, entry in counting["sizes"].items()
    }
    for size, total in totals.items():
        assert commits["per_part"] * int(size) + commits["per_chord"] == pytest.approx(
            total, abs=0.01
        )


def test_fit_and_flatness() -> None:
    assert chord_scaling.fit_line([100, 1000, 10_000], [110, 1010, 10_010]) == pytest.approx(
        (1.0, 10.0)
    )
    assert chord_scaling.is_flat([1.5, 1.2, 1.1])  # a per-chord cost spread thinner
    assert chord_scaling.is_flat([1.0, 1.04, 1.0])
    assert not chord_scaling.is_flat([1.0, 1.0, 1.2])  # a part costs more in a larger chord


def test_the_files_appear(run) -> None:
    summary, paths = run
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(summary))
    text = paths["md"].read_text()
    assert "## Time to callback per part" in text and "## Requests per part" in text
    assert "| 4 parts | 20 parts |" in text and "**Firestore round trips**" in text
    assert "## Requests per part with refreshes and add_to_chord" in text
    assert "`result_expires` = 60 s" in text and "| refreshes, per chord | 0 | 0 |" in text
    assert f"## {chord_report.SCALED_TITLE}" in text and "| `result_expires`, per chord |" in text
    assert "| calibration chord: parts, s (x counting-pass ratio) | 4, " in text
    assert "| time to callback / result_expires (set to run) |" in text
    finished = [entry for entry in summary["scaled_expiry"]["sizes"].values() if "expiries" in entry]
    assert ("- Expiries run: " in text) == (len(finished) > 1)
    assert f'the section below, "{chord_report.SCALED_TITLE}"' in text  # the fixed pass points at it
    assert "- GCS requests per part: **" in text
