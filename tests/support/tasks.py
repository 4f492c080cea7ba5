"""The Celery app the end-to-end and fault tests' workers run, configured from the environment."""

from __future__ import annotations

import os
import signal
import time

from celery_gcs.local.apps import app_from_env

#: Redis counter of a chord callback's runs, by the callback's task id.
CALLBACK_RUNS_KEY = "callback-runs:{task_id}"
#: Redis list of the errors an errback was called with, by the failed callback's task id.
ERRBACKS_KEY = "errbacks:{task_id}"

app = app_from_env("e2e", conf_var="CELERY_GCS_TEST_CONF")


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


@app.task(ignore_result=True)
def fail_unstored(message: str) -> None:
    """Fails with no result stored (``ignore_result``): only the chord hears of it."""
    raise ValueError(message)


@app.task
def pid() -> int:
    return os.getpid()


@app.task(bind=True)
def backend_identity(self) -> tuple[int, int]:
    """This process and the backend object its result goes through; a moment's work, so threads share the load."""
    time.sleep(0.05)
    return os.getpid(), id(self.backend)


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
    client.incr(CALLBACK_RUNS_KEY.format(task_id=collect.request.id))
    return results


@app.task
def on_chord_error(request, exc, traceback):
    """An errback: records the error it was given, under the failed callback's id."""
    import redis

    client = redis.Redis.from_url(app.conf.broker_url)
    client.rpush(ERRBACKS_KEY.format(task_id=request.id), repr(exc))


@app.task(bind=True, max_retries=1, default_retry_delay=0)
def retry_once(self, key: str) -> str:
    """Asks to be retried the first time it runs for ``key`` (a Redis counter), then returns it."""
    import redis

    if redis.Redis.from_url(app.conf.broker_url).incr(key) == 1:
        raise self.retry()
    return key
