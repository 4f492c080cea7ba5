"""``python -m celery_gcs_infra.check STACK``: a user's own stack config, checked offline before ``pulumi up``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .infra_scenarios import DEV

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "infra" / "examples" / "Pulumi.dev.yaml").read_text())


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Pulumi project as a user has it: Pulumi.yaml, the program, the image's directory with their app."""
    where = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "Pulumi.yaml", where)
    (where / "infra").mkdir()
    shutil.copy(ROOT / "infra" / "__main__.py", where / "infra")
    shutil.copytree(ROOT / "worker_image", where / "worker_image")
    return where


def check(project: Path, stack: str, **config: object) -> subprocess.CompletedProcess[str]:
    values = {**EXAMPLE["config"], **{f"celery-gcs:{k}": v for k, v in config.items()}}
    values = {k: v for k, v in values.items() if v is not None}
    (project / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": values}))
    return subprocess.run(
        [sys.executable, "-m", "celery_gcs_infra.check", stack, "--project-dir", str(project)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_a_stack_that_would_deploy_passes_with_a_summary(project: Path) -> None:
    done = check(project, "dev")
    assert done.returncode == 0, done.stderr
    assert "Pulumi.dev.yaml: the program runs to the end:" in done.stdout
    assert f"result_backend: gcs://acme-celery-dev-{DEV}-results?" in done.stdout
    assert "not checked offline: that the project, quotas and permissions exist on GCP" in done.stdout


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"maxReplica": 3}, "celery-gcs:maxReplica is not a celery-gcs setting. Did you mean maxReplicas?"),
        ({"appDir": "../elsewhere"}, "is not inside the Pulumi project"),
        ({"appDir": "worker_image/no-such-app"}, "'worker_image/no-such-app' is not a directory of the Pulumi project"),
        ({"celeryApp": None}, "celery-gcs:celeryApp is required and not set"),
        ({"minReplicas": "two"}, "celery-gcs:minReplicas is 'two', not a whole number"),
    ],
    ids=["typo", "appdir-outside", "appdir-missing", "missing-key", "not-a-number"],
)
def test_a_problem_is_named_with_its_fix_and_exits_1(project: Path, config: dict, expected: str) -> None:
    done = check(project, "bad", **config)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("Pulumi.bad.yaml: ")
    assert expected in done.stderr


def test_an_encrypted_value_gets_a_stand_in_and_is_said_not_checked(project: Path) -> None:
    done = check(project, "ext", broker="external", brokerUrl={"secure": "v1:AAAAencrypted"})
    assert done.returncode == 0, done.stderr
    assert "not checked offline: the encrypted value of celery-gcs:brokerUrl" in done.stdout


def test_a_stack_without_its_file_says_how_to_make_one(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery_gcs_infra.check", "nosuch", "--project-dir", str(project)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "pulumi stack init nosuch" in done.stderr
