"""The open chords and the oldest one's age: gauges read from Firestore when a worker is scraped.

Read at each scrape rather than counted from events: a chord whose part never
returns (its worker killed, its message lost) leaves no event behind, but its
document stays open in Firestore. The worker's main process serves them
(``celery_gcs.telemetry.metrics`` registers ``OpenChords`` when the app's
result backend is celery-gcs's); every worker exports the same numbers, so
charts and alerts take the max. Each scrape costs two Firestore reads
(``ChordStore.open_chords``). No side effects on import: tests use it alone.

Under prefork the reads run in a process of their own, started with spawn
(``Spawned``): prefork forks new children after start (one exits under
``--max-tasks-per-child`` or ``--max-memory-per-child``, or is killed;
autoscale adds some), and gRPC (Firestore's transport) does not support
forking a process that has made calls: a child forked after a scrape could
wait forever in its first Firestore call. gRPC's fork support
(``GRPC_ENABLE_FORK_SUPPORT``) was tried and left children unready past
Celery's 4 s start limit, so they were killed; gRPC documents the other way,
creating gRPC objects only in processes that do not fork afterwards
(grpc doc/fork_support.md).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..backend import GCSBackend
from ..errors import CeleryGCSError, TransientError
from ..settings import Settings
from ..stores import chord_store
from ..stores.chord_store import ChordStore
from . import names

#: Each Firestore read of a scrape gives up after this long, retries included: the two stay
#: within a collector's 10 s scrape timeout, and a slow Firestore costs the scrape only these gauges.
SCRAPE_READ_SECONDS = 4.0
#: A spawned reader's answer, both reads and the hand-over: still within the 10 s scrape timeout.
SPAWNED_SECONDS = 2 * SCRAPE_READ_SECONDS + 1.0

E_SPAWNED = "the process reading the open chords did not answer ({reason})"

log = logging.getLogger(__name__)


class Reader(Protocol):
    def open_chords(self) -> chord_store.OpenChords: ...


class OpenChords(Collector):
    """``names.CHORDS_OPEN`` and ``names.CHORD_OLDEST_OPEN_AGE``, from ``reader.open_chords`` at each collect."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader

    @classmethod
    def of(cls, app: Any, *, forks: bool) -> OpenChords | None:
        """For ``app``'s result backend when it is celery-gcs's, each read bounded for a scrape; else None.

        ``forks``: this process forks children later (prefork's main process), so it must make no gRPC call.
        """
        backend = app.backend
        if not isinstance(backend, GCSBackend):
            return None
        bounded = replace(backend.settings, timeout=SCRAPE_READ_SECONDS, retry_deadline=SCRAPE_READ_SECONDS)
        return cls(Spawned(bounded) if forks else ChordStore(bounded))

    def start(self) -> None:
        """Start what the reads need ahead of the first scrape: a spawned reader's process."""
        if isinstance(self._reader, Spawned):
            self._reader.start()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families, without reading (the registry asks when the collector is registered)."""
        yield from _families(None, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            found = self._reader.open_chords()
        except CeleryGCSError as exc:
            # The rest of the scrape goes on; the failed read is counted in the backend's errors.
            log.warning("metrics: the open chords were not read from Firestore: %s", exc)
            return
        yield from _families(found.count, found.oldest_age)


def _families(count: float | None, oldest_age: float | None) -> Iterator[GaugeMetricFamily]:
    for metric, value in ((names.CHORDS_OPEN, count), (names.CHORD_OLDEST_OPEN_AGE, oldest_age)):
        family = GaugeMetricFamily(metric.name, metric.help)
        if value is not None:
            family.add_metric([], value)
        yield family


class Spawned:
    """``ChordStore.open_chords`` in a process started with spawn, so the caller never holds gRPC state.

    One process, started at ``start()`` (or the first read) and reused; one that
    died is replaced at the next read. It reports no metrics: its reads are not
    in ``celery_gcs_backend_requests_total``; a failed one is logged here.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the process and import the store there, without waiting, so the first scrape need not."""
        self._executor().submit(_store, self.settings)

    def open_chords(self) -> chord_store.OpenChords:
        pool = self._executor()
        try:
            return pool.submit(_read, self.settings).result(timeout=SPAWNED_SECONDS)
        except CeleryGCSError:
            raise
        except Exception as exc:  # it timed out or died: the next read starts another
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise TransientError(E_SPAWNED.format(reason=repr(exc))) from exc

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            return self._pool


_stores: list[ChordStore] = []  # in the spawned process: its one store


def _store(settings: Settings) -> ChordStore:
    if not _stores:
        _stores.append(ChordStore(settings))
    return _stores[0]


def _read(settings: Settings) -> chord_store.OpenChords:
    return _store(settings).open_chords()
