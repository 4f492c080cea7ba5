"""celery_gcs.worker.env: the container's environment, checked at start; pure logic, no stack."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from celery_gcs.worker import env as worker_env
from celery_gcs.worker.env import EnvironmentProblems, WorkerConfig, load, redact


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A complete, valid environment; `json` stands in for an importable app module."""
    return {
        "CELERY_BROKER_URL": "redis://:s3cret@10.0.0.3:6379/0",
        "CELERY_RESULT_BACKEND": "gcs://results-bucket/prefix?gcs_project=proj-1",
        "CELERY_APP": "json",
        "CELERY_GCS_HEALTH_DIR": str(tmp_path / "health"),
    }


def problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(EnvironmentProblems) as caught:
        load(environ)
    return caught.value.problems


def test_a_valid_environment_gives_the_worker_command_and_defaults(env: dict[str, str]) -> None:
    config = load(env)
    assert config == WorkerConfig(
        app="json", result_backend="gcs://results-bucket/prefix?gcs_project=proj-1"
    )
    assert config.argv() == [
        "celery", "--app=json", "worker", "--loglevel=INFO", "--concurrency=auto",
        "--include=celery_gcs.worker.health,celery_gcs.telemetry.metrics",
    ]  # fmt: skip
    assert "s3cret" not in " ".join(config.argv())  # the broker URL stays in the environment


def test_concurrency_queues_and_loglevel(env: dict[str, str]) -> None:
    env.update(CELERY_CONCURRENCY="4", CELERY_QUEUES=" default, emails ", CELERY_LOGLEVEL="warning")
    config = load(env)
    assert config.argv()[3:6] == [
        "--loglevel=WARNING",
        "--concurrency=4",
        "--queues=default,emails",
    ]


def test_the_bucket_project_database_alternative_builds_the_url(env: dict[str, str]) -> None:
    del env["CELERY_RESULT_BACKEND"]
    env.update(
        GCS_BUCKET="results-bucket", GOOGLE_CLOUD_PROJECT="proj-1", FIRESTORE_DATABASE="chords"
    )
    assert (
        load(env).result_backend
        == "gcs://results-bucket?gcs_project=proj-1&firestore_database=chords"
    )
    del env["FIRESTORE_DATABASE"], env["GOOGLE_CLOUD_PROJECT"]
    assert load(env).result_backend == "gcs://results-bucket"


