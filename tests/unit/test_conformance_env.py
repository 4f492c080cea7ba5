"""make conformance gives each file's pytest the environment Celery's own CI gives it."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery_gcs.local import services

from tests.conformance.runner import suite_env


def stack_on(tmp_path: Path) -> services.LocalStack:
    """A stack whose services are known by port only: suite_env starts nothing."""
    stack = services.LocalStack(tmp_path)
    for name, port in (("gcs", 9001), ("firestore", 9002), ("redis", 9003)):
        stack.services[name] = services.Service(name, [], port)
    return stack


def test_the_session_worker_logs_at_info_as_in_celerys_tox_ini(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without it the plugin's worker logs at "error", and test_trace_log_arguments
    # finds none of the INFO records it looks for.
    monkeypatch.delenv("WORKER_LOGLEVEL", raising=False)
    env = suite_env(stack_on(tmp_path), "gcs://celery-results/conformance/test_tasks")
    assert env["WORKER_LOGLEVEL"] == "INFO"


def test_broker_and_backend_come_from_the_stack_and_no_celery_setting_leaks_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://elsewhere/1")
    env = suite_env(stack_on(tmp_path), "gcs://celery-results/conformance/test_tasks")
    assert env["TEST_BROKER"] == "redis://127.0.0.1:9003/0"
    assert env["TEST_BACKEND"] == "gcs://celery-results/conformance/test_tasks"
    assert env["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:9001"
    assert env["FIRESTORE_EMULATOR_HOST"] == "127.0.0.1:9002"
    assert (env["REDIS_HOST"], env["REDIS_PORT"]) == ("127.0.0.1", "9003")
    assert not [key for key in env if key.startswith("CELERY_")]
