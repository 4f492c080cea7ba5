"""Result objects written, truncated or mangled by something else in the bucket.

Reading one is a ``CorruptResult`` naming the object, the bucket and what is
wrong with it; every other result stays readable; the task's own next state
replaces the garbage. ``tests/integration/test_backend.py`` covers bytes that
are not JSON at all.
"""

from __future__ import annotations

import json
import uuid

import pytest
from celery import states
from celery.result import AsyncResult, GroupResult
from celery_gcs import CorruptResult

from ..support import gcs

pytestmark = pytest.mark.usefixtures("stack")


def _write(stack, backend, key: str, data: bytes) -> None:
    gcs.client().bucket(stack.bucket).blob(backend.settings.object_name(key)).upload_from_string(data)


def _stored(stack, backend, key: str) -> bytes:
    return gcs.client().bucket(stack.bucket).blob(backend.settings.object_name(key)).download_as_bytes()


GARBAGE = {
    "empty": (b"", "Expecting value"),
    "json-list": (b"[1, 2]", "decoded to list, not a result"),
    "json-text": (b'"SUCCESS"', "decoded to str, not a result"),
    "foreign-dict": (b'{"x": 1}', "decoded to dict, not a result"),
    "no-result": (b'{"status": "SUCCESS"}', "it has no result"),
    "status-number": (b'{"status": 42, "result": 1}', "its status is 42, not a state"),
    "failure-without-exception": (b'{"status": "FAILURE", "result": "boom"}', "a FAILURE whose result is str"),
    "children-text": (b'{"status": "SUCCESS", "result": 1, "children": "zz"}', "its children are str, not a list"),
    "exception-garbage": (
        b'{"status": "FAILURE", "result": {"exc_type": 5, "exc_message": [], "exc_module": "builtins"}}',
        "Celery cannot rebuild its result",
    ),
}


@pytest.mark.parametrize(("data", "says"), GARBAGE.values(), ids=GARBAGE.keys())
def test_a_mangled_result_is_a_clear_error_and_others_stay_readable(make_app, stack, data: bytes, says: str) -> None:
    backend = make_app().backend
    backend.store_result("good", {"k": [1, 2]}, states.SUCCESS)
    _write(stack, backend, "celery-task-meta-bad", data)
    with pytest.raises(CorruptResult) as caught:
        backend.get_task_meta("bad", cache=False)
    message = str(caught.value)
    assert "object 'celery-task-meta-bad'" in message and f"bucket '{stack.bucket}'" in message and says in message
    assert backend.get_task_meta("good", cache=False)["result"] == {"k": [1, 2]}


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_a_truncated_result_is_a_clear_error(make_app, stack, compression: str | None) -> None:
    backend = make_app(result_compression=compression).backend
    backend.store_result("cut", {"text": "long " * 200}, states.SUCCESS)
    whole = _stored(stack, backend, "celery-task-meta-cut")
    _write(stack, backend, "celery-task-meta-cut", whole[: len(whole) // 2])
    with pytest.raises(CorruptResult) as caught:
        backend.get_task_meta("cut", cache=False)
    assert "'celery-task-meta-cut'" in str(caught.value) and "truncated" in str(caught.value)


def test_a_mangled_result_among_many_is_named_when_joined(make_app, stack) -> None:
    backend = make_app().backend
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for n, task_id in enumerate(ids):
        backend.store_result(task_id, n, states.SUCCESS)
    _write(stack, backend, f"celery-task-meta-{ids[3]}", b'{"status": "SUCC')
    with pytest.raises(CorruptResult) as caught:
        dict(backend.get_many(ids, timeout=10))
    assert f"celery-task-meta-{ids[3]}" in str(caught.value)
    assert [backend.get_task_meta(task_id, cache=False)["result"] for task_id in ids[:3]] == [0, 1, 2]


def test_a_mangled_group_is_a_clear_error(make_app, stack) -> None:
    app = make_app()
    group = GroupResult("g-bad", [AsyncResult("a", app=app)], app=app)
    group.save()
    _write(stack, app.backend, "celery-taskset-meta-g-bad", json.dumps({"result": "garbage"}).encode())
    with pytest.raises(CorruptResult) as caught:
        GroupResult.restore("g-bad", app=app)
    assert "'celery-taskset-meta-g-bad'" in str(caught.value) and "not a group of results" in str(caught.value)


def test_a_tasks_next_state_replaces_garbage_in_its_place(make_app, stack) -> None:
    backend = make_app().backend
    _write(stack, backend, "celery-task-meta-redo", b"\x00garbage")
    backend.store_result("redo", "real", states.SUCCESS)
    assert make_app().backend.get_task_meta("redo")["result"] == "real"


def test_a_failure_naming_something_other_than_an_exception_is_refused_not_called(make_app, stack, tmp_path) -> None:
    """JSON results rebuild exceptions by name; Celery refuses a name that is not an exception class."""
    backend = make_app().backend
    marker = tmp_path / "ran"
    failure = {"exc_type": "system", "exc_module": "os", "exc_message": [f"touch {marker}"]}
    _write(stack, backend, "celery-task-meta-evil", json.dumps({"status": "FAILURE", "result": failure}).encode())
    with pytest.raises(CorruptResult) as caught:
        AsyncResult("evil", app=make_app()).get(timeout=5)
    message = str(caught.value)
    assert "'celery-task-meta-evil'" in message and "SecurityError" in message and "os.system" in message
    assert not marker.exists()
