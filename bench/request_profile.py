"""Client CPU of one GCS PUT, one GCS GET and one Firestore commit, and where it goes.

``python -m bench.request_profile`` (``make bench-requests``) starts the GCS and
Firestore emulators (no proxies in the path), then for each operation and each
variant of it runs ``--calls`` sequential calls, timed (CPU of this process by
``time.process_time``, so gRPC's own threads count too, and wall time), and as
many again under cProfile with a per-thread CPU clock. The profile's own time
is summed by layer (``layer_of``); a frame with no layer of its own (a builtin,
``os.environ``, ``typing``) is charged to the frames that called it.

Variants, all in the same run and in alternating order:

* ``put``/``get``: ``store`` is celery_gcs's ``ResultStore`` as shipped;
  ``library`` is google-cloud-storage's own path with a session as the library
  leaves it (what ``ResultStore`` did before), ``library, environment read
  once`` the same with requests' environment look-ups done once per client;
  ``library, no checksum`` shows what the checksum costs (not adopted).
* ``commit``: ``store`` is ``ChordStore.count`` as shipped (a create of a part
  document and an Increment of its leaf, in one ``WriteBatch.commit``); ``gapic``
  sends the same two writes, built by hand as ``Write`` messages, straight to the
  GAPIC client's ``commit`` (through the Firestore client's private
  ``_firestore_api``): what ``WriteBatch``'s write-building costs. Not adopted.

Writes ``bench/results/request-profile.{json,md}``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import platform
import pstats
import re
import sysconfig
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from celery_gcs import conventions
from celery_gcs.local import services
from celery_gcs.settings import Settings, parse
from celery_gcs.stores import chord_tree, result_store, retry
from celery_gcs.stores.chord_store import ChordStore
from celery_gcs.stores.result_store import ResultStore
from google.cloud import firestore, storage
from google.cloud.firestore_v1.types import common, document, write

RESULTS = Path(__file__).resolve().parent / "results"
#: A stored result as celery_gcs writes one: Celery's meta of a small return value.
PAYLOAD = json.dumps(
    {
        "status": "SUCCESS",
        "result": 42,
        "traceback": None,
        "children": [],
        "date_done": "2026-01-01T00:00:00.000000+00:00",
        "task_id": "6f1c0a5e-6a7e-4d0e-9b1e-2f8f5f0c1a2b",
    }
).encode()

#: Layers by where a frame's code lives; the first match wins. Order matters:
#: storage's media layer lives under google/cloud/storage/_media.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bench", ("/bench/",)),
    ("celery_gcs", ("/celery_gcs/",)),
    ("google.resumable_media", ("/google/cloud/storage/_media/", "/google/resumable_media/")),
    ("google.cloud.storage", ("/google/cloud/storage/",)),
    ("google.cloud.firestore", ("/google/cloud/firestore",)),
    ("google.api_core", ("/google/api_core/",)),
    ("google.auth", ("/google/auth/", "/google/oauth2/")),
    ("requests/urllib3", ("/requests/", "/urllib3/")),
    ("proxy environment (urllib.request, os.environ)", ("/urllib/request.py",)),
    ("http.client/socket", ("/http/client.py", "/socket.py", "/ssl.py", "/email/", "_socket")),
    ("grpc", ("/grpc/", "grpc._cython")),
    ("protobuf", ("/google/protobuf/", "/proto/")),
    ("json", ("/json/",)),
    ("crc32c/hashlib", ("google_crc32c", "_hashlib", "/hashlib.py", "/base64.py")),
)
#: Where the standard library lives: its modules other than those named in LAYERS
#: (urllib.parse, cookiejar, queue, contextlib, typing, ...) are charged to their callers.
_STDLIB = sysconfig.get_paths()["stdlib"] + "/"
OTHER = "other"
_PREFIX = re.compile(r"^.*/(site-packages|backend|lib/python3\.\d+)/")


def layer_of(filename: str, funcname: str = "") -> str | None:
    """A frame's layer from its file (or, for builtins, its name); None: charged to its callers."""
    for layer, markers in LAYERS:
        if any(marker in filename for marker in markers):
            return layer
    if filename == "~":
        # A builtin: its method's owner may say (``<method 'recv_into' of '_socket.socket' objects>``).
        for layer, markers in LAYERS:
            if any(marker in funcname for marker in markers if not marker.startswith("/")):
                return layer
        return None
    if filename.startswith("<") or (filename.startswith(_STDLIB) and "-packages/" not in filename):
        return None
    return OTHER


