"""A chord whose header waits in the queue longer than results live (issue 25, item 5).

Redis's backend counts parts without the saved GroupResult, so such a chord
completes there; here the callback reads the header's ids from it. It is read
as long as it is stored (its chord's documents say the chord is alive); one
the bucket's lifecycle already deleted fails the chord with an error naming
the setting to raise.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery import states

from ..support import gcs
from ..support.chords import Published, apply_here, part_request

pytestmark = pytest.mark.usefixtures("stack")


def _errors(app: Any, monkeypatch: pytest.MonkeyPatch) -> list[Exception]:
    failed: list[Exception] = []
    monkeypatch.setattr(app.backend, "chord_error_from_stack", lambda callback, exc: failed.append(exc))
    return failed


def test_a_chord_whose_header_waited_past_result_expires_completes(make_app, monkeypatch) -> None:
    app = make_app(result_expires=1)
    published, failed = Published(app, monkeypatch), _errors(app, monkeypatch)
    group_id, ids = apply_here(app, 3)
    time.sleep(1.5)  # the parts wait in the queue past the GroupResult's expiry (no timing is asserted)
    for n, task_id in enumerate(ids):
        app.backend.store_result(task_id, n, states.SUCCESS, request=part_request(group_id, task_id))
    assert failed == []
    assert len(published.values) == 1  # the callback, published once


def test_a_header_the_lifecycle_deleted_fails_the_chord_naming_the_setting(make_app, stack, prefix, monkeypatch) -> None:
    app = make_app(result_expires=1)
    published, failed = Published(app, monkeypatch), _errors(app, monkeypatch)
    group_id, ids = apply_here(app, 2)
    gcs.client().bucket(stack.bucket).blob(f"{prefix}/celery-taskset-meta-{group_id}").delete()
    for n, task_id in enumerate(ids):
        app.backend.store_result(task_id, n, states.SUCCESS, request=part_request(group_id, task_id))
    assert published.values == []
    (error,) = failed
    message = str(error)
    assert f"GroupResult {group_id} no longer exists" in message
    assert "result_chord_expires" in message and "result_expires" in message and "1s" in message


def test_a_header_result_that_expired_before_the_join_fails_the_chord_naming_the_setting(make_app, monkeypatch) -> None:
    """The join waited for it as a part in flight, then released the chord, which then hung: it never comes."""
    app = make_app(result_expires=1, result_chord_join_timeout=0.5)
    published, failed = Published(app, monkeypatch), _errors(app, monkeypatch)
    group_id, ids = apply_here(app, 3)
    app.backend.store_result(ids[0], 0, states.SUCCESS, request=part_request(group_id, ids[0]))
    time.sleep(1.5)  # its result expires before the other parts run (no timing is asserted)
    for n, task_id in enumerate(ids[1:], 1):
        app.backend.store_result(task_id, n, states.SUCCESS, request=part_request(group_id, task_id))
    assert published.values == []
    (error,) = failed
    message = str(error)
    assert f"Dependency {ids[0]} expired before the chord could join" in message
    # How long they lived and what to raise: the parts need not have been far apart (a 300-part chord with
    # result_expires=2 outlasts its first results however close its parts come).
    assert "(here 1s; gcs_ttl overrides both)" in message and "raise result_chord_expires above" in message
