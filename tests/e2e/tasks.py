"""The Celery app the end-to-end workers run. Settings come from the environment."""

from __future__ import annotations

import json
import os
import signal
import time

from celery import Celery

app = Celery("e2e")
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL"),
    result_backend=os.environ.get("CELERY_RESULT_BACKEND"),
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    **json.loads(os.environ.get("CELERY_GCS_TEST_CONF") or "{}"),
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task
def echo(value):
    return value


@app.task
def blob(size: int) -> str:
    return "x" * size


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def sleep(seconds: float, value=None):
    time.sleep(seconds)
    return value


@app.task
def pid() -> int:
    return os.getpid()


@app.task(bind=True)
def kill_self(self, marker: str) -> str:
    """SIGKILL this pool child the first time it runs for `marker`."""
    path = f"{marker}.killed"
    if not os.path.exists(path):
        open(path, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return marker


@app.task(bind=True)
def replace_with_group(self, n: int):
    """Replace this header task with a group of n adds (Task.replace)."""
    from celery import group

    return self.replace(group(add.s(i, i) for i in range(n)))


@app.task(bind=True)
def grow_chord(self, extra: int) -> str:
    """Add `extra` tasks to the chord this task belongs to (Task.add_to_chord)."""
    for i in range(extra):
        self.add_to_chord(echo.s(f"added-{i}"))
    return "grown"


@app.task
def collect(results):
    """A chord callback that returns what it got and records each time it ran."""
    import redis

    client = redis.Redis.from_url(app.conf.broker_url)
    client.incr(f"callback-runs:{collect.request.id}")
    return results


@app.task
def on_chord_error(request, exc, traceback):
    """An errback: records the error it was given, under the failed callback's id."""
    import redis

    client = redis.Redis.from_url(app.conf.broker_url)
    client.rpush(f"errbacks:{request.id}", repr(exc))
