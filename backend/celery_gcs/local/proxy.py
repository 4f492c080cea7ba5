"""A TCP proxy in front of a local emulator that counts requests and injects faults.

Used by the tests (fault injection), ``make demo`` and ``make bench``
(request counts). It understands just enough of each protocol:

* HTTP/1.1 (the GCS emulator): one request at a time per connection; each is
  counted by kind (``object.read``, ``object.write``, ``bucket.read``...), and
  can be answered with an injected status (429, 503) instead of forwarded.
* HTTP/2 with gRPC (the Firestore emulator): each new stream is one RPC,
  counted by its method (``Commit``, ``BatchGetDocuments``...), and can have
  its connection reset before it reaches the emulator, or after (its answer
  lost); the gRPC client reconnects.
* Any protocol: added latency, connection resets, and a blackhole that
  accepts connections and never answers.

Every fault injected is counted in ``Proxy.injected``, so a test can tell
that the faults it asked for really happened.

Everything runs on one asyncio loop in a daemon thread; the proxy only ever
listens on and connects to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

_CHUNK = 65536


@dataclass
class Faults:
    """What to do to traffic. Change the fields at any time; they apply to new requests."""

    #: Probability that an HTTP request is answered with one of ``statuses``.
    error_rate: float = 0.0
    statuses: tuple[int, ...] = (503,)
    #: What an injected HTTP error says: the ``message`` of GCS's JSON error body.
    error_message: str = "injected by the test proxy"
    #: Probability that a request (HTTP/1), a call (gRPC) or a new connection
    #: (any) is reset before it reaches the emulator.
    reset_rate: float = 0.0
    #: Probability that a request (HTTP/1) or call (gRPC) reaches the emulator
    #: and is served, but its connection is reset before the answer gets back:
    #: the client cannot tell whether it happened, and retries.
    lost_response_rate: float = 0.0
    #: Seconds added before each request (HTTP/1) or chunk (other protocols) is forwarded.
    latency: float = 0.0
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

    def clear(self) -> None:
        self.error_rate = self.reset_rate = self.lost_response_rate = self.latency = 0.0
        self.statuses = (503,)
        self.error_message = "injected by the test proxy"
        self.blackhole = self.down = False
        self.only = frozenset()
        self.limit = None

    def strikes(self, rate: float, kind: str | None = None) -> bool:
        """Whether a request of ``kind`` (None: a new connection) gets a fault of this rate."""
        if not rate or self.limit == 0 or (self.only and kind not in self.only):
            return False
        if self.rng.random() >= rate:
            return False
        if self.limit is not None:
            self.limit -= 1
        return True


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

    # -- serving ----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        faults = self.faults
        if faults.down or faults.strikes(faults.reset_rate):
            self.inject("down" if faults.down else "reset")
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            if faults.blackhole:
                await reader.read()  # hold the connection open, answer nothing
                return
            if self.protocol == "http1":
                await self._serve_http1(reader, writer)
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_writer)
            link = _Link(writer, up_writer)
            try:
                inspect = _GrpcCounter(self.count) if self.protocol == "grpc" else None
                await asyncio.gather(
                    self._pipe(reader, up_writer, link, inspect),
                    self._pipe(up_reader, writer, link, None),
                )
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
        inspect: _GrpcCounter | None,
        observe: Callable[[bytes], object] | None = None,
    ) -> None:
        """Forward one direction; ``inspect`` is set on the client-to-emulator side of gRPC.

        ``observe`` sees every chunk forwarded, for subclasses that count more.
        """
        faults = self.faults
        try:
            while data := await reader.read(_CHUNK):
                if faults.down or faults.blackhole:
                    self.inject("down" if faults.down else "blackhole")
                    link.abort()
                    return
                if faults.latency:
                    await asyncio.sleep(faults.latency)
                if inspect is None and link.doomed:
                    # An answer from the emulator on a connection whose call
                    # was served: it never reaches the client.
                    self.inject("lost_response")
                    link.abort()
                    return
                for kind in inspect.feed(data) if inspect else ():
                    if faults.strikes(faults.reset_rate, kind):
                        self.inject("reset")
                        link.abort()
                        return
                    if faults.strikes(faults.lost_response_rate, kind):
                        link.doomed = True
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
            if faults.strikes(faults.lost_response_rate, kind):
                self.inject("lost_response")
                writer.transport.abort()
                return
            writer.write(response)
            await writer.drain()

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


def _error_response(status: int, message: str) -> bytes:
    reason = {
        403: "Forbidden", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
    }.get(status, "Error")  # fmt: skip
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
        #: A call on it was served and its answer is to be lost.
        self.doomed = False

    def abort(self) -> None:
        self.client.transport.abort()
        self.upstream.transport.abort()


class _GrpcCounter:
    """Counts gRPC calls in a client's HTTP/2 byte stream by their method path."""

    def __init__(self, count: Callable[[str], None]) -> None:
        from hpack import Decoder

        self._count = count
        self._decoder = Decoder()
        self._buffer = bytearray()
        self._preface_seen = False
        self._header_block: bytearray | None = None
        self._started: list[str] = []

    def feed(self, data: bytes) -> list[str]:
        """Take the next bytes the client sent; return the kinds of the calls they start."""
        self._buffer += data
        self._started: list[str] = []
        if not self._preface_seen:
            preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            if len(self._buffer) < len(preface):
                return []
            if bytes(self._buffer[: len(preface)]) != preface:
                self._preface_seen = True  # not HTTP/2 after all: count nothing
                self._count("non-grpc")
                self.feed = lambda data: []  # type: ignore[method-assign]
                return []
            del self._buffer[: len(preface)]
            self._preface_seen = True
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[0:3], "big")
            if len(self._buffer) < 9 + length:
                break
            kind, flags = self._buffer[3], self._buffer[4]
            payload = bytes(self._buffer[9 : 9 + length])
            del self._buffer[: 9 + length]
            if kind == 0x1:  # HEADERS
                if flags & 0x8:  # PADDED
                    pad = payload[0]
                    payload = payload[1 : len(payload) - pad]
                if flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                self._header_block = bytearray(payload)
                if flags & 0x4:  # END_HEADERS
                    self._end_headers()
            elif kind == 0x9 and self._header_block is not None:  # CONTINUATION
                self._header_block += payload
                if flags & 0x4:
                    self._end_headers()
        return self._started

    def _end_headers(self) -> None:
        block, self._header_block = bytes(self._header_block or b""), None
        headers = dict(self._decoder.decode(block))
        path = headers.get(":path") or headers.get(b":path")
        if path:
            path = path.decode() if isinstance(path, bytes) else path
            kind = "firestore." + path.rsplit("/", 1)[-1]
            self._count(kind)
            self._started.append(kind)
