"""`celery-gcs results list|show`: results browsed from the bucket's listing, by their metadata."""

from __future__ import annotations

import json
import types
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import states
from google.cloud import storage

from .conftest import run_cli


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
    blob = storage.Client().bucket(stack.bucket).get_blob(f"{prefix}/celery-task-meta-t-meta")
    assert blob.content_type == "application/json"
    assert blob.metadata["celery-state"] == "SUCCESS"
    assert blob.metadata["celery-task"] == "proj.add"
    assert blob.metadata["celery-date-done"].startswith("20")


def test_a_compressed_result_is_stored_as_opaque_bytes_not_as_gzip(make_app, stack, prefix) -> None:
    make_app(result_compression="gzip").backend.store_result("t-zip", "x" * 1000, states.SUCCESS)
    blob = storage.Client().bucket(stack.bucket).get_blob(f"{prefix}/celery-task-meta-t-zip")
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


@pytest.mark.parametrize("count", [2_500, pytest.param(10_000, marks=pytest.mark.slow)])
def test_listing_is_one_request_per_thousand_results(app, stack, backend_url, count: int) -> None:
    run = uuid.uuid4().hex[:6]
    store(app.backend, [(f"{run}-{n:05d}", n, states.SUCCESS, "proj.add") for n in range(count)])
    stack.gcs.reset_counts()
    done = run_cli("results", "list", "--json", env=cli_env(stack, backend_url), timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == count
    assert stack.gcs.snapshot() == {"object.list": -(-count // 1000)}
