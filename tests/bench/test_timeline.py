"""bench.timeline: a chord's phases from the calls its workers recorded."""

from __future__ import annotations

from pathlib import Path

from bench import timeline


def test_a_recorder_writes_each_call_and_event_per_process(tmp_path: Path) -> None:
    recorder = timeline.Recorder(tmp_path)
    token = recorder.start("gcs.read")
    recorder.end(token, "gcs.read", "ok", 0.02, None)
    recorder.event(timeline.CALLBACK_STARTED)
    calls = timeline.read(tmp_path)
    assert [kind for _pid, kind, _s, _e in calls] == ["gcs.read", timeline.CALLBACK_STARTED]
    assert calls[0][3] - calls[0][2] == 0.02 or abs(calls[0][3] - calls[0][2] - 0.02) < 1e-5
    assert timeline.read(tmp_path, since=calls[1][2] + 1) == []  # only what started since


def test_phases_of_one_chord_in_seconds_from_when_it_was_sent() -> None:
    sent = 1000.0
    calls = [
        (1, "firestore.commit", 1000.10, 1000.13),  # a part counted, then stored
        (1, "gcs.write", 1000.13, 1000.17),
        (2, "firestore.commit", 1000.50, 1000.53),  # the last part: counted, settles, gathers
        (2, "firestore.transaction", 1000.53, 1000.56),
        (2, "gcs.read", 1000.56, 1000.58),  # the GroupResult
        (2, "gcs.read", 1000.58, 1000.60),  # two values read side by side
        (2, "gcs.read", 1000.58, 1000.61),
        (2, "gcs.write", 1000.70, 1000.74),  # its own store, after the publish
        (3, timeline.CALLBACK_STARTED, 1000.65, 1000.65),
        (3, "gcs.write", 1000.66, 1000.70),  # the callback's result
    ]
    found = timeline.phases(sorted(calls, key=lambda c: c[2]), sent, 1000.72)
    assert found["parts"] == {"from": 0.1, "to": 0.53}
    assert (found["counts"], found["stores"]) == (2, 1)
    assert found["settle"] == {"from": 0.53, "to": 0.56}
    assert found["gather"] == {"from": 0.56, "to": 0.61}
    assert (found["gather_reads"], found["gather_in_flight"]) == (3, 2)
    assert found["publish"] == {"from": 0.61, "to": 0.65}
    assert found["callback"] == {"from": 0.65, "to": 0.72}


def test_first_calls_of_each_process_against_the_rest() -> None:
    calls = [(1, "gcs.write", 0.0, 0.5), (1, "gcs.write", 1.0, 1.04), (2, "gcs.write", 0.0, 0.3), (2, "gcs.write", 1, 1.05)]
    assert timeline.first_calls(calls, ("gcs.write", "gcs.read")) == {
        "gcs.write": {"first_ms": 400.0, "later_ms": 45.0, "processes": 2}
    }
