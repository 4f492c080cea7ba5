"""``python -m celery_gcs.worker.smoke`` (the stack's post-deploy Job) against the local stack and a real worker.

The Job as the stack renders it runs with podman in tests/image/test_rendered_pods.py.
"""

from __future__ import annotations

import pytest
from celery_gcs.worker import smoke


@pytest.fixture
def run_smoke(monkeypatch, capsys, backend_url):
    """Run the smoke test on the local stack (Celery reads its backend from the environment, as in the Job)."""
    monkeypatch.setenv("CELERY_RESULT_BACKEND", backend_url)

    def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        capsys.readouterr()
        code = smoke.main(list(argv), env=env)
        return code, capsys.readouterr().out

    return run


@pytest.mark.slow  # a worker's start and a chord (about 8 s); make image-test runs the same through the rendered Job
def test_every_check_passes_through_a_running_worker(run_smoke, start_worker):
    start_worker()
    code, out = run_smoke("--timeout", "60")
    assert code == smoke.EXIT_OK, out
    assert [line.split(":")[0] for line in out.splitlines()] == ["PASS resolve", "PASS store", "PASS chord"]
    assert "a chord of 10 on 'celery'" in out


def test_no_worker_on_the_queue_fails_the_chord_naming_the_queue(run_smoke, stack):
    code, out = run_smoke("--timeout", "1", "--parts", "2", env={**stack.env(), "CELERY_QUEUES": "nobody"})
    assert code == smoke.EXIT_FAILED
    assert out.splitlines()[-1].startswith("FAIL chord: a chord of 2 on queue 'nobody' did not complete within 1 s")
    assert "are workers consuming 'nobody'?" in out


def test_an_unreachable_store_fails_first_naming_it(run_smoke, stack):
    code, out = run_smoke(env={**stack.env(), "STORAGE_EMULATOR_HOST": "http://no-such-host.invalid:9"})
    assert code == smoke.EXIT_FAILED
    assert out.splitlines() == [out.splitlines()[0]]
    assert out.startswith("FAIL resolve: gcs: no-such-host.invalid does not resolve")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"gcs": ("storage.googleapis.com", 443), "firestore": ("firestore.googleapis.com", 443)}),
        (
            {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9023", "FIRESTORE_EMULATOR_HOST": "localhost:8086"},
            {"gcs": ("127.0.0.1", 9023), "firestore": ("localhost", 8086)},
        ),
    ],
)
def test_endpoints_are_googles_unless_an_emulator_is_named(env, expected):
    assert smoke.endpoints(env) == expected


def test_an_empty_chord_or_no_time_is_refused_naming_both(capsys):
    with pytest.raises(SystemExit) as caught:
        smoke.main(["--parts", "0"])
    error = capsys.readouterr().err
    assert caught.value.code == 2
    assert "--parts 0 --timeout 300: use at least 1 part and a timeout above 0" in error
