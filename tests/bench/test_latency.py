"""The production-like pass's proxies hold each answer for its kind's time, and only that answer."""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.cloud import firestore

from bench import latency

from ..support import gcs


def test_overrides_are_milliseconds_by_kind() -> None:
    assert latency.parse_overrides("gcs.write=60, firestore.Commit=0") == {
        "gcs.write": 0.06,
        "firestore.Commit": 0.0,
    }
    assert latency.parse_overrides("") == {}


@pytest.mark.parametrize(
    ("text", "named"),
    [("gcs.writes=60", "gcs.writes=60"), ("gcs.write", "gcs.write"), ("gcs.read=fast", "gcs.read=fast"),
     ("gcs.read=-5", "gcs.read=-5")],
)  # fmt: skip
def test_a_bad_override_names_itself_and_the_kinds(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(named))):
        latency.parse_overrides(text)


def test_an_upload_is_held_as_a_write_and_a_metadata_read_as_a_read() -> None:
    model = {**latency.MODEL, "gcs.write": 1.0, "gcs.read": 2.0, "gcs.other": 3.0}
    rules = [(call, seconds) for proxy, call, seconds in latency.rules(model) if proxy == "gcs"]

    def held(method: str, path: str) -> float:
        return next(s for call, s in rules if call.split(" ")[0] == method and re.fullmatch(call.split(" ", 1)[1], path))

    assert held("POST", "/upload/storage/v1/b/bucket/o") == 1.0
    assert held("GET", "/download/storage/v1/b/bucket/o/a%2Fb") == 2.0
    assert held("GET", "/storage/v1/b/bucket/o/a%2Fb") == 2.0
    assert held("GET", "/storage/v1/b/bucket") == 3.0


@pytest.fixture
def proxies(stack, monkeypatch: pytest.MonkeyPatch):
    model = {**{kind: 0.0 for kind in latency.MODEL}, "gcs.write": 1.0, "firestore.Commit": 0.5}
    held = latency.LatencyProxies(
        stack.local_stack.services["gcs"].port, stack.local_stack.services["firestore"].port, model
    ).start()
    for key, value in held.env("worker").items():
        monkeypatch.setenv(key, value)
    yield held
    held.stop()


def test_each_answer_is_held_for_its_kind_and_others_go_on_meanwhile(stack, proxies) -> None:
    bucket = gcs.client().bucket(stack.bucket)

    def upload(_: int) -> float:
        started = time.monotonic()
        bucket.blob(f"latency/{uuid.uuid4()}").upload_from_string(b"x")
        return time.monotonic() - started

    with ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        each = list(pool.map(upload, range(4)))
        together = time.monotonic() - started
    assert min(each) >= 1.0
    assert together < 3.0  # held side by side: one after another would take 4 s

    started = time.monotonic()
    assert bucket.get_blob("latency/none") is None  # a read: held 0 s
    assert time.monotonic() - started < 1.0

    client = firestore.Client(project=stack.local_stack.project)
    started = time.monotonic()
    client.collection("latency").document(str(uuid.uuid4())).set({"n": 1})
    assert time.monotonic() - started >= 0.5


def test_redis_gets_its_round_trip_through_a_proxy_of_its_own(stack) -> None:
    """Memorystore in the same region: every command waits the model's round trip, Redis's as ours."""
    import redis

    port = int(stack.local_stack.redis_url.rsplit(":", 1)[1].split("/")[0])
    model = {**{kind: 0.0 for kind in latency.MODEL}, "redis": 0.4}
    held = latency.LatencyProxies(
        stack.local_stack.services["gcs"].port, stack.local_stack.services["firestore"].port, model, redis_ports={"broker": port}
    ).start()
    try:
        client = redis.Redis.from_url(held.redis_url("broker", port))
        client.ping()  # connected
        started = time.monotonic()
        client.set("latency", "1")
        assert time.monotonic() - started >= 0.4  # 0.2 s each way
        assert client.get("latency") == b"1"
    finally:
        held.stop()
    assert "1 ms round trip" in latency.SOURCES and latency.MODEL["redis"] == 0.001
