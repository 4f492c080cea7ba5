"""`celery-gcs chords list|show` against the emulators: a chord whose worker was killed shows as stuck."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from celery import chord, states
from celery_gcs.cli import chords
from celery_gcs.local.processes import free_port

from ..support import tasks
from ..support.chords import sig
from .conftest import run_cli


def cli_env(stack, backend_url: str) -> dict[str, str]:
    return {**os.environ, **stack.env(), "CELERY_RESULT_BACKEND": backend_url}


def rows(done) -> list[dict]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


def test_stuck_finds_a_chord_whose_part_was_killed_and_show_says_what_it_waits_for(
    app, stack, backend_url, start_worker
) -> None:
    env = cli_env(stack, backend_url)
    worker = start_worker(task_track_started=True)
    finished = chord([sig(app, tasks.add, 1, 1), sig(app, tasks.add, 2, 2)])(sig(app, tasks.collect))
    assert finished.get(timeout=60) == [2, 4]
    header = [sig(app, tasks.add, 1, 1), sig(app, tasks.fail, "part failed"), sig(app, tasks.sleep, 120, 0)]
    stuck = chord(header)(sig(app, tasks.collect))
    add, failing, sleeping = stuck.parent.results
    wait_for(lambda: sleeping.state == states.STARTED and add.ready() and failing.ready(), 60, "the parts")
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool, mid-task: the sleeping part never returns

    # Only the killed chord is open; once it is older than the threshold, --stuck finds it.
    assert [row["state"] for row in rows(run_cli("chords", "list", "--json", env=env))] == ["done", "open"]
    assert rows(run_cli("chords", "list", "--stuck", "60", "--json", env=env)) == []
    found = wait_for(lambda: rows(run_cli("chords", "list", "--stuck", "0.05", "--json", env=env)), 60, "stuck")
    (row,) = found
    assert row["group_id"] == stuck.parent.id
    assert (row["size"], row["counted"], row["done"], row["claim_holder"]) == (3, 2, False, None)
    assert row["waiting_for"] == "1 of 3 header parts to return"
    assert row["age_seconds"] >= 3

    shown = run_cli("chords", "show", stuck.parent.id, env=env)
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["failed_parts"] == [failing.id]
    assert (detail["counted"], detail["waiting_for"]) == (2, "1 of 3 header parts to return")
    assert detail["expires_at"] is not None

    table = run_cli("chords", "list", "--open", env=env)
    assert stuck.parent.id in table.stdout and finished.parent.id not in table.stdout
    assert "1 of 3 header parts to return" in table.stdout


def test_show_on_an_unknown_id_says_so(stack, backend_url) -> None:
    done = run_cli("chords", "show", "no-such-group", env=cli_env(stack, backend_url))
    assert done.returncode == 1
    assert "no chord 'no-such-group' in Firestore collection 'celery_gcs_chords'" in done.stderr


def test_a_list_with_nothing_to_show_says_so_instead_of_an_empty_table(stack, backend_url) -> None:
    done = run_cli("chords", "list", "--stuck", "1000000", env=cli_env(stack, backend_url))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert (
        "no open chords applied 1000000 minutes ago or earlier in Firestore collection 'celery_gcs_chords'"
        in done.stderr
    )
    as_json = run_cli("chords", "list", "--stuck", "1000000", "--json", env=cli_env(stack, backend_url))
    assert rows(as_json) == []


def test_a_bad_stuck_value_is_named(stack, backend_url) -> None:
    done = run_cli("chords", "list", "--stuck", "soon", env=cli_env(stack, backend_url))
    assert done.returncode == 2
    assert "--stuck takes a number of minutes, 0 or more; got 'soon'" in done.stderr


def test_list_gives_up_within_its_timeout_when_firestore_is_down(stack, backend_url) -> None:
    """Not after the backend's two-minute retry deadline: within --timeout, naming Firestore, its endpoint and the flag."""
    env = cli_env(stack, backend_url)
    stack.firestore.faults.down = True  # the proxy in front of the emulator closes every connection
    started = time.monotonic()
    done = run_cli("chords", "list", "--open", "--timeout", "2", env=env)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert took < 20, f"chords list --timeout 2 took {took:.1f} s"
    assert f"no answer from Firestore ({env['FIRESTORE_EMULATOR_HOST']}) within 2 s" in done.stderr
    assert "(--timeout)" in done.stderr and "FIRESTORE_EMULATOR_HOST it prints" in done.stderr
    assert stack.firestore.injected_snapshot().get("down", 0) >= 1


def test_show_on_a_closed_port_and_a_bad_timeout_are_named(backend_url, monkeypatch, capsys) -> None:
    """In this process (the command's main, as the console script calls it): nothing listens on the port."""
    closed = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", closed)
    assert chords.main(["--backend", backend_url, "show", "some-group", "--timeout", "1"]) == 1
    assert f"no answer from Firestore ({closed}) within 1 s" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        chords.main(["list", "--timeout", "0"])
    assert bad.value.code == 2
    assert "must be more than 0 seconds" in capsys.readouterr().err