Func = tuple[str, int, str]  # pstats' key: file, line, name


def own_time_by_layer(stats: Mapping[Func, tuple[Any, ...]]) -> dict[str, float]:
    """Seconds of own time per layer; a frame without a layer passes its time up to its callers.

    ``stats`` is ``pstats.Stats.stats``: for each function (calls, primitive
    calls, own time, cumulative time, {caller: (.., .., own time from that
    caller, ..)}). A pass-through frame's time is split among its callers in
    proportion to the own time each caller's calls spent in it.
    """
    totals: dict[str, float] = defaultdict(float)
    for func, entry in stats.items():
        for layer, seconds in _charged(func, entry[2], stats, frozenset()).items():
            totals[layer] += seconds
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def _charged(
    func: Func, seconds: float, stats: Mapping[Func, tuple[Any, ...]], seen: frozenset[Func]
) -> dict[str, float]:
    layer = layer_of(func[0], func[2])
    if layer is not None:
        return {layer: seconds}
    callers = stats[func][4] if func in stats else {}
    shares = {caller: entry[2] for caller, entry in callers.items() if caller not in seen}
    whole = sum(shares.values())
    if not seconds or not shares or whole <= 0:
        return {OTHER: seconds}
    charged: dict[str, float] = defaultdict(float)
    for caller, share in shares.items():
        for name, part in _charged(caller, seconds * share / whole, stats, seen | {func}).items():
            charged[name] += part
    return charged


def frame_name(func: Func) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    return f"{_PREFIX.sub('', filename)}:{line}({name})"


def top_frames(stats: Mapping[Func, tuple[Any, ...]], key: int, calls: int, n: int) -> list[dict[str, Any]]:
    """The ``n`` frames with most own (key 2) or cumulative (key 3) time, in µs per operation."""
    ranked = sorted(stats.items(), key=lambda item: -item[1][key])
    rows = []
    for func, entry in ranked:
        if layer_of(func[0], func[2]) == "bench":
            continue
        rows.append({"frame": frame_name(func), "layer": layer_of(func[0], func[2]) or "(callers')",
                     "us_per_op": round(entry[key] / calls * 1e6, 1)})  # fmt: skip
        if len(rows) == n:
            break
    return rows


# -- the operations ----------------------------------------------------------------------


@dataclass
class Variant:
    op: str  # put, get, commit
    name: str
    note: str
    call: Callable[[], None]
    cpu_us: list[float] = field(default_factory=list)
    wall_us: list[float] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)


def _names(prefix: str) -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"{prefix}-{n}"


def _library_bucket(settings: Settings, *, environment_once: bool) -> storage.Bucket:
    """google-cloud-storage's client, set up as ResultStore sets it up except where a variant says."""
    return result_store.new_client(settings, environment_once=environment_once).bucket(settings.bucket)


