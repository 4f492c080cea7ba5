"""A TLS Redis made like Memorystore: its certificate names its address only in the CN, signed by a CA of its own.

``memorystore_like(directory)`` starts one on 127.0.0.1 with an AUTH string and
yields its port and the PEM files (its CA, another CA, its certificate and
key). Go's TLS, and any client checking names the standard way, rejects that
certificate; the stack's workers and queue-length service verify the chain
(``ssl_check_hostname=false``, docs/security.md). Used by the queue-length
service's tests (tests/infra) and the rendered pods run with podman (tests/image).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from celery_gcs.local.processes import free_port, port_open, spawn, stop_group
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PASSWORD = "auth-string"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, obj) -> str:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            obj.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    path.chmod(0o644)
    return str(path)


@contextmanager
def memorystore_like(d: Path) -> Iterator[dict]:
    """A TLS Redis whose certificate carries 127.0.0.1 only in its CN: its port, its CA, another CA."""
    ca_key, other_key, server_key = _key(), _key(), _key()
    ca = _cert("Google Cloud Memorystore Redis Server CA", ca_key, "Google Cloud Memorystore Redis Server CA", ca_key, ca=True)
    other = _cert("Some other CA", other_key, "Some other CA", other_key, ca=True)
    server = _cert("127.0.0.1", server_key, ca.subject.rfc4514_string()[3:], ca_key, ca=False)
    files = {
        "ca": _pem(d / "ca.pem", ca),
        "other_ca": _pem(d / "other.pem", other),
        "cert": _pem(d / "server.pem", server),
        "key": _pem(d / "server.key", server_key),
    }
    assert not [e for e in server.extensions if isinstance(e.value, x509.SubjectAlternativeName)]
    port = free_port()
    proc = spawn(
        [
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", files["cert"], "--tls-key-file", files["key"],
            "--tls-ca-cert-file", files["ca"], "--tls-auth-clients", "no",
            "--requirepass", PASSWORD, "--save", "", "--appendonly", "no",
        ],
        log_path=d / "redis.log",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_open(port), (d / "redis.log").read_text()
        yield {"port": port, "password": PASSWORD, **files}
    finally:
        stop_group(proc.pid, reap=proc.poll)
