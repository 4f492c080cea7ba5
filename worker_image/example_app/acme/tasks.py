"""The example team's Celery app (``celeryApp: acme.tasks:app``), with one third-party requirement.

Like a real app it names no broker and no backend: the worker's environment
gives both (Celery reads CELERY_BROKER_URL and CELERY_RESULT_BACKEND).
"""

from __future__ import annotations

import os

import humanize
from celery import Celery

app = Celery("acme")
app.conf.broker_connection_retry_on_startup = True
# Long tasks, as the stack configures them (acksLate, rejectOnWorkerLost, visibilityTimeout):
# a task is acknowledged when it ends, requeued if its process dies, and Redis redelivers an
# unacknowledged one only after the visibility timeout, which outlasts the grace period.
app.conf.task_acks_late = os.environ.get("CELERY_TASK_ACKS_LATE", "true") == "true"
app.conf.task_reject_on_worker_lost = os.environ.get("CELERY_TASK_REJECT_ON_WORKER_LOST", "true") == "true"
app.conf.broker_transport_options = {
    "visibility_timeout": int(os.environ.get("CELERY_BROKER_VISIBILITY_TIMEOUT", "3600"))
}


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def natural_size(size: int) -> str:
    """Uses the app's own requirement, which only the image's build installs."""
    return humanize.naturalsize(size)


@app.task
def total(numbers: list[int]) -> int:
    """A chord's callback: the sum of its parts' results."""
    return sum(numbers)
