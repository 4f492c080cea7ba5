"""Workers for the fault tests run ``tests.support.fault_tasks``: the end-to-end tasks and a few more."""

from __future__ import annotations

import pytest

from ..support import fault_tasks


@pytest.fixture
def worker_app() -> str:
    return fault_tasks.__name__
