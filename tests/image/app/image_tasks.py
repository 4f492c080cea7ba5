"""A user's Celery app, as the image tests run it in the worker: built with `APP_DIR`, or copied into /app.

Like a real app it names no broker and no backend: the worker container's
environment gives both (Celery reads CELERY_BROKER_URL and CELERY_RESULT_BACKEND).
IMAGE_TASKS_CONF, a JSON object, adds settings a test needs (acks_late, ...).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from celery import Celery

app = Celery("image_tasks")
app.conf.update(
    broker_connection_retry_on_startup=True,
    **json.loads(os.environ.get("IMAGE_TASKS_CONF") or "{}"),
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task
def sleep(seconds: float, value=None):
    time.sleep(seconds)
    return value


@app.task
def sleep_the_first_time(marker: str, seconds: float, value=None):
    """Sleep `seconds` on the first run for `marker` (a file path), return at once on later runs."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        time.sleep(seconds)
    return value


@app.task
def identity() -> dict:
    """Who and where the task runs: uid, working directory."""
    return {"uid": os.getuid(), "cwd": os.getcwd()}
