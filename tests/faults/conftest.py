"""Workers for the fault tests run ``tests.faults.tasks``: the end-to-end tasks and a few more."""

from __future__ import annotations

import pytest


@pytest.fixture
def worker_app() -> str:
    return "tests.faults.tasks"
