"""How to add an extra to this environment, from wherever celery-gcs was installed.

No release is on PyPI, so ``pip install 'celery-gcs[cli]'`` would fetch
nothing (or a stranger's package, should someone take the name). The line
given instead installs the extra from the same place as the installed
package: the checkout (editable or not), the wheel file, or the URL, as its
``direct_url.json`` (PEP 610) records it; with the installer that put it
there (uv's environments have no pip) and this environment's Python.
Standard library only: the CLI, the pytest plugin and ``celery_gcs_infra``
call it before their extras' packages can be imported.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

DISTRIBUTION = "celery-gcs"


def install_line(extras: Sequence[str]) -> str:
    """The command that adds ``extras`` to the running environment, from where celery-gcs came from."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree on sys.path
        return install_command(extras, direct_url=None, installer="pip", python=sys.executable)
    raw = dist.read_text("direct_url.json")
    return install_command(
        extras,
        direct_url=json.loads(raw) if raw else None,
        installer=(dist.read_text("INSTALLER") or "pip").strip(),
        python=sys.executable,
    )


def require_extra(extra: str, modules: Sequence[str], needed_by: str) -> None:
    """Raise, naming the extra and the line that installs it, unless every module in ``modules`` can be imported.

    For modules that need an extra's packages: without this, a bare
    ``ModuleNotFoundError`` of some third-party name is all a user would see.
    """
    missing = [name for name in modules if not _importable(name)]
    if missing:
        raise ModuleNotFoundError(
            f"{needed_by} needs celery-gcs's {extra} extra ({', '.join(missing)} not installed); "
            f"install it with:\n  {install_line([extra])}",
            name=missing[0],
        )


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package of a dotted name is missing
        return False


def install_command(
    extras: Sequence[str], *, direct_url: Mapping[str, Any] | None, installer: str, python: str
) -> str:
    """``install_line`` from what the package's metadata says (pure, for the tests)."""
    wanted = f"[{','.join(extras)}]"
    tool = f"uv pip install --python {shlex.quote(python)}" if installer == "uv" else f"{shlex.quote(python)} -m pip install"
    if direct_url is None:  # from an index
        return f"{tool} {shlex.quote(DISTRIBUTION + wanted)}"
    url = str(direct_url.get("url", ""))
    if url.startswith("file://"):
        path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        editable = (direct_url.get("dir_info") or {}).get("editable", False)
        return f"{tool} {'-e ' if editable else ''}{shlex.quote(path + wanted)}"
    vcs = direct_url.get("vcs_info")
    if vcs:
        commit = vcs.get("requested_revision") or vcs.get("commit_id")
        url = f"{vcs['vcs']}+{url}" + (f"@{commit}" if commit else "")
    return f"{tool} {shlex.quote(f'{DISTRIBUTION}{wanted} @ {url}')}"
