"""Helpers for chords: signatures by name, what callbacks and errbacks recorded, chords applied in-process."""

from __future__ import annotations

import datetime as dt
import time
import types
import uuid
from typing import Any

import pytest
import redis
from celery import states
from celery.result import AsyncResult
from celery_gcs import conventions
from celery_gcs.settings import parse
from celery_gcs.stores import chord_tree
from celery_gcs.stores.chord_store import ChordStore

from .tasks import CALLBACK_RUNS_KEY, ERRBACKS_KEY


def sig(app: Any, task: Any, *args: Any, **options: Any) -> Any:
    """A signature of a worker's task, by name, bound to the test's client app."""
    return app.signature(task.name, args=args, **options)


def callback_runs(app: Any, result: Any) -> int:
    """How many times the chord callback ``tasks.collect`` ran for ``result``."""
    client = redis.Redis.from_url(app.conf.broker_url)
    return int(client.get(CALLBACK_RUNS_KEY.format(task_id=result.id)) or 0)


def errbacks(app: Any, result: Any) -> list[str]:
    """The errors ``tasks.on_chord_error`` was called with for the callback ``result``."""
    client = redis.Redis.from_url(app.conf.broker_url)
    return [item.decode() for item in client.lrange(ERRBACKS_KEY.format(task_id=result.id), 0, -1)]


def settle(seconds: float = 1.5) -> None:
    """Give a duplicate callback, if one were coming, time to run."""
    time.sleep(seconds)


def ended_only(docs: dict[str, dict[str, Any]]) -> bool:
    """Only chord documents marked done are left (until their TTL): no parts, no counters, no open chord."""
    return all("/" not in path and data["done"] is True and "expires_at" in data for path, data in docs.items())


class Published:
    """What an app published as chord callbacks, in-process (the broker is not what is under test)."""

    def __init__(self, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.values: list[Any] = []
        monkeypatch.setattr(app.amqp, "_retry_publish", lambda publish, value: self.values.append(value))


def apply_here(app: Any, size: int) -> tuple[str, list[str]]:
    """A chord applied as Celery applies one (its GroupResult saved, its counters written); group and task ids."""
    group_id, ids = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(size)]
    app.backend.apply_chord((group_id, [AsyncResult(task_id, app=app) for task_id in ids]), None)
    return group_id, ids


def part_request(group_id: str, task_id: str) -> Any:
    """The request of a header task of ``group_id``, as the backend sees it when the task returns."""
    return types.SimpleNamespace(
        id=task_id, group=group_id, group_index=0, chord={"task": "tests.callback", "options": {"task_id": "cb"}},
        task="tests.part", ignore_result=False,
    )  # fmt: skip


def chord_store_on(stack: Any) -> ChordStore:
    """A ChordStore on the test's stack, retrying for 30 s at most."""
    return ChordStore(parse(conventions.backend_url(stack.bucket, gcs_project=stack.local_stack.project, gcs_retry_deadline="30"), {}))


def in_seconds(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def open_chord(store: ChordStore, size: int) -> tuple[str, list[str], int]:
    """A chord's documents as ``apply`` writes them: (key, its header's task ids, its leaves)."""
    key, ids = f"chord-{uuid.uuid4()}", [f"task-{n}" for n in range(size)]
    leaves = chord_tree.leaf_count(size)
    store.create(key, size, leaves, chord_tree.initial_counts(ids, leaves), in_seconds(60))
    return key, ids, leaves


def store_part(app: Any, group_id: str, task_id: str, value: object) -> None:
    """A header task of ``group_id`` returns ``value`` in this process: counted, maybe completing its chord, stored."""
    app.backend.store_result(task_id, value, states.SUCCESS, request=part_request(group_id, task_id))
