"""The gRPC proxy's HTTP/2 relay: frame by frame, so that one call can be failed or held back alone.

Each frame is parsed (hyperframe) and forwarded as it came, except header
blocks: they are decoded (hpack) and encoded again for the other side with a
dynamic table of size 0. The HPACK state of a connection lives in the order
of its header blocks; with no table, the proxy can drop a block, add one or
send one late without breaking the connection's other calls.

What the rules of ``celery_gcs.local.faults`` do on the wire:

* ``Fail`` (not forwarded): the call's frames never reach the emulator.
  The client gets a trailers-only answer (HEADERS with ``:status 200``,
  ``content-type application/grpc``, ``grpc-status``, ``grpc-message`` and
  END_STREAM) at once, then RST_STREAM(NO_ERROR) as it has not finished
  sending (RFC 9113 8.1), as gRPC servers do. The DATA it still sends is
  dropped and its connection window given back with a WINDOW_UPDATE. A
  Commit answered ABORTED is answered once it is all in: its transaction is
  rolled back on the emulator first (``Host.roll_back``).
* ``Fail`` (forwarded): the emulator serves the call; its answer is dropped
  (its window given back to the emulator) and the error is sent when the
  emulator ends the stream.
* ``Delay`` on the response: that stream's frames from the emulator, the
  proxy's own answer included, go out in order, each ``seconds`` after it
  came (or once released). Other streams flow on meanwhile.
* ``Delay`` on the request: the call's HEADERS go on at once (a peer must
  see streams open in order of their ids), the rest of the request waits.
  The emulator starts the call but cannot run it before its message comes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hpack import Decoder, Encoder, HPACKError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from .faults import Delay, Fail, Faults, Rule, grpc_message

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_CHUNK = 65536
#: The largest frame every peer accepts (RFC 9113 4.2); longer header blocks go on in CONTINUATIONs.
_MAX_FRAME = 16384
_NO_ERROR = 0x0

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]


class Host(Protocol):
    """What the relay needs from its proxy."""

    faults: Faults

    def count(self, kind: str) -> None: ...

    def inject(self, kind: str) -> None: ...

    async def roll_back(self, commit_request: bytes) -> None:
        """End on the emulator the transaction of a Firestore Commit it never saw."""


class _Abort(Exception):
    """End the connection at once, both sides: traffic the relay cannot follow."""


class _Fault(_Abort):
    """End the connection at once, both sides: a fault injected."""


@dataclass
class _Block:
    """One header block (HEADERS and its CONTINUATIONs), decoded."""

    stream: int
    headers: Headers
    end_stream: bool

    def get(self, name: bytes) -> str:
        return next((value.decode("latin-1") for key, value in self.headers if key == name), "")


class Inbound:
    """Frames from one peer, parsed; header blocks come whole and decoded."""

    def __init__(self) -> None:
        self.decoder = Decoder()
        self._buffer = bytearray()
        self._block: tuple[HeadersFrame, bytearray] | None = None

    def feed(self, data: bytes) -> list[tuple[Frame | _Block, bytes]]:
        """The frames (with their bytes) and blocks that ``data`` completes."""
        self._buffer += data
        done: list[tuple[Frame | _Block, bytes]] = []
        start = 0
        while len(self._buffer) - start >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self._buffer[start : start + 9])))
            if len(self._buffer) - start < 9 + length:
                break
            raw = bytes(self._buffer[start : start + 9 + length])
            start += 9 + length
            frame.parse_body(memoryview(raw)[9:])
            if isinstance(frame, PushPromiseFrame):
                raise _Abort("PUSH_PROMISE: gRPC never pushes, and the relay does not follow pushed streams")
            if self._block is not None or isinstance(frame, HeadersFrame):
                block = self._header_block(frame)
                if block is not None:
                    done.append((block, b""))
            else:
                done.append((frame, raw))
        del self._buffer[:start]
        return done

    def _header_block(self, frame: Frame) -> _Block | None:
        if isinstance(frame, HeadersFrame) and self._block is None:
            self._block = (frame, bytearray(frame.data))
        elif isinstance(frame, ContinuationFrame) and self._block and frame.stream_id == self._block[0].stream_id:
            self._block[1].extend(frame.data)
        else:
            raise _Abort(f"{type(frame).__name__} inside a header block")
        if "END_HEADERS" not in frame.flags:
            return None
        first, data = self._block
        self._block = None
        headers = self.decoder.decode(bytes(data), raw=True)
        return _Block(first.stream_id, headers, "END_STREAM" in first.flags)


class Outbound:
    """Frames to one peer; header blocks encoded with no dynamic table, so none depends on another."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._encoder = Encoder()
        self._encoder.header_table_size = 0  # the first block tells the peer so

    def raw(self, data: bytes) -> None:
        self.writer.write(data)

    def frame(self, frame: Frame) -> None:
        self.writer.write(frame.serialize())

    def headers(self, stream: int, headers: Headers, end_stream: bool) -> None:
        block = self._encoder.encode(headers)
        pieces = [block[i : i + _MAX_FRAME] for i in range(0, len(block), _MAX_FRAME)] or [b""]
        frames: list[Frame] = [HeadersFrame(stream, pieces[0])]
        frames += [ContinuationFrame(stream, piece) for piece in pieces[1:]]
        frames[-1].flags.add("END_HEADERS")
        if end_stream:
            frames[0].flags.add("END_STREAM")
        # One write: no other frame may come between a block's frames.
        self.writer.write(b"".join(frame.serialize() for frame in frames))

    async def drain(self) -> None:
        await self.writer.drain()


