"""`celery-gcs results list|show`: results browsed from the bucket's listing, by their metadata."""

from __future__ import annotations

import json
import subprocess
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import states

from ..support import gcs
from .conftest import CLI, clean_env, run_cli


def request(task: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(task=task, id=None, group=None, chord=None)


def store(backend, items: list[tuple[str, object, str, str]]) -> None:
    def one(item):
        task_id, result, state, task = item
        backend.store_result(task_id, result, state, request=request(task))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, items))


def cli_env(stack, backend_url: str) -> dict[str, str]:
    import os

    return {**os.environ, **stack.env(), "CELERY_RESULT_BACKEND": backend_url}


def test_each_result_object_carries_its_content_type_and_metadata_in_the_one_write(app, stack, prefix) -> None:
    stack.gcs.reset_counts()
    app.backend.store_result("t-meta", {"n": 1}, states.SUCCESS, request=request("proj.add"))
    assert stack.gcs.snapshot() == {"object.write": 1}
    blob = gcs.client().bucket(stack.bucket).get_blob(f"{prefix}/celery-task-meta-t-meta")
    assert blob.content_type == "application/json"
    assert blob.metadata["celery-state"] == "SUCCESS"
    assert blob.metadata["celery-task"] == "proj.add"
    assert blob.metadata["celery-date-done"].startswith("20")


def test_a_compressed_result_is_stored_as_opaque_bytes_not_as_gzip(make_app, stack, prefix) -> None:
    make_app(result_compression="gzip").backend.store_result("t-zip", "x" * 1000, states.SUCCESS)
    blob = gcs.client().bucket(stack.bucket).get_blob(f"{prefix}/celery-task-meta-t-zip")
    assert blob.content_type == "application/octet-stream" and blob.content_encoding is None


def test_list_filters_by_state_and_name_from_the_listing_alone(app, stack, backend_url) -> None:
    store(app.backend, [
        ("ok-1", 1, states.SUCCESS, "proj.add"),
        ("ok-2", 2, states.SUCCESS, "proj.mul"),
        ("bad-1", {"exc_type": "ValueError", "exc_message": ["no"], "exc_module": "builtins"}, states.FAILURE, "proj.add"),
        ("odd/id", 3, states.SUCCESS, "proj.add"),
    ])  # fmt: skip
    env = cli_env(stack, backend_url)
    stack.gcs.reset_counts()
    done = run_cli("results", "list", "--state", "failure", "--json", env=env)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["task_id"], r["state"], r["task"]) for r in rows] == [("bad-1", "FAILURE", "proj.add")]
    assert stack.gcs.snapshot() == {"object.list": 1}  # no object is read
    done = run_cli("results", "list", "--name", "proj.add", "--since", "1h", "--json", env=env)
    assert sorted(json.loads(line)["task_id"] for line in done.stdout.splitlines()) == ["bad-1", "odd/id", "ok-1"]
    table = run_cli("results", "list", env=env)
    assert table.returncode == 0 and "proj.mul" in table.stdout and "odd/id" in table.stdout


def test_show_reads_one_result_and_a_missing_one_exits_1(app, stack, backend_url) -> None:
    app.backend.store_result("t-show", {"answer": 42}, states.SUCCESS, request=request("proj.add"))
    env = cli_env(stack, backend_url)
    done = run_cli("results", "show", "t-show", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"answer": 42}
    missing = run_cli("results", "show", "never-stored", env=env)
    assert missing.returncode == 1 and json.loads(missing.stdout)["status"] == "PENDING"
    # ...and it says why, rather than leaving PENDING to be taken for a task not run yet.
    assert f"no result stored for task id 'never-stored' in gs://{stack.bucket}/" in missing.stderr
    # --backend wins over an exported CELERY_RESULT_BACKEND naming another prefix, for show as for list.
    elsewhere = {**env, "CELERY_RESULT_BACKEND": f"gcs://{stack.bucket}/somewhere-else"}
    done = run_cli("results", "--backend", backend_url, "show", "t-show", env=elsewhere)
    assert done.returncode == 0 and json.loads(done.stdout)["result"] == {"answer": 42}


