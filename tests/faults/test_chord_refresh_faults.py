"""A chord running past half its expiry gets it pushed back; a fault during that refresh must not hang it.

Issue 26, defects 1 and 2. Each test applies a chord in-process with a short
``result_expires``, so that the refresh falls due while its parts return, and
injects one partial failure through the proxies in front of the emulators.
The callback's publish is recorded in-process (``Published``): the broker is
not what is under test.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import pytest
from celery import states
from celery_gcs import chords
from celery_gcs.local.faults import FIRESTORE_COMMIT
from celery_gcs.stores import chord_tree

from ..support import gcs
from ..support.chords import Published, apply_here, store_part

pytestmark = pytest.mark.usefixtures("stack")

#: A read of documents by name (not a query): taking a chord's refresh reads its document so.
READ = "google.firestore.v1.Firestore/BatchGetDocuments"


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def test_a_refresh_between_a_parts_count_and_its_report_does_not_hang_the_chord(
    make_app, stack, monkeypatch
) -> None:
    """Defect 1: the refresh rewrote the full leaf (its update time), so the leaf's report was refused
    as "already reported"; nobody reported it and the chord never completed.

    The count of the part that fills its leaf lands, and its answer is held
    until another part, past half the chord's expiry, has refreshed it.
    """
    expires = 8  # the leaf's other parts count before the refresh falls due, even on a busy host
    app = make_app(result_expires=expires)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 20)
    applied = time.monotonic()  # the chord expires at most ``expires`` from now
    values = {task_id: n for n, task_id in enumerate(ids)}
    leaves = chord_tree.leaf_count(len(ids))
    assert leaves == 2
    first = [task_id for task_id in ids if chord_tree.leaf_of(task_id, leaves).index == 0]
    second = [task_id for task_id in ids if task_id not in first]
    for task_id in first[:-1]:
        store_part(app, group_id, task_id, values[task_id])
    assert time.monotonic() < applied + expires / 2 - 0.5, (
        "the refresh fell due before the leaf filled"
    )
    held = stack.firestore.delay(
        FIRESTORE_COMMIT, None, calls=1
    )  # the leaf-filling count: lands, answer held
    filling = threading.Thread(target=store_part, args=(app, group_id, first[-1], values[first[-1]]))
    filling.start()
    held.wait(struck=1)
    sleep_until(applied + expires / 2 + 0.3)
    store_part(app, group_id, second[0], values[second[0]])  # refreshes the chord, its counters included
    held.release()
    filling.join(timeout=30)
    assert not filling.is_alive()
    for task_id in second[1:]:
        store_part(app, group_id, task_id, values[task_id])
    assert published.values == [list(range(len(ids)))]


def test_a_gcs_failure_during_a_refresh_is_retried_by_a_later_part(
    make_app, stack, monkeypatch
) -> None:
    """Defect 2: the refresh committed the chord's new expiry first, and a failed GCS call in refreshing
    the stored results was swallowed ("the next part tries again"); the next parts found the expiry
    already pushed back and did nothing, so a header result expired before the join: no callback, no
    error, and the result read PENDING.

    The refresh runs five eighths into the chord's expiry, so that the next
    one falls due only after the first result would have expired; a part
    returns soon after the failure, before that expiry, and the last one after it.
    """
    expires = 8
    app = make_app(result_expires=expires, result_chord_join_timeout=0.5, gcs_retry_deadline=0.5)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 4)
    applied = time.monotonic()
    store_part(app, group_id, ids[0], 0)  # kept ``expires`` seconds unless refreshed
    stored = time.monotonic()
    sleep_until(applied + expires * 5 / 8)
    # The refresh pushes back the GroupResult's expiry, then each stored result's: reading the first fails.
    outage = stack.gcs.fail(f"GET /download/storage/v1/b/[^/]+/o/.+{ids[0]}", 503, calls=range(1, 10**6))
    store_part(app, group_id, ids[1], 1)
    refreshed = time.monotonic()
    assert outage.struck > 0
    stack.gcs.faults.clear()
    sleep_until(refreshed + 1.2)
    store_part(app, group_id, ids[2], 2)
    assert time.monotonic() < stored + expires, "the first result expired: the test proves nothing"
    sleep_until(stored + expires + 0.3)  # past the first result's expiry, had nobody refreshed it
    store_part(app, group_id, ids[3], 3)
    assert time.monotonic() < refreshed + expires / 2, "the next refresh fell due: the test proves nothing"
    assert published.values == [[0, 1, 2, 3]]
    assert app.AsyncResult(ids[0]).state == states.SUCCESS


def test_a_process_that_found_the_refresh_taken_looks_again_before_its_results_expire(
    make_app, stack, monkeypatch
) -> None:
    """Found by the soak under ``-P threads -c 4`` with ``result_expires=4``: a process that found the
    refresh taken by another remembered the chord as due only once that refresh's lease (10 s at
    least) and half the expiry had passed, later than the expiry the other refresh set; none of its
    parts looked again in time and the chord failed with its results expired.

    Two backends play two worker processes. At 4.3 s the other one takes the
    refresh (held reading a result) and this one's part finds it taken; the
    other pushes the chord back to about 13.2 s, due again from about 6.6 s.
    This one's part at 8 s must refresh it (the old rule looked from 9.5 s),
    or the last part, at 15 s, finds the first results expired.
    """
    expires = 8.0
    app, other = make_app(result_expires=expires), make_app(result_expires=expires)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 5)
    applied = time.monotonic()
    store_part(app, group_id, ids[0], 0)
    sleep_until(applied + expires / 2 + 0.3)  # due: the other process takes the refresh
    held = stack.gcs.delay(f"GET /download/storage/v1/b/[^/]+/o/.+{ids[0]}", None, calls=1)
    refreshing = threading.Thread(target=store_part, args=(other, group_id, ids[1], 1))
    refreshing.start()
    held.wait(struck=1)
    store_part(app, group_id, ids[2], 2)  # finds the refresh taken
    held.release()
    refreshing.join(timeout=30)
    assert not refreshing.is_alive()
    sleep_until(applied + 8.0)
    store_part(app, group_id, ids[3], 3)
    assert time.monotonic() < applied + 9.3, "past when the old rule looked again: the test proves nothing"
    sleep_until(applied + 15.0)  # well past the other refresh's expiry (about 13.2 s)
    store_part(app, group_id, ids[4], 4)
    assert published.values == [[0, 1, 2, 3, 4]]


def test_a_refresh_pushes_back_the_stored_results_many_at_once(make_app, stack, prefix) -> None:
    """A refresh read and rewrote the chord's stored results one after another: 2,002 GCS requests and
    31 s for 1,000 parts on the emulators, longer than the 20 s results of the fault soak lived, so its
    chords of 1,000 failed with their results expired. Now as many at once as ``get_many`` reads.

    The first read of the refresh is held by the proxy: the others go on meanwhile.
    """
    app = make_app(result_expires=60)
    group_id, ids = apply_here(app, 5)
    for n, task_id in enumerate(ids):
        app.backend.store_result(task_id, n, states.SUCCESS)
    bucket = gcs.client().bucket(stack.bucket)

    def expiries() -> list[dt.datetime]:
        return [bucket.get_blob(f"{prefix}/celery-task-meta-{task_id}").custom_time for task_id in ids]

    before = expiries()
    held = stack.gcs.delay("GET /download/storage/v1/b/[^/]+/o/.+", None, calls=1)
    refreshing = threading.Thread(target=app.backend.stored.refresh_chord, args=(group_id, ids), daemon=True)
    refreshing.start()
    deadline = time.monotonic() + 30
    while held.seen < 1 + len(ids):  # the GroupResult's read and every result's, the first still held
        assert time.monotonic() < deadline, f"{held.seen} reads while the first is held: one after another"
        time.sleep(0.05)
    held.release()
    refreshing.join(timeout=30)
    assert not refreshing.is_alive()
    assert all(after > earlier for after, earlier in zip(expiries(), before, strict=True))


def test_a_refresh_says_in_the_log_what_it_did_and_warns_of_results_expired_before_it(
    make_app, stack, monkeypatch, caplog
) -> None:
    """The soak's chord of 1,000 failed at its join with 785 results expired, and nothing in the
    workers' log said whether a refresh ran, when, or what it found: each refresh now logs a line
    (its age, expiry before and after, how long taking it waited and it took, what it met of the
    results), a warning when some had expired before it reached them.

    The client keeps results a day (Celery's default), the worker one second:
    the worker's second part (of three) comes after its first part's result expired.
    """
    client, worker = make_app(), make_app(result_expires=1)
    Published(worker, monkeypatch)
    group_id, ids = apply_here(client, 3)
    store_part(worker, group_id, ids[0], 0)
    stored = time.monotonic()
    sleep_until(stored + 1.1)  # past its expiry: stored with one second from before ``stored``
    caplog.set_level(logging.INFO, logger="celery_gcs.chords")
    store_part(worker, group_id, ids[1], 1)
    lines = [record for record in caplog.records if "expiry pushed back" in record.getMessage()]
    assert len(lines) == 1, [record.getMessage() for record in caplog.records]
    line = lines[0]
    assert line.levelno == logging.WARNING
    assert group_id in line.getMessage()
    assert "1 expired before it reached them: the chord cannot complete" in line.getMessage()


def test_a_refresh_held_up_in_one_process_holds_up_no_other_process(make_app, stack, monkeypatch, caplog) -> None:
    """Found by the soak (1,000 parts, prefork, ``result_expires=90``): taking a chord's refresh was a
    transaction on the chord document, which holds the document from its read to its commit. One
    process's look at a due refresh held up (a stalled call) held every other process's too: each
    commit refused ("Transaction lock timeout", 109 in 70 s) and retried, with their parts waiting
    behind it (no part returned for 70 s), until the results the last refresh had kept expired.

    Two backends play two worker processes. The other one's look at the due
    refresh is held by the proxy, its read served; meanwhile this one's part
    must refresh the chord (the old code gave up after its retry deadline).
    """
    expires = 3
    app, other = (make_app(result_expires=expires, gcs_retry_deadline=3) for _ in range(2))
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 5)
    applied = time.monotonic()
    store_part(other, group_id, ids[0], 0)  # each process reads the chord document once, now
    store_part(app, group_id, ids[1], 1)
    sleep_until(applied + expires / 2 + 0.2)  # due
    held = stack.firestore.delay(READ, None, calls=1)
    looking = threading.Thread(target=store_part, args=(other, group_id, ids[2], 2), daemon=True)
    looking.start()
    held.wait(struck=1)
    caplog.set_level(logging.INFO, logger="celery_gcs.chords")
    store_part(app, group_id, ids[3], 3)
    refreshed = [record.getMessage() for record in caplog.records if "expiry pushed back" in record.getMessage()]
    held.release()
    looking.join(timeout=30)
    assert not looking.is_alive()
    assert len(refreshed) == 1 and group_id in refreshed[0], [record.getMessage() for record in caplog.records]
    store_part(app, group_id, ids[4], 4)
    assert published.values == [[0, 1, 2, 3, 4]]


def test_a_refresh_stalled_past_its_lease_keeps_it_and_runs_alone(make_app, stack, monkeypatch, caplog) -> None:
    """Found in the prefork soak's log: a refresh (about 30 s for 1,000 results under stalls) outlasted
    its lease (about 22 s) and was taken over, so that 14 of the 19 chords that refreshed had two full
    refreshes running at once, each rewriting every result. The refresh now renews its lease as it runs.

    Two backends play two worker processes. The first part past half the
    expiry takes the refresh, whose read of a result the proxy holds past its
    lease (``chords.MIN_LEASE``, 10 s, patched to 3 s: the lease then); a part
    of the other process returning then must find the refresh still taken.
    """
    expires = 6.0
    monkeypatch.setattr(chords, "MIN_LEASE", 3.0)
    app, other = make_app(result_expires=expires), make_app(result_expires=expires)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 3)
    applied = time.monotonic()
    caplog.set_level(logging.INFO, logger="celery_gcs.chords")
    sleep_until(applied + expires / 2 + 0.2)  # due
    held = stack.gcs.delay(f"GET /download/storage/v1/b/[^/]+/o/.+{ids[0]}", None, calls=1)
    refreshing = threading.Thread(target=store_part, args=(app, group_id, ids[0], 0), daemon=True)
    refreshing.start()
    held.wait(struck=1)  # the refresh's read: the refresh was taken before it
    sleep_until(time.monotonic() + chords.MIN_LEASE + 1.0)  # its lease ran out, unless renewed
    store_part(other, group_id, ids[1], 1)
    alongside = [record.getMessage() for record in caplog.records if "expiry pushed back" in record.getMessage()]
    held.release()
    refreshing.join(timeout=30)
    assert not refreshing.is_alive()
    assert alongside == []  # the other process took no refresh over while the first ran
    refreshed = [record.getMessage() for record in caplog.records if "expiry pushed back" in record.getMessage()]
    assert len(refreshed) == 1 and group_id in refreshed[0], [record.getMessage() for record in caplog.records]
    store_part(app, group_id, ids[2], 2)
    assert published.values == [[0, 1, 2]]


def test_a_holders_refresh_under_way_when_its_join_ends_stops(make_app, stack, monkeypatch, caplog) -> None:
    """Found in ``make bench-chords``' worker logs: every big chord's last refresh warned "5099 results
    rewritten, ..., 1 expired before it reached them: the chord cannot complete", yet the chord completed.
    It was the holder's refresh while it joins, which went on over every result after the join ended:
    the holder stores its own result after the chord ended, kept ``result_expires`` only, and the refresh
    reached it after that (a false warning, and a whole refresh's GCS requests spent on an ended chord).

    One thread reads for the refresh (``gcs_threadpool_maxsize=1``), held by the proxy on its first
    result while a part's store, also held, keeps the holder joining; both parts stored, the chord ends.
    Released once the holder's own result expired, the refresh must skip the rest, and warn of nothing.
    """
    expires = 3.0  # due at 1.5 s: every part counts before that
    app = make_app(result_expires=expires, result_chord_join_timeout=30, gcs_threadpool_maxsize=1)
    published = Published(app, monkeypatch)
    group_id, ids = apply_here(app, 6)
    caplog.set_level(logging.INFO, logger="celery_gcs.chords")
    for n, task_id in enumerate(ids[:4]):
        store_part(app, group_id, task_id, n)
    late = stack.gcs.delay("POST /upload/storage/v1/b/[^/]+/o", None, calls=1, direction="request")
    storing = threading.Thread(target=store_part, args=(app, group_id, ids[4], 4), daemon=True)
    storing.start()
    late.wait(struck=1)  # counted, its store held: the holder's join waits for it
    # Its first read by the join, its second by the holder's refresh: held.
    refresh_read = stack.gcs.delay(f"GET /download/storage/v1/b/[^/]+/o/.+{ids[0]}", None, calls=range(2, 3))
    holder = threading.Thread(target=store_part, args=(app, group_id, ids[5], 5), daemon=True)
    holder.start()
    refresh_read.wait(struck=1)
    late.release()
    for thread in (storing, holder):
        thread.join(timeout=30)  # a bound only
        assert not thread.is_alive()
    ended = time.monotonic()
    assert published.values == [[0, 1, 2, 3, 4, 5]]
    before = sum(stack.gcs.snapshot().values())
    sleep_until(ended + expires + 0.3)  # the holder's own result, stored last, has expired
    refresh_read.release()

    def refreshed() -> list[str]:
        return [message for record in caplog.records if group_id in (message := record.getMessage())]

    deadline = time.monotonic() + 30
    while not any("expiry pushed back" in message or "stopped" in message for message in refreshed()):
        assert time.monotonic() < deadline, refreshed()
        time.sleep(0.05)
    after = sum(stack.gcs.snapshot().values())
    assert after - before <= 1, f"{after - before} GCS requests after the chord ended"  # the held read's, at most
    stopped = [message for message in refreshed() if "refresh stopped" in message]
    assert len(stopped) == 1 and "(its holder's join ended)" in stopped[0] and "5 skipped" in stopped[0], refreshed()
    warned = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert not [message for message in warned if "cannot complete" in message], warned
    assert published.values == [[0, 1, 2, 3, 4, 5]]


def test_a_parts_refresh_stops_once_its_lease_renewal_finds_the_chord_ended(make_app, stack, monkeypatch, caplog) -> None:
    """A part's refresh held up (here its first result's read) while another process completes the chord:
    its lease's renewal finds the chord ended, and the refresh skips the rest instead of rewriting every
    result of an ended chord (two GCS requests each).

    Two backends play two worker processes; the lease is patched down so that it is renewed every second.
    """
    expires = 3.0
    monkeypatch.setattr(chords, "MIN_LEASE", 3.0)
    app, other = (make_app(result_expires=expires, gcs_threadpool_maxsize=1) for _ in range(2))
    published = Published(other, monkeypatch)
    group_id, ids = apply_here(app, 6)
    applied = time.monotonic()
    caplog.set_level(logging.INFO, logger="celery_gcs.chords")
    for n, task_id in enumerate(ids[:4]):
        store_part(app, group_id, task_id, n)
    sleep_until(applied + expires / 2 + 0.2)  # due
    held = stack.gcs.delay(f"GET /download/storage/v1/b/[^/]+/o/.+{ids[0]}", None, calls=1)
    refreshing = threading.Thread(target=store_part, args=(app, group_id, ids[4], 4), daemon=True)
    refreshing.start()
    held.wait(struck=1)  # its refresh's read of the first result
    store_part(other, group_id, ids[5], 5)  # the holder, in the other process: the chord ends
    assert published.values == [[0, 1, 2, 3, 4, 5]]
    deadline = time.monotonic() + 30
    while any(thread.name == "celery-gcs-refresh-lease" for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "the refresh's lease was renewed on after its chord ended"
        time.sleep(0.05)
    before = sum(stack.gcs.snapshot().values())
    held.release()
    refreshing.join(timeout=30)
    assert not refreshing.is_alive()
    after = sum(stack.gcs.snapshot().values())
    assert after - before <= 1, f"{after - before} GCS requests after the chord ended"  # the held read's write
    lines = [record.getMessage() for record in caplog.records if group_id in record.getMessage()]
    stopped = [line for line in lines if "refresh stopped" in line]
    assert len(stopped) == 1 and "(its lease was taken over, or the chord ended)" in stopped[0], lines
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING and group_id in record.getMessage()]
