"""The open chords and the oldest one's age: gauges read from Firestore when a worker is scraped.

Read at each scrape rather than counted from events: a chord whose part never
returns (its worker killed, its message lost) leaves no event behind, but its
document stays open in Firestore. The worker's main process serves them
(``celery_gcs.telemetry.metrics`` registers ``OpenChords`` when the app's
result backend is celery-gcs's); every worker exports the same numbers, so
charts and alerts take the max. Each scrape costs two Firestore reads
(``ChordStore.open_chords``). No side effects on import: tests use it alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..backend import GCSBackend
from ..errors import CeleryGCSError
from ..stores.chord_store import ChordStore
from . import names

#: Each Firestore read of a scrape gives up after this long, retries included: the two stay
#: within a collector's 10 s scrape timeout, and a slow Firestore costs the scrape only these gauges.
SCRAPE_READ_SECONDS = 4.0

log = logging.getLogger(__name__)


class OpenChords(Collector):
    """``names.CHORDS_OPEN`` and ``names.CHORD_OLDEST_OPEN_AGE``, from ``ChordStore.open_chords`` at each collect."""

    def __init__(self, store: ChordStore) -> None:
        self._store = store

    @classmethod
    def of(cls, app: Any) -> OpenChords | None:
        """For ``app``'s result backend when it is celery-gcs's, each read bounded for a scrape; else None."""
        backend = app.backend
        if not isinstance(backend, GCSBackend):
            return None
        bounded = replace(backend.settings, timeout=SCRAPE_READ_SECONDS, retry_deadline=SCRAPE_READ_SECONDS)
        return cls(ChordStore(bounded))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families, without reading (the registry asks when the collector is registered)."""
        yield from _families(None, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            found = self._store.open_chords()
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
