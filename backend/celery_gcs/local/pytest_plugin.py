"""A pytest plugin that gives a user's own test suite the local stack and an app configured for it.

Opt in as with Celery's own plugin, in a ``conftest.py``::

    pytest_plugins = ["celery_gcs.local.pytest_plugin"]

Fixtures:

* ``celery_gcs_stack`` (session): the GCS emulator, the Firestore emulator
  and Redis on free ports, started once, stopped at the end; while it runs,
  the environment points Google's clients at the emulators.
* ``celery_gcs_config`` (session): ``broker_url`` and ``result_backend``
  (``gcs://BUCKET/PREFIX``, a prefix of the session's own) for ``app.conf``,
  or for ``celery.contrib.pytest``'s ``celery_config``.
* ``celery_gcs_app`` (function): a Celery app with that configuration; its
  tasks run in a worker you start (``celery_worker`` from
  ``celery.contrib.pytest``, or a real ``celery worker`` process).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from .services import LocalStack


@pytest.fixture(scope="session")
def celery_gcs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(tmp_path_factory.mktemp("celery-gcs-stack"))
    stack.start()
    env = {key: value for key, value in stack.env().items() if key != "CELERY_RESULT_BACKEND"}
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def celery_gcs_config(celery_gcs_stack: LocalStack) -> dict[str, Any]:
    prefix = f"pytest-{uuid.uuid4().hex[:8]}"
    return {"broker_url": celery_gcs_stack.redis_url, "result_backend": f"{celery_gcs_stack.result_backend}/{prefix}"}


@pytest.fixture
def celery_gcs_app(celery_gcs_config: dict[str, Any]) -> Iterator[Celery]:
    app = Celery("celery-gcs-pytest", set_as_current=False)
    app.conf.update(celery_gcs_config)
    try:
        yield app
    finally:
        app.close()
