"""A pytest plugin that gives a user's own test suite the local stack and an app configured for it.

Installed with celery-gcs, it loads by itself (the ``pytest11`` entry point,
named after this module, so a ``pytest_plugins = ["celery_gcs.local.pytest_plugin"]``
line written for older versions changes nothing; ``-p no:celery_gcs.local.pytest_plugin``
turns it off). Loading it costs nothing: the stack's modules are imported by the
first fixture that needs them, so a suite without the ``local`` extra, or not
using these fixtures, never notices it.

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
from typing import TYPE_CHECKING, Any

import pytest

from ..install import install_line

if TYPE_CHECKING:
    from celery import Celery

    from .services import LocalStack

E_NO_LOCAL_EXTRA = (
    "the celery_gcs_* fixtures need celery-gcs's local extra (the emulators' packages), which is not "
    "installed ({error}); install it with:\n  {line}"
)


@pytest.fixture(scope="session")
def celery_gcs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The GCS emulator, the Firestore emulator and Redis on free ports, for the whole session.

    A ``celery_gcs.local.services.LocalStack``; while it runs, STORAGE_EMULATOR_HOST,
    FIRESTORE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT point Google's clients at it.
    """
    try:
        from .services import LocalStack
    except ImportError as exc:
        pytest.fail(E_NO_LOCAL_EXTRA.format(error=exc, line=install_line(["local"])), pytrace=False)
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
    """``broker_url`` and ``result_backend`` (gcs://, a prefix of the session's own) on the local stack.

    For ``app.conf.update``, or returned from ``celery.contrib.pytest``'s ``celery_config``.
    """
    prefix = f"pytest-{uuid.uuid4().hex[:8]}"
    return {"broker_url": celery_gcs_stack.redis_url, "result_backend": f"{celery_gcs_stack.result_backend}/{prefix}"}


@pytest.fixture
def celery_gcs_app(celery_gcs_config: dict[str, Any]) -> Iterator[Celery]:
    """A Celery app configured with ``celery_gcs_config``; its tasks run in a worker you start."""
    from celery import Celery

    app = Celery("celery-gcs-pytest", set_as_current=False)
    app.conf.update(celery_gcs_config)
    try:
        yield app
    finally:
        app.close()
