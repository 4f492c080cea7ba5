"""Runs each scenario's Pulumi program once, in parallel subprocesses, and shares the inventories.

The scenarios are in infra_scenarios.py; run_program.py runs one of them.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The program's package (infra/) lives at the repository root, which is not installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from .infra_inventory import Inventory
from .infra_scenarios import HERE, render, scenarios


def run_all(tmp: Path) -> dict[str, dict]:
    """Each scenario in its own process, as many at once as there are cores: the timeout then
    measures one run, not a queue of them on a busy machine."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    specs = scenarios()
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {
            name: pool.submit(render, tmp, name, spec, env) for name, spec in specs.items()
        }
        return {name: future.result() for name, future in futures.items()}


#: pytest-timeout's bound (seconds) for a test that may set up ``runs``: the setup counts toward
#: the first such test's bound, and every scenario's program (29) took 330 s at load 15 here,
#: over the suite's 300 s for one test.
RUNS_BOUND = 1200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).is_relative_to(HERE) and "runs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(RUNS_BOUND))


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


@pytest.fixture(
    scope="session", params=["dev", "prod", "byo", "team", "alpha", "cmek", "shared_vpc"]
)
def any_inventory(request, runs) -> Inventory:
    return _inventory(runs, request.param)
