"""Helpers for chords run by real workers: signatures by name, what callbacks and errbacks recorded."""

from __future__ import annotations

import time
from typing import Any

import redis

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
