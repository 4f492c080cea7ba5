"""Chords through real prefork workers: counted once, one callback, right results, no hangs."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from billiard.exceptions import WorkerLostError
from celery import chain, chord, group
from celery.exceptions import ChordError
from celery_gcs.local.processes import free_port
from celery_gcs.local.worker import WorkerExited
from celery_gcs.telemetry import names

from ..support import faulty, tasks
from ..support.chords import callback_runs, ended_only, errbacks, settle, sig
from ..support.metrics import scrape, total

pytestmark = pytest.mark.usefixtures("stack")


@pytest.mark.parametrize("size", [1, 100, 1000])
def test_chords_of_every_size_complete_once_and_clean_up(
    app, start_worker, firestore_docs, size
) -> None:
    start_worker(concurrency=2)
    result = chord(sig(app, tasks.add, n, n) for n in range(size))(sig(app, tasks.collect))
    assert result.get(timeout=300) == [2 * n for n in range(size)]
    settle()
    assert callback_runs(app, result) == 1
    assert ended_only(
        firestore_docs()
    )  # parts and counters deleted; the chord document marked done


def test_results_come_in_header_order_whatever_the_finishing_order(app, start_worker) -> None:
    start_worker(concurrency=2)
    header = [sig(app, tasks.sleep, 0.3 * (5 - n), n) for n in range(6)]
    assert chord(header)(sig(app, tasks.collect)).get(timeout=60) == list(range(6))


def test_a_failed_header_task_fails_the_chord_and_calls_its_errbacks(app, start_worker) -> None:
    start_worker()
    callback = sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error))
    result = chord([sig(app, tasks.add, 1, 1), sig(app, tasks.fail, "part broke")])(callback)
    # get() may re-raise the failed header task's own error first (Celery checks
    # a result's parents while waiting); the callback's stored error is the ChordError.
    error = result.get(timeout=60, propagate=False)
    assert isinstance(error, ChordError)
    assert "Dependency" in str(error) and "part broke" in str(error)
    settle()
    assert callback_runs(app, result) == 0
    errors = errbacks(app, result)
    assert len(errors) == 1 and "ChordError" in errors[0] and "part broke" in errors[0]


def test_a_header_task_failing_with_ignore_result_fails_the_chord_not_hangs_it(
    app, start_worker
) -> None:
    """Issue 11, defect 10: its raw exception reached the JSON serializer before the part was counted."""
    start_worker()
    callback = sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error))
    result = chord([sig(app, tasks.add, 1, 1), sig(app, tasks.fail_unstored, "quiet break")])(
        callback
    )
    error = result.get(timeout=60, propagate=False)
    assert isinstance(error, ChordError) and "quiet break" in str(error)
    settle()
    assert callback_runs(app, result) == 0
    errors = errbacks(app, result)
    assert len(errors) == 1 and "ChordError" in errors[0] and "quiet break" in errors[0]


def test_nested_groups_and_chains_in_the_header_as_the_redis_backend_does(
    app, make_app, start_worker, stack
) -> None:
    def canvas(on):
        return chord([
            sig(on, tasks.add, 1, 1),
            group(sig(on, tasks.add, 2, 2), sig(on, tasks.add, 3, 3)),
            chain(sig(on, tasks.add, 4, 4), sig(on, tasks.mul, 10)),
        ])(sig(on, tasks.collect))  # fmt: skip

    redis_url = stack.local_stack.redis_url.rsplit("/", 1)[0] + "/1"
    redis_worker = start_worker(url=redis_url)
    expected = canvas(make_app(redis_url)).get(timeout=60)
    redis_worker.stop()
    assert sorted(expected) == [2, 4, 6, 80]  # Celery unrolls the nested group into the header
    start_worker()
    assert canvas(app).get(timeout=60) == expected


def test_a_chain_of_chords(app, start_worker) -> None:
    start_worker()
    first = chord([sig(app, tasks.add, 1, 1), sig(app, tasks.add, 2, 2)], sig(app, tasks.tsum))
    second = chord([sig(app, tasks.add, 10), sig(app, tasks.add, 20)], sig(app, tasks.tsum))
    assert (first | second).apply_async().get(timeout=60) == (6 + 10) + (6 + 20)


def test_a_header_task_replaced_by_a_group(app, start_worker) -> None:
    start_worker()
    result = chord([sig(app, tasks.replace_with_group, 3), sig(app, tasks.add, 5, 5)])(
        sig(app, tasks.collect)
    )
    assert result.get(timeout=60) == [[0, 2, 4], 10]
    settle()
    assert callback_runs(app, result) == 1


def test_add_to_chord_grows_the_chord(app, start_worker) -> None:
    start_worker()
    result = chord([sig(app, tasks.grow_chord, 2), sig(app, tasks.add, 1, 1)])(
        sig(app, tasks.collect)
    )
    assert result.get(timeout=60) == ["grown", 2, "added-0", "added-1"]


def test_a_redelivered_header_task_counts_once(app, start_worker, firestore_docs) -> None:
    """The same header message delivered twice, as a broker redelivers an unacked task."""
    start_worker(concurrency=2)
    quick = sig(app, tasks.add, 1, 1)
    slow = [sig(app, tasks.sleep, 2.0, n) for n in range(2)]
    result = chord([quick, *slow])(sig(app, tasks.collect))
    header = result.parent
    first = header.results[0]
    # Re-publish the first header task with its id, group and chord, as a redelivery would.
    app.send_task(
        tasks.add.name, args=(1, 1), task_id=first.id, group_id=header.id, group_index=0,
        chord=sig(app, tasks.collect, task_id=result.id),
    )  # fmt: skip
    time.sleep(1.0)
    parts = [name for name in firestore_docs() if "/parts/" in name]
    assert len(parts) == 1  # counted once; the slow parts are still running
    assert result.get(timeout=60) == [2, 0, 1]
    settle()
    assert callback_runs(app, result) == 1


def test_a_late_duplicate_after_completion_does_nothing(app, start_worker, firestore_docs) -> None:
    start_worker()
    result = chord([sig(app, tasks.add, 1, 1), sig(app, tasks.add, 2, 2)])(sig(app, tasks.collect))
    assert result.get(timeout=60) == [2, 4]
    first = result.parent.results[0]
    late = app.send_task(
        tasks.add.name, args=(1, 1), task_id=first.id, group_id=result.parent.id, group_index=0,
        chord=sig(app, tasks.collect, task_id=result.id),
    )  # fmt: skip
    assert late.get(timeout=30) == 2
    settle()
    assert callback_runs(app, result) == 1
    # The late copy found the chord ended and wrote nothing: its count was refused whole.
    assert ended_only(firestore_docs())


def test_chord_documents_carry_the_ttl_field_while_open(app, start_worker, firestore_docs) -> None:
    start_worker(result_chord_expires=600)
    result = chord([sig(app, tasks.add, 1, 1), sig(app, tasks.sleep, 3.0, 7)])(
        sig(app, tasks.collect)
    )
    time.sleep(1.5)
    docs = firestore_docs()
    assert docs, "the chord's documents exist while it runs"
    for data in docs.values():
        assert "expires_at" in data
    assert result.get(timeout=60) == [2, 7]


KILL_STEPS = ["in_body", "before_count", "after_count", "after_claim"]


@pytest.mark.matrix
@pytest.mark.parametrize("reject", [True, False], ids=["reject_on_worker_lost", "plain_acks_late"])
@pytest.mark.parametrize("step", KILL_STEPS)
def test_a_killed_child_never_hangs_a_chord_nor_doubles_its_callback(
    app, start_worker, backend_url, tmp_path, step: str, reject: bool
) -> None:
    size = 20
    kill_dir = tmp_path / "kills"
    kill_dir.mkdir()
    start_worker(
        concurrency=2,
        url=f"{faulty.__name__}:KillingBackend+{backend_url}",
        env={"CELERY_GCS_KILL_AT": step, "CELERY_GCS_KILL_DIR": str(kill_dir)},
        task_acks_late=True,
        task_reject_on_worker_lost=reject,
    )
    header = [sig(app, tasks.add, n, n) for n in range(size)]
    if step == "in_body":
        header[3] = sig(app, tasks.kill_self, str(kill_dir / "body"))
    result = chord(header)(sig(app, tasks.collect))
    expected = [2 * n for n in range(size)]
    if step == "in_body":
        expected[3] = str(kill_dir / "body")
    if reject:
        assert result.get(timeout=120) == expected
    else:
        # Without a requeue the lost part is a failure: the chord fails (get()
        # re-raises the header's WorkerLostError first), or completes if the
        # part had been stored before. Either way it ends.
        try:
            assert result.get(timeout=120) == expected
        except (ChordError, WorkerLostError) as exc:
            assert "Worker exited prematurely" in str(exc)
    assert list(kill_dir.glob("kill-*")) or (kill_dir / "body.killed").exists(), (
        "the fault was injected"
    )
    settle()
    assert callback_runs(app, result) <= 1
    if reject:
        assert callback_runs(app, result) == 1


@pytest.mark.matrix
@pytest.mark.parametrize("reject", [True, False], ids=["reject_on_worker_lost", "plain_acks_late"])
def test_a_holder_killed_after_publishing_never_gets_its_chord_an_outcome_twice(
    app, start_worker, backend_url, tmp_path, firestore_docs, reject: bool
) -> None:
    """Issue 26: the holder killed after publishing the callback, before marking the chord done. Its
    part, replayed (requeued, or recorded as a WorkerLostError), waited out the claim, took it over
    and published the callback a second time, or failed the chord it had called back.

    The claim is held 11 s to publish (the 10 s lease and 1 s to connect, no retries); the test
    waits until the replay has ended the chord.
    """
    kill_dir = tmp_path / "kills"
    kill_dir.mkdir()
    start_worker(
        concurrency=2,
        url=f"{faulty.__name__}:KillingBackend+{backend_url}",
        env={"CELERY_GCS_KILL_AT": "after_publish", "CELERY_GCS_KILL_DIR": str(kill_dir)},
        task_acks_late=True,
        task_reject_on_worker_lost=reject,
        task_publish_retry_policy={"max_retries": 0},
        broker_connection_timeout=1,
    )
    callback = sig(app, tasks.collect).on_error(sig(app, tasks.on_chord_error))
    result = chord(sig(app, tasks.add, n, n) for n in range(10))(callback)
    assert result.get(timeout=60) == [2 * n for n in range(10)]
    assert list(kill_dir.glob("kill-*")), "the fault was injected"
    key = app.backend.chords.key(result.parent.id)
    ended_by = time.monotonic() + 120
    while not firestore_docs().get(key, {}).get("done"):
        assert time.monotonic() < ended_by, "the replay did not end the chord within 120 s"
        time.sleep(0.5)
    settle()
    assert callback_runs(app, result) == 1
    assert errbacks(app, result) == []


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_chord_of_twenty_thousand_parts_completes_once(app, start_worker, firestore_docs) -> None:
    start_worker(concurrency=2)
    start_worker(concurrency=2)
    result = chord(sig(app, tasks.add, n, 1) for n in range(20_000))(sig(app, tasks.collect))
    assert result.get(timeout=3600) == [n + 1 for n in range(20_000)]
    settle()
    assert callback_runs(app, result) == 1
    assert ended_only(firestore_docs())


def test_get_on_a_chord_whose_header_task_failed_raises_that_tasks_error(app, start_worker) -> None:
    """Issue 12: as with the Redis backend (Celery's test_error_propagates_to_chord_from_simple).

    The failed part's own result is stored after it failed the chord, and
    get() returned the callback's ChordError without looking at the parents
    again.
    """
    start_worker(concurrency=1)
    result = chord([sig(app, tasks.fail, "part broke")])(sig(app, tasks.collect))
    with pytest.raises(ValueError) as raised:
        result.get(timeout=60)
    assert str(raised.value) == "part broke"
    # The callback itself failed with the ChordError, as stored.
    assert isinstance(result.get(timeout=60, propagate=False), ChordError)


def test_get_on_a_chord_whose_header_chain_failed_raises_that_tasks_error(
    app, start_worker
) -> None:
    """Issue 12: Celery's test_error_propagates_to_chord_from_chain (the chain's tail is failed for it)."""
    start_worker(concurrency=1)
    header_chain = chain(
        sig(app, tasks.add, 1, 1),
        sig(app, tasks.fail, "link broke", immutable=True),
        sig(app, tasks.mul, 2),
    )
    result = chord([header_chain])(sig(app, tasks.collect))
    with pytest.raises(ValueError) as raised:
        result.get(timeout=60)
    assert str(raised.value) == "link broke"


def test_get_on_a_group_after_a_failed_task_of_its_chain_raises_that_tasks_error(
    app, start_worker
) -> None:
    """Issue 12: Celery's test_error_propagates_from_chord; the group never runs, get() waited to its timeout."""
    start_worker(concurrency=1)
    canvas = chain(
        sig(app, tasks.add, 1, 1),
        sig(app, tasks.fail, "before the group", immutable=True),
        group(sig(app, tasks.add, 1, 1), sig(app, tasks.add, 2, 2)),
    )
    result = canvas.delay()
    started = time.monotonic()
    with pytest.raises(ValueError) as raised:
        result.get(timeout=30)
    assert str(raised.value) == "before the group"
    assert time.monotonic() - started < 20
    # With propagate=False nothing is raised: each member that never ran carries the parent's error.
    values = result.get(timeout=30, propagate=False)
    assert [str(value) for value in values] == ["before the group", "before the group"]
    assert all(isinstance(value, ValueError) for value in values)