class _Held:
    """One direction of one stream, held back: its frames go out in order, late."""

    def __init__(self, rule: Rule, delay: Delay, to: Outbound) -> None:
        self._rule = rule
        self._seconds = delay.seconds
        self._to = to
        self._queue: asyncio.Queue[tuple[float, Callable[[], None] | None]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    def put(self, send: Callable[[], None]) -> None:
        self._queue.put_nowait((asyncio.get_running_loop().time() + (self._seconds or 0.0), send))

    async def close(self) -> None:
        """Send what is held (when due), then stop."""
        self._queue.put_nowait((0.0, None))
        await self.task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._seconds is None:
                await self._rule.held()
            while True:
                due, send = await self._queue.get()
                if send is None:
                    return
                await self._rule.held(max(0.0, due - loop.time()))  # released: at once
                send()
                await self._to.drain()
        except (ConnectionError, OSError):
            return  # the connection is gone, and what was held with it


@dataclass
class _Call:
    """A call some rule acts on (calls no rule picked keep no state)."""

    fail: Fail | None = None
    held: dict[str, _Held] = field(default_factory=dict)
    #: The request, kept when the proxy answers only once it has it all.
    request: bytearray | None = None


class GrpcRelay:
    """One client connection relayed to the emulator, both directions."""

    def __init__(self, host: Host, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self._host = host
        self._to_client = Outbound(client)
        self._to_upstream = Outbound(upstream)
        self._from_client = Inbound()
        self._from_upstream = Inbound()
        self._calls: dict[int, _Call] = {}
        #: Streams the proxy answered itself: the emulator never saw them.
        self._unforwarded: set[int] = set()
        self._last_stream = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: A call on this connection was served and its answer is to be lost.
        self._doomed = False

    async def run(self, client: asyncio.StreamReader, upstream: asyncio.StreamReader) -> None:
        """Relay until both sides are done; the client's preface was read and sent on already."""
        try:
            await asyncio.gather(
                self._relay(client, self._from_client, self._client_frame, "request"),
                self._relay(upstream, self._from_upstream, self._upstream_frame, "response"),
            )
        finally:
            for call in self._calls.values():
                for held in call.held.values():
                    held.task.cancel()
            for task in self._tasks:
                task.cancel()

    def abort(self) -> None:
        self._to_client.writer.transport.abort()
        self._to_upstream.writer.transport.abort()

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        inbound: Inbound,
        handle: Callable[[Frame | _Block, bytes], None],
        direction: str,
    ) -> None:
        faults = self._host.faults
        to = self._to_upstream if direction == "request" else self._to_client
        try:
            while data := await reader.read(_CHUNK):
                if faults.down or faults.blackhole:
                    self._host.inject("down" if faults.down else "blackhole")
                    raise _Fault()
                if faults.latency:
                    await asyncio.sleep(faults.latency)
                if direction == "response" and self._doomed:
                    # An answer from the emulator on a connection whose call was served: it never arrives.
                    self._host.inject("lost_response")
                    raise _Fault()
                for item, raw in inbound.feed(data):
                    handle(item, raw)
                await self._to_upstream.drain()
                await self._to_client.drain()
        except (_Abort, HyperframeError, HPACKError) as exc:
            if not isinstance(exc, _Fault):
                log.warning("gRPC proxy: ending a connection it cannot relay: %s", exc)
            self.abort()
            return
        for call in list(self._calls.values()):
            if direction in call.held:
                await call.held[direction].close()
        if to.writer.can_write_eof():
            try:
                to.writer.write_eof()
            except OSError:
                pass

    def _send(self, direction: str, stream: int, send: Callable[[], None]) -> None:
        """Send now, or after what that stream holds back in that direction."""
        call = self._calls.get(stream)
        held = call.held.get(direction) if call else None
        if held is None:
            send()
        else:
            held.put(send)

    # -- from the client ------------------------------------------------------

    def _client_frame(self, item: Frame | _Block, raw: bytes) -> None:
        if isinstance(item, _Block):
            self._client_headers(item)
            return
        stream = item.stream_id
        if stream in self._unforwarded:
            if isinstance(item, DataFrame):
                self._drop_request(item)
            return
        if isinstance(item, SettingsFrame):
            _allow_table(self._from_upstream, item)
        if stream == 0:
            self._to_upstream.raw(raw)
        else:
            self._send("request", stream, lambda: self._to_upstream.raw(raw))

    def _client_headers(self, block: _Block) -> None:
        stream = block.stream
        if stream in self._unforwarded:
            return
        if stream <= self._last_stream:  # trailers: gRPC clients send none, but they may
            self._send("request", stream, lambda: self._to_upstream.headers(stream, block.headers, block.end_stream))
            return
        self._last_stream = stream
        call = self._open(block)
        if call and call.fail and not call.fail.forward:
            self._unforwarded.add(stream)
            if call.fail.rollback and not block.end_stream:
                call.request = bytearray()  # answered once the whole Commit is in
            else:
                self._answer(stream, call.fail, ended=block.end_stream)
            return
        held = call.held.get("request") if call else None
        if held and block.end_stream:
            # The stream must open now; the end of the request (its only part here) waits.
            self._to_upstream.headers(stream, block.headers, end_stream=False)
            held.put(lambda: self._to_upstream.frame(DataFrame(stream, b"", flags=["END_STREAM"])))
        else:
            self._to_upstream.headers(stream, block.headers, block.end_stream)

    def _open(self, block: _Block) -> _Call | None:
        """Count a new call and apply the random faults; the call's state if a rule picked it."""
        path = block.get(b":path")
        kind = "firestore." + path.rsplit("/", 1)[-1]
        self._host.count(kind)
        faults = self._host.faults
        if faults.strikes(faults.reset_rate, kind):
            self._host.inject("reset")
            raise _Fault()
        if faults.strikes(faults.lost_response_rate, kind):
            self._doomed = True
        rules = faults.take(block.get(b":method"), path, kind)
        if not rules:
            return None
        call = self._calls[block.stream] = _Call()
        for rule in rules:
            action = rule.action
            if isinstance(action, Fail):
                call.fail = call.fail or action
            elif action.direction not in call.held:
                to = self._to_upstream if action.direction == "request" else self._to_client
                call.held[action.direction] = _Held(rule, action, to)
                self._host.inject(f"delay.{action.direction}")
        return call

    def _drop_request(self, data: DataFrame) -> None:
        """Drop a request the emulator never sees; give its connection window back to the client."""
        if data.flow_controlled_length:
            self._to_client.frame(WindowUpdateFrame(0, data.flow_controlled_length))
        call = self._calls[data.stream_id]
        if call.request is None or call.fail is None:
            return
        call.request += data.data
        if "END_STREAM" in data.flags:
            task = asyncio.create_task(self._roll_back_and_answer(data.stream_id, call.fail, bytes(call.request)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            call.request = None

    async def _roll_back_and_answer(self, stream: int, fail: Fail, request: bytes) -> None:
        # One uncompressed gRPC message: a flag byte, its length, the message.
        if len(request) >= 5 and request[0] == 0:
            await self._host.roll_back(request[5 : 5 + int.from_bytes(request[1:5], "big")])
        self._answer(stream, fail, ended=True)
        await self._to_client.drain()

    def _answer(self, stream: int, fail: Fail, ended: bool) -> None:
        """Answer the call with ``fail`` in place of the emulator; ``ended``: the client sent it all."""
        self._host.inject(f"status.{fail.status}")
        self._send("response", stream, lambda: self._to_client.headers(stream, _trailers(fail), end_stream=True))
        if not ended:
            self._send("response", stream, lambda: self._to_client.frame(RstStreamFrame(stream, _NO_ERROR)))

    # -- from the emulator ----------------------------------------------------

    def _upstream_frame(self, item: Frame | _Block, raw: bytes) -> None:
        if isinstance(item, _Block):
            self._upstream_headers(item)
            return
        stream = item.stream_id
        call = self._calls.get(stream)
        if call and call.fail and isinstance(item, DataFrame):
            self._drop_answer(call.fail, item)
            return
        if isinstance(item, SettingsFrame):
            _allow_table(self._from_client, item)
        if stream == 0:
            self._to_client.raw(raw)
        else:
            self._send("response", stream, lambda: self._to_client.raw(raw))

    def _upstream_headers(self, block: _Block) -> None:
        stream = block.stream
        call = self._calls.get(stream)
        if call and call.fail:
            if block.end_stream:
                self._replace(stream, call.fail)
            return
        self._send("response", stream, lambda: self._to_client.headers(stream, block.headers, block.end_stream))

    def _drop_answer(self, fail: Fail, data: DataFrame) -> None:
        """Drop a served call's answer; give its flow-control window back to the emulator."""
        if data.flow_controlled_length:
            self._to_upstream.frame(WindowUpdateFrame(0, data.flow_controlled_length))
            if "END_STREAM" not in data.flags:
                self._to_upstream.frame(WindowUpdateFrame(data.stream_id, data.flow_controlled_length))
        if "END_STREAM" in data.flags:
            self._replace(data.stream_id, fail)

    def _replace(self, stream: int, fail: Fail) -> None:
        self._host.inject(f"replaced.{fail.status}")
        self._send("response", stream, lambda: self._to_client.headers(stream, _trailers(fail), end_stream=True))


def _trailers(fail: Fail) -> Headers:
    """A trailers-only gRPC answer: the status, and no message."""
    return [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(fail.status).encode()),
        (b"grpc-message", grpc_message(fail.message).encode("ascii")),
    ]


def _allow_table(inbound: Inbound, settings: SettingsFrame) -> None:
    """Let ``inbound``'s peer use the HPACK table size the other peer just allowed it."""
    size = settings.settings.get(SettingsFrame.HEADER_TABLE_SIZE)
    if "ACK" not in settings.flags and size is not None:
        # Raised, never lowered: a block already on its way may use the old size.
        inbound.decoder.max_allowed_table_size = max(inbound.decoder.max_allowed_table_size, size)
