"""Pure parts of the chord algorithm: claims, liveness, header shapes."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

from celery.result import AsyncResult, GroupResult
from celery_gcs import chords
from celery_gcs.stores.chord_store import Chord, Claim, Holder


def _claim(holder: Holder, seconds: float) -> Claim:
    return Claim("t", holder, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds))


def test_a_live_holder_here_keeps_its_claim() -> None:
    assert not chords.can_take_over(_claim(chords.this_holder(), 60))


def test_an_expired_lease_can_be_taken_whoever_holds_it() -> None:
    assert chords.can_take_over(_claim(chords.this_holder(), -1))
    assert chords.can_take_over(_claim(Holder("elsewhere", 1, "1"), -1))


def test_a_holder_on_another_host_keeps_its_claim_until_the_lease_ends() -> None:
    assert not chords.can_take_over(_claim(Holder("some-other-host", 999_999, "1"), 60))


def test_a_dead_process_here_loses_its_claim_at_once() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = chords._start_time(child.pid)
    child.wait()
    holder = Holder(socket.gethostname(), child.pid, started)
    assert chords.can_take_over(_claim(holder, 60))


def test_a_zombie_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    holder = Holder(socket.gethostname(), child.pid, chords._start_time(child.pid))
    while True:  # not reaped yet: a zombie once it exits
        with open(f"/proc/{child.pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
    try:
        assert chords.can_take_over(_claim(holder, 60))
    finally:
        child.wait()


def test_a_reused_pid_is_not_the_holder() -> None:
    holder = Holder(socket.gethostname(), os.getpid(), "12345")  # this pid, another start time
    assert chords._start_time(os.getpid()) != "12345"
    assert chords.can_take_over(_claim(holder, 60))


def test_header_shapes_flatten_and_rebuild() -> None:
    shape = [
        AsyncResult("a"),
        GroupResult("g", [AsyncResult("b"), GroupResult("h", [AsyncResult("c")])]),
        AsyncResult("d"),
    ]
    assert list(chords._leaf_ids(shape)) == ["a", "b", "c", "d"]
    values = {"a": 1, "b": 2, "c": 3, "d": 4}
    assert chords._rebuild(shape, values) == [1, [2, [3]], 4]


def test_a_chord_total_counts_added_tasks() -> None:
    assert Chord(size=3, added=("x", "y")).total == 5
    assert Chord(size=None).total is None
