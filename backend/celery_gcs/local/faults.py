"""What the test proxy does to traffic: random faults, and rules that fail or delay chosen calls.

``Faults`` holds the random ones (a rate of resets, of lost answers...).
A ``Rule`` picks calls by what they ask for and by their rank among the
calls that match (the 1st to the 5th ``Commit`` since the rule was set), and
fails them (``Fail``) or holds them back (``Delay``). ``Proxy.fail`` and
``Proxy.delay`` make rules; how a call is named depends on the protocol:

* gRPC: the method as in its path, ``"google.firestore.v1.Firestore/Commit"``.
* HTTP/1.1: ``"METHOD PATH"``, PATH a regular expression the whole request
  path (the query left out) must match: ``"POST /upload/storage/v1/b/[^/]+/o"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

FIRESTORE_COMMIT = "google.firestore.v1.Firestore/Commit"
ABORTED = 10
#: What an injected error says: GCS's JSON error message, or gRPC's grpc-message.
INJECTED = "injected by the test proxy"

E_PROTOCOL = (
    "a {protocol!r} proxy forwards bytes it does not parse, so it cannot pick calls: "
    "fail() and delay() need a proxy made with protocol 'http1' or 'grpc'"
)
E_GRPC_CALL = (
    "call={call!r} is not a gRPC method: name it as in its path, service and method, "
    "e.g. 'google.firestore.v1.Firestore/Commit'"
)
E_HTTP_CALL = (
    "call={call!r} is not an HTTP request pattern: give 'METHOD PATH', PATH a regular expression "
    "the whole path must match, e.g. 'POST /upload/storage/v1/b/[^/]+/o'"
)
E_HTTP_PATTERN = "call={call!r}: its path is not a regular expression ({error}); escape it with re.escape()"
E_CALLS = (
    "calls={calls!r}: give the rank of the call among those that match, counted from 1 "
    "(calls=3 for the third), or a range of ranks (calls=range(1, 6) for the first five)"
)
E_GRPC_STATUS = (
    "status={status!r} is not a gRPC error code: give one from 1 (CANCELLED) to 16 (UNAUTHENTICATED), "
    "or a grpc.StatusCode such as grpc.StatusCode.ABORTED"
)
E_HTTP_STATUS = "status={status!r} is not an HTTP error status: give one from 400 to 599, e.g. 503"
E_SECONDS = (
    "seconds={seconds!r}: give how long to hold the traffic back, in seconds (0 or more), "
    "or None to hold it until rule.release()"
)
E_DIRECTION = "direction={direction!r}: give 'response' (hold back the answer) or 'request' (hold back the call)"
E_WAIT = "{rule} acted on {struck} calls of the {wanted} awaited within {timeout} s ({seen} matching calls seen)"


@dataclass
class Faults:
    """What to do to traffic. Change the fields at any time; they apply to new requests."""

    #: Probability that an HTTP request is answered with one of ``statuses``.
    error_rate: float = 0.0
    statuses: tuple[int, ...] = (503,)
    #: What an injected HTTP error says: the ``message`` of GCS's JSON error body.
    error_message: str = INJECTED
    #: Probability that a request (HTTP/1), a call (gRPC) or a new connection
    #: (any) is reset before it reaches the emulator.
    reset_rate: float = 0.0
    #: Probability that a request (HTTP/1) or call (gRPC) reaches the emulator
    #: and is served, but its connection is reset before the answer gets back:
    #: the client cannot tell whether it happened, and retries.
    lost_response_rate: float = 0.0
    #: Seconds added before each request (HTTP/1) or chunk (other protocols) is forwarded.
    latency: float = 0.0
    #: Probability that a request (HTTP/1) or call (gRPC) is served but its answer
    #: held back, for a time drawn from ``stall_seconds``: one call stalls, its
    #: neighbours go on (on GCS, that request's connection waits with it).
    stall_rate: float = 0.0
    stall_seconds: tuple[float, float] = (1.0, 30.0)
    #: Accept connections but never forward or answer anything.
    blackhole: bool = False
    #: Close every connection and refuse new ones, as a service that is down.
    down: bool = False
    #: Only requests of these kinds (as counted: ``object.write``,
    #: ``firestore.Commit``...) get per-request faults; empty: every request.
    #: Connection-level faults (reset on connect) apply only when empty.
    only: frozenset[str] = frozenset()
    #: How many more per-request faults to inject; None: no limit.
    limit: int | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    #: Rules failing or delaying chosen calls, from ``Proxy.fail`` and ``Proxy.delay``.
    rules: list[Rule] = field(default_factory=list)
    #: The random stalls (``stall_rate``) drawn since the last ``clear()``, each a rule of one call.
    stalls: list[Rule] = field(default_factory=list)

    def clear(self) -> None:
        """No fault any more; traffic held by a rule, or by a random stall, goes on."""
        self.error_rate = self.reset_rate = self.lost_response_rate = self.latency = self.stall_rate = 0.0
        self.statuses = (503,)
        self.error_message = INJECTED
        self.blackhole = self.down = False
        self.only = frozenset()
        self.limit = None
        rules, self.rules, self.stalls = self.rules + self.stalls, [], []
        for rule in rules:
            rule.release()

    def strikes(self, rate: float, kind: str | None = None) -> bool:
        """Whether a request of ``kind`` (None: a new connection) gets a fault of this rate."""
        if not rate or self.limit == 0 or (self.only and kind not in self.only):
            return False
        if self.rng.random() >= rate:
            return False
        if self.limit is not None:
            self.limit -= 1
        return True

    def take(self, method: str, path: str, kind: str | None = None) -> list[Rule]:
        """The rules that act on this new call (counting it against every rule it matches), and a random stall."""
        rules = [rule for rule in list(self.rules) if rule.take(method, path)]
        if self.strikes(self.stall_rate, kind):
            stall = Rule("a random stall", method, re.compile(re.escape(path)), range(1, 2),
                         Delay(self.rng.uniform(*self.stall_seconds)))  # fmt: skip
            stall.take(method, path)
            rules.append(stall)
            self.stalls.append(stall)
        return rules


@dataclass(frozen=True)
class Fail:
    """Answer the call with an error: a gRPC status code or an HTTP status."""

    status: int
    message: str = INJECTED
    #: False: answered by the proxy, the emulator never sees the call.
    #: True: the emulator serves it, and its answer is replaced by the error.
    forward: bool = False
    #: A Firestore Commit answered ABORTED (not forwarded): its transaction is
    #: rolled back on the emulator before the client hears, as Firestore ends
    #: a transaction it aborts. Otherwise the transaction would stay open there,
    #: its locks blocking the client's retry until the emulator gives up on
    #: them ("Transaction lock timeout", ABORTED again, seconds later).
    rollback: bool = False


@dataclass(frozen=True)
class Delay:
    """Hold back one direction of the call: ``seconds``, or until ``Rule.release()`` (None)."""

    seconds: float | None
    direction: Literal["request", "response"] = "response"


class Rule:
    """Acts on the calls matching ``call`` whose rank among them is in ``calls``.

    Ranks count from 1, from when the rule was made, over every connection
    of its proxy. ``seen`` and ``struck`` tell how many calls matched and how
    many the rule acted on; ``wait()`` blocks until it has acted on enough.
    """

    def __init__(self, call: str, method: str, path: re.Pattern[str], calls: range, action: Fail | Delay) -> None:
        self.call = call
        self.calls = calls
        self.action = action
        self._method = method
        self._path = path
        self._seen = 0
        self._struck = 0
        self._released = False
        self._wakers: list[Callable[[], None]] = []
        self._changed = threading.Condition()

    def __repr__(self) -> str:
        first, last = self.calls[0], self.calls[-1]
        ranks = f"call {first}" if first == last else f"calls {first} to {last}"
        return f"<Rule {self.action} on {ranks} of {self.call!r}>"

    @property
    def seen(self) -> int:
        with self._changed:
            return self._seen

    @property
    def struck(self) -> int:
        with self._changed:
            return self._struck

    def take(self, method: str, path: str) -> bool:
        """Count a new call; True if this rule acts on it."""
        if method != self._method or not self._path.fullmatch(path):
            return False
        with self._changed:
            self._seen += 1
            if self._seen not in self.calls:
                return False
            self._struck += 1
            self._changed.notify_all()
            return True

    def wait(self, struck: int | None = None, timeout: float = 30.0) -> Rule:
        """Block until the rule has acted on ``struck`` calls (default: all its ranks)."""
        wanted = len(self.calls) if struck is None else struck
        with self._changed:
            if not self._changed.wait_for(lambda: self._struck >= wanted, timeout):
                raise TimeoutError(
                    E_WAIT.format(rule=self, struck=self._struck, wanted=wanted, timeout=timeout, seen=self._seen)
                )
        return self

    def release(self) -> None:
        """Let traffic held by a ``Delay(None)`` go on, now and from now on."""
        with self._changed:
            self._released = True
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    async def held(self, seconds: float | None = None) -> None:
        """Wait, on the proxy's loop, until the rule is released, or ``seconds`` have passed (None: no limit)."""
        loop = asyncio.get_running_loop()
        released = asyncio.Event()
        with self._changed:
            if self._released:
                return
            self._wakers.append(lambda: _call_soon(loop, released.set))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), seconds)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:
        pass  # the proxy has stopped: nothing waits any more


