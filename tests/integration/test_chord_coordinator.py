"""The chord coordinator in one process against the Firestore emulator: situations a worker can meet."""

from __future__ import annotations

import datetime as dt
import threading
import time
import types
import uuid

import pytest
from celery import states
from celery_gcs.keys import part_document_id
from celery_gcs.stores.chord_store import Claim, Holder

pytestmark = pytest.mark.usefixtures("stack")


def test_a_replayed_return_whose_chord_finished_meanwhile_returns(app, stack) -> None:
    """Issue 11, defect 1: claim() and read() both None (the holder finished) looped forever."""
    coordinator = app.backend.chords
    group_id = str(uuid.uuid4())
    key = coordinator.key(group_id)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    coordinator.set_size(group_id, 2)
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    for index, task_id in enumerate(ids):
        coordinator.store.count_part(key, part_document_id(task_id), index, expires)
    # A live holder elsewhere (another host, its lease far ahead) is completing the chord.
    remote = Claim("remote-token", Holder("another-host", 1, ""), expires)
    assert coordinator.store.claim(key, remote, can_take=lambda _claim: True) is not None

    request = types.SimpleNamespace(id=ids[1], group=group_id, group_index=1, chord={"task": "never.published"})
    part = coordinator.part(request, states.SUCCESS, 2)
    stack.firestore.reset_counts()
    replay = threading.Thread(target=coordinator.complete_if_done, args=(part,), kwargs={"may_wait": True})
    replay.start()
    time.sleep(0.5)  # the replay now waits out the remote lease
    coordinator.store.finish(key, (part_document_id(task_id) for task_id in ids))  # the holder finishes
    replay.join(timeout=10)
    alive = replay.is_alive()
    requests = sum(stack.firestore.snapshot().values())
    if alive:  # end the old loop: a chord document to claim again, whose parts are gone
        coordinator.store.set_size(key, 2, expires)
        replay.join(timeout=30)
    assert not alive, f"the replay still loops after {requests} Firestore requests"
    assert requests < 50
