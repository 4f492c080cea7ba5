"""The proxy's rules and its HTTP/2 header blocks, without a network.

Rules: how calls are named and ranked, what a bad argument is told, how
held traffic is let go. Header blocks: the relay re-encodes them with no
HPACK dynamic table, so a block it drops or sends late leaves the others
readable, which a table shared along the connection would not.
"""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest
from celery_gcs.local.faults import (
    Delay,
    Fail,
    Faults,
    delay_action,
    fail_action,
    grpc_message,
    make_rule,
)
from celery_gcs.local.grpc_relay import Inbound, Outbound
from hpack import Encoder, InvalidTableIndexError
from hyperframe.frame import HeadersFrame

COMMIT = "google.firestore.v1.Firestore/Commit"


def test_a_grpc_rule_takes_the_calls_of_its_method_in_the_ranks_asked_for() -> None:
    rule = make_rule("grpc", COMMIT, range(2, 4), Fail(10))
    taken = [rule.take("POST", path) for path in [f"/{COMMIT}", "/google.firestore.v1.Firestore/Rollback"] * 4]
    assert taken == [False, False, True, False, True, False, False, False]
    assert (rule.seen, rule.struck) == (4, 2)


def test_a_grpc_method_may_be_named_with_its_leading_slash() -> None:
    assert make_rule("grpc", f"/{COMMIT}", 1, Fail(10)).take("POST", f"/{COMMIT}")


def test_an_http_rule_matches_the_method_and_the_whole_path() -> None:
    rule = make_rule("http1", "GET /storage/v1/b/[^/]+/o", range(1, 10), Delay(1.0))
    assert rule.take("GET", "/storage/v1/b/bucket/o")
    assert not rule.take("GET", "/storage/v1/b/bucket/o/name")  # not the whole path
    assert not rule.take("POST", "/storage/v1/b/bucket/o")
    assert rule.seen == 1