def make_rule(protocol: str, call: str, calls: int | range, action: Fail | Delay) -> Rule:
    """A rule for a proxy of ``protocol``, its arguments checked."""
    if protocol == "grpc":
        method, path = "POST", _grpc_path(call)
    elif protocol == "http1":
        method, path = _http_request(call)
    else:
        raise ValueError(E_PROTOCOL.format(protocol=protocol))
    return Rule(call, method, path, _ranks(calls), action)


def fail_action(protocol: str, call: str, status: int | enum.Enum, message: str, forward: bool) -> Fail:
    """The ``Fail`` for ``status``: a gRPC code (an int or a ``grpc.StatusCode``) or an HTTP status."""
    if protocol == "grpc":
        code = status.value[0] if isinstance(status, enum.Enum) else status
        if not _is_int(code) or not 1 <= code <= 16:
            raise ValueError(E_GRPC_STATUS.format(status=status))
    else:
        code = status
        if not _is_int(code) or not 400 <= code <= 599:
            raise ValueError(E_HTTP_STATUS.format(status=status))
    commit = isinstance(call, str) and call.removeprefix("/") == FIRESTORE_COMMIT
    rollback = protocol == "grpc" and commit and code == ABORTED and not forward
    return Fail(int(code), message, bool(forward), rollback)


