"""Celery's integration tests, from the sdist of the celery version that ``uv.lock`` pins.

The sdist is fetched with pip, as the package index serves it, checked
against the hash in ``uv.lock``, and cached. Only ``t/`` and the sdist's
``pyproject.toml`` are extracted: the latter holds the suite's pytest
settings (``python_classes = "test_*"``, its markers, strict xfail); the
sdist's ``celery/`` is left out so the tests import the installed celery.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

E_NOT_LOCKED = "celery is not in {lock}: run `uv lock`"
E_HASH = "{path} does not match the sha256 in uv.lock ({expected}); delete it and run again"


@dataclass(frozen=True)
class Locked:
    """The locked celery: its version and its sdist's sha256."""

    version: str
    sha256: str


def locked_celery(lock: Path) -> Locked:
    for package in tomllib.loads(lock.read_text())["package"]:
        if package["name"] == "celery":
            algorithm, _, digest = package["sdist"]["hash"].partition(":")
            assert algorithm == "sha256", package["sdist"]["hash"]
            return Locked(package["version"], digest)
    raise SystemExit(E_NOT_LOCKED.format(lock=lock))


def fetch_sdist(locked: Locked, cache: Path) -> Path:
    """The sdist, from the cache or downloaded into it by pip, checked against the lock."""
    path = cache / f"celery-{locked.version}.tar.gz"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        # Downloaded beside the cache and renamed in: two runs at once (CI runs both
        # emulators together) never read a half-written sdist.
        with tempfile.TemporaryDirectory(dir=cache) as download:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", f"celery=={locked.version}",
                 "--no-binary", ":all:", "--no-deps", "--quiet", "--dest", download],
                check=True,
            )  # fmt: skip
            os.replace(Path(download) / path.name, path)
    if hashlib.sha256(path.read_bytes()).hexdigest() != locked.sha256:
        raise SystemExit(E_HASH.format(path=path, expected=locked.sha256))
    return path


def extract_suite(sdist: Path, into: Path) -> Path:
    """``t/`` and ``pyproject.toml`` of the sdist under ``into``; returns the suite's root."""
    root = into / sdist.name.removesuffix(".tar.gz")  # the sdist's top directory
    if (root / "t" / "integration" / "conftest.py").exists():
        return root
    # Extracted beside the cache and renamed in whole, for runs at once as above; the
    # run that renames second finds the suite there and drops its own copy.
    with tempfile.TemporaryDirectory(dir=into) as scratch, tarfile.open(sdist) as archive:
        top = archive.getmembers()[0].name.split("/")[0]
        wanted = [
            member
            for member in archive.getmembers()
            if member.name == f"{top}/pyproject.toml" or member.name.startswith(f"{top}/t/")
        ]
        archive.extractall(scratch, members=wanted, filter="data")
        try:
            os.rename(Path(scratch) / top, into / top)
        except OSError:
            if not (into / top / "t" / "integration" / "conftest.py").exists():
                raise
    return into / top
