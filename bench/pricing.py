"""List prices of the operations the GCS backends make, and what counted requests cost.

GCS (Standard storage, a region such as europe-west1 or us-east1):
Class A (object inserts, patches, lists) $0.005 per 1,000; Class B (object
and bucket gets, metadata reads) $0.0004 per 1,000; deletes free.
Firestore (Standard edition, multi-region such as eur3 or nam5, the
location of the production stack): document reads $0.06, writes $0.18,
deletes $0.02 per 100,000. A regional Firestore database costs about
half.

Requests answered with an error (a read of a result not stored yet: 404; a
create-only write that lost: 412) are priced as if billed: an upper bound.
GCS's pricing page says operations answered 4xx are generally not charged;
the split is in the counts (``object.read!404``) for anyone who wants it.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Retrieved with the benchmark (stored copies of the pages; their tables
#: are rendered per location, so check them against the live pages).
RETRIEVED = "2026-11-24"

SOURCES = {
    "gcs": (
        "https://cloud.google.com/storage/pricing-examples (Standard storage in a region: "
        "Class A $0.005 per 1,000 operations, Class B $0.0004 per 1,000) and "
        "https://cloud.google.com/storage/pricing#operations-by-class (which calls are Class A, B, free)"
    ),
    "firestore": (
        "https://cloud.google.com/firestore/pricing (multi-region: reads $0.06, writes $0.18, "
        "deletes $0.02 per 100,000 documents; count() bills 1 read per 1,000 index entries)"
    ),
}

#: US dollars per operation.
PRICES = {
    "gcs.class_a": 0.005 / 1_000,
    "gcs.class_b": 0.0004 / 1_000,
    "firestore.read": 0.06 / 100_000,
    "firestore.write": 0.18 / 100_000,
    "firestore.delete": 0.02 / 100_000,
}

#: Request kinds counted by the proxies (celery_gcs.local.proxy.classify_gcs) -> price.
_GCS_CLASS = {
    "object.write": "gcs.class_a",
    "object.patch": "gcs.class_a",
    "object.list": "gcs.class_a",
    "bucket.write": "gcs.class_a",
    "object.read": "gcs.class_b",
    "object.metadata": "gcs.class_b",
    "bucket.read": "gcs.class_b",
    "object.delete": None,  # free
}
_FIRESTORE = {
    "doc.read": "firestore.read",
    "doc.write": "firestore.write",
    "doc.delete": "firestore.delete",
}


def billable(counts: Mapping[str, float]) -> dict[str, float]:
    """Operations by price line: ``gcs.class_a``, ``gcs.class_b``, ``firestore.read``..."""
    lines = dict.fromkeys(PRICES, 0.0)
    for kind, n in counts.items():
        price = _GCS_CLASS.get(kind) or _FIRESTORE.get(kind)
        if price:
            lines[price] += n
    return lines


def cost(counts: Mapping[str, float]) -> float:
    """US dollars for these counted requests."""
    return sum(PRICES[line] * n for line, n in billable(counts).items())
