"""A stored state's encoding, trimming, decoding and checks, without a bucket."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from celery import states
from celery_gcs import meta
from celery_gcs.errors import CorruptResult, ResultTooLarge


def encode(value: object) -> bytes:
    return json.dumps(value).encode()


def test_a_small_state_is_encoded_as_it_is() -> None:
    state = {"status": states.SUCCESS, "result": 3, "traceback": None}
    assert meta.encode_state(dict(state), states.SUCCESS, encode=encode, limit=1_000) == encode(state)


def test_a_failure_over_the_limit_keeps_its_error_and_the_end_of_its_traceback() -> None:
    traceback = "".join(f"  frame {n}\n" for n in range(1_000)) + "ValueError: the real error\n"
    state = {"status": states.FAILURE, "result": {"exc_type": "ValueError"}, "traceback": traceback}
    payload = meta.encode_state(state, states.FAILURE, encode=encode, limit=2_000)
    stored = json.loads(payload)
    assert len(payload) <= 2_000
    assert stored["result"] == {"exc_type": "ValueError"}
    assert stored["traceback"].startswith(meta.TRACEBACK_CUT)
    assert stored["traceback"].endswith("ValueError: the real error\n")


def test_a_success_over_the_limit_is_left_whole_for_check_payload_size_to_refuse() -> None:
    state = {"status": states.SUCCESS, "result": "x" * 5_000, "traceback": "never cut"}
    payload = meta.encode_state(dict(state), states.SUCCESS, encode=encode, limit=1_000)
    assert payload == encode(state)
    with pytest.raises(ResultTooLarge) as raised:
        meta.check_payload_size("celery-task-meta-t", payload, 1_000)
    assert "celery-task-meta-t" in str(raised.value) and "gcs_max_result_bytes" in str(raised.value)


def test_expiry_is_read_from_the_meta() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert meta.expired({"expires_at": meta.isoformat(now - dt.timedelta(seconds=1))}, now)
    assert not meta.expired({"expires_at": meta.isoformat(now + dt.timedelta(seconds=1))}, now)
    assert not meta.expired({"expires_at": None}, now)
    assert not meta.expired({"expires_at": "not a time"}, now)  # the lifecycle rule still applies


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b"\xff\xfe", "Expecting value"), (b"[1, 2]", "decoded to list"), (b'{"other": 1}', "decoded to dict")],
)
def test_what_does_not_decode_to_a_result_is_corrupt_naming_object_and_bucket(payload: bytes, reason: str) -> None:
    with pytest.raises(CorruptResult) as raised:
        meta.decode("celery-task-meta-t", payload, decode=lambda raw: json.loads(raw.decode(errors="replace")), bucket="b")
    message = str(raised.value)
    assert "'celery-task-meta-t'" in message and "'b'" in message and reason in message


@pytest.mark.parametrize(
    ("decoded", "problem"),
    [
        ({"status": 3, "result": 1}, "its status is 3, not a state"),
        ({"status": "SUCCESS"}, "it has no result"),
        ({"status": "FAILURE", "result": "text"}, "a FAILURE whose result is str, not an exception"),
        ({"status": "SUCCESS", "result": 1, "children": "x"}, "its children are str, not a list"),
        ({"status": "PROGRESS", "result": {"done": 3}}, None),  # custom states are fine
    ],
)
def test_task_states_are_checked_before_celery_rebuilds_them(decoded: dict, problem: str | None) -> None:
    assert meta.task_state_problem(decoded) == problem
    if problem is None:
        assert meta.task_state("n", decoded, rebuild=dict, bucket="b") == decoded
    else:
        with pytest.raises(CorruptResult, match=problem):
            meta.task_state("n", decoded, rebuild=dict, bucket="b")


def test_a_meta_celery_cannot_rebuild_is_corrupt() -> None:
    def rebuild(_: dict) -> dict:
        raise KeyError("exc_type")

    with pytest.raises(CorruptResult, match="Celery cannot rebuild its result"):
        meta.task_state("n", {"status": "FAILURE", "result": {}}, rebuild=rebuild, bucket="b")
