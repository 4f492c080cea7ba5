"""The Celery app the benchmark's workers run, configured from the environment.

``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` pick the broker and the
backend under test; ``CELERY_BENCH_CONF`` (JSON) adds settings, such as the
queue this worker consumes. A chord callback records, in the broker's Redis,
when its result was stored (``task_postrun`` fires after the backend stored
it) and how often it ran. A ready worker writes the file named by
``CELERY_BENCH_READY``; one started with ``CELERY_BENCH_TIMELINE`` records its
calls to Google and when a callback starts (``bench.timeline``).
"""

from __future__ import annotations

import json
import os
import time

from celery.signals import task_postrun, task_prerun, worker_ready
from celery_gcs import observe
from celery_gcs.local.apps import app_from_env

from . import timeline

#: Redis list a callback's finishing time (time.time()) is pushed to.
DONE_KEY = "bench:done:{task_id}"
#: Redis counter of a callback's runs.
RUNS_KEY = "bench:runs:{task_id}"
#: Redis key a callback's value is written to (JSON): checked from there, as its stored result may
#: have expired by then (the refreshing pass's short result_expires).
VALUE_KEY = "bench:value:{task_id}"
#: Redis list the error a failed chord gave its callback's errback is pushed to.
FAILED_KEY = "bench:failed:{task_id}"

app = app_from_env("bench", conf_var="CELERY_BENCH_CONF")
timeline.install_from_env()

_redis = None


def _broker_redis():
    global _redis
    if _redis is None or _redis[0] != os.getpid():
        import redis

        _redis = (os.getpid(), redis.Redis.from_url(app.conf.broker_url))
    return _redis[1]


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True)
def add_and_grow(self, x: int, y: int) -> int:
    """A header part that adds one more part to its own chord (``Task.add_to_chord``): ``add(0, 0)``."""
    self.add_to_chord(add.s(0, 0))
    return x + y


@app.task
def collect(values: list[int]) -> dict[str, int]:
    """A chord callback: how many results it got and their sum."""
    _broker_redis().incr(RUNS_KEY.format(task_id=collect.request.id))
    value = {"count": len(values), "sum": sum(values)}
    _broker_redis().set(VALUE_KEY.format(task_id=collect.request.id), json.dumps(value))
    return value


@app.task
def chord_failed(request, exc, traceback) -> None:
    """A chord callback's errback: records the chord's error, under the callback's id."""
    _broker_redis().rpush(FAILED_KEY.format(task_id=request.id), repr(exc))


@task_prerun.connect
def _record_start(sender=None, **_kwargs) -> None:
    if sender is not None and sender.name == collect.name:
        observe.event(timeline.CALLBACK_STARTED)  # bench.timeline's "publish" ends here


@task_postrun.connect
def _record_finish(sender=None, task_id=None, **_kwargs) -> None:
    if sender is not None and sender.name == collect.name:
        _broker_redis().rpush(DONE_KEY.format(task_id=task_id), repr(time.time()))


@worker_ready.connect
def _announce_ready(**_kwargs) -> None:
    path = os.environ.get("CELERY_BENCH_READY")
    if path:
        with open(path, "w") as ready:
            ready.write(str(os.getpid()))