def test_without_a_backend_or_with_a_bad_since_it_says_what_to_pass(stack) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "CELERY_RESULT_BACKEND"}
    done = run_cli("results", "list", env=env)
    assert done.returncode == 2 and "--backend gcs://BUCKET[/PREFIX]" in done.stderr
    done = run_cli("results", "--backend", "gcs://b", "list", "--since", "yesterday", env=env)
    assert done.returncode == 2 and "30m or 2d" in done.stderr
    done = run_cli("results", "--backend", "gcs://b", "purge", "--before", "last week", env=env)
    assert done.returncode == 2 and "an age (a number and a unit" in done.stderr


def test_help_is_plain_text_not_restructuredtext() -> None:
    done = run_cli("results", "--help", env=clean_env())
    assert done.returncode == 0 and "``" not in done.stdout
    assert "list" in done.stdout and "purge" in done.stdout


def test_list_is_newest_first_limited_and_its_ids_whole_when_piped(app, stack, backend_url) -> None:
    long_ids = [f"{n}-{'x' * 120}" for n in range(4)]
    for task_id in long_ids:  # one after another: each done later than the last
        app.backend.store_result(task_id, 1, states.SUCCESS, request=request("proj.add"))
    env = cli_env(stack, backend_url)
    done = run_cli("results", "list", "--json", env=env)
    assert [json.loads(line)["task_id"] for line in done.stdout.splitlines()] == long_ids[::-1]
    table = run_cli("results", "list", "--limit", "2", env=env)  # piped: no column cut to 80
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()[1:] if line.strip()]
    assert [row[0] for row in rows] == [long_ids[3], long_ids[2]]
    assert rows[0][1:3] == ["SUCCESS", "proj.add"]


def test_wide_keeps_ids_whole_on_a_terminal_too() -> None:
    import io

    from celery_gcs.cli.results import Result, print_list
    from rich.console import Console

    found = [Result(task_id="t" * 150, state="SUCCESS", task="proj.add", date_done="", updated=None, key="k")]
    narrow = io.StringIO()
    print_list(found, Console(file=narrow, width=80, force_terminal=True), as_json=False)
    assert "t" * 150 not in narrow.getvalue()  # a terminal's table fits its width...
    wide = io.StringIO()
    print_list(found, Console(file=wide, width=80, force_terminal=True), as_json=False, wide=True)
    assert "t" * 150 in wide.getvalue()  # ...unless asked for --wide