def gcs_variants(settings: Settings) -> list[Variant]:
    policy, timeout = retry.policy(settings.retry_deadline), settings.timeout
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    store = ResultStore(settings)
    stock = _library_bucket(settings, environment_once=False)
    once = _library_bucket(settings, environment_once=True)
    written: list[str] = []

    def library_put(bucket: storage.Bucket, prefix: str, checksum: str | None = "auto") -> Callable[[], None]:
        names = _names(prefix)

        def put() -> None:
            blob = bucket.blob(settings.object_name(next(names)))
            blob.custom_time = expires
            blob.upload_from_string(PAYLOAD, content_type="application/json", if_generation_match=0,
                                    retry=policy, timeout=timeout, checksum=checksum)  # fmt: skip
            written.append(blob.name)

        return put

    def library_get(bucket: storage.Bucket, checksum: str | None = "auto") -> Callable[[], None]:
        def get() -> None:
            blob = bucket.blob(written[len(written) // 2])
            blob.download_as_bytes(retry=policy, timeout=timeout, checksum=checksum)

        return get

    def store_put() -> None:
        names = store_names
        store.put(next(names), PAYLOAD, expires_at=expires, if_generation_match=0,
                  content_type="application/json")  # fmt: skip

    store_names = _names("store")

    def store_get() -> None:
        assert store.get("store-1") is not None

    return [
        Variant("put", "store", "ResultStore.put as shipped", store_put),
        Variant("put", "library", "Blob.upload_from_string, session as the library leaves it",
                library_put(stock, "stock")),
        Variant("put", "library, environment read once",
                "the same, requests' proxy and CA-bundle variables read once per client",
                library_put(once, "once")),
        Variant("put", "library, no checksum", "the same as the last, checksum=None (not adopted)",
                library_put(once, "unchecked", None)),
        Variant("get", "store", "ResultStore.get as shipped", store_get),
        Variant("get", "library", "Blob.download_as_bytes, session as the library leaves it",
                library_get(stock)),
        Variant("get", "library, environment read once",
                "the same, requests' proxy and CA-bundle variables read once per client",
                library_get(once)),
        Variant("get", "library, no checksum", "the same as the last, checksum=None (not adopted)",
                library_get(once, None)),
    ]  # fmt: skip


def commit_variants(settings: Settings, parts: int) -> list[Variant]:
    """``ChordStore.count`` on a chord big enough for every call, and the raw GAPIC commit beside it."""
    store = ChordStore(settings)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    key = f"profile-{uuid.uuid4().hex[:8]}"
    ids = [uuid.uuid4().hex for _ in range(parts)]
    leaves = chord_tree.leaf_count(parts)
    counts = chord_tree.initial_counts(ids, leaves)
    store.create(key, parts, leaves, counts, expires)
    pending = iter(ids)

    def store_count() -> None:
        task = next(pending)
        assert store.count(key, task, chord_tree.leaf_of(task, leaves), expires) is not None

    client = firestore.Client(project=settings.firestore_project, database=settings.firestore_database)
    chord = client.collection(settings.firestore_collection).document(key)
    database = f"projects/{client.project}/databases/{settings.firestore_database}"
    policy, timeout = retry.policy(settings.retry_deadline), settings.timeout

    def gapic_count() -> None:
        task = next(pending)
        leaf = chord_tree.leaf_of(task, leaves)
        part = chord.collection(conventions.FIRESTORE_PARTS_COLLECTION).document(task)
        counter = chord.collection(conventions.FIRESTORE_COUNTERS_COLLECTION).document(leaf.document_id)
        ttl = {conventions.FIRESTORE_TTL_FIELD: document.Value(timestamp_value=expires)}
        increment = write.DocumentTransform.FieldTransform(
            field_path="remaining", increment={"integer_value": -1}
        )
        # The same two writes as ChordStore.count: the part created with its expiry, the
        # leaf's expiry set and its count taken down, only if it exists.
        writes = [
            write.Write(update=document.Document(name=f"{database}/documents/{part.path}", fields=ttl),
                        current_document=common.Precondition(exists=False)),
            write.Write(update=document.Document(name=f"{database}/documents/{counter.path}", fields=ttl),
                        update_mask=common.DocumentMask(field_paths=[conventions.FIRESTORE_TTL_FIELD]),
                        update_transforms=[increment],
                        current_document=common.Precondition(exists=True)),
        ]  # fmt: skip
        response = client._firestore_api.commit(
            request={"database": database, "writes": writes}, metadata=client._rpc_metadata,
            retry=policy, timeout=timeout,
        )  # fmt: skip
        assert response.write_results[1].transform_results[0].integer_value >= 0

    return [
        Variant("commit", "store", "ChordStore.count as shipped (WriteBatch.commit)", store_count),
        Variant("commit", "gapic", "the same writes through FirestoreClient.commit, no WriteBatch (not adopted)",
                gapic_count),
    ]  # fmt: skip


# -- measuring ---------------------------------------------------------------------------


def timed(variant: Variant, calls: int) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        variant.call()
    variant.cpu_us.append((time.process_time() - cpu) / calls * 1e6)
    variant.wall_us.append((time.perf_counter() - wall) / calls * 1e6)


def profiled(variant: Variant, calls: int) -> None:
    # Per-thread CPU: what this thread computes, not the time it waits for an answer.
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    for _ in range(calls):
        variant.call()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    layers = own_time_by_layer(stats)
    total = sum(layers.values())
    variant.profile = {
        "calls": calls,
        "profiled_us_per_op": round(total / calls * 1e6, 1),
        "layers": {name: {"us_per_op": round(s / calls * 1e6, 1), "share": round(s / total, 3)}
                   for name, s in layers.items()},
        "top_own": top_frames(stats, 2, calls, 12),
        "top_cumulative": top_frames(stats, 3, calls, 15),
    }  # fmt: skip


def run(calls: int, rounds: int, warmup: int, workdir: Path) -> dict[str, Any]:
    stack = services.LocalStack(workdir / "stack")
    stack.start(("gcs", "firestore"))
    saved = dict(os.environ)
    os.environ.update(stack.env())
    variables = len(os.environ)
    try:
        settings = parse(f"gcs://{stack.bucket}/request-profile", {})
        # Each commit counts a part of its own: every call of every round needs one.
        parts = (rounds * calls + warmup + calls) * 2 + 100
        variants = gcs_variants(settings) + commit_variants(settings, parts)
        for variant in variants:
            for _ in range(warmup):
                variant.call()
        for n in range(rounds):
            # Alternate the order so that every variant sees the machine's drift alike.
            for variant in variants if n % 2 == 0 else reversed(variants):
                timed(variant, calls)
        for variant in variants:
            profiled(variant, calls)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        stack.stop()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "calls": calls, "rounds": rounds, "warmup": warmup,
        "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        # What requests walked per request before ResultStore read it once.
        "environment_variables": variables,
    }  # fmt: skip
    return {"meta": meta, "variants": [summary(variant) for variant in variants]}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summary(variant: Variant) -> dict[str, Any]:
    data = asdict(variant)
    data.pop("call")
    data["cpu_us_median"] = round(_median(variant.cpu_us), 1)
    data["wall_us_median"] = round(_median(variant.wall_us), 1)
    data["cpu_us"] = [round(v, 1) for v in variant.cpu_us]
    data["wall_us"] = [round(v, 1) for v in variant.wall_us]
    return data


# -- the report --------------------------------------------------------------------------


def markdown(results: dict[str, Any], findings: str = "") -> str:
    meta = results["meta"]
    lines = [
        "# Client CPU per request: one GCS PUT, one GCS GET, one Firestore commit",
        "",
        (
            f"{meta['date']}; Python {meta['python']}, {meta['machine']}; {meta['rounds']} rounds of "
            f"{meta['calls']:,} sequential calls per variant, after {meta['warmup']} warm-up calls; "
            f"emulators on this machine, no proxies; {meta.get('environment_variables', '?')} "
            "environment variables. `make bench-requests` (`python -m bench.request_profile`)."
        ),
        "",
        (
            "CPU is this process's (`time.process_time`: every thread, gRPC's too) per call, median "
            "of the rounds; the emulators' CPU is not in it. Layers are cProfile's per-thread CPU "
            "of the main thread over one more round (the profiler's overhead inflates them; "
            "compare shares, not sums with the CPU column)."
        ),
        "",
        "| op | variant | CPU µs/call | wall µs/call | rounds (CPU µs) |",
        "|---|---|---:|---:|---|",
    ]
    for v in results["variants"]:
        rounds = ", ".join(f"{x:.0f}" for x in v["cpu_us"])
        lines.append(f"| {v['op']} | {v['name']} | {v['cpu_us_median']:.0f} | {v['wall_us_median']:.0f} | {rounds} |")
    lines += ["", "Variants:", ""]
    lines += [f"* {v['op']}, **{v['name']}**: {v['note']}" for v in results["variants"]]
    for v in results["variants"]:
        profile = v["profile"]
        lines += ["", f"## {v['op']}: {v['name']}", "",
                  f"Profiled: {profile['profiled_us_per_op']:.0f} µs of main-thread CPU per call.", "",
                  "| layer | µs/call | share |", "|---|---:|---:|"]  # fmt: skip
        for name, layer in profile["layers"].items():
            if layer["share"] >= 0.005:
                lines.append(f"| {name} | {layer['us_per_op']:.0f} | {layer['share']:.0%} |")
        lines += ["", "Top frames by own time (µs/call): " + "; ".join(
            f"`{row['frame']}` {row['us_per_op']:.0f}" for row in profile["top_own"][:8])]  # fmt: skip
    if findings:
        lines += ["", findings.rstrip()]
    return "\n".join(lines) + "\n"


FINDINGS_FILE = RESULTS / "request-profile-findings.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.request_profile", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per variant per round (default 2,000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per variant (default 3)")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 calls, 1 round")
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory for request-profile.{json,md}")
    args = parser.parse_args(argv)
    calls, rounds = (200, 1) if args.quick else (args.calls, args.rounds)
    with tempfile.TemporaryDirectory(prefix="request-profile-") as workdir:
        results = run(calls, rounds, args.warmup, Path(workdir))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "request-profile.json").write_text(json.dumps(results, indent=2) + "\n")
    findings = FINDINGS_FILE.read_text() if FINDINGS_FILE.exists() else ""
    (args.output / "request-profile.md").write_text(markdown(results, findings))
    for v in results["variants"]:
        print(f"{v['op']:7} {v['name']:34} CPU {v['cpu_us_median']:7.0f} µs  wall {v['wall_us_median']:7.0f} µs")


if __name__ == "__main__":
    main()