#: Seconds until Firestore (and its emulator) expires a transaction its client abandoned,
#: releasing its locks: "a 60-second idle expiration time" (Firestore's transaction limits).
FIRESTORE_IDLE_TRANSACTION_EXPIRY = 60

#: Each pool as users run it: -c 20 threads and -c 50 greenlets share one process and, since issue 24,
#: one backend whatever result_backend_thread_safe says (Celery's setting is still tried both ways).
POOLS = {"prefork": 2, "threads": 20, "gevent": 50}


@pytest.mark.parametrize(
    "thread_safe", [False, True], ids=["backend_per_thread", "thread_safe_backend"]
)
@pytest.mark.parametrize("pool", ["threads", "gevent"])
def test_chords_under_thread_and_green_pools_complete_once(
    app, start_worker, firestore_docs, pool, thread_safe
) -> None:
    """Issue 11, defects 2 and 11: -P threads double-published or hung; -P gevent completed nothing."""
    start_worker(pool=pool, concurrency=POOLS[pool], result_backend_thread_safe=thread_safe)
    result = chord(sig(app, tasks.add, n, n) for n in range(100))(sig(app, tasks.collect))
    assert result.get(timeout=120) == [2 * n for n in range(100)]
    settle()
    assert callback_runs(app, result) == 1
    assert ended_only(firestore_docs())