def test_json_piped_into_head_stops_quietly(app, stack, backend_url) -> None:
    store(app.backend, [(f"pipe-{n:04d}-{'y' * 200}", n, states.SUCCESS, "proj.add") for n in range(600)])
    done = subprocess.run(
        ["bash", "-c", f"{CLI} results list --json | head -1"],
        env=cli_env(stack, backend_url), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert len(done.stdout.splitlines()) == 1 and json.loads(done.stdout)["state"] == "SUCCESS"
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


def test_filters_that_match_nothing_say_why(app, stack, backend_url) -> None:
    store(app.backend, [("f-1", 1, states.SUCCESS, "proj.add"), ("f-2", 2, states.SUCCESS, "proj.mul")])
    env = cli_env(stack, backend_url)
    done = run_cli("results", "list", "--state", "BOGUS", env=env)
    assert done.returncode == 1 and done.stdout == ""
    assert "no result is in state 'BOGUS' (Celery's states: FAILURE, PENDING" in done.stderr
    assert "stored states: SUCCESS" in done.stderr
    # The task name Celery gives README's proj.py `add` is proj.add, not proj.tasks.add.
    done = run_cli("results", "list", "--name", "proj.tasks.add", env=env)
    assert done.returncode == 1
    assert "no result of task 'proj.tasks.add' (did you mean 'proj.add'?)" in done.stderr
    done = run_cli("results", "list", "--name", "proj.add", "--before", "1d", env=env)
    assert done.returncode == 1 and "none is in the date range" in done.stderr


def test_listing_a_prefix_with_nothing_stored_says_so_and_prints_no_empty_table(stack, backend_url) -> None:
    done = run_cli("results", "list", env=cli_env(stack, backend_url))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "no task results are stored in gs://" in done.stderr


def test_an_expired_result_is_marked_in_the_list_and_show_says_it_expired(make_app, stack, backend_url) -> None:
    import time

    make_app(result_expires=1).backend.store_result("t-old", 7, states.SUCCESS, request=request("proj.add"))
    time.sleep(1.5)  # past its expiry (not a timing assertion: after it, it must read as expired)
    env = cli_env(stack, backend_url)
    (row,) = [json.loads(line) for line in run_cli("results", "list", "--json", env=env).stdout.splitlines()]
    assert (row["state"], row["expired"]) == ("SUCCESS", True) and row["expires_at"]
    assert "SUCCESS (expired)" in run_cli("results", "list", env=env).stdout
    done = run_cli("results", "show", "t-old", env=env)
    assert done.returncode == 1 and json.loads(done.stdout)["status"] == "PENDING"
    assert "the result stored for task id 't-old' (SUCCESS) expired at" in done.stderr


def test_backend_goes_before_or_after_the_action_and_gs_urls_read_the_same_objects(app, stack, backend_url) -> None:
    app.backend.store_result("t-where", 5, states.SUCCESS, request=request("proj.add"))
    env = clean_env(stack.env())  # no CELERY_RESULT_BACKEND
    gs_url = "gs" + backend_url[len("gcs") :]
    for argv in (
        ("results", "--backend", backend_url, "list", "--json"),
        ("results", "list", "--backend", backend_url, "--json"),
        ("results", "list", "--json", "--backend", gs_url),
    ):
        done = run_cli(*argv, env=env)
        assert done.returncode == 0, (argv, done.stderr)
        assert [json.loads(line)["task_id"] for line in done.stdout.splitlines()] == ["t-where"]
    done = run_cli("results", "show", "t-where", "--backend", gs_url, env=env)
    assert done.returncode == 0 and json.loads(done.stdout)["result"] == 5


def _names(stack, prefix: str) -> list[str]:
    return sorted(blob.name.rsplit("/", 1)[1] for blob in gcs.client().list_blobs(stack.bucket, prefix=prefix + "/"))


def test_delete_removes_results_by_id_and_names_those_not_stored(app, stack, backend_url, prefix) -> None:
    store(app.backend, [("d-1", 1, states.SUCCESS, "proj.add"), ("d/2", 2, states.SUCCESS, "proj.add"),
                        ("d-3", 3, states.SUCCESS, "proj.add")])  # fmt: skip
    stack.gcs.reset_counts()
    done = run_cli("results", "delete", "d-1", "d/2", "never", env=cli_env(stack, backend_url))
    assert done.returncode == 1  # one of them was not there
    assert "Deleted 2 of 3 results (3 delete requests)." in done.stdout
    assert "no result stored for task id 'never'" in done.stderr
    assert stack.gcs.snapshot() == {"object.delete": 3}
    assert _names(stack, prefix) == ["celery-task-meta-d-3"]


def test_purge_counts_first_deletes_only_with_yes_and_states_its_requests(app, stack, backend_url, prefix) -> None:
    failure = {"exc_type": "ValueError", "exc_message": ["no"], "exc_module": "builtins"}
    store(app.backend, [(f"p-bad-{n}", failure, states.FAILURE, "proj.add") for n in range(3)]
          + [(f"p-ok-{n}", n, states.SUCCESS, "proj.add") for n in range(2)])  # fmt: skip
    env = cli_env(stack, backend_url)
    stack.gcs.reset_counts()
    dry = run_cli("results", "purge", "--state", "FAILURE", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "3 of 5 results in" in dry.stdout and "(counted with 1 list request)" in dry.stdout
    assert "deleting them takes 3 delete requests" in dry.stdout
    refused = run_cli("results", "purge", "--state", "FAILURE", env=env)  # stdin is not a terminal
    assert refused.returncode == 2 and "not deleting without --yes" in refused.stderr
    assert stack.gcs.snapshot() == {"object.list": 2}  # counted twice, nothing deleted
    assert len(_names(stack, prefix)) == 5
    stack.gcs.reset_counts()
    done = run_cli("results", "purge", "--state", "FAILURE", "--before", "2999-01-01", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert "Deleted 3 results with 3 delete requests." in done.stdout
    assert stack.gcs.snapshot() == {"object.list": 1, "object.delete": 3}
    assert _names(stack, prefix) == ["celery-task-meta-p-ok-0", "celery-task-meta-p-ok-1"]


@pytest.mark.parametrize("count", [2_500, pytest.param(10_000, marks=pytest.mark.slow)])
def test_listing_is_one_request_per_thousand_results(app, stack, backend_url, count: int) -> None:
    run = uuid.uuid4().hex[:6]
    store(app.backend, [(f"{run}-{n:05d}", n, states.SUCCESS, "proj.add") for n in range(count)])
    stack.gcs.reset_counts()
    done = run_cli("results", "list", "--json", env=cli_env(stack, backend_url), timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == count
    assert stack.gcs.snapshot() == {"object.list": -(-count // 1000)}


@pytest.mark.parametrize("action", [("list",), ("show", "some-task")])
def test_list_and_show_give_up_within_their_timeout_when_gcs_is_unreachable(stack, backend_url, action) -> None:
    """Not after the backend's two-minute retry deadline: in seconds, naming the endpoint and the flag."""
    env = cli_env(stack, backend_url)
    stack.gcs.faults.down = True
    started = time.monotonic()
    done = run_cli("results", *action, "--timeout", "2", env=env)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert took < 10, f"results {action[0]} --timeout 2 took {took:.1f} s"
    assert f"no answer from Cloud Storage ({env['STORAGE_EMULATOR_HOST']}) within 2 s" in done.stderr
    assert "(--timeout)" in done.stderr
    assert stack.gcs.injected_snapshot().get("down", 0) >= 1
    done = run_cli("results", "list", "--timeout", "0", env=env)
    assert done.returncode == 2 and "must be more than 0 seconds" in done.stderr


def failed_chord(app) -> tuple[list[str], str]:
    """A chord of two parts applied and failed in this process (its first part failed): their ids, its callback's."""
    from celery.result import AsyncResult

    group_id, ids = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(2)]
    callback_id = f"cb-{uuid.uuid4().hex[:8]}"
    app.backend.apply_chord((group_id, [AsyncResult(task_id, app=app) for task_id in ids]), None)

    def part(task_id: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            id=task_id, group=group_id, group_index=0, task="proj.part", ignore_result=False,
            chord={"task": "proj.total", "options": {"task_id": callback_id}},
        )  # fmt: skip

    failure = ValueError("header task failed")
    app.backend.store_result(ids[0], failure, states.FAILURE, request=part(ids[0]))
    app.backend.store_result(ids[1], 2, states.SUCCESS, request=part(ids[1]))
    assert app.AsyncResult(callback_id).state == states.FAILURE  # the chord failed its callback
    return ids, callback_id


def test_a_chord_callback_failed_with_chorderror_is_stored_with_its_task_name(app, stack, backend_url) -> None:
    """Celery stores the callback's ChordError without a request, so with no task name: --name never found it."""
    from celery_gcs.keys import encode_id

    _, callback_id = failed_chord(app)
    blob = gcs.client().bucket(stack.bucket).get_blob(
        f"{backend_url.split('/', 3)[3]}/celery-task-meta-{encode_id(callback_id)}"
    )
    assert blob.metadata["celery-task"] == "proj.total"
    done = run_cli("results", "list", "--name", "proj.total", "--json", env=cli_env(stack, backend_url))
    assert [json.loads(line)["task_id"] for line in done.stdout.splitlines()] == [callback_id], done.stderr


def test_a_chords_record_of_its_sent_outcome_is_neither_listed_nor_purged(app, stack, backend_url, prefix) -> None:
    """The object recording that a chord's outcome went out (chords.py) lives beside the results, not among them."""
    ids, callback_id = failed_chord(app)
    records = [name for name in _names(stack, prefix) if name.startswith("chord-unlock-")]
    assert len(records) == 1 and "~sent" in records[0]
    env = cli_env(stack, backend_url)
    listed = run_cli("results", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(line)["task_id"] for line in listed.stdout.splitlines()) == sorted([*ids, callback_id])
    done = run_cli("results", "purge", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert "Deleted 3 results with 3 delete requests." in done.stdout
    left = _names(stack, prefix)  # the record, and the chord's GroupResult (not a task's result either)
    assert [name for name in left if not name.startswith("celery-taskset-meta-")] == records
