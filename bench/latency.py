"""Production-like latency: proxies that hold each answer as long as GCS or Firestore would take.

The emulators answer in well under a millisecond on loopback; in production a
worker on GKE waits tens of milliseconds for each GCS request and Firestore
RPC, and with ``-c 16`` it overlaps many of them. ``make bench`` runs its
workloads a second time through these proxies, with workers at ``-c 16``, so
that its ratios show what the local ones cannot: how much of a task's time is
spent waiting on the network, and how much of it a backend overlaps.

One pair of proxies (``celery_gcs.local.proxy.Proxy``) in a child process
(``python -m bench.latency GCS_PORT FIRESTORE_PORT MODEL_JSON``), so that
holding answers never competes with the client for the GIL. Each request or
RPC has its answer held for the model's seconds for its kind; others go on
meanwhile (gRPC: other streams on the same connection; HTTP/1.1: other
connections). The Redis broker and Celery's Redis result backend go through
plain TCP proxies of their own that hold every chunk half the model's
``redis`` round trip each way, as Memorystore in the same region would
(every backend pays it on the broker; Redis's backend on its results too).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from celery_gcs.local.proxy import Proxy

from .counting import ChildProxies, Counts, reply

#: A rank range no run reaches: the rule holds every matching call.
_EVERY_CALL = range(1, 10**12)

#: Seconds each answer is held, by kind: the model's assumed one-region figures for a
#: worker on GKE and a regional bucket / Firestore database in the same region (see
#: SOURCES). ``--latency KIND=MS,...`` overrides them.
MODEL: dict[str, float] = {
    "gcs.write": 0.040,  # an object upload (one multipart POST)
    "gcs.read": 0.020,  # a download, a metadata read, a 404
    "gcs.delete": 0.025,
    "gcs.other": 0.025,  # listings, bucket reads
    "firestore.Commit": 0.025,  # a write (a transaction's too) is replicated before it answers
    "firestore.BeginTransaction": 0.010,
    "firestore.Rollback": 0.010,
    "firestore.BatchGetDocuments": 0.012,
    "firestore.RunQuery": 0.015,
    "firestore.RunAggregationQuery": 0.015,
    "firestore.GetDocument": 0.012,
    "redis": 0.001,  # a round trip to Memorystore from a GKE node in the same region
}

#: Where the model's figures come from, for the report.
SOURCES = (
    "Assumed one-region round trips, not measured here (no GCP access from this machine): "
    "tens of milliseconds for a small GCS object write and about half that for a read, as "
    "public same-region measurements of small objects report (e.g. "
    "https://medium.com/@duhroach/google-cloud-storage-performance-4cfcec8bad72); Google "
    "contrasts its sub-millisecond zonal Rapid Storage with 'significantly' slower regional "
    "classes (https://cloud.google.com/storage/docs/rapid/rapid-bucket). Firestore commits a "
    "write only after replicating it, every write being a transaction "
    "(https://firebase.google.com/docs/firestore/understand-reads-writes-scale); a commit is "
    "taken as 25 ms and a read as about half. Redis (the broker, and Celery's Redis backend) is "
    "given a 1 ms round trip: Memorystore promises 'sub-millisecond data access' "
    "(https://cloud.google.com/memorystore/docs/redis) to a client in its zone, and a GKE node "
    "in another zone of the same region (a region's zones are separate data centers, "
    "https://cloud.google.com/docs/geography-and-regions) adds a fraction of a millisecond. "
    "Override with `python -m bench --latency gcs.write=60,firestore.Commit=40` (milliseconds)."
)

#: The proxy rules of each kind: (protocol, call patterns). The first rule a call matches holds it.
_GCS_CALLS = {
    "gcs.write": ("POST /upload/.*",),
    "gcs.read": ("GET /download/.*", "GET /(storage/v1/)?b/[^/]+/o/.+"),
    "gcs.delete": ("DELETE /.*",),
    "gcs.other": ("GET /.*", "POST /.*", "PATCH /.*", "PUT /.*"),
}
_FIRESTORE_SERVICE = "google.firestore.v1.Firestore"


def parse_overrides(text: str) -> dict[str, float]:
    """``KIND=MS,...`` as seconds by kind; an unknown kind or a bad number is an error naming it."""
    model: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, sep, value = item.partition("=")
        kind = kind.strip()
        if not sep or kind not in MODEL:
            raise ValueError(
                f"--latency {item!r}: give KIND=MILLISECONDS with KIND one of {', '.join(MODEL)}"
            )
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if not 0 <= ms < 60_000:
            raise ValueError(f"--latency {item!r}: milliseconds must be a number from 0 to 60000")
        model[kind] = ms / 1000
    return model


def rules(model: dict[str, float]) -> list[tuple[str, str, float]]:
    """(proxy, call pattern, seconds) for every kind, in the order the proxies match them."""
    found = [
        ("gcs", call, model[kind]) for kind, calls in _GCS_CALLS.items() for call in calls
    ]
    found += [
        ("firestore", f"{_FIRESTORE_SERVICE}/{kind.split('.', 1)[1]}", seconds)
        for kind, seconds in model.items()
        if kind.startswith("firestore.")
    ]
    return found


def serve(gcs_port: int, firestore_port: int, model: dict[str, float], redis_ports: dict[str, int]) -> None:
    """Run the proxies until told to stop (``ChildProxies``' protocol); their ports first.

    ``redis_ports``: the Redis servers (``broker``, ``result-redis``) to proxy with the
    model's ``redis`` round trip, half of it each way.
    """
    proxies = {
        "gcs": Proxy(gcs_port, "http1").start(),
        "firestore": Proxy(firestore_port, "grpc").start(),
    }
    for name, call, seconds in rules(model):
        proxies[name].delay(call, seconds, calls=_EVERY_CALL)
    for name, port in redis_ports.items():
        proxies[name] = Proxy(port, "tcp").start()
        proxies[name].faults.latency = model.get("redis", 0.0) / 2
    reply({name: proxy.port for name, proxy in proxies.items()})
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    for proxy in proxies.values():
        proxy.stop()


class LatencyProxies(ChildProxies):
    """The proxies' child process (``python -m bench.latency``); nothing is counted."""

    def __init__(
        self, gcs_port: int, firestore_port: int, model: dict[str, float], redis_ports: dict[str, int] | None = None
    ) -> None:
        self.model = dict(model)
        argv = [
            sys.executable, "-m", "bench.latency", str(gcs_port), str(firestore_port), json.dumps(self.model),
            json.dumps(redis_ports or {}),
        ]  # fmt: skip
        super().__init__(argv)

    def redis_url(self, name: str, port: int) -> str:
        """The URL of Redis server ``name`` (``broker``, ``result-redis``) through its proxy."""
        return f"redis://127.0.0.1:{self.ports.get(name, port)}/0"

    def env(self, side: str) -> dict[str, str]:
        """What points Google's clients (the worker's and the client's alike) at the proxies."""
        return {
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.ports['gcs']}",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.ports['firestore']}",
        }

    def snapshot(self) -> Counts:
        return Counts({})

    def reset(self) -> None:
        pass


def describe(model: dict[str, float]) -> dict[str, Any]:
    """The model as the summary records it: milliseconds by kind, and where they come from."""
    return {"ms": {kind: round(seconds * 1000, 3) for kind, seconds in model.items()}, "sources": SOURCES}


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4]))
