"""Results that cannot be stored: the task fails with an error that names why; nothing else is touched."""

from __future__ import annotations

import pytest
from celery import chord, states
from celery.exceptions import ChordError
from celery_gcs import ResultTooLarge
from celery_gcs.meta import TRACEBACK_CUT
from kombu.exceptions import EncodeError

from ..support import fault_tasks, tasks
from ..support.chords import callback_runs, errbacks, settle, sig

pytestmark = pytest.mark.usefixtures("stack")

LIMIT = 4096


def test_results_that_cannot_be_serialised_or_are_too_large_fail_their_task_only(app, start_worker) -> None:
    start_worker(gcs_max_result_bytes=LIMIT)
    fine = sig(app, tasks.add, 1, 1).apply_async()
    unserialisable = sig(app, fault_tasks.unserialisable).apply_async()
    too_large = sig(app, tasks.blob, 3 * LIMIT).apply_async()
    chords = {
        kind: chord([sig(app, tasks.add, 2, 2), bad])(sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error)))
        for kind, bad in (("unserialisable", sig(app, fault_tasks.unserialisable)), ("too-large", sig(app, tasks.blob, 3 * LIMIT)))
    }  # fmt: skip
    assert fine.get(timeout=60) == 2

    with pytest.raises(EncodeError) as caught:
        unserialisable.get(timeout=60)
    assert "lock" in str(caught.value) and "not JSON serializable" in str(caught.value)

    with pytest.raises(ResultTooLarge) as caught:
        too_large.get(timeout=60)
    assert "over the 4,096-byte limit (gcs_max_result_bytes)" in str(caught.value)

    for kind, result in chords.items():
        with pytest.raises(ChordError) as caught:
            app.AsyncResult(result.id).get(timeout=60)  # the callback's own state, not its header's
        assert f"Dependency {result.parent.results[1].id} raised" in str(caught.value), kind
    settle()
    for kind, result in chords.items():
        assert callback_runs(app, result) == 0, kind
        assert len(errbacks(app, result)) == 1, kind
        good_part = result.parent.results[0]
        assert app.backend.get_task_meta(good_part.id, cache=False)["result"] == 4, kind
    assert app.backend.get_task_meta(fine.id, cache=False)["status"] == states.SUCCESS


def test_a_failure_with_a_traceback_over_the_limit_keeps_its_error_and_the_end_of_its_traceback(make_app) -> None:
    backend = make_app(gcs_max_result_bytes=LIMIT).backend
    traceback = "".join(f'  File "deep.py", line {n}, in recurse\n' for n in range(1000)) + "RecursionError: too deep\n"
    assert len(traceback) > 9 * LIMIT
    backend.mark_as_failure("t-deep", RecursionError("too deep"), traceback=traceback)
    meta = make_app().backend.get_task_meta("t-deep")
    assert meta["status"] == states.FAILURE
    assert isinstance(meta["result"], RecursionError) and str(meta["result"]) == "too deep"
    assert meta["traceback"].startswith(TRACEBACK_CUT) and meta["traceback"].endswith("RecursionError: too deep\n")
    assert len(meta["traceback"]) > LIMIT / 2  # as much of the end as fits


def test_a_failure_too_large_even_without_its_traceback_is_still_result_too_large(make_app) -> None:
    backend = make_app(gcs_max_result_bytes=LIMIT).backend
    with pytest.raises(ResultTooLarge):
        backend.mark_as_failure("t-huge", ValueError("x" * 3 * LIMIT), traceback="tb")
    assert backend.get_task_meta("t-huge")["status"] == states.PENDING
