"""The entrypoint, installed in a virtualenv from the lock as in the image, runs real workers on the local stack."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

from celery import chord

from .support import APP, APP_DIR, ENTRYPOINT, wait_for

ACKS_LATE = {"task_acks_late": True, "task_track_started": True}


def send(app, name: str, *args):
    return app.send_task(f"{APP}.{name}", args=args)


def started(result) -> bool:
    return result.state == "STARTED"


def test_a_bad_environment_stops_at_start_naming_each_variable(
    runtime_bin: Path, tmp_path: Path
) -> None:
    env = {
        "PATH": f"{runtime_bin}:/usr/bin:/bin",
        "CELERY_RESULT_BACKEND": "gcs://results-bucket",
        "CELERY_APP": APP,
        "PYTHONPATH": str(APP_DIR),
        "CELERY_CONCURRENCY": "many",
        "CELERY_GCS_HEALTH_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [ENTRYPOINT, "worker"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 78
    assert "CELERY_BROKER_URL is not set" in done.stderr
    assert "CELERY_CONCURRENCY='many' must be a whole number" in done.stderr
    assert done.stdout == ""  # Celery never started


def test_other_commands_run_as_given_without_the_worker_checks(runtime_bin: Path) -> None:
    env = {"PATH": f"{runtime_bin}:/usr/bin:/bin"}
    done = subprocess.run(
        [ENTRYPOINT, "python", "-c", "import celery_gcs.worker.health, redis; print('ok')"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr


def test_the_worker_runs_a_chord_and_its_probes_follow_it(start_entrypoint, make_app) -> None:
    worker = start_entrypoint()
    # The shell exec'd Celery: the signal Kubernetes sends reaches the worker itself.
    argv = worker.cmdline()
    assert argv[1].endswith("/celery") and "worker" in argv and not argv[0].endswith("sh"), argv
    assert "--include=celery_gcs.worker.health,celery_gcs.telemetry.metrics" in argv

    assert [worker.probe(kind).returncode for kind in ("live", "ready")] == [0, 0]
    beat = worker.health.heartbeat.stat().st_mtime
    wait_for(lambda: worker.health.heartbeat.stat().st_mtime > beat, 10, "the next heartbeat")

    app = make_app()
    header = [app.signature(f"{APP}.add", (n, n)) for n in range(6)]
    result = chord(header)(app.signature(f"{APP}.tsum"))
    assert result.get(timeout=60) == 30
    assert send(app, "identity").get(timeout=30) == {"uid": os.getuid(), "cwd": str(APP_DIR)}
    port = worker.env["CELERY_GCS_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert "celery_gcs_chord_parts_counted_total 6.0" in metrics
    assert "celery_gcs_chord_callbacks_published_total 1.0" in metrics

    assert worker.terminate() == 0
    assert "Warm shutdown" in worker.log()
    ready = worker.probe("ready")
    assert (ready.returncode, ready.stdout.strip()) == (1, "ready: the worker is shutting down")


def test_sigterm_lets_the_running_task_finish_and_loses_nothing(start_entrypoint, make_app) -> None:
    app = make_app()
    worker = start_entrypoint(
        conf={**ACKS_LATE, "worker_prefetch_multiplier": 4}, CELERY_CONCURRENCY="1"
    )
    running = send(app, "sleep", 3, "finished")
    wait_for(lambda: started(running), 30, "the task to start")
    # Reserved by the worker or still queued, not started: it has one process.
    waiting = [send(app, "add", n, 1) for n in range(3)]

    began = time.monotonic()
    assert worker.terminate() == 0
    assert "Warm shutdown" in worker.log()
    # The running task finished and stored its result before the worker exited.
    assert running.get(timeout=1) == "finished"
    assert time.monotonic() - began > 1  # it did wait for the task

    # Nothing taken by the stopped worker is lost: the next one runs the rest.
    start_entrypoint(conf=ACKS_LATE)
    assert [result.get(timeout=60) for result in waiting] == [1, 2, 3]


def test_remapped_sigterm_cuts_shutdown_at_the_soft_timeout_and_requeues_the_task(
    start_entrypoint, make_app, tmp_path: Path
) -> None:
    # The time-boxed alternative the README documents: REMAP_SIGTERM=SIGQUIT with
    # worker_soft_shutdown_timeout under the pod's grace period, and acks_late tasks.
    conf = {**ACKS_LATE, "worker_soft_shutdown_timeout": 2}
    app = make_app()
    worker = start_entrypoint(conf=conf, REMAP_SIGTERM="SIGQUIT", CELERY_CONCURRENCY="1")
    long = send(app, "sleep_the_first_time", str(tmp_path / "ran-once"), 120, "second run")
    wait_for(lambda: started(long), 30, "the task to start")

    began = time.monotonic()
    worker.terminate(timeout=60)
    assert time.monotonic() - began < 60  # not the task's 120 s
    assert "Initiating Soft Shutdown, terminating in 2" in worker.log()

    # The cancelled acks_late task went back to the queue; another worker runs it.
    start_entrypoint(conf=conf)
    assert long.get(timeout=60) == "second run"


def test_readiness_follows_the_broker_connection(start_entrypoint, make_app, stack) -> None:
    import redis

    worker = start_entrypoint()
    # Drop every broker connection but this one: the consumer stops, reconnects, starts.
    killed = redis.Redis.from_url(stack.local_stack.redis_url).client_kill_filter(_type="normal")
    assert killed >= 1
    wait_for(
        lambda: worker.log().count("health: ready (consuming)") == 2, 60, "the consumer to restart"
    )
    log = worker.log()
    lost = log.index("Connection to broker lost")
    assert (
        lost < log.index("health: not ready (the consumer stopped)") < log.rindex("health: ready")
    )
    assert worker.probe("ready").returncode == 0
    assert send(make_app(), "add", 20, 22).get(timeout=60) == 42
