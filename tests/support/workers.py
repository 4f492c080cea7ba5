"""Real `celery worker` processes for the end-to-end and fault tests, through the one launcher.

Each loads a test app (``tests.support.tasks`` by default, see the
``worker_app`` fixture) with the repository on its path, the backend under
test in ``CELERY_RESULT_BACKEND`` and extra settings, as JSON, in
``CELERY_GCS_TEST_CONF``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery_gcs.local.worker import WorkerProcess, celery_worker_argv

ROOT = Path(__file__).resolve().parents[2]


def make_worker(
    *,
    app: str,
    env: dict[str, str],
    backend_url: str,
    conf: dict[str, Any],
    concurrency: int,
    log_path: Path,
    pool: str = "prefork",
    wrap: Sequence[str] = (),
) -> WorkerProcess:
    """A worker of ``app`` (``-P pool``), named ``w…@localhost``, not started yet.

    ``wrap`` prefixes the command, e.g. ``unshare --pid --fork --mount-proc``
    for a worker in a PID namespace of its own.
    """
    name = f"w{uuid.uuid4().hex[:6]}@localhost"
    settings = {"CELERY_RESULT_BACKEND": backend_url, "CELERY_GCS_TEST_CONF": json.dumps(conf)}
    return WorkerProcess(
        [*wrap, *celery_worker_argv(app, name=name, concurrency=concurrency, pool=pool)],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT), **settings},
        cwd=ROOT,
        log_path=log_path,
    )
