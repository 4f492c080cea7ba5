"""The Celery app and tasks behind ``celery-gcs demo``, run by a real prefork worker.

The worker loads it with ``celery -A celery_gcs.local.demo_tasks worker``; every
setting comes from the environment the demo gives it:

* ``CELERY_BROKER_URL`` (Redis) and ``CELERY_RESULT_BACKEND`` (``gcs://...``);
* ``CELERY_GCS_DEMO_RUN``: the run's id, which names its records in Redis;
* ``CELERY_GCS_DEMO_QUEUE``: the queue of this run alone.

Each run keeps a record in Redis, next to the broker's keys, that the demo
reads for its progress bar and summary: how many times each task ran (a hash,
incremented after the task's result is stored) and how many times the chord
callback fired. A duplicate run or a duplicate callback shows up there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.signals import task_postrun

from ..perprocess import PerProcess
from .apps import app_from_env

#: Prefix of every Redis key a run records.
RECORD_PREFIX = "celery-gcs-demo"
#: How long a run's record is kept in Redis.
RECORD_TTL_SECONDS = 86_400
#: The queue used when no run names one.
DEFAULT_QUEUE = "celery-gcs-demo"


def create_app(
    env: Mapping[str, str], *, main: str = "celery_gcs_demo", set_as_current: bool = True
) -> Celery:
    """The demo's app, configured from ``env`` (the worker's and the demo's alike)."""
    return app_from_env(
        main,
        env=env,
        set_as_current=set_as_current,
        task_default_queue=env.get("CELERY_GCS_DEMO_QUEUE") or DEFAULT_QUEUE,
        # Without Firestore chords, Celery polls every part's result with
        # chord_unlock; half a second keeps the demo brisk either way.
        result_chord_retry_interval=0.5,
    )


def record_keys(run: str) -> tuple[str, str]:
    """The Redis keys of a run's record: (runs per task name, callbacks fired)."""
    return f"{RECORD_PREFIX}:{run}:ran", f"{RECORD_PREFIX}:{run}:callbacks"


app = create_app(os.environ)
_redis = PerProcess(lambda: _connect(app.conf.broker_url), lambda client: client.close())


def _connect(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


@app.task(name="celery_gcs.demo.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="celery_gcs.demo.inc")
def inc(x: int) -> int:
    return x + 1


@app.task(name="celery_gcs.demo.square")
def square(x: int) -> int:
    return x * x


@app.task(name="celery_gcs.demo.total")
def total(values: list[int]) -> int:
    """The chord's callback: counts each time it fires, then sums the parts."""
    run = os.environ.get("CELERY_GCS_DEMO_RUN")
    if run:
        _, callbacks = record_keys(run)
        with _redis.get().pipeline() as pipe:
            pipe.incr(callbacks).expire(callbacks, RECORD_TTL_SECONDS).execute()
    return sum(values)


DEMO_TASKS = frozenset({add.name, inc.name, square.name, total.name})


@task_postrun.connect
def _count_run(sender: Any = None, **_: Any) -> None:
    # Sent after the task's result is stored: the count is of stored results.
    run = os.environ.get("CELERY_GCS_DEMO_RUN")
    name = getattr(sender, "name", None)
    if run and name in DEMO_TASKS:
        ran, _ = record_keys(run)
        with _redis.get().pipeline() as pipe:
            pipe.hincrby(ran, name, 1).expire(ran, RECORD_TTL_SECONDS).execute()
