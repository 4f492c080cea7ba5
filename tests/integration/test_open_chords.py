"""The open-chord gauges a worker serves, read from the Firestore emulator (``celery_gcs.telemetry.open_chords``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from celery_gcs.stores.chord_store import OPENED, ChordStore, Settle
from celery_gcs.telemetry import names
from celery_gcs.telemetry.open_chords import OpenChords
from google.cloud import firestore
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ..support.chords import chord_store_on, open_chord

pytestmark = pytest.mark.usefixtures("stack")


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    text = generate_latest(registry).decode()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}


def test_open_chords_and_the_oldest_ones_age_are_read_in_two_requests(stack) -> None:
    store = chord_store_on(stack)
    registry = CollectorRegistry()
    registry.register(OpenChords(store))
    assert scrape(registry) == {str(names.CHORDS_OPEN): 0, str(names.CHORD_OLDEST_OPEN_AGE): 0}

    old, _, _ = open_chord(store, 3)
    ended, _, _ = open_chord(store, 1)
    open_chord(store, 2)  # a young one: not the oldest
    # The first chord applied ten minutes ago, in the server's time.
    client = firestore.Client(project=stack.local_stack.project)
    ref = client.collection(store.settings.firestore_collection).document(old)
    ref.update({OPENED: ref.get().read_time - dt.timedelta(minutes=10)})
    # One ended as a chord ends: claimed by the part that completed it, then ended.
    assert store.settle(ended, Settle("t", 60, force=True)).claimed
    assert store.end(ended, "t")
    assert OPENED not in client.collection(store.settings.firestore_collection).document(ended).get().to_dict()

    stack.firestore.reset_counts()
    samples = scrape(registry)
    assert samples[str(names.CHORDS_OPEN)] == 2
    assert 600 <= samples[str(names.CHORD_OLDEST_OPEN_AGE)] < 660
    assert stack.firestore.snapshot() == {"firestore.RunAggregationQuery": 1, "firestore.RunQuery": 1}


def test_firestore_down_leaves_the_gauges_out_and_the_scrape_answers(stack, caplog) -> None:
    bounded = ChordStore(replace(chord_store_on(stack).settings, timeout=1.0, retry_deadline=1.0))
    registry = CollectorRegistry()
    registry.register(OpenChords(bounded))
    stack.firestore.faults.down = True
    assert scrape(registry) == {}
    assert "the open chords were not read from Firestore" in caplog.text
