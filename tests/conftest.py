"""Fixtures shared by every suite: the local stack, proxies in front of it, apps and workers.

The emulators and Redis start once per session, on free ports, only when a
test asks for them; every test gets its own object prefix and a wiped stack.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery_gcs import conventions
from celery_gcs.local import services
from celery_gcs.local.proxy import Proxy
from celery_gcs.local.worker import WorkerProcess

from .support import tasks
from .support.factories import made_then_undone
from .support.workers import make_worker


@dataclass
class Local:
    """The running stack, with a counting, fault-injecting proxy in front of each emulator."""

    local_stack: services.LocalStack
    gcs: Proxy
    firestore: Proxy

    @property
    def bucket(self) -> str:
        return self.local_stack.bucket

    def env(self) -> dict[str, str]:
        env = self.local_stack.env()
        env["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{self.gcs.port}"
        env["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{self.firestore.port}"
        env.pop("CELERY_RESULT_BACKEND", None)  # each test names its own
        return env

    def clear(self) -> None:
        for proxy in (self.gcs, self.firestore):
            proxy.faults.clear()
            proxy.reset_counts()


@pytest.fixture(scope="session")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    stack = services.LocalStack(tmp_path_factory.mktemp("stack"))
    stack.start()
    gcs = Proxy(stack.services["gcs"].port, "http1").start()
    firestore = Proxy(stack.services["firestore"].port, "grpc").start()
    here = Local(stack, gcs, firestore)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in here.env().items():
                patch.setenv(key, value)
            yield here
    finally:
        gcs.stop()
        firestore.stop()
        stack.stop()


@pytest.fixture
def stack(local: Local) -> Iterator[Local]:
    """The local stack, emptied and with faults and counts cleared for this test."""
    local.local_stack.reset()
    local.clear()
    yield local
    local.clear()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A unique object prefix for this test."""
    return f"{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def backend_url(stack: Local, prefix: str) -> str:
    return f"gcs://{stack.bucket}/{prefix}"


@pytest.fixture
def make_app(stack: Local, backend_url: str) -> Iterator[Any]:
    """Build Celery apps on the local stack; extra settings go to app.conf."""
    numbers = itertools.count()

    def make(url: str | None = None, **conf: Any) -> Celery:
        app = Celery(f"test-{next(numbers)}", set_as_current=False)
        app.conf.update(
            broker_url=stack.local_stack.redis_url,
            result_backend=url or backend_url,
            **conf,
        )
        return app

    yield from made_then_undone(make, Celery.close)


@pytest.fixture
def app(make_app: Any) -> Celery:
    return make_app()


@pytest.fixture
def worker_app() -> str:
    """The Celery app module workers load; a suite overrides it to add tasks."""
    return tasks.__name__


@pytest.fixture
def start_worker(stack: Local, backend_url: str, tmp_path: Path, worker_app: str) -> Iterator[Any]:
    """Start real `celery worker` processes (prefork unless ``pool`` says) on the local stack."""
    numbers = itertools.count()

    def new(
        concurrency: int = 2,
        url: str | None = None,
        env: dict[str, str] | None = None,
        pool: str = "prefork",
        wrap: tuple[str, ...] = (),
        **conf: Any,
    ) -> WorkerProcess:
        return make_worker(
            app=worker_app,
            env={**stack.env(), **(env or {})},
            backend_url=url or backend_url,
            conf=conf,
            concurrency=concurrency,
            log_path=tmp_path / f"worker-{next(numbers)}.log",
            pool=pool,
            wrap=wrap,
        )

    yield from made_then_undone(new, WorkerProcess.stop, start=WorkerProcess.start)


@pytest.fixture
def firestore_docs(stack: Local) -> Any:
    """List the documents of the chord collection (and their parts) on the emulator."""
    from google.cloud import firestore

    def docs(
        collection: str = conventions.FIRESTORE_COLLECTION, database: str = "(default)"
    ) -> dict[str, dict[str, Any]]:
        """By path: ``KEY`` (chord documents), ``KEY/parts/TASK`` and ``KEY/counters/LEVEL-INDEX``."""
        client = firestore.Client(project=stack.local_stack.project, database=database)
        found: dict[str, dict[str, Any]] = {}
        for doc in client.collection(collection).list_documents():  # also parents with only parts
            snapshot = doc.get()
            if snapshot.exists:
                found[doc.id] = snapshot.to_dict()
            for label, group in (
                ("parts", conventions.FIRESTORE_PARTS_COLLECTION),
                ("counters", conventions.FIRESTORE_COUNTERS_COLLECTION),
            ):
                for child in doc.collection(group).stream():
                    found[f"{doc.id}/{label}/{child.id}"] = child.to_dict()
        return found

    return docs
