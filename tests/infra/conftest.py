"""Runs each scenario's Pulumi program once, in parallel subprocesses, and shares the inventories.

The scenarios are in infra_scenarios.py; run_program.py runs one of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The program's package (infra/) lives at the repository root, which is not installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from .infra_inventory import Inventory
from .infra_scenarios import HERE, scenarios


def run_all(tmp: Path) -> dict[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {}
    for name, spec in scenarios().items():
        config_file = tmp / f"{name}.config.json"
        config_file.write_text(json.dumps(spec))
        out_file = tmp / f"{name}.inventory.json"
        procs[name] = (
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "run_program.py"),
                    spec["program"],
                    spec["stack"],
                    str(config_file),
                    str(out_file),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            out_file,
        )
    results = {}
    for name, (proc, out_file) in procs.items():
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{name}: runner failed\n{output}"
        results[name] = json.loads(out_file.read_text())
    return results


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, dict]:
    return run_all(tmp_path_factory.mktemp("pulumi-runs"))


def _inventory(runs: dict, name: str) -> Inventory:
    run = runs[name]
    assert run["error"] is None, f"{name}: program failed\n{run['error']['traceback']}"
    return Inventory(run)


@pytest.fixture(scope="session")
def dev(runs) -> Inventory:
    return _inventory(runs, "dev")


@pytest.fixture(scope="session")
def prod(runs) -> Inventory:
    return _inventory(runs, "prod")


@pytest.fixture(scope="session")
def byo(runs) -> Inventory:
    return _inventory(runs, "byo")


@pytest.fixture(scope="session")
def keda_stack(runs) -> Inventory:
    return _inventory(runs, "keda_stack")


@pytest.fixture(scope="session")
def quiet(runs) -> Inventory:
    return _inventory(runs, "quiet")


@pytest.fixture(scope="session")
def team(runs) -> Inventory:
    return _inventory(runs, "team")


@pytest.fixture(scope="session", params=["dev", "prod", "byo", "team", "alpha", "cmek", "shared_vpc"])
def any_inventory(request, runs) -> Inventory:
    return _inventory(runs, request.param)
