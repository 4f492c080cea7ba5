"""Workers for the fault tests run ``tests.faults.tasks``: the end-to-end tasks and a few more."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..workers import Worker

APP = "tests.faults.tasks"


@pytest.fixture
def start_worker(stack: Any, backend_url: str, tmp_path: Path) -> Iterator[Any]:
    """Start real `celery worker` processes (prefork) on the local stack, through the proxies."""
    workers: list[Worker] = []

    def start(concurrency: int = 2, url: str | None = None, env: dict[str, str] | None = None, **conf: Any) -> Worker:
        worker = Worker(
            env={**stack.env(), **(env or {})},
            backend_url=url or backend_url,
            conf=conf,
            concurrency=concurrency,
            log_path=tmp_path / f"worker-{len(workers)}.log",
            app=APP,
        )
        workers.append(worker)
        worker.start()
        return worker

    yield start
    for worker in workers:
        worker.stop()
