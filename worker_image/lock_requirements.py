"""Print the worker's requirements, pinned and hash-checked, from uv.lock.

Run in the project root, with uv on PATH (or --uv)::

    python3 worker_image/lock_requirements.py > requirements.txt

The image's builder stage installs the output with ``uv pip install
--require-hashes`` before it installs the project itself. It holds the
project's runtime dependencies (no extras: nothing of dev, local or infra)
and theirs, plus the packages named with ``--with`` and theirs. The default is
what ``celery[redis]`` (that is, ``kombu[redis]``) adds for the Redis broker:
``redis`` and ``packaging``. The project does not depend on them at runtime
today (the lock has them through its dev extra), so the worker takes them at
the versions and hashes the lock gives them there. Requirements keep the lock's environment markers, so pip or
uv installs exactly what the target Python needs (async-timeout only below
3.11.3, for example). Standard library only: it runs on the bare base image.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

#: What the worker needs beyond the project's runtime dependencies: kombu[redis].
WORKER_PACKAGES = ("redis", "packaging")

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(lock: dict, roots: list[dict]) -> set[str]:
    """Names of the lock's packages that ``roots`` (lock dependency entries) need, extras included."""
    packages = {normalize(p["name"]): p for p in lock["package"]}
    seen: set[tuple[str, str | None]] = set()
    pending = list(roots)
    while pending:
        dependency = pending.pop()
        name = normalize(dependency["name"])
        if name not in packages:
            raise SystemExit(f"lock_requirements.py: {dependency['name']} is not in uv.lock")
        package = packages[name]
        for extra in (None, *dependency.get("extra", [])):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            if extra is None:
                pending.extend(package.get("dependencies", []))
            else:
                pending.extend(package.get("optional-dependencies", {}).get(extra, []))
    return {name for name, _ in seen}


def requirement_blocks(exported: str) -> dict[str, str]:
    """The blocks of a ``uv export`` (a requirement and its ``--hash`` lines), by package name."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in exported.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if current is None:
                raise SystemExit(f"lock_requirements.py: unexpected line in uv export: {line!r}")
            current.append(line)
            continue
        match = _NAME.match(line)
        if match is None:
            raise SystemExit(f"lock_requirements.py: unexpected line in uv export: {line!r}")
        current = blocks.setdefault(normalize(match.group(1)), [])
        current.append(line)
    return {name: "\n".join(lines) for name, lines in blocks.items()}


def requirements(root: Path, uv: str, extra_packages: tuple[str, ...]) -> str:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]
    lock = tomllib.loads((root / "uv.lock").read_text())
    (entry,) = [p for p in lock["package"] if normalize(p["name"]) == normalize(project)]
    roots = [*entry.get("dependencies", []), *({"name": name} for name in extra_packages)]
    needed = closure(lock, roots) - {normalize(project)}
    exported = subprocess.run(
        [uv, "export", "--frozen", "--all-extras", "--no-emit-project", "--no-header", "--no-annotate"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    blocks = requirement_blocks(exported)
    missing = sorted(needed - blocks.keys())
    if missing:
        raise SystemExit(f"lock_requirements.py: uv export left out {', '.join(missing)}")
    return "".join(blocks[name] + "\n" for name in sorted(needed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uv", default="uv", help="the uv executable (default: uv on PATH)")
    parser.add_argument(
        "--root", type=Path, default=Path("."), help="the project root (default: .)"
    )
    parser.add_argument(
        "--with",
        dest="extra",
        action="append",
        help=f"a locked package the worker needs too; repeatable (default: {' '.join(WORKER_PACKAGES)})",
    )
    parser.add_argument(
        "--runtime-only", action="store_true", help="the project's runtime dependencies alone"
    )
    args = parser.parse_args(argv)
    extra = () if args.runtime_only else tuple(args.extra or WORKER_PACKAGES)
    sys.stdout.write(requirements(args.root, args.uv, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
