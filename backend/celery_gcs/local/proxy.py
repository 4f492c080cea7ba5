"""A TCP proxy in front of a local emulator that counts requests and injects faults.

Used by the tests (fault injection), ``make demo`` and ``make bench``
(request counts). It understands just enough of each protocol:

* HTTP/1.1 (the GCS emulator): one request at a time per connection; each is
  counted by kind (``object.read``, ``object.write``, ``bucket.read``...), and
  can be answered with an injected status (429, 503) instead of forwarded.
* HTTP/2 with gRPC (the Firestore emulator): relayed frame by frame
  (``grpc_relay``); each new stream is one RPC, counted by its method
  (``Commit``, ``BatchGetDocuments``...), and can have its connection reset
  before it reaches the emulator, or after (its answer lost); the gRPC
  client reconnects.
* Any protocol: added latency, connection resets, and a blackhole that
  accepts connections and never answers.

Random faults are set on ``Proxy.faults``. Chosen calls are failed or held
back by rules (``celery_gcs.local.faults`` says how calls are named)::

    proxy.fail("google.firestore.v1.Firestore/Commit", grpc.StatusCode.ABORTED, calls=range(1, 6))
    proxy.fail("google.firestore.v1.Firestore/Commit", 14, forward=True)  # it lands; the client sees 14
    proxy.delay("google.firestore.v1.Firestore/RunAggregationQuery", 2.0)  # the 1st one's answer, 2 s late
    rule = proxy.delay("GET /download/storage/v1/b/[^/]+/o/.+", None, calls=2)  # held...
    rule.wait(); ...; rule.release()                                               # ...until released
    proxy.fail("POST /upload/storage/v1/b/[^/]+/o", 503, calls=3)

Every fault injected is counted in ``Proxy.injected``, so a test can tell
that the faults it asked for really happened: ``reset``, ``lost_response``,
``down``, ``blackhole``, ``status.N`` (answered by the proxy), ``replaced.N``
(served, its answer replaced), ``delay.request``, ``delay.response``.

Everything runs on one asyncio loop in a daemon thread; the proxy only ever
listens on and connects to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import http
import json
import logging
import re
import threading
from collections.abc import Callable

from .faults import INJECTED, Delay, Fail, Faults, Rule, delay_action, fail_action, make_rule
from .grpc_relay import PREFACE, GrpcRelay

__all__ = ["Faults", "Proxy", "Rule", "classify_gcs"]

_CHUNK = 65536

log = logging.getLogger(__name__)


def classify_gcs(method: str, path: str) -> str:
    """The kind of a GCS JSON API request, for counting and pricing."""
    path = path.split("?", 1)[0]
    if path.startswith("/upload/"):
        return "object.write"
    if path.startswith("/download/"):
        return "object.read"
    if path.startswith("/batch/"):
        return "batch"
    if re.match(r"^(/storage/v1)?/b/[^/]+/o/.+", path):
        return {"GET": "object.metadata", "DELETE": "object.delete", "PATCH": "object.patch"}.get(
            method, "object.other"
        )
    if re.match(r"^(/storage/v1)?/b/[^/]+/o$", path):
        return "object.list" if method == "GET" else "object.write"
    if re.match(r"^(/storage/v1)?/b/[^/]+$", path):
        return "bucket.read" if method == "GET" else "bucket.write"
    return f"other.{method}"


class Proxy:
    """Listen on a free loopback port and forward to ``127.0.0.1:upstream_port``."""

    def __init__(self, upstream_port: int, protocol: str = "http1") -> None:
        if protocol not in ("http1", "grpc", "tcp"):
            raise ValueError(f"protocol must be http1, grpc or tcp, not {protocol!r}")
        self.upstream_port = upstream_port
        self.protocol = protocol
        self.faults = Faults()
        self.counts: collections.Counter[str] = collections.Counter()
        #: Faults injected, by kind: ``reset``, ``lost_response``, ``status.503``, ``down``...
        self.injected: collections.Counter[str] = collections.Counter()
        #: Client connections served so far: a test can tell that calls shared one.
        self.connections = 0
        self.port = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxy")

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Proxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            if self._server:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            # Let every connection's task end here, not be destroyed pending with the loop.
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def drop_connections(self) -> None:
        """Reset every open connection, as a restarting service would."""

        def abort() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(abort)

    # -- counting ---------------------------------------------------------------

    def count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def inject(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def injected_snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.injected)

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.injected.clear()

    # -- rules ------------------------------------------------------------------

    def fail(
        self,
        call: str,
        status: int | enum.Enum,
        *,
        calls: int | range = 1,
        forward: bool = False,
        message: str = INJECTED,
    ) -> Rule:
        """Answer the matching calls ranked ``calls`` with an error instead of the emulator's answer.

        ``status``: a gRPC code (``10`` or ``grpc.StatusCode.ABORTED``) on a
        gRPC proxy, an HTTP status (``503``) on an HTTP one. ``forward``: the
        emulator serves the call and the client gets the error all the same.
        """
        return self._add(call, calls, fail_action(self.protocol, call, status, message, forward))

    def delay(self, call: str, seconds: float | None, *, calls: int | range = 1, direction: str = "response") -> Rule:
        """Hold back one ``direction`` (``"response"`` or ``"request"``) of the matching calls ranked ``calls``.

        ``seconds=None`` holds it until ``rule.release()`` (or ``faults.clear()``).
        Only that call waits: other calls go on, on gRPC over the same connection,
        on HTTP/1.1 over the client's other connections.
        """
        return self._add(call, calls, delay_action(seconds, direction))

    def _add(self, call: str, calls: int | range, action: Fail | Delay) -> Rule:
        rule = make_rule(self.protocol, call, calls, action)
        self.faults.rules.append(rule)
        return rule

    async def roll_back(self, commit_request: bytes) -> None:
        """End on the emulator the transaction of a Commit the proxy answered ABORTED."""
        await asyncio.to_thread(_roll_back, self.upstream_port, commit_request)

    # -- serving ----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        faults = self.faults
        if faults.down or faults.strikes(faults.reset_rate):
            self.inject("down" if faults.down else "reset")
            writer.transport.abort()
            return
        self._writers.add(writer)
        with self._lock:
            self.connections += 1
        try:
            if faults.blackhole:
                self.inject("blackhole")  # counted per connection held, as "down" is per one refused
                await reader.read()  # hold the connection open, answer nothing
                return
            if self.protocol == "http1":
                await self._serve_http1(reader, writer)
                return
            start = await _read_preface(reader) if self.protocol == "grpc" else b""
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_writer)
            up_writer.write(start)
            try:
                if start == PREFACE:
                    await GrpcRelay(self, writer, up_writer).run(reader, up_reader)
                    return
                if self.protocol == "grpc":
                    self.count("non-grpc")  # not HTTP/2 after all: forwarded, not counted
                link = _Link(writer, up_writer)
                await asyncio.gather(self._pipe(reader, up_writer, link), self._pipe(up_reader, writer, link))
            finally:
                self._writers.discard(up_writer)
                up_writer.close()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            writer.transport.abort()
        except asyncio.CancelledError:
            # The proxy is stopping. Ending quietly here, rather than re-raising,
            # keeps asyncio from logging each open connection as an error.
            writer.transport.abort()
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        observe: Callable[[bytes], object] | None = None,
    ) -> None:
        """Forward one direction as it comes; ``observe`` sees every chunk, for subclasses that count more."""
        faults = self.faults
        try:
            while data := await reader.read(_CHUNK):
                if faults.down or faults.blackhole:
                    self.inject("down" if faults.down else "blackhole")
                    link.abort()
                    return
                if faults.latency:
                    await asyncio.sleep(faults.latency)
                if observe:
                    observe(data)
                writer.write(data)
                await writer.drain()
        finally:
            if writer.can_write_eof():
                try:
                    writer.write_eof()
                except OSError:
                    pass

    async def _serve_http1(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One upstream connection per request: the emulator serves one
        # connection at a time, so an idle kept-alive upstream connection
        # would stall every other client behind it.
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            method, path, headers = _parse_head(head)
            body = await _read_body(reader, headers)
            kind = classify_gcs(method, path)
            self.count(kind)
            faults = self.faults
            rules = faults.take(method, path.split("?", 1)[0], kind)
            fail = next((rule.action for rule in rules if isinstance(rule.action, Fail)), None)
            if faults.down:
                self.inject("down")
                writer.transport.abort()
                return
            if faults.blackhole:
                self.inject("blackhole")
                await reader.read()  # hold the connection open, answer nothing
                return
            if faults.latency:
                await asyncio.sleep(faults.latency)
            await self._hold(rules, "request")
            if fail and not fail.forward:
                self.inject(f"status.{fail.status}")
                await self._hold(rules, "response")
                writer.write(_error_response(fail.status, fail.message))
                await writer.drain()
                continue
            if faults.strikes(faults.reset_rate, kind):
                self.inject("reset")
                writer.transport.abort()
                return
            if faults.strikes(faults.error_rate, kind):
                status = faults.rng.choice(faults.statuses)
                self.inject(f"status.{status}")
                writer.write(_error_response(status, faults.error_message))
                await writer.drain()
                continue
            response = await self._forward(head, body, method)
            if fail:
                self.inject(f"replaced.{fail.status}")
                response = _error_response(fail.status, fail.message)
            elif faults.strikes(faults.lost_response_rate, kind):
                self.inject("lost_response")
                writer.transport.abort()
                return
            await self._hold(rules, "response")
            writer.write(response)
            await writer.drain()

    async def _hold(self, rules: list[Rule], direction: str) -> None:
        """Wait as the first of ``rules`` delaying ``direction`` says."""
        rule = next((r for r in rules if isinstance(r.action, Delay) and r.action.direction == direction), None)
        if rule is None:
            return
        self.inject(f"delay.{direction}")
        await rule.held(rule.action.seconds)  # type: ignore[union-attr]

    async def _forward(self, head: bytes, body: bytes, method: str) -> bytes:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.add(up_writer)
        try:
            up_writer.write(head + body)
            await up_writer.drain()
            response_head = await up_reader.readuntil(b"\r\n\r\n")
            _, _, response_headers = _parse_head(response_head, response=True)
            response_body = await _read_body(up_reader, response_headers, response=method != "HEAD")
        finally:
            self._writers.discard(up_writer)
            up_writer.close()
        # Keep the client's connection open whatever the emulator said: the
        # client decides when to close it, as it would with GCS.
        response_head = re.sub(rb"(?im)^connection:[^\r\n]*\r\n", b"", response_head)
        response_head = re.sub(rb"^HTTP/1\.0", b"HTTP/1.1", response_head)
        return response_head + response_body


def _parse_head(head: bytes, response: bool = False) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if response:
        return "", first[1] if len(first) > 1 else "", headers
    return first[0], first[1] if len(first) > 1 else "", headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], response: bool = False) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            body += size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            chunk = await reader.readexactly(size + 2)
            body += chunk
            if size == 0:
                return bytes(body)
    length = int(headers.get("content-length", "0") or 0)
    if length == 0 and response and "content-length" not in headers:
        return await reader.read()  # close-delimited response
    return await reader.readexactly(length) if length else b""


def _roll_back(port: int, commit_request: bytes) -> None:
    import grpc
    from google.cloud.firestore_v1.types import firestore as types

    commit = types.CommitRequest.deserialize(commit_request)
    if not commit.transaction:
        return  # a batch write: no transaction to end
    rollback = types.RollbackRequest(database=commit.database, transaction=commit.transaction)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/google.firestore.v1.Firestore/Rollback")
            call(types.RollbackRequest.serialize(rollback), timeout=10)
    except grpc.RpcError as exc:
        log.warning("proxy: rolling back a transaction answered ABORTED failed: %s", exc)


async def _read_preface(reader: asyncio.StreamReader) -> bytes:
    """The client's first bytes: HTTP/2's preface whole, or as soon as they differ from it."""
    start = b""
    while len(start) < len(PREFACE) and PREFACE.startswith(start):
        data = await reader.read(len(PREFACE) - len(start))
        if not data:
            break
        start += data
    return start


def _error_response(status: int, message: str) -> bytes:
    reason = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else "Error"
    body = json.dumps({"error": {"code": status, "message": message, "errors": [{"message": message}]}}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class _Link:
    """Both ends of one proxied connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def abort(self) -> None:
        self.client.transport.abort()
        self.upstream.transport.abort()