def test_the_shell_code_survives_hostile_values(env: dict[str, str], tmp_path: Path) -> None:
    env["CELERY_RESULT_BACKEND"] = "gcs://results-bucket/it's $(touch pwned) `x`"
    code = load(env).shell()
    script = f'set -- --extra "two words"\n{code}\nprintf "%s\\n" "$CELERY_RESULT_BACKEND" "$@"'
    out = subprocess.run(
        ["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    assert lines[0] == env["CELERY_RESULT_BACKEND"]
    assert lines[1:4] == ["celery", "--app=json", "worker"]
    assert lines[-2:] == ["--extra", "two words"]  # the container command's arguments, appended
    assert not (tmp_path / "pwned").exists()


def test_everything_missing_is_reported_at_once(tmp_path: Path) -> None:
    found = problems({"CELERY_GCS_HEALTH_DIR": str(tmp_path)})
    assert [p.split(" ")[0] for p in found] == ["CELERY_BROKER_URL", "no", "CELERY_APP"]
    assert "CELERY_RESULT_BACKEND=gcs://BUCKET" in found[1] and "GCS_BUCKET" in found[1]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "CELERY_BROKER_URL",
            "redis://:s3cret@host:99999/0",
            "CELERY_BROKER_URL='redis://:***@host:99999/0'",
        ),
        ("CELERY_BROKER_URL", "http://host:6379", "the scheme must be one of redis://"),
        ("CELERY_BROKER_URL", "redis:///0", "it names no host"),
        ("CELERY_BROKER_URL", "redis://host:6379/zero", "the Redis database is a number"),
        (
            "CELERY_RESULT_BACKEND",
            "gs://results-bucket",
            "CELERY_RESULT_BACKEND='gs://results-bucket': malformed",
        ),
        ("CELERY_RESULT_BACKEND", "gcs://Results", "CELERY_RESULT_BACKEND='gcs://Results'"),
        ("CELERY_RESULT_BACKEND", "gcs://results-bucket?gcs_tll=5", "did you mean 'gcs_ttl'"),
        ("GOOGLE_CLOUD_PROJECT", "my project", "GOOGLE_CLOUD_PROJECT='my project'"),
        ("CELERY_APP", "proj/celery.py", "CELERY_APP='proj/celery.py' is not a module path"),
        ("CELERY_APP", "no_such_app_module.celery", "no module named 'no_such_app_module'"),
        ("CELERY_CONCURRENCY", "0", "CELERY_CONCURRENCY='0' must be a whole number"),
        ("CELERY_CONCURRENCY", "two", "CELERY_CONCURRENCY='two'"),
        ("CELERY_QUEUES", "a,,b", "CELERY_QUEUES='a,,b' must be queue names"),
        ("CELERY_QUEUES", "a b", "CELERY_QUEUES='a b'"),
        ("CELERY_LOGLEVEL", "loud", "CELERY_LOGLEVEL='loud' must be one of DEBUG"),
        (
            "CELERY_GCS_HEARTBEAT_INTERVAL",
            "0",
            "CELERY_GCS_HEARTBEAT_INTERVAL='0' must be a number",
        ),
        (
            "CELERY_GCS_HEALTH_DIR",
            "/proc/no/such/dir",
            "CELERY_GCS_HEALTH_DIR='/proc/no/such/dir' is not a writable",
        ),
    ],
)
def test_a_malformed_variable_is_named_with_its_fix(
    env: dict[str, str], name: str, value: str, expected: str
) -> None:
    env[name] = value
    found = problems(env)
    assert len(found) == 1, found
    assert expected in found[0]
    assert "s3cret" not in found[0]


def test_backend_ambiguities_are_errors(env: dict[str, str]) -> None:
    assert problems({**env, "GCS_BUCKET": "other-bucket"}) == [worker_env.E_BACKEND_BOTH]
    (found,) = problems({**env, "FIRESTORE_DATABASE": "chords"})
    assert (
        "FIRESTORE_DATABASE is only read with GCS_BUCKET" in found
        and "firestore_database=chords" in found
    )
    del env["CELERY_RESULT_BACKEND"]
    (found,) = problems({**env, "GCS_BUCKET": "results-bucket", "FIRESTORE_DATABASE": "Chords!"})
    assert found.startswith("FIRESTORE_DATABASE='Chords!'")


def test_redact_hides_only_the_password() -> None:
    assert redact("redis://user:pw@host:6379/1") == "redis://user:***@host:6379/1"
    assert redact("redis://host:6379/1") == "redis://host:6379/1"


def test_main_prints_the_report_and_exits_78(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    for name in worker_env.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CELERY_GCS_HEALTH_DIR", str(tmp_path))
    assert worker_env.main() == worker_env.EX_CONFIG
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        err.startswith("celery-gcs worker: cannot start")
        and "  - CELERY_BROKER_URL is not set" in err
    )


def test_main_prints_shell_code(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert worker_env.main() == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "export CELERY_RESULT_BACKEND=" + shlex.quote(
        env["CELERY_RESULT_BACKEND"]
    )
    assert out.splitlines()[1].startswith(
        "set -- celery --app=json worker "
    ) and out.rstrip().endswith('"$@"')


def test_metrics_are_on_by_default_and_off_with_one_variable(env: dict[str, str]) -> None:
    assert load({**env, "CELERY_GCS_METRICS_PORT": "off"}).argv()[-1] == "--include=celery_gcs.worker.health"
    assert load({**env, "CELERY_GCS_METRICS_PORT": "9100"}).metrics


def test_a_bad_metrics_port_is_named(env: dict[str, str]) -> None:
    assert problems({**env, "CELERY_GCS_METRICS_PORT": "99999"}) == [
        "CELERY_GCS_METRICS_PORT='99999' must be a port number from 1 to 65535, or off (no metrics)"
    ]