def test_an_eventlet_worker_is_refused_at_start_naming_the_pools_that_work(start_worker) -> None:
    with pytest.raises(WorkerExited) as refused:
        start_worker(pool="eventlet", concurrency=5)
    message = str(refused.value)
    assert "eventlet" in message and "-P gevent" in message and "-P threads" in message


@pytest.mark.matrix
@pytest.mark.parametrize("step", ["before_count", "after_count", "after_claim"])
@pytest.mark.parametrize("pool", ["threads", "gevent"])
def test_a_killed_thread_pool_worker_never_hangs_a_chord_nor_doubles_its_callback(
    make_app, start_worker, backend_url, tmp_path, pool: str, step: str
) -> None:
    """Under threads and gevent a kill takes the whole worker; another worker gets its unacknowledged tasks."""
    # Redis gives a dead consumer's unacknowledged messages back after the visibility timeout.
    options = {"visibility_timeout": 4}
    redelivery = {"broker_transport_options": options}
    app = make_app(**redelivery)
    kill_dir = tmp_path / "kills"
    kill_dir.mkdir()
    common = dict(pool=pool, concurrency=POOLS[pool], task_acks_late=True, **redelivery)
    gated = {"CELERY_GCS_KILL_GATED": "1"}
    victim = start_worker(
        url=f"{faulty.__name__}:KillingBackend+{backend_url}",
        env={"CELERY_GCS_KILL_AT": step, "CELERY_GCS_KILL_DIR": str(kill_dir), **gated},
        **common,
    )
    result = chord(sig(app, tasks.sleep, 0.05, n) for n in range(40))(sig(app, tasks.collect))
    with app.connection_for_write() as connection:
        _wait_until_every_message_is_recorded(connection.default_channel.client)
    (kill_dir / "go").touch()
    deadline = time.monotonic() + 60
    while victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert victim.poll() is not None, "the fault killed the worker"
    start_worker(**common)
    # Consumers look for such messages only now and then (and under gevent's loop, here,
    # not within the test's time): look once, as they would, after the timeout.
    time.sleep(options["visibility_timeout"] + 1)
    with app.connection_for_write() as connection:
        connection.default_channel.qos.restore_visible(num=None, interval=1)
    # A worker killed inside a transaction leaves its locks held until Firestore expires the
    # transaction (60 s idle, the emulator too): the parts waiting on them go through after that.
    assert result.get(timeout=FIRESTORE_IDLE_TRANSACTION_EXPIRY + 120) == list(range(40))
    settle(3)
    assert callback_runs(app, result) == 1


