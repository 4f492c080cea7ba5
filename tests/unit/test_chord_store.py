"""chord_store.py's pure parts: when a chord document says its chord falls due for a refresh."""

from __future__ import annotations

import datetime as dt

import pytest
from celery_gcs.stores.chord_store import Chord

OPENED = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)
A_DAY_ON = OPENED + dt.timedelta(days=1)  # the expiry a client on Celery's default result_expires writes


def chord(expires_at: dt.datetime | None, *, opened: dt.datetime | None = OPENED, refreshes: int = 0) -> Chord:
    return Chord(size=3, leaves=1, expires_at=expires_at, opened=opened, refreshes=refreshes)


def test_before_its_first_refresh_a_chord_is_due_by_the_sooner_of_its_expiry_and_the_workers_lifetime() -> None:
    assert chord(A_DAY_ON).due_by(90) == OPENED + dt.timedelta(seconds=90)
    shorter = OPENED + dt.timedelta(seconds=20)  # a client keeping results less long than the worker
    assert chord(shorter).due_by(90) == shorter
    assert chord(None).due_by(90) == OPENED + dt.timedelta(seconds=90)  # a client keeping them for ever


@pytest.mark.parametrize("lifetime", [None, 0])
def test_a_worker_keeping_its_writes_for_ever_goes_by_the_chords_expiry(lifetime: float | None) -> None:
    assert chord(A_DAY_ON).due_by(lifetime) == A_DAY_ON
    assert chord(None).due_by(lifetime) is None


def test_once_refreshed_or_written_by_an_older_version_a_chord_goes_by_its_expiry() -> None:
    assert chord(A_DAY_ON, refreshes=1).due_by(90) == A_DAY_ON  # the refresher's expiry
    assert chord(A_DAY_ON, opened=None).due_by(90) == A_DAY_ON  # no ``opened``: nothing to reckon from
