"""The telemetry modules without their extra say which install brings it, not a bare ModuleNotFoundError."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("celery_gcs.telemetry.metrics", "prometheus_client", "metrics"),
        ("celery_gcs.telemetry.traces", "opentelemetry", "otel"),
    ],
)
def test_a_telemetry_module_without_its_extra_names_the_install(module: str, blocked: str, extra: str) -> None:
    code = f"import sys; sys.modules[{blocked!r}] = None; import {module}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()
    assert last[-2].startswith(f"ModuleNotFoundError: {module} needs celery-gcs's {extra} extra ("), last
    assert blocked in last[-2]
    assert last[-2].endswith("not installed); install it with:")
    assert last[-1].strip().endswith(f"'{ROOT}[{extra}]'")  # from this checkout, as the package came
