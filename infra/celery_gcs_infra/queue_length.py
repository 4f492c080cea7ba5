"""Queue lengths from a TLS Redis whose certificate names its IP only in the CN, served to KEDA over HTTP.

KEDA's own Redis scaler cannot verify Memorystore (docs/security.md); this
small service can. The Worker component ships this file in a ConfigMap and
runs it with the worker image's Python (redis-py is there), one replica per
stack; KEDA's ``metrics-api`` scaler reads ``GET /queues`` inside the cluster.

It verifies the broker the way a browser would if the name were in a SAN:
the chain against the instance's own CA (``BROKER_CA_FILE``) and the server's
name (the address it dials) against the certificate's SANs, or its CN when it
has none, which is exactly what Go refuses to do. It never skips either check.

Standard library and redis-py only: this file runs outside the package.
Environment: ``BROKER_HOST``, ``BROKER_PORT``, ``BROKER_PASSWORD``,
``BROKER_CA_FILE``, ``BROKER_DB``, ``QUEUES`` (comma-separated) and ``PORT``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
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


def lengths(conn: redis.Redis, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each queue, its priority lists included."""
    pipe = conn.pipeline(transaction=False)
    for queue in queues:
        for name in [queue, *(f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS)]:
            pipe.llen(name)
    counts = pipe.execute()
    per = 1 + len(PRIORITY_STEPS)
    return {q: sum(counts[i * per : (i + 1) * per]) for i, q in enumerate(queues)}


def serve(conn: redis.Redis, queues: list[str], port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                body, status = b"ok", 200
            elif self.path == "/queues":
                try:
                    body, status = json.dumps(lengths(conn, queues)).encode(), 200
                except (redis.RedisError, OSError) as exc:
                    body, status = f"broker: {type(exc).__name__}".encode(), 503
            else:
                body, status = b"not found", 404
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
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