def _wait_until_every_message_is_recorded(client: Any, queue: str = "celery") -> None:
    """Until the queue is empty and a consumer blocks on it again.

    A consumer pops a message, records it as unacknowledged, and only then
    pops again (kombu's Redis transport): once it blocks on the empty queue,
    every message it took is recorded and comes back if it dies. Killed
    earlier, the one message between the two steps is lost (kombu issue 305),
    a broker loss that no result backend can see. Redis serves a blocked
    client as soon as its list has an item, so a client blocked now means the
    list was empty when it blocked (``llen`` says it still is).
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        blocked = any("b" in c.get("flags", "") for c in client.client_list())
        if blocked and client.llen(queue) == 0:
            return
        time.sleep(0.01)
    raise AssertionError(f"the victim did not take every message of {queue!r} within 30 s")


#: Host layouts where a process cannot see (or tell apart) the process holding a claim.
LAYOUTS = {
    # Two containers of one pod: one hostname, a PID namespace each.
    "pid_namespaces": ("unshare", "--pid", "--fork", "--mount-proc"),
    # No /proc at all, as on macOS.
    "no_proc": ("unshare", "--mount", "--fork", "sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "sh"),
}


@pytest.mark.matrix
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_live_holder_keeps_its_claim_whatever_the_host_layout(app, start_worker, backend_url, layout) -> None:
    """Issue 11, defects 3 and 4: a holder's pid was looked up in the taker's /proc.

    Two workers on one host, in the layout named: the one completing the
    chord is slow to publish, and a redelivered copy of the part that
    completed it runs on the other and finds its claim. It must wait for it,
    not take it over and publish a second callback.
    """
    namespace = LAYOUTS[layout]
    start_worker(
        url=f"{faulty.__name__}:SlowPublishBackend+{backend_url}",
        env={"CELERY_GCS_PUBLISH_DELAY": "4"},
        wrap=namespace,
        concurrency=1,
        task_default_queue="holder",
    )
    start_worker(wrap=namespace, concurrency=1, task_default_queue="celery")
    header = [sig(app, tasks.sleep, 0.1, n, queue="holder") for n in range(2)]
    result = chord(header)(sig(app, tasks.collect, queue="celery"))
    time.sleep(1.5)  # the holder counted both, claimed, and now sits before its publish
    # A copy of the part whose return completed the chord (the holder's own, not stored yet).
    last = result.parent.results[-1]
    app.send_task(
        tasks.sleep.name, args=(0.1, 1), task_id=last.id, group_id=result.parent.id, group_index=1,
        chord=sig(app, tasks.collect, task_id=result.id, queue="celery"), queue="celery",
    )  # fmt: skip
    assert result.get(timeout=60) == [0, 1]
    settle(6)
    assert callback_runs(app, result) == 1


def test_a_chord_running_longer_than_result_expires_completes(make_app, start_worker) -> None:
    """Issue 11, defect 8: nothing pushed back the GroupResult's, the results' or the documents' expiry."""
    start_worker(concurrency=1, result_expires=4)
    app = make_app(result_expires=4)
    header = [sig(app, tasks.sleep, 1.0, n) for n in range(8)]  # one at a time: 8 s, twice the expiry
    result = chord(header)(sig(app, tasks.collect))
    assert result.get(timeout=60) == list(range(8))
    assert [part.get(timeout=1) for part in result.parent.results] == list(range(8))


