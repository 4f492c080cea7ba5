"""Celery beat with this backend: no daily backend_cleanup, since results expire by themselves."""

from __future__ import annotations

from celery import Celery
from celery.beat import Scheduler


def beat_entries(backend: str) -> set[str]:
    app = Celery("beat", broker="memory://", backend=backend, set_as_current=False)
    app.conf.result_expires = 3600
    scheduler = Scheduler(app, lazy=True)
    scheduler.install_default_entries({})
    return set(scheduler.schedule)


def test_beat_schedules_no_backend_cleanup_for_gcs() -> None:
    assert "celery.backend_cleanup" not in beat_entries("gcs://results-bucket")


def test_beat_would_schedule_it_for_a_backend_that_needs_it(tmp_path) -> None:
    """The same check against a backend without auto-expiry (Celery's filesystem one): the entry appears."""
    assert "celery.backend_cleanup" in beat_entries(f"file://{tmp_path}")
