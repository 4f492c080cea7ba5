"""The example team's Celery app (``celeryApp: acme.tasks:app``), with one third-party requirement.

Like a real app it names no broker and no backend: the worker's environment
gives both (Celery reads CELERY_BROKER_URL and CELERY_RESULT_BACKEND).
"""

from __future__ import annotations

import humanize
from celery import Celery

app = Celery("acme")
app.conf.broker_connection_retry_on_startup = True


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def natural_size(size: int) -> str:
    """Uses the app's own requirement, which only the image's build installs."""
    return humanize.naturalsize(size)
