"""The line that installs a missing extra names where celery-gcs came from, never an unpublished PyPI name."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from celery_gcs.install import install_command, install_line

PY = "/env/bin/python"


@pytest.mark.parametrize(
    ("direct_url", "installer", "expected"),
    [
        (None, "pip", "/env/bin/python -m pip install 'celery-gcs[cli]'"),
        ({"url": "file:///src/celery-gcs", "dir_info": {"editable": True}}, "uv",
         "uv pip install --python /env/bin/python -e '/src/celery-gcs[cli]'"),
        ({"url": "file:///src/my%20checkout", "dir_info": {}}, "pip",
         "/env/bin/python -m pip install '/src/my checkout[cli]'"),
        ({"url": "file:///tmp/dist/celery_gcs-0.1.0-py3-none-any.whl", "archive_info": {}}, "pip",
         "/env/bin/python -m pip install '/tmp/dist/celery_gcs-0.1.0-py3-none-any.whl[cli]'"),
        ({"url": "https://github.com/celery-gcs/celery-gcs", "vcs_info": {"vcs": "git", "commit_id": "abc123"}}, "pip",
         "/env/bin/python -m pip install 'celery-gcs[cli] @ git+https://github.com/celery-gcs/celery-gcs@abc123'"),
    ],
)  # fmt: skip
def test_the_install_line_names_where_the_package_came_from(direct_url, installer: str, expected: str) -> None:
    assert install_command(["cli"], direct_url=direct_url, installer=installer, python=PY) == expected


def test_in_this_checkouts_environment_it_names_this_checkout() -> None:
    root = Path(__file__).resolve().parents[2]
    words = shlex.split(install_line(["cli", "local"]))
    assert words[-1] == f"{root}[cli,local]"  # `make venv` installs the checkout, editable
    assert "celery-gcs[cli,local]" not in words


def test_no_doc_tells_users_to_install_the_unpublished_pypi_name() -> None:
    """README, docs/ and the modules' docstrings install the extras from a checkout (or its wheel), as the hint does."""
    root = Path(__file__).resolve().parents[2]
    said_by_name = re.compile(r"pip install ['\"]?celery-gcs\[")
    code = [*(root / "backend" / "celery_gcs").rglob("*.py"), *(root / "infra" / "celery_gcs_infra").rglob("*.py")]
    files = [root / "README.md", *(root / "docs").glob("*.md"), *code]
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in files
        if path.name != "install.py"  # which says why that line would not work
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if said_by_name.search(line)
    ]
    assert found == []
