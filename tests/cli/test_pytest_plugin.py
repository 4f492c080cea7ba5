"""The pytest plugin, used as a user would: a small project of its own, run by pytest in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_conftest() -> str:
    """README's "Testing your own app" conftest.py, verbatim."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Testing your own app") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


TESTS = """
from celery import chord


def test_a_task_and_a_chord_through_an_in_process_worker(celery_app, celery_worker):
    @celery_app.task
    def add(x, y):
        return x + y

    @celery_app.task
    def total(values):
        return sum(values)

    celery_worker.reload()
    assert add.delay(2, 3).get(timeout=30) == 5
    assert chord(add.s(n, n) for n in range(5))(total.s()).get(timeout=60) == 20
    assert celery_app.conf.result_backend.startswith("gcs://")


def test_the_app_fixture_stores_and_reads_results(celery_gcs_app):
    backend = celery_gcs_app.backend
    backend.store_result("t-1", {"ok": True}, "SUCCESS")
    assert backend.get_task_meta("t-1")["result"] == {"ok": True}
"""


#: What the README said before the plugin loaded by itself: it must still work.
OLD_LINE = 'pytest_plugins = ["celery_gcs.local.pytest_plugin", "celery.contrib.pytest"]'


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORAGE_EMULATOR", "FIRESTORE_EMULATOR"))}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", "/dev/null", *args, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("conftest", ["entry point", "old pytest_plugins line"])
def test_a_users_suite_gets_the_local_stack_and_a_configured_app(tmp_path: Path, conftest: str) -> None:
    text = readme_conftest()
    assert "celery_gcs_config" in text and 'pytest_plugins = ["celery.contrib.pytest"]' in text
    if conftest == "old pytest_plugins line":
        text = text.replace('pytest_plugins = ["celery.contrib.pytest"]', OLD_LINE)
    (tmp_path / "conftest.py").write_text(text)
    (tmp_path / "test_user.py").write_text(textwrap.dedent(TESTS))
    done = _pytest(tmp_path, "-q")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout


def test_its_fixtures_are_listed_with_what_they_give(tmp_path: Path) -> None:
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    done = _pytest(tmp_path, "--fixtures")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "celery_gcs_stack [session scope] -- " in text
    assert "The GCS emulator, the Firestore emulator and Redis on free ports, for the whole session." in text
    assert "celery_gcs_config [session scope]" in text and "``broker_url`` and ``result_backend``" in text
    assert "A Celery app configured with ``celery_gcs_config``" in text
