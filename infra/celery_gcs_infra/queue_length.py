"""Queue lengths from a TLS Redis whose certificate names its IP only in the CN, served to KEDA over HTTP.

KEDA's own Redis scaler cannot verify Memorystore (docs/security.md); this
small service can. The Worker component ships this file in a ConfigMap and
runs it with the worker image's Python (redis-py, prometheus-client and
celery-gcs are there), one replica per stack; KEDA's ``metrics-api`` scaler
reads ``GET /queues`` inside the cluster, and Managed Service for Prometheus
scrapes ``GET /metrics``: each queue's length and its oldest message's age.

It verifies the broker the way a browser would if the name were in a SAN:
the chain against the instance's own CA (``BROKER_CA_FILE``) and the server's
name (the address it dials) against the certificate's SANs, or its CN when it
has none, which is exactly what Go refuses to do. It never skips either check.

This file runs outside the package's tree (from a ConfigMap), with the image's packages.
Environment: ``BROKER_HOST``, ``BROKER_PORT``, ``BROKER_PASSWORD``,
``BROKER_CA_FILE``, ``BROKER_DB``, ``QUEUES`` (comma-separated) and ``PORT``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
from celery_gcs.telemetry import names as metric_names
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from redis.connection import SSLConnection

#: kombu's Redis transport keeps priorities 3, 6 and 9 of a queue in lists of their own.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)


class ServerNameMismatch(ssl.SSLCertVerificationError):
    """The broker's certificate, though signed by its CA, names another server."""


def names_in(cert: dict[str, Any]) -> list[str]:
    """The server names a (verified, parsed) certificate carries: its SANs, else its CN."""
    sans = [value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")]
    if sans:
        return sans
    return [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]


def matches(host: str, names: list[str]) -> bool:
    try:
        wanted: Any = ipaddress.ip_address(host)
    except ValueError:
        return host.lower() in (n.lower() for n in names)
    for name in names:
        try:
            if ipaddress.ip_address(name) == wanted:
                return True
        except ValueError:
            continue
    return False


class VerifiedSSLConnection(SSLConnection):
    """redis-py's TLS connection, chain verified, plus the server-name check redis-py leaves off."""

    def _connect(self):
        sock = super()._connect()
        cert = sock.getpeercert()
        if not cert or not matches(self.host, names_in(cert)):
            sock.close()
            raise ServerNameMismatch(f"the broker's certificate does not name {self.host}")
        return sock


def client(*, host: str, port: int, password: str, ca_file: str, db: int = 0) -> redis.Redis:
    pool = redis.ConnectionPool(
        connection_class=VerifiedSSLConnection,
        host=host,
        port=port,
        db=db,
        password=password or None,
        ssl_cert_reqs="required",
        ssl_ca_certs=ca_file,
        # Checked by VerifiedSSLConnection, against the CN when there is no SAN.
        ssl_check_hostname=False,
        socket_timeout=5,
        socket_connect_timeout=5,
    )
    return redis.Redis(connection_pool=pool)


def _lists(queue: str) -> list[str]:
    return [queue, *(f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS)]


def lengths(conn: redis.Redis, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each queue, its priority lists included."""
    pipe = conn.pipeline(transaction=False)
    for queue in queues:
        for name in _lists(queue):
            pipe.llen(name)
    counts = pipe.execute()
    per = 1 + len(PRIORITY_STEPS)
    return {q: sum(counts[i * per : (i + 1) * per]) for i, q in enumerate(queues)}


class OldestAges:
    """How long each list's oldest message has waited, as this service has seen it.

    kombu pushes on the left and workers pop on the right, so a list's oldest
    message is its last element. A message carries no time it was sent, so its
    age counts from the first poll that found it oldest: short by at most one
    poll (the scrape interval).
    """

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def ages(self, conn: redis.Redis, queues: list[str]) -> dict[str, float]:
        pipe = conn.pipeline(transaction=False)
        for queue in queues:
            for name in _lists(queue):
                pipe.lindex(name, -1)
        oldest = pipe.execute()
        now, per, ages = self._clock(), 1 + len(PRIORITY_STEPS), {}
        with self._lock:
            for i, queue in enumerate(queues):
                found = [self._age(name, message, now) for name, message in zip(_lists(queue), oldest[i * per : (i + 1) * per])]
                ages[queue] = max(found)
        return ages

    def _age(self, name: str, message: bytes | None, now: float) -> float:
        if message is None:
            self._seen.pop(name, None)
            return 0.0
        digest = hashlib.sha256(message).digest()
        seen = self._seen.get(name)
        if seen is None or seen[0] != digest:
            self._seen[name] = (digest, now)
            return 0.0
        return now - seen[1]


def exposition(conn: redis.Redis, queues: list[str], ages: OldestAges) -> bytes:
    """Each queue's length and oldest message's age, in Prometheus' text format."""
    depth = GaugeMetricFamily(metric_names.QUEUE_LENGTH.name, metric_names.QUEUE_LENGTH.help, labels=["queue"])
    age = GaugeMetricFamily(metric_names.QUEUE_OLDEST_AGE.name, metric_names.QUEUE_OLDEST_AGE.help, labels=["queue"])
    for queue, count in lengths(conn, queues).items():
        depth.add_metric([queue], count)
    for queue, seconds in ages.ages(conn, queues).items():
        age.add_metric([queue], seconds)

    class Families:
        def collect(self):
            return [depth, age]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())
    return generate_latest(registry)


def serve(conn: redis.Redis, queues: list[str], port: int) -> ThreadingHTTPServer:
    ages = OldestAges()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            kind = "text/plain"
            if self.path == "/healthz":
                body, status = b"ok", 200
            elif self.path in ("/queues", "/metrics"):
                try:
                    if self.path == "/queues":
                        body, kind = json.dumps(lengths(conn, queues)).encode(), "application/json"
                    else:
                        body, kind = exposition(conn, queues, ages), CONTENT_TYPE_LATEST
                    status = 200
                except (redis.RedisError, OSError) as exc:
                    body, status, kind = f"broker: {type(exc).__name__}".encode(), 503, "text/plain"
            else:
                body, status = b"not found", 404
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # one line per KEDA poll would be noise

    return ThreadingHTTPServer(("", port), Handler)


def main() -> None:
    env = os.environ
    conn = client(
        host=env["BROKER_HOST"],
        port=int(env["BROKER_PORT"]),
        password=env.get("BROKER_PASSWORD", ""),
        ca_file=env["BROKER_CA_FILE"],
        db=int(env.get("BROKER_DB", "0")),
    )
    queues = [q.strip() for q in env["QUEUES"].split(",") if q.strip()]
    serve(conn, queues, int(env.get("PORT", "8080"))).serve_forever()


if __name__ == "__main__":
    main()