@pytest.mark.slow
def test_a_chord_applied_with_celerys_default_result_expires_outlasting_the_workers_completes(
    make_app, start_worker
) -> None:
    """Found by the 50 x 1,000 soak under prefork (39 chords failed once, their results expired): the
    client applied the chord with Celery's default ``result_expires`` (a day), the workers kept their
    results 4 s here (90 s there); the chord document's expiry, the client's, said no refresh was due,
    and the first parts' results expired before the join: a ``ChordError`` naming result_chord_expires.
    """
    start_worker(concurrency=1, result_expires=4)
    app = make_app()  # Celery's default result_expires: a day
    header = [sig(app, tasks.sleep, 1.0, n) for n in range(8)]  # one at a time: 8 s, twice the workers' expiry
    result = chord(header)(sig(app, tasks.collect))
    assert result.get(timeout=60) == list(range(8))



def test_get_on_a_group_with_a_group_among_its_parents(app, start_worker) -> None:
    """Celery's test_chain_of_a_chord_and_a_group_with_two_tasks: a parent that is a group has no state.

    Looking for a failed parent asked the earlier group for its state, and
    get() raised AttributeError.
    """
    start_worker(concurrency=1)
    canvas = chain(
        sig(app, tasks.add, 1, 0, immutable=True),
        group(sig(app, tasks.add, 1), sig(app, tasks.add, 1)),
        sig(app, tasks.tsum),
        group(sig(app, tasks.add, 1), sig(app, tasks.add, 1)),
    )
    assert canvas.delay().get(timeout=60) == [5, 5]