def delay_action(seconds: float | None, direction: str) -> Delay:
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0
    ):
        raise ValueError(E_SECONDS.format(seconds=seconds))
    if direction not in ("request", "response"):
        raise ValueError(E_DIRECTION.format(direction=direction))
    return Delay(seconds, direction)  # type: ignore[arg-type]


def grpc_message(message: str) -> str:
    """``message`` as a grpc-message header value: percent-encoded outside printable ASCII, as gRPC requires."""
    return "".join(c if " " <= c <= "~" and c != "%" else "".join(f"%{b:02X}" for b in c.encode()) for c in message)


def _grpc_path(call: str) -> re.Pattern[str]:
    name = call.removeprefix("/") if isinstance(call, str) else ""
    if not re.fullmatch(r"[A-Za-z_][\w.]*/[A-Za-z_]\w*", name):
        raise ValueError(E_GRPC_CALL.format(call=call))
    return re.compile(re.escape("/" + name))


def _http_request(call: str) -> tuple[str, re.Pattern[str]]:
    method, _, path = call.partition(" ") if isinstance(call, str) else ("", "", "")
    if not re.fullmatch(r"[A-Z]+", method) or not path.startswith("/"):
        raise ValueError(E_HTTP_CALL.format(call=call))
    try:
        return method, re.compile(path)
    except re.error as exc:
        raise ValueError(E_HTTP_PATTERN.format(call=call, error=exc)) from exc


def _ranks(calls: object) -> range:
    if _is_int(calls) and calls >= 1:
        return range(calls, calls + 1)
    if isinstance(calls, range) and calls.step == 1 and len(calls) and calls.start >= 1:
        return calls
    raise ValueError(E_CALLS.format(calls=calls))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
