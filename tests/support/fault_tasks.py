"""The Celery app the fault tests' workers run: every end-to-end task, and one that misbehaves."""

from __future__ import annotations

import threading

from .tasks import app  # importing the module registers every end-to-end task

__all__ = ["app", "unserialisable"]


@app.task
def unserialisable() -> threading.Lock:
    """Return what no serializer can encode, JSON or pickle."""
    return threading.Lock()
