"""Counting proxies in a process of their own, with billable units per request.

Four proxies, built on ``celery_gcs.local.proxy.Proxy``: GCS and Firestore for the
workers, GCS and Firestore for the client, so that the worker's requests and
the client's are counted apart. They run in a child process so that
forwarding never competes with the client being measured for the GIL
(``python -m bench.counting GCS_PORT FIRESTORE_PORT``, driven over its
stdin and stdout).

On top of the request kinds ``Proxy`` counts (``object.write``,
``firestore.Commit``...), these count what is billed:

* GCS: requests answered with an error status, as ``<kind>!<status>``
  (a read of a result not stored yet is ``object.read!404``);
* Firestore: documents, as ``doc.write``, ``doc.delete`` and ``doc.read``.
  A Commit is one RPC but bills one write or delete per document in it
  (deletes at chord completion are batched 500 to a commit); a count()
  aggregation bills one read per 1,000 index entries counted (at least
  one); a query, one read per document returned (at least one); a batch
  get, one read per document asked for, found or missing. The proxy decodes
  the gRPC messages of both directions to count them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from celery_gcs.local.proxy import Proxy, _Link, classify_gcs

#: The proxies, by name: (upstream service, protocol).
PROXIES = {
    "worker.gcs": ("gcs", "http1"),
    "worker.firestore": ("firestore", "grpc"),
    "client.gcs": ("gcs", "http1"),
    "client.firestore": ("firestore", "grpc"),
}

ROOT = Path(__file__).resolve().parent.parent

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _CONTINUATION = 0x0, 0x1, 0x3, 0x9
_END_STREAM, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x4, 0x8, 0x20


class BillingProxy(Proxy):
    """``Proxy`` that also counts error answers (GCS) and documents (Firestore)."""

    async def _forward(self, head: bytes, body: bytes, method: str) -> bytes:
        response = await super()._forward(head, body, method)
        status = int(response.split(b" ", 2)[1])
        if status >= 300:
            path = head.split(b" ", 2)[1].decode("latin-1")
            self.count(f"{classify_gcs(method, path)}!{status}")
        return response

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.protocol != "grpc":
            await super()._serve(reader, writer)
            return
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_writer)
            connection = _GrpcConnection(self.count)
            link = _Link(writer, up_writer)
            try:
                # The bench injects no faults: both directions are only observed.
                await asyncio.gather(
                    self._pipe(reader, up_writer, link, observe=connection.requests.feed),
                    self._pipe(up_reader, writer, link, observe=connection.responses.feed),
                )
            finally:
                self._writers.discard(up_writer)
                up_writer.close()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            writer.transport.abort()
        except asyncio.CancelledError:
            # The proxies are stopping: as in Proxy._serve, end quietly rather than
            # have asyncio log every open connection's cancelled task as an error.
            writer.transport.abort()
        finally:
            self._writers.discard(writer)
            writer.close()


class _GrpcConnection:
    """Both directions of one HTTP/2 connection: RPCs by method, documents by kind."""

    def __init__(self, count: Callable[[str], None]) -> None:
        self.count = count
        self.methods: dict[int, str] = {}
        self.documents: dict[int, int] = {}  # RunQuery stream -> documents returned
        self.requests = _Frames(self._request_headers, self._request_message, preface=True)
        self.responses = _Frames(None, self._response_message, preface=False, on_end=self._end)

    def _request_headers(self, stream: int, headers: dict[str, str]) -> None:
        path = headers.get(":path", "")
        if path:
            method = path.rsplit("/", 1)[-1]
            self.methods[stream] = method
            self.count(f"firestore.{method}")

    def _request_message(self, stream: int, message: bytes) -> None:
        if self.methods.get(stream) != "Commit":
            return
        from google.cloud.firestore_v1.types import firestore as types

        for write in types.CommitRequest.deserialize(message).writes:
            self.count("doc.delete" if write.delete else "doc.write")

    def _response_message(self, stream: int, message: bytes) -> None:
        method = self.methods.get(stream)
        if method not in ("RunAggregationQuery", "RunQuery", "BatchGetDocuments"):
            return
        from google.cloud.firestore_v1.types import firestore as types

        if method == "RunAggregationQuery":
            response = types.RunAggregationQueryResponse.deserialize(message)
            fields = response.result.aggregate_fields if response.result else {}
            counted = sum(int(value.integer_value) for value in fields.values())
            if fields:
                for _ in range(max(1, math.ceil(counted / 1000))):
                    self.count("doc.read")
        elif method == "RunQuery":
            if types.RunQueryResponse.deserialize(message).document:
                self.documents[stream] = self.documents.get(stream, 0) + 1
                self.count("doc.read")
        else:
            response = types.BatchGetDocumentsResponse.deserialize(message)
            if response.found or response.missing:
                self.count("doc.read")

    def _end(self, stream: int) -> None:
        if self.methods.pop(stream, None) == "RunQuery" and not self.documents.pop(stream, 0):
            self.count("doc.read")  # an empty query bills one read


class _Frames:
    """Splits one direction of HTTP/2 into header blocks and gRPC messages, by stream."""

    def __init__(
        self,
        on_headers: Callable[[int, dict[str, str]], None] | None,
        on_message: Callable[[int, bytes], None],
        *,
        preface: bool,
        on_end: Callable[[int], None] | None = None,
    ) -> None:
        from hpack import Decoder

        self._decoder = Decoder() if on_headers else None
        self._on_headers = on_headers
        self._on_message = on_message
        self._on_end = on_end
        self._buffer = bytearray()
        self._preface = preface
        self._block: tuple[int, bytearray, bool] | None = None
        self._messages: dict[int, bytearray] = {}
        self._broken = False

    def feed(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            self._feed(data)
        except (ValueError, KeyError, IndexError, UnicodeDecodeError, TypeError):
            # Never let counting break the traffic: a stream we cannot parse is left uncounted.
            self._broken = True

    def _feed(self, data: bytes) -> None:
        self._buffer += data
        if self._preface:
            if len(self._buffer) < len(_PREFACE):
                return
            del self._buffer[: len(_PREFACE)]
            self._preface = False
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[0:3], "big")
            if len(self._buffer) < 9 + length:
                return
            kind, flags = self._buffer[3], self._buffer[4]
            stream = int.from_bytes(self._buffer[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self._buffer[9 : 9 + length])
            del self._buffer[: 9 + length]
            if kind in (_DATA, _HEADERS) and flags & _PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if kind == _DATA:
                self._data(stream, payload)
            elif kind == _HEADERS:
                if flags & _PRIORITY:
                    payload = payload[5:]
                self._block = (stream, bytearray(payload), bool(flags & _END_STREAM))
                if flags & _END_HEADERS:
                    self._headers_done()
            elif kind == _CONTINUATION and self._block is not None:
                self._block[1].extend(payload)
                if flags & _END_HEADERS:
                    self._headers_done()
            elif kind == _RST_STREAM:
                self._end(stream)
            if kind == _DATA and flags & _END_STREAM:
                self._end(stream)

    def _headers_done(self) -> None:
        assert self._block is not None
        stream, block, ends = self._block
        self._block = None
        if self._decoder is not None and self._on_headers is not None:
            headers = {
                (name.decode() if isinstance(name, bytes) else name): (
                    value.decode() if isinstance(value, bytes) else value
                )
                for name, value in self._decoder.decode(bytes(block))
            }
            self._on_headers(stream, headers)
        if ends:
            self._end(stream)

    def _data(self, stream: int, payload: bytes) -> None:
        buffer = self._messages.setdefault(stream, bytearray())
        buffer += payload
        while len(buffer) >= 5:
            length = int.from_bytes(buffer[1:5], "big")
            if len(buffer) < 5 + length:
                return
            compressed, message = buffer[0], bytes(buffer[5 : 5 + length])
            del buffer[: 5 + length]
            if not compressed:
                self._on_message(stream, message)

    def _end(self, stream: int) -> None:
        self._messages.pop(stream, None)
        if self._on_end:
            self._on_end(stream)


# -- the proxies' process ---------------------------------------------------------


def serve(gcs_port: int, firestore_port: int) -> None:
    """Run the proxies; answer commands on stdin (one per line) with JSON lines on stdout."""
    upstreams = {"gcs": gcs_port, "firestore": firestore_port}
    proxies = {
        name: BillingProxy(upstreams[service], protocol).start()
        for name, (service, protocol) in PROXIES.items()
    }
    reply({name: proxy.port for name, proxy in proxies.items()})
    for line in sys.stdin:
        command = line.strip()
        if command == "snapshot":
            reply({name: proxy.snapshot() for name, proxy in proxies.items()})
        elif command == "reset":
            for proxy in proxies.values():
                proxy.reset_counts()
            reply(None)
        elif command == "stop":
            break
    for proxy in proxies.values():
        proxy.stop()


def reply(value: Any) -> None:
    """One JSON line to the parent (``ChildProxies``)."""
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


@dataclass
class Counts:
    """Requests and billable units seen by each proxy."""

    by_proxy: dict[str, dict[str, int]]

    def side(self, side: str) -> dict[str, int]:
        """``worker`` or ``client``: both services' counts, merged."""
        merged: dict[str, int] = {}
        for name, counts in self.by_proxy.items():
            if name.startswith(side + "."):
                for kind, n in counts.items():
                    merged[kind] = merged.get(kind, 0) + n
        return merged


