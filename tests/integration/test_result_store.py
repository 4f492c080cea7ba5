"""The result store reads requests' environment once per client, with what a read per request gave.

``ResultStore`` settles the proxy variables when it builds its client rather
than letting requests walk the environment on every request
(``result_store.read_environment_once``): a proxy named there must still
carry the requests, and ``no_proxy`` must still exempt the endpoint.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest
from celery_gcs import TransientError
from celery_gcs.settings import parse
from celery_gcs.stores.result_store import ResultStore

pytestmark = pytest.mark.usefixtures("stack")

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                   "ALL_PROXY", "no_proxy", "NO_PROXY")  # fmt: skip


class RefusingProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy that records each request line and answers 503 (GCS's "try again")."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Refuse)
        self.request_lines: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Refuse(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline().decode("latin-1").strip()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # the headers; a body, if any, is never read
        assert isinstance(self.server, RefusingProxy)
        self.server.request_lines.append(line)
        self.wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RefusingProxy]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    server = RefusingProxy()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _store(stack, prefix: str) -> ResultStore:
    return ResultStore(parse(f"gcs://{stack.bucket}/{prefix}?gcs_retry_deadline=1", {}))


def test_a_proxy_in_the_environment_carries_every_request(stack, prefix, proxy, monkeypatch) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    store = _store(stack, prefix)
    with pytest.raises(TransientError):
        store.put("t-proxied", b"1", expires_at=None, if_generation_match=0)
    with pytest.raises(TransientError):
        store.get("t-proxied")
    emulator = stack.env()["STORAGE_EMULATOR_HOST"]
    methods = {line.split()[0] for line in proxy.request_lines}
    # Absolute URIs to the emulator: the proxy was asked to forward them; retried, so several.
    assert methods == {"POST", "GET"} and len(proxy.request_lines) > 2
    assert all(line.split()[1].startswith(emulator + "/") for line in proxy.request_lines)
    assert stack.gcs.snapshot() == {}


def test_no_proxy_exempts_the_endpoint(stack, prefix, proxy, monkeypatch) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    store = _store(stack, prefix)
    generation = store.put("t-direct", b"1", expires_at=None, if_generation_match=0)
    found = store.get("t-direct")
    assert found is not None and (found.data, found.generation) == (b"1", generation)
    assert proxy.request_lines == []


def test_the_environment_is_read_when_the_client_is_built(stack, prefix, proxy, monkeypatch) -> None:
    store = _store(stack, prefix)
    store.put("t-before", b"1", expires_at=None, if_generation_match=0)
    monkeypatch.setenv("http_proxy", proxy.url)  # too late for this client
    found = store.get("t-before")
    assert found is not None and found.data == b"1"
    assert proxy.request_lines == []
    store.close()  # the next client reads the environment again
    with pytest.raises(TransientError):
        store.get("t-before")
    assert proxy.request_lines
