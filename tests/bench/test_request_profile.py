"""The request profile's summary: frames grouped into layers, without the stack."""

from __future__ import annotations

import cProfile
import json
import pstats
import sysconfig

import pytest

from bench import request_profile as rp

SITE = "/venv/lib/python3.11/site-packages"
STDLIB = sysconfig.get_paths()["stdlib"]


@pytest.mark.parametrize(
    ("filename", "funcname", "layer"),
    [
        ("/work/backend/celery_gcs/stores/result_store.py", "put", "celery_gcs"),
        (f"{SITE}/google/cloud/storage/blob.py", "upload_from_string", "google.cloud.storage"),
        (f"{SITE}/google/cloud/storage/_media/requests/upload.py", "transmit", "google.resumable_media"),
        (f"{SITE}/google/cloud/firestore_v1/batch.py", "commit", "google.cloud.firestore"),
        (f"{SITE}/google/api_core/retry/retry_unary.py", "retry_target", "google.api_core"),
        (f"{SITE}/google/auth/transport/requests.py", "request", "google.auth"),
        (f"{SITE}/urllib3/connectionpool.py", "urlopen", "requests/urllib3"),
        (f"{SITE}/proto/message.py", "__init__", "protobuf"),
        (f"{SITE}/grpc/_channel.py", "_blocking", "grpc"),
        (f"{STDLIB}/urllib/request.py", "getproxies_environment", "proxy environment (urllib.request, os.environ)"),
        (f"{STDLIB}/http/client.py", "begin", "http.client/socket"),
        (f"{STDLIB}/json/decoder.py", "decode", "json"),
        ("~", "<method 'recv_into' of '_socket.socket' objects>", "http.client/socket"),
        (f"{SITE}/somebody/else.py", "f", rp.OTHER),
        # No layer of their own: charged to whoever called them.
        ("~", "<built-in method builtins.isinstance>", None),
        ("<frozen os>", "__getitem__", None),
        (f"{STDLIB}/typing.py", "__instancecheck__", None),
        (f"{STDLIB}/urllib/parse.py", "urlparse", None),
    ],
)
def test_layer_of(filename: str, funcname: str, layer: str | None) -> None:
    assert rp.layer_of(filename, funcname) == layer


# pstats' shape: func -> (calls, primitive calls, own, cumulative, {caller: (.., .., own, cum)}).
REQUESTS = (f"{SITE}/requests/sessions.py", 1, "request")
STORAGE = (f"{SITE}/google/cloud/storage/blob.py", 1, "upload")
PROXIES = (f"{STDLIB}/urllib/request.py", 1, "getproxies_environment")
ENVIRON = ("<frozen os>", 1, "__getitem__")
ISINSTANCE = ("~", 0, "<built-in method builtins.isinstance>")
ORPHAN = ("~", 0, "<built-in method builtins.len>")


def test_pass_through_time_goes_to_callers_in_proportion() -> None:
    stats = {
        STORAGE: (1, 1, 0.1, 1.0, {}),
        REQUESTS: (1, 1, 0.2, 0.9, {STORAGE: (1, 1, 0.2, 0.9)}),
        PROXIES: (1, 1, 0.05, 0.35, {REQUESTS: (1, 1, 0.05, 0.35)}),
        # os.environ's time is the proxy look-up's, two levels up through isinstance.
        ENVIRON: (1, 1, 0.3, 0.3, {PROXIES: (1, 1, 0.3, 0.3)}),
        # isinstance: called from requests (3 parts) and from storage (1 part).
        ISINSTANCE: (4, 4, 0.4, 0.4, {REQUESTS: (3, 3, 0.3, 0.3), STORAGE: (1, 1, 0.1, 0.1)}),
        ORPHAN: (1, 1, 0.01, 0.01, {}),
    }
    layers = rp.own_time_by_layer(stats)
    assert layers == pytest.approx(
        {
            "google.cloud.storage": 0.1 + 0.1,
            "requests/urllib3": 0.2 + 0.3,
            "proxy environment (urllib.request, os.environ)": 0.05 + 0.3,
            rp.OTHER: 0.01,
        }
    )
    assert sum(layers.values()) == pytest.approx(sum(entry[2] for entry in stats.values()))
    assert next(iter(layers)) == "requests/urllib3"  # largest first


def test_recursion_through_pass_through_frames_ends() -> None:
    a = ("~", 0, "<built-in method builtins.next>")
    b = (f"{STDLIB}/contextlib.py", 1, "__exit__")
    stats = {a: (1, 1, 0.1, 0.2, {b: (1, 1, 0.1, 0.2)}), b: (1, 1, 0.1, 0.2, {a: (1, 1, 0.1, 0.2)})}
    assert rp.own_time_by_layer(stats) == pytest.approx({rp.OTHER: 0.2})


def test_a_real_profile_sums_to_its_own_time_and_renders() -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    json.loads(json.dumps({"x": list(range(1000))}))
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    layers = rp.own_time_by_layer(stats)
    assert layers["json"] > 0
    assert sum(layers.values()) == pytest.approx(sum(entry[2] for entry in stats.values()))
    variant = rp.Variant("put", "store", "a note", lambda: None, cpu_us=[10.0, 12.0, 11.0], wall_us=[20.0, 21.0, 22.0])
    variant.profile = {"calls": 1, "profiled_us_per_op": 5.0,
                       "layers": {"json": {"us_per_op": 5.0, "share": 1.0}},
                       "top_own": rp.top_frames(stats, 2, 1, 3), "top_cumulative": []}  # fmt: skip
    results = {"meta": {"date": "d", "python": "3", "machine": "m", "rounds": 3, "calls": 1, "warmup": 0},
               "variants": [rp.summary(variant)]}  # fmt: skip
    text = rp.markdown(results, "## Findings\n")
    assert "| put | store | 11 | 21 | 10, 12, 11 |" in text
    assert "| json | 5 | 100% |" in text and text.endswith("## Findings\n")