def test_get_on_a_group_after_a_failed_member_of_an_earlier_group_raises_that_tasks_error(app, start_worker) -> None:
    """A group among the parents fails through its members, as GroupResult.maybe_throw finds them."""
    start_worker(concurrency=1)
    canvas = chain(
        group(sig(app, tasks.add, 1, 1), sig(app, tasks.fail, "in the first group")),
        sig(app, tasks.tsum),
        group(sig(app, tasks.add, 1), sig(app, tasks.add, 2)),
    )
    result = canvas.delay()
    header = result.parent.parent  # the first group: tsum is its chord's callback
    # Once the failed member's own result is stored, the earliest failure is
    # its error, not tsum's ChordError (which may be stored first).
    header.join(timeout=60, propagate=False)
    with pytest.raises(ValueError) as raised:
        result.get(timeout=60)
    assert str(raised.value) == "in the first group"


FORKED_PARTS = 30


@pytest.mark.slow
def test_children_forked_while_the_main_process_reads_firestore_run_and_store(app, start_worker) -> None:
    """The main process serves Firestore reads at each scrape; prefork forks new children after that.

    gRPC does not support fork() once the parent made calls (grpc's doc/fork_support.md):
    when the main process read Firestore itself, one run in two hung here (a child's
    first Firestore call never returned). Each child here runs one task and is
    replaced (worker_max_tasks_per_child=1) while a thread scrapes every 50 ms: every
    child must start, store its part and count it; none may hang.
    """
    port = free_port()
    worker = start_worker(
        concurrency=2,
        env={names.PORT_ENV: str(port), names.ADDRESS_ENV: "127.0.0.1"},
        include=[names.MODULE],
        worker_max_tasks_per_child=1,
    )
    scrape(port)  # the main process's Firestore client exists before the first child is replaced
    scraped: list[float] = []
    failed: list[BaseException] = []
    done = threading.Event()

    def scrape_until_done() -> None:
        try:
            while not done.wait(0.05):
                scraped.append(total(scrape(port), str(names.CHORDS_OPEN)))
        except (OSError, ValueError) as exc:  # a failed request or answer: the assert below reports it
            failed.append(exc)

    scraper = threading.Thread(target=scrape_until_done, daemon=True)
    scraper.start()
    try:
        result = chord([sig(app, tasks.pid) for _ in range(FORKED_PARTS)])(sig(app, tasks.collect))
        pids = result.get(timeout=60)
    finally:
        done.set()
        scraper.join(timeout=15)
    assert not scraper.is_alive(), "a scrape hung"
    assert failed == []
    # One child per part: each was forked, at the latest, right after the main process's reads.
    assert len(set(pids)) == FORKED_PARTS and worker.pid not in pids
    # Every part stored what the callback got; the holder's own lands just after its publish
    # (docs/chords.md, "Why the result is stored last"): read at once, it was PENDING under load.
    assert [part.get(timeout=10) for part in result.parent.results] == pids
    assert callback_runs(app, result) == 1
    assert len(scraped) >= 5 and max(scraped) >= 1  # scraped while the chord was open, and read it
    samples = scrape(port)
    assert total(samples, str(names.CHORD_PARTS_COUNTED)) == FORKED_PARTS
    assert total(samples, str(names.TASKS_SUCCEEDED), task=tasks.pid.name) == FORKED_PARTS
    assert total(samples, str(names.BACKEND_REQUESTS), outcome="error") == 0
