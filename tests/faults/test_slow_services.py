"""Services that answer slowly or not at all: each call gives up after ``gcs_timeout``.

A call slower than the timeout is abandoned and retried until
``gcs_retry_deadline``, then reported as a ``TransientError`` naming what was
being done; a blackhole (connections accepted, nothing answered) is the same.
Within the timeout, latency only slows things down.
"""

from __future__ import annotations

import time
import uuid

import pytest
from celery import states
from celery_gcs import TransientError
from celery_gcs.settings import parse
from celery_gcs.stores.chord_store import ChordStore
from celery_gcs.stores.chord_tree import Node
from google.api_core import exceptions as api

pytestmark = pytest.mark.usefixtures("stack")

QUERY = "gcs_timeout=0.5&gcs_retry_deadline=1.5"
LEAF = Node(0, 0, 1)


def _causes(exc: BaseException) -> list[BaseException]:
    found = []
    while exc is not None:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def _connect(store: ChordStore, key: str) -> None:
    """Connect ``store`` before the fault: on a loaded machine its first call (a new channel)
    can outlast the test's short timeout, which only the faulted calls are meant to meet."""
    deadline = time.monotonic() + 60
    while True:
        try:
            store.read(key)
            return
        except TransientError:
            assert time.monotonic() < deadline, "the store could not reach Firestore in 60 s, without faults"


@pytest.mark.parametrize("fault", ["latency", "blackhole"])
def test_firestore_calls_slower_than_the_timeout_are_abandoned(stack, fault: str) -> None:
    store = ChordStore(parse(f"gcs://{stack.bucket}?{QUERY}", {}))
    key = f"chord-unlock-{uuid.uuid4()}"
    ChordStore(parse(f"gcs://{stack.bucket}", {})).create(key, 2, 1, {LEAF: 2}, None)
    _connect(store, key)
    if fault == "latency":
        stack.firestore.faults.latency = 2.0  # per chunk: four times the timeout
    else:
        stack.firestore.faults.blackhole = True
        stack.firestore.drop_connections()
    with pytest.raises(TransientError) as caught:
        store.count(key, "t1", LEAF, None)
    assert "counting a chord part in Firestore database (default)" in str(caught.value)
    assert any(isinstance(cause, api.DeadlineExceeded) for cause in _causes(caught.value))
    stack.firestore.faults.clear()
    stack.firestore.drop_connections()
    assert store.count(key, "t2", LEAF, None) is not None  # and it recovers


def test_firestore_latency_within_the_timeout_only_slows_calls(stack) -> None:
    store = ChordStore(parse(f"gcs://{stack.bucket}?gcs_timeout=5", {}))
    key = f"chord-unlock-{uuid.uuid4()}"
    store.create(key, 2, 1, {LEAF: 2}, None)
    stack.firestore.faults.latency = 0.2
    assert store.count(key, "t1", LEAF, None).remaining == 1
    assert store.read_counter(key, LEAF).remaining == 1


@pytest.mark.parametrize("fault", ["latency", "blackhole"])
def test_gcs_calls_slower_than_the_timeout_are_abandoned(make_app, stack, fault: str) -> None:
    backend = make_app(f"gcs://{stack.bucket}/slow-{uuid.uuid4().hex[:8]}?{QUERY}").backend
    setattr(stack.gcs.faults, fault, 2.0 if fault == "latency" else True)
    with pytest.raises(TransientError) as caught:
        backend.store_result("t-slow", 1, states.SUCCESS)
    assert f"writing gs://{stack.bucket}/" in str(caught.value)
    stack.gcs.faults.clear()
    backend.store_result("t-slow", 2, states.SUCCESS)
    assert backend.get_task_meta("t-slow", cache=False)["result"] == 2
