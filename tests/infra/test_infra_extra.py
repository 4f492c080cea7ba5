"""``import celery_gcs_infra`` without the infra extra says which install brings it, not a bare ModuleNotFoundError."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_components_without_pulumi_names_the_install() -> None:
    code = "import sys; sys.modules['pulumi_kubernetes'] = None; import celery_gcs_infra"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()
    assert last[-2] == (
        "ModuleNotFoundError: celery_gcs_infra needs celery-gcs's infra extra (pulumi_kubernetes not installed); "
        "install it with:"
    )
    assert last[-1].strip().endswith(f"'{ROOT}[infra]'")  # from this checkout, as the package came