@pytest.mark.parametrize(
    ("protocol", "call", "says"),
    [
        ("grpc", "Commit", "name it as in its path, service and method"),
        ("grpc", "firestore.Commit", "e.g. 'google.firestore.v1.Firestore/Commit'"),
        ("http1", "/upload/storage/v1/b/x/o", "give 'METHOD PATH'"),
        ("http1", "post /upload", "give 'METHOD PATH'"),
        ("http1", "GET /b/[x", "its path is not a regular expression"),
        ("tcp", "anything", "need a proxy made with protocol 'http1' or 'grpc'"),
    ],
)
def test_a_call_the_proxy_cannot_pick_is_refused_with_the_fix(protocol: str, call: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        make_rule(protocol, call, 1, Fail(503))
    assert says in str(caught.value)
    assert protocol == "tcp" or repr(call) in str(caught.value)


@pytest.mark.parametrize("calls", [0, -1, True, "1", 1.0, range(3), range(1, 6, 2), range(3, 3), [1, 2]])
def test_ranks_count_from_one_and_run_without_gaps(calls: object) -> None:
    with pytest.raises(ValueError) as caught:
        make_rule("grpc", COMMIT, calls, Fail(10))  # type: ignore[arg-type]
    assert f"calls={calls!r}" in str(caught.value)
    assert "calls=range(1, 6) for the first five" in str(caught.value)


def test_a_grpc_status_is_a_code_or_a_status_code() -> None:
    assert fail_action("grpc", COMMIT, grpc.StatusCode.UNAVAILABLE, "m", False) == Fail(14, "m", False, False)
    assert fail_action("grpc", COMMIT, 4, "m", True) == Fail(4, "m", True, False)


@pytest.mark.parametrize(
    ("protocol", "status", "says"),
    [
        ("grpc", 0, "from 1 (CANCELLED) to 16 (UNAUTHENTICATED)"),
        ("grpc", grpc.StatusCode.OK, "from 1 (CANCELLED) to 16 (UNAUTHENTICATED)"),
        ("grpc", 17, "or a grpc.StatusCode"),
        ("grpc", "ABORTED", "or a grpc.StatusCode"),
        ("http1", 200, "from 400 to 599"),
        ("http1", 600, "from 400 to 599"),
        ("http1", True, "from 400 to 599"),
    ],
)
def test_a_status_that_is_no_error_is_refused(protocol: str, status: object, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        fail_action(protocol, COMMIT, status, "m", False)  # type: ignore[arg-type]
    assert f"status={status!r}" in str(caught.value)
    assert says in str(caught.value)


def test_only_a_commit_answered_aborted_by_the_proxy_rolls_its_transaction_back() -> None:
    assert fail_action("grpc", COMMIT, grpc.StatusCode.ABORTED, "m", False).rollback
    assert fail_action("grpc", f"/{COMMIT}", 10, "m", False).rollback
    assert not fail_action("grpc", COMMIT, 10, "m", True).rollback  # it lands: nothing to roll back
    assert not fail_action("grpc", COMMIT, 14, "m", False).rollback  # lost on the way: stays open
    assert not fail_action("grpc", "google.firestore.v1.Firestore/RunQuery", 10, "m", False).rollback


@pytest.mark.parametrize("seconds", [-1, math.nan, math.inf, "1", True])
def test_a_delay_is_seconds_or_none(seconds: object) -> None:
    with pytest.raises(ValueError) as caught:
        delay_action(seconds, "response")  # type: ignore[arg-type]
    assert f"seconds={seconds!r}" in str(caught.value)
    assert "or None to hold it until rule.release()" in str(caught.value)


def test_a_delay_has_a_direction() -> None:
    assert delay_action(0, "request") == Delay(0, "request")
    assert delay_action(None, "response") == Delay(None, "response")
    with pytest.raises(ValueError) as caught:
        delay_action(1.0, "both")
    assert str(caught.value) == (
        "direction='both': give 'response' (hold back the answer) or 'request' (hold back the call)"
    )


def test_grpc_messages_are_percent_encoded_outside_printable_ascii() -> None:
    assert grpc_message("plain text: ok") == "plain text: ok"
    assert grpc_message("100 % sûr\n") == "100 %25 s%C3%BBr%0A"


def test_waiting_for_a_rule_that_never_acts_says_what_it_saw() -> None:
    rule = make_rule("grpc", COMMIT, range(1, 3), Fail(10))
    rule.take("POST", f"/{COMMIT}")
    with pytest.raises(TimeoutError) as caught:
        rule.wait(timeout=0.01)
    assert str(caught.value) == (
        f"<Rule {Fail(10)} on calls 1 to 2 of {COMMIT!r}> acted on 1 calls of the 2 awaited "
        "within 0.01 s (1 matching calls seen)"
    )
    assert rule.wait(1, timeout=0.01) is rule


def test_clearing_the_faults_lets_held_traffic_go_and_drops_the_rules() -> None:
    faults = Faults()
    rule = make_rule("grpc", COMMIT, 1, Delay(None))
    faults.rules.append(rule)

    async def held() -> None:
        waiting = asyncio.create_task(rule.held())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        faults.clear()
        await asyncio.wait_for(waiting, 5)

    asyncio.run(held())
    assert faults.rules == []
    asyncio.run(asyncio.wait_for(rule.held(), 5))  # released for good


# -- header blocks ------------------------------------------------------------------------


class _Bytes:
    """Stands for the StreamWriter an ``Outbound`` writes to."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data


def _blocks(inbound: Inbound, data: bytes) -> list[list[tuple[bytes, bytes]]]:
    return [[tuple(h) for h in item.headers] for item, _ in inbound.feed(data) if hasattr(item, "headers")]


def _request(n: int) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":path", b"/google.firestore.v1.Firestore/Commit"),
        (b"x-goog-request-params", b"database=projects/p/databases/%28default%29"),
        (b"x-call", str(n).encode()),
    ]


def _written(blocks: list[tuple[int, list[tuple[bytes, bytes]]]]) -> list[bytes]:
    """Each block as the relay writes it, on one connection."""
    out = Outbound(_Bytes())  # type: ignore[arg-type]
    frames = []
    for stream, headers in blocks:
        out.headers(stream, headers, end_stream=False)
        frames.append(bytes(out.writer.data))  # type: ignore[attr-defined]
        out.writer.data.clear()  # type: ignore[attr-defined]
    return frames


def test_a_block_the_relay_drops_leaves_the_next_one_readable() -> None:
    first, second, third = _written([(1, _request(1)), (3, _request(2)), (5, _request(3))])
    assert _blocks(Inbound(), first + third) == [_request(1), _request(3)]
    assert _blocks(Inbound(), second + third) == [_request(2), _request(3)]


def test_blocks_the_relay_reorders_stay_readable() -> None:
    first, second = _written([(1, _request(1)), (3, _request(2))])
    assert _blocks(Inbound(), second + first) == [_request(2), _request(1)]


def test_with_the_table_a_peer_keeps_a_dropped_block_breaks_the_next_one() -> None:
    # Why the relay re-encodes: HPACK as peers use it, each block indexing its headers.
    encoder = Encoder()
    encoder.encode(_request(1))  # dropped: its entries never reach the decoder
    later = HeadersFrame(3, encoder.encode(_request(1)), flags=["END_HEADERS"])  # refers to them
    with pytest.raises(InvalidTableIndexError):
        Inbound().feed(later.serialize())


def test_a_long_block_goes_on_in_continuations_the_peer_accepts() -> None:
    headers = [*_request(1), (b"x-long", b"v" * 40_000)]
    (written,) = _written([(1, headers)])
    lengths, at = [], 0
    while at < len(written):
        length = int.from_bytes(written[at : at + 3], "big")
        lengths.append((written[at + 3], length))
        at += 9 + length
    assert [kind for kind, _ in lengths] == [0x1, 0x9, 0x9]  # HEADERS, CONTINUATION, CONTINUATION
    assert all(length <= 16384 for _, length in lengths)
    assert _blocks(Inbound(), written) == [headers]


def test_a_block_split_across_reads_comes_whole() -> None:
    (written,) = _written([(1, _request(1))])
    inbound = Inbound()
    assert _blocks(inbound, written[:5]) == []
    assert _blocks(inbound, written[5:]) == [_request(1)]


def test_a_random_stall_holds_back_one_answer_for_a_time_in_its_range() -> None:
    faults = Faults(stall_rate=1.0, stall_seconds=(2.0, 3.0), only=frozenset({"object.read"}))
    (stall,) = faults.take("GET", "/download/storage/v1/b/b/o/x", "object.read")
    assert isinstance(stall.action, Delay) and stall.action.direction == "response"
    assert 2.0 <= stall.action.seconds <= 3.0 and stall.struck == 1
    assert faults.take("POST", "/upload/storage/v1/b/b/o", "object.write") == []  # not a kind it aims at
    faults.clear()
    assert faults.stall_rate == 0.0 and faults.take("GET", "/download/storage/v1/b/b/o/x", "object.read") == []