class Uncounted:
    """``ProxySet``'s stand-in for timed runs: every client reaches the emulators directly.

    The proxies forward each request through a Python process of their own,
    which adds a hop and competes for the machine's CPUs; a run that only
    times leaves them out. Every snapshot is empty.
    """

    def __init__(self, gcs_host: str, firestore_host: str) -> None:
        self._env = {"STORAGE_EMULATOR_HOST": gcs_host, "FIRESTORE_EMULATOR_HOST": firestore_host}

    def env(self, side: str) -> dict[str, str]:
        return dict(self._env)

    def snapshot(self) -> Counts:
        return Counts({})

    def reset(self) -> None:
        pass

    def stop(self) -> None:
        pass


class ChildProxies:
    """Proxies in a child process that answers commands on stdin with JSON lines, its ports first."""

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self.ports: dict[str, int] = {}

    def start(self) -> Self:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._process = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
            start_new_session=True,
        )  # fmt: skip
        self.ports = self._ask(None)
        return self

    def _ask(self, command: str | None) -> Any:
        assert self._process is not None and self._process.stdin and self._process.stdout
        with self._lock:
            if command:
                self._process.stdin.write(command + "\n")
                self._process.stdin.flush()
            line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the proxies ({' '.join(self._argv[1:3])}) exited with {self._process.poll()}")
        return json.loads(line)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        try:
            assert self._process.stdin is not None
            self._process.stdin.write("stop\n")
            self._process.stdin.close()
            self._process.wait(15)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait(5)


class ProxySet(ChildProxies):
    """The four counting proxies, in a child process (``python -m bench.counting``)."""

    def __init__(self, gcs_port: int, firestore_port: int) -> None:
        super().__init__([sys.executable, "-m", "bench.counting", str(gcs_port), str(firestore_port)])

    def env(self, side: str) -> dict[str, str]:
        """What points Google's clients at this side's proxies."""
        return {
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.ports[side + '.gcs']}",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.ports[side + '.firestore']}",
        }

    def snapshot(self) -> Counts:
        return Counts(self._ask("snapshot"))

    def reset(self) -> None:
        self._ask("reset")


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
