"""The queue-length service KEDA reads on a Memorystore broker, against a real TLS Redis made like Memorystore.

Redis (Debian's, built with TLS) serves a certificate that names its address
only in the CN, signed by an instance CA of its own: the certificate Go's TLS
rejects. The service verifies it (chain and name), counts each queue with its
priority lists, and refuses a server whose certificate another CA signed or
that names another address.
"""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request

import pytest
import redis
from celery_gcs_infra import queue_length

from ..support import tls_redis

PASSWORD = tls_redis.PASSWORD

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture(scope="module")
def memorystore_like(tmp_path_factory):
    with tls_redis.memorystore_like(tmp_path_factory.mktemp("tls-redis")) as redis_server:
        yield redis_server


def test_counts_each_queue_with_its_priority_lists_over_verified_tls(memorystore_like):
    conn = queue_length.client(
        host="127.0.0.1", port=memorystore_like["port"], password=PASSWORD, ca_file=memorystore_like["ca"]
    )
    conn.delete("celery", "celery\x06\x163", "priority")
    conn.rpush("celery", "a", "b", "c")
    conn.rpush("celery\x06\x163", "d")
    conn.rpush("priority", "e")
    assert queue_length.lengths(conn, ["celery", "priority", "empty"]) == {
        "celery": 4,
        "priority": 1,
        "empty": 0,
    }


def test_a_certificate_from_another_ca_is_refused(memorystore_like):
    conn = queue_length.client(
        host="127.0.0.1", port=memorystore_like["port"], password=PASSWORD, ca_file=memorystore_like["other_ca"]
    )
    with pytest.raises(redis.ConnectionError) as caught:
        conn.ping()
    assert "certificate verify failed" in str(caught.value)


def test_a_certificate_naming_another_server_is_refused(memorystore_like):
    # Signed by the right CA, but the name dialled (localhost) is not the one it carries.
    conn = queue_length.client(
        host="localhost", port=memorystore_like["port"], password=PASSWORD, ca_file=memorystore_like["ca"]
    )
    with pytest.raises(redis.ConnectionError) as caught:
        conn.ping()
    assert "does not name localhost" in str(caught.value)


def test_serves_the_lengths_keda_reads(memorystore_like):
    conn = queue_length.client(
        host="127.0.0.1", port=memorystore_like["port"], password=PASSWORD, ca_file=memorystore_like["ca"]
    )
    conn.delete("jobs")
    conn.rpush("jobs", "x", "y")
    server = queue_length.serve(conn, ["jobs"], 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{base}/queues", timeout=10) as response:
            assert json.loads(response.read()) == {"jobs": 2}
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert response.read() == b"ok"
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            assert 'celery_queue_length{queue="jobs"} 2.0' in response.read().decode()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("cert", "host", "ok"),
    [
        ({"subject": ((("commonName", "10.0.0.3"),),)}, "10.0.0.3", True),
        ({"subject": ((("commonName", "10.0.0.3"),),)}, "10.0.0.4", False),
        # With SANs the CN is not a name, as RFC 6125 says.
        ({"subject": ((("commonName", "10.0.0.3"),),), "subjectAltName": (("DNS", "redis.example"),)}, "10.0.0.3", False),
        ({"subjectAltName": (("IP Address", "10.0.0.3"),)}, "10.0.0.3", True),
        ({"subjectAltName": (("DNS", "Redis.Example"),)}, "redis.example", True),
    ],
)
def test_server_names_come_from_the_sans_else_the_cn(cert, host, ok):
    assert queue_length.matches(host, queue_length.names_in(cert)) is ok


def test_the_standard_host_name_check_refuses_memorystores_certificate(memorystore_like):
    """The premise: a client that checks the name the standard way (as Go does, SANs only) fails."""
    conn = redis.Redis(
        host="127.0.0.1",
        port=memorystore_like["port"],
        password=PASSWORD,
        ssl=True,
        ssl_cert_reqs="required",
        ssl_ca_certs=memorystore_like["ca"],
        ssl_check_hostname=True,
        socket_connect_timeout=5,
    )
    with pytest.raises(redis.ConnectionError) as caught:
        conn.ping()
    assert "certificate verify failed" in str(caught.value)


def test_metrics_give_each_queues_length_and_its_oldest_messages_age(memorystore_like):
    from prometheus_client.parser import text_string_to_metric_families

    conn = queue_length.client(
        host="127.0.0.1", port=memorystore_like["port"], password=PASSWORD, ca_file=memorystore_like["ca"]
    )
    conn.delete("aged", "aged\x06\x166", "idle")
    conn.lpush("aged", "first", "second")  # kombu pushes left: "first" is the oldest
    conn.lpush("aged\x06\x166", "urgent")
    clock = [100.0]
    ages = queue_length.OldestAges(clock=lambda: clock[0])

    def scrape() -> dict[tuple[str, str], float]:
        text = queue_length.exposition(conn, ["aged", "idle"], ages).decode()
        return {
            (sample.name, sample.labels["queue"]): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    assert scrape() == {
        ("celery_queue_length", "aged"): 3.0, ("celery_queue_length", "idle"): 0.0,
        ("celery_queue_oldest_message_age_seconds", "aged"): 0.0,
        ("celery_queue_oldest_message_age_seconds", "idle"): 0.0,
    }  # fmt: skip
    clock[0] = 130.0
    assert scrape()[("celery_queue_oldest_message_age_seconds", "aged")] == 30.0
    conn.rpop("aged")  # a worker takes "first": "second" is the oldest now, first seen just now
    conn.rpop("aged\x06\x166")
    clock[0] = 150.0
    assert scrape()[("celery_queue_oldest_message_age_seconds", "aged")] == 0.0
    clock[0] = 160.0
    assert scrape()[("celery_queue_oldest_message_age_seconds", "aged")] == 10.0
    conn.delete("aged")
    assert scrape()[("celery_queue_oldest_message_age_seconds", "aged")] == 0.0
