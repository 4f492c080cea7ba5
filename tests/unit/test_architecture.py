"""The architecture's import rules in pyproject.toml ([tool.importlinter]) hold, and catch what they should.

The runtime (everything but ``cli``, ``local`` and ``worker``) imports none
of those rooms nor the extras' packages, and its modules form no cycle; the
worker image's helpers import neither the CLI nor the local stack; the local
stack imports nothing from the CLI; waiting imports no store; the chord
coordinator imports no backend; telemetry (``telemetry``, prometheus-client,
OpenTelemetry) reaches the runtime only through ``observe``'s observers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(package_root: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=package_root, env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A copy of the package, beside a copy of the contract, to plant violations in."""
    shutil.copytree(ROOT / "backend" / "celery_gcs", tmp_path / "celery_gcs")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_the_contract() -> None:
    done = lint_imports(ROOT / "backend", ROOT / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_every_runtime_module_is_under_the_contract() -> None:
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    package = ROOT / "backend" / "celery_gcs"
    runtime = {f"celery_gcs.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    runtime |= {f"celery_gcs.{p.name}" for p in package.iterdir() if (p / "__init__.py").exists()}
    runtime -= {"celery_gcs.cli", "celery_gcs.local", "celery_gcs.worker", "celery_gcs.telemetry"}
    assert runtime == set(contract["source_modules"])


def test_a_runtime_module_importing_the_cli_breaks_the_contract(planted: Path) -> None:
    settings = planted / "celery_gcs" / "settings.py"
    settings.write_text(settings.read_text() + "\nfrom .cli import main as _cli  # planted\n")
    done = lint_imports(planted, planted / "pyproject.toml")
    assert done.returncode == 1
    assert "celery_gcs.settings -> celery_gcs.cli.main" in done.stdout


def test_a_runtime_module_importing_rich_breaks_the_contract(planted: Path) -> None:
    store = planted / "celery_gcs" / "stores" / "result_store.py"
    store.write_text(store.read_text() + "\nimport rich  # planted\n")
    done = lint_imports(planted, planted / "pyproject.toml")
    assert done.returncode == 1
    assert "celery_gcs.stores.result_store -> rich" in done.stdout


def test_the_worker_image_helpers_importing_the_local_stack_break_the_contract(planted: Path) -> None:
    health = planted / "celery_gcs" / "worker" / "health.py"
    health.write_text(health.read_text() + "\nfrom ..local import processes as _processes  # planted\n")
    done = lint_imports(planted, planted / "pyproject.toml")
    assert done.returncode == 1
    assert "celery_gcs.worker.health -> celery_gcs.local.processes" in done.stdout


def test_an_import_cycle_in_the_runtime_breaks_the_contract(planted: Path) -> None:
    keys = planted / "celery_gcs" / "keys.py"
    keys.write_text(keys.read_text() + "\nfrom . import backend as _backend  # planted\n")
    done = lint_imports(planted, planted / "pyproject.toml")
    assert done.returncode == 1
    assert "No import cycle in the runtime BROKEN" in done.stdout


def test_every_module_opens_with_a_one_line_docstring_of_its_concern() -> None:
    import ast

    rooms = [ROOT / "backend", ROOT / "infra", ROOT / "bench", ROOT / "tests"]
    missing = []
    for path in sorted(p for room in rooms for p in room.rglob("*.py")):
        if "venv" in path.relative_to(ROOT).parts:
            continue  # the policy pack's own virtualenv, which the Pulumi CLI makes in infra/policy
        source = path.read_text()
        if path.name == "__init__.py" and not source.strip():
            continue  # an empty package marker has no concern to state
        docstring = ast.get_docstring(ast.parse(source))
        first = (docstring or "").split("\n\n")[0]
        if not docstring or "\n" in first:
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []


def test_waiting_importing_a_store_breaks_the_contract(planted: Path) -> None:
    waiting = planted / "celery_gcs" / "waiting.py"
    waiting.write_text(waiting.read_text() + "\nfrom .stores import result_store as _store  # planted\n")
    done = lint_imports(planted, planted / "pyproject.toml")
    assert done.returncode == 1
    assert "celery_gcs.waiting is not allowed to import celery_gcs.stores" in done.stdout


def test_the_chord_coordinator_importing_the_backend_breaks_the_contract(planted: Path) -> None:
    chords = planted / "celery_gcs" / "chords.py"
    chords.write_text(chords.read_text() + "\nfrom . import backend as _backend  # planted\n")
    done = lint_imports(planted, planted / "pyproject.toml")
    assert done.returncode == 1
    assert "celery_gcs.chords is not allowed to import celery_gcs.backend" in done.stdout


def test_a_store_importing_a_telemetry_library_breaks_the_contract(planted: Path) -> None:
    """Metrics and traces reach the runtime only through celery_gcs.observe's observers."""
    store = planted / "celery_gcs" / "stores" / "chord_store.py"
    store.write_text(store.read_text() + "\nimport prometheus_client  # planted\n")
    done = lint_imports(planted, planted / "pyproject.toml")
    assert done.returncode == 1
    assert "celery_gcs.stores.chord_store -> prometheus_client" in done.stdout
