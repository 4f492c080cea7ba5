"""The harness warms the Firestore emulator until its CPU per chord stops falling."""

from __future__ import annotations

from bench import harness


def test_the_emulator_is_warm_once_a_chord_costs_it_about_what_the_last_did() -> None:
    # CPU seconds per chord of 1,000 measured on one stack (bench/ANALYSIS.md).
    series = [7.51, 5.74, 4.72, 2.8, 2.78]
    warm_after = next(n for n in range(len(series) + 1) if harness.emulator_warm(series[:n]))
    assert warm_after == 5


def test_one_chord_says_nothing_yet() -> None:
    assert not harness.emulator_warm([])
    assert not harness.emulator_warm([3.0])
    assert harness.emulator_warm([3.0, 3.1])
