"""`celery-gcs dev up|status|down`: a stack that outlives the command, found again and stopped."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery_gcs import conventions
from celery_gcs.cli import dev
from celery_gcs.cli.main import EXIT_MISSING_EXTRA
from celery_gcs.local import processes, services

from .conftest import CLI, clean_env, marked_processes, port_open, run_cli

#: What `dev up` exports, and `dev down` unsets.
EXPORTED = (
    "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT",
    "STORAGE_EMULATOR_HOST",
)  # fmt: skip


def parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", f"not an export line: {line!r}"
        key, value = words[1].split("=", 1)
        env[key] = value
    return env


@pytest.fixture
def state_dir(tmp_path: Path, marker: str) -> Iterator[Path]:
    """A state directory; whatever a test leaves running there is stopped afterwards."""
    directory = tmp_path / "devstack"
    yield directory
    run_cli(
        "dev",
        "down",
        "--state-dir",
        str(directory),
        env=clean_env({"CELERY_GCS_TEST_MARKER": marker}),
    )


def test_up_status_down(state_dir: Path, marker: str, tmp_path: Path) -> None:
    env = clean_env({"CELERY_GCS_TEST_MARKER": marker})
    args = ("--state-dir", str(state_dir))

    up = run_cli("dev", "up", *args, env=env)
    assert up.returncode == 0, up.stderr
    assert "--include=celery_gcs.telemetry.metrics and read them at http://127.0.0.1:9808/metrics" in up.stderr
    # stdout is only `export` lines, so `eval "$(celery-gcs dev up)"` works.
    exported = parse_exports(up.stdout)
    assert sorted(exported) == list(EXPORTED)
    assert exported["CELERY_RESULT_BACKEND"] == f"gcs://{services.BUCKET}"
    state = json.loads((state_dir / "state.json").read_text())
    ports = {name: record["port"] for name, record in state["services"].items()}
    assert exported["STORAGE_EMULATOR_HOST"] == f"http://127.0.0.1:{ports['gcs']}"
    assert exported["FIRESTORE_EMULATOR_HOST"] == f"127.0.0.1:{ports['firestore']}"
    assert exported["CELERY_BROKER_URL"] == f"redis://127.0.0.1:{ports['redis']}/0"

    # The command has exited; the services still answer.
    with urllib.request.urlopen(
        f"{exported['STORAGE_EMULATOR_HOST']}/storage/v1/b/{services.BUCKET}"
    ) as response:
        bucket = json.loads(response.read())
    assert bucket["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"] is True
    assert bucket["lifecycle"]["rule"] == conventions.lifecycle_rules()
    with urllib.request.urlopen(f"http://{exported['FIRESTORE_EMULATOR_HOST']}/") as response:
        assert response.status == 200
    with socket.create_connection(("127.0.0.1", ports["redis"])) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(16) == b"+PONG\r\n"
    groups = [record["pid"] for record in state["services"].values()]
    assert all(processes.group_running(pgid) for pgid in groups)
    # Redis rewrites its process title over its environment, so the marker finds the rest.
    marked = marked_processes(marker)
    assert any("java" in cmdline for _, cmdline in marked)  # the emulator under gcloud's wrapper
    pids = {pid for pid, _ in marked}

    # A second `up` finds the running stack and starts nothing.
    again = run_cli("dev", "up", *args, env=env)
    assert again.returncode == 0
    assert parse_exports(again.stdout) == exported
    assert "already running" in again.stderr
    assert {pid for pid, _ in marked_processes(marker)} == pids

    # The doctor, with no arguments, checks what the exported environment names (what the emulators can show).
    doctor = run_cli("doctor", env={**env, **exported})
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"Checking gs://{services.BUCKET} via the GCS emulator" in doctor.stdout
    assert f"(project {services.PROJECT}," in doctor.stdout
    assert "Checking as emulator (no credentials)" in doctor.stdout

    status = run_cli("dev", "status", *args, env=env)
    assert status.returncode == dev.STATUS_UP
    for name, port in (("GCS emulator", ports["gcs"]), ("Firestore emulator", ports["firestore"])):
        line = next(line for line in status.stdout.splitlines() if name in line)
        assert " up " in line and f"127.0.0.1:{port}" in line
    report = json.loads(run_cli("dev", "status", "--json", *args, env=env).stdout)
    assert report["all_up"] is True
    assert {name: s["port"] for name, s in report["services"].items()} == ports
    assert report["env"] == exported

    # A service that dies is reported down, and the status is no longer 0.
    processes.stop_group(state["services"]["redis"]["pid"])
    report = json.loads(run_cli("dev", "status", "--json", *args, env=env).stdout)
    assert {name: s["state"] for name, s in report["services"].items()} == {
        "gcs": "up", "firestore": "up", "redis": "down",
    }  # fmt: skip
    assert run_cli("dev", "status", *args, env=env).returncode == dev.STATUS_DEGRADED

    down = run_cli("dev", "down", *args, env=env)
    assert down.returncode == 0, down.stderr
    assert "Stopped GCS emulator" in down.stderr and "Stopped Firestore emulator" in down.stderr
    assert "Redis was not running" in down.stderr
    assert not any(processes.group_running(pgid) for pgid in groups)
    assert marked_processes(marker) == []  # the Java emulator under gcloud too
    assert not any(port_open(port) for port in ports.values())
    assert not (state_dir / "state.json").exists()
    gone = run_cli("dev", "status", *args, env=env)
    assert gone.returncode == dev.STATUS_NOT_RUNNING
    assert "No local stack recorded" in gone.stderr


def test_a_stale_state_file_never_stops_a_stranger(state_dir: Path) -> None:
    # A process in a group of its own, recorded with another start time: as if the
    # stack died long ago and the pid went to someone else.
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        state_dir.mkdir(parents=True)
        started = processes.start_time(stranger.pid)
        assert started is not None
        record = {
            "pid": stranger.pid,
            "port": processes.free_port(),
            "started": started - 1,
            "log": "x",
        }
        state = {
            "project": services.PROJECT,
            "bucket": services.BUCKET,
            "services": {"redis": record},
        }
        (state_dir / "state.json").write_text(json.dumps(state))
        env = clean_env()
        status = run_cli("dev", "status", "--json", "--state-dir", str(state_dir), env=env)
        assert json.loads(status.stdout)["services"]["redis"]["state"] == "down"
        down = run_cli("dev", "down", "--state-dir", str(state_dir), env=env)
        assert down.returncode == 0
        assert "Redis was not running" in down.stderr
        assert stranger.poll() is None  # still alive
        assert not (state_dir / "state.json").exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_state_dir_defaults_to_dot_devstack_in_the_working_directory(tmp_path: Path) -> None:
    env = clean_env()
    env.pop(dev.STATE_DIR_ENV, None)
    done = run_cli("dev", "status", env=env, cwd=tmp_path)
    assert done.returncode == dev.STATUS_NOT_RUNNING
    assert str(tmp_path / ".devstack" / "state.json") in done.stderr.replace("\n", "")
    done = run_cli(
        "dev", "status", env={**env, dev.STATE_DIR_ENV: str(tmp_path / "elsewhere")}, cwd=tmp_path
    )
    assert str(tmp_path / "elsewhere" / "state.json") in done.stderr.replace("\n", "")


def test_only_a_state_directory_of_the_stacks_own_ignores_itself_in_git(tmp_path: Path) -> None:
    """`up --state-dir DIR` on a directory of the user's must not hide their files from git with a `*`."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    dev.make_state_dir(theirs)
    assert not (theirs / ".gitignore").exists()
    for ours in (tmp_path / "new" / "stack", tmp_path / "existing" / dev.DEFAULT_STATE_DIR):
        if ours.parent.name == "existing":
            ours.mkdir(parents=True)  # a .devstack from before, without its .gitignore
        dev.make_state_dir(ours)
        assert (ours / ".gitignore").read_text().endswith("\n*\n")


def test_up_reports_a_missing_prerequisite_and_starts_nothing(
    state_dir: Path, tmp_path: Path, marker: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("java", "gcloud"):  # everything but redis-server
        os.symlink(services.require(program), bin_dir / program)
    env = clean_env({"CELERY_GCS_TEST_MARKER": marker}, PATH=str(bin_dir))
    done = run_cli("dev", "up", "--state-dir", str(state_dir), env=env)
    assert done.returncode == dev.EXIT_PREREQUISITES
    assert "redis-server not found; install it with: apt-get install -y redis-server" in done.stderr
    assert done.stdout == ""
    assert marked_processes(marker) == []
    assert not (state_dir / "state.json").exists()


def _pids(state_dir: Path) -> dict[str, int]:
    state = json.loads((state_dir / "state.json").read_text())
    return {name: record["pid"] for name, record in state["services"].items()}


def test_up_restarts_only_the_services_that_died_on_their_ports(state_dir: Path, marker: str) -> None:
    env = clean_env({"CELERY_GCS_TEST_MARKER": marker})
    args = ("--state-dir", str(state_dir))
    first = run_cli("dev", "up", *args, env=env)
    assert first.returncode == 0, first.stderr
    exported = parse_exports(first.stdout)
    before = _pids(state_dir)
    # Data in the service that stays up, to see that it is kept.
    firestore_host = exported["FIRESTORE_EMULATOR_HOST"]
    document = (
        f"http://{firestore_host}/v1/projects/{services.PROJECT}/databases/(default)/documents/kept/doc"
    )
    body = json.dumps({"fields": {"x": {"integerValue": "1"}}}).encode()
    urllib.request.urlopen(urllib.request.Request(document, data=body, method="PATCH"), timeout=30).close()

    for name in ("gcs", "redis"):
        processes.stop_group(before[name])
    again = run_cli("dev", "up", *args, env=env)
    assert again.returncode == 0, again.stderr
    assert parse_exports(again.stdout) == exported  # same ports: a running worker's environment holds
    assert "GCS emulator is down; restarting it on port" in again.stderr
    assert "Starting Redis" in again.stderr and "Starting Firestore emulator" not in again.stderr
    after = _pids(state_dir)
    assert after["firestore"] == before["firestore"]
    assert after["gcs"] != before["gcs"] and after["redis"] != before["redis"]
    with urllib.request.urlopen(document, timeout=30) as response:
        assert json.loads(response.read())["fields"] == {"x": {"integerValue": "1"}}
    # The restarted emulator has its bucket again, with a deployment's settings.
    with urllib.request.urlopen(
        f"{exported['STORAGE_EMULATOR_HOST']}/storage/v1/b/{services.BUCKET}", timeout=30
    ) as response:
        assert json.loads(response.read())["lifecycle"]["rule"] == conventions.lifecycle_rules()
    status = json.loads(run_cli("dev", "status", "--json", *args, env=env).stdout)
    assert status["all_up"] is True


def test_up_says_when_a_dead_services_port_was_taken_meanwhile(state_dir: Path, marker: str) -> None:
    env = clean_env({"CELERY_GCS_TEST_MARKER": marker})
    args = ("--state-dir", str(state_dir))
    assert run_cli("dev", "up", *args, env=env).returncode == 0
    state = json.loads((state_dir / "state.json").read_text())
    redis = state["services"]["redis"]
    processes.stop_group(redis["pid"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", redis["port"]))
        squatter.listen()
        again = run_cli("dev", "up", *args, env=env)
    assert again.returncode == dev.EXIT_FAILED
    assert f"port {redis['port']}, where redis ran before, is now taken by another process" in again.stderr
    assert "celery-gcs dev down, then celery-gcs dev up" in again.stderr
    assert again.stdout == ""


def test_down_warns_of_connected_workers_and_up_comes_back_on_the_same_ports(state_dir: Path, marker: str) -> None:
    import redis

    env = clean_env({"CELERY_GCS_TEST_MARKER": marker})
    args = ("--state-dir", str(state_dir))
    first = run_cli("dev", "up", *args, env=env)
    assert first.returncode == 0, first.stderr
    exported = parse_exports(first.stdout)
    worker = redis.Redis.from_url(exported["CELERY_BROKER_URL"], socket_timeout=10)  # as a worker would be
    worker.set("queued", "before down")
    down = run_cli("dev", "down", *args, env=env)
    assert down.returncode == 0
    assert f"Warning: 1 client is still connected to Redis: pid {os.getpid()} (" in down.stderr
    assert "stop them first" in down.stderr
    again = run_cli("dev", "up", *args, env=env)
    assert again.returncode == 0, again.stderr
    assert parse_exports(again.stdout) == exported  # the same ports: the worker's environment holds
    assert "The stack is new: no results, chord documents or queued tasks" in again.stderr
    assert "a worker left running reconnects" in again.stderr
    assert worker.get("queued") is None  # reconnected, to a new, empty Redis
    worker.close()
    quiet = run_cli("dev", "down", *args, env=env)
    assert "Warning" not in quiet.stderr


def test_result_backend_gs_runs_an_app_on_the_builtin_backend_and_app_keeps_the_apps_own(
    state_dir: Path, marker: str
) -> None:
    env = clean_env({"CELERY_GCS_TEST_MARKER": marker})
    args = ("--state-dir", str(state_dir))
    default = parse_exports(run_cli("dev", "up", *args, env=env).stdout)
    gs = run_cli("dev", "up", *args, "--result-backend", "gs", env=env)
    exported = parse_exports(gs.stdout)
    assert exported["CELERY_RESULT_BACKEND"] == (
        f"celery_gcs.local.builtin:BuiltinGCSBackend+gs://{services.BUCKET}?gcs_project={services.PROJECT}"
    )
    assert {k: v for k, v in exported.items() if k != "CELERY_RESULT_BACKEND"} == {
        k: v for k, v in default.items() if k != "CELERY_RESULT_BACKEND"
    }
    # Celery's own gs:// backend works on the emulators with that URL, and `results` reads what it stored.
    code = (
        "from celery import Celery, states\n"
        "app = Celery('cmp')\n"
        "app.backend.store_result('gs-1', 42, states.SUCCESS)\n"
        "print(type(app.backend).__mro__[1].__module__, app.AsyncResult('gs-1').get(timeout=10))"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**env, **exported}, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.stdout.split() == ["celery.backends.gcs", "42"], done.stderr
    for backend in ((), ("--backend", f"gs://{services.BUCKET}")):  # the exported URL, or a gs:// one
        listed = run_cli("results", "list", "--json", *backend, env={**env, **exported})
        assert [json.loads(line)["task_id"] for line in listed.stdout.splitlines()] == ["gs-1"], listed.stderr
    app = run_cli("dev", "up", *args, "--result-backend", "app", env=env)
    assert "unset CELERY_RESULT_BACKEND" in app.stdout.splitlines()
    assert "export CELERY_RESULT_BACKEND" not in app.stdout
    assert "your app's own result_backend is used" in app.stderr


@pytest.fixture
def project_dir(tmp_path: Path, marker: str) -> Iterator[Path]:
    """A directory to run `dev` in without --state-dir; its stack is stopped afterwards."""
    directory = tmp_path / "project"
    (directory / "src" / "app").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(directory)], check=True)
    yield directory
    run_cli("dev", "down", "--state-dir", str(directory / dev.DEFAULT_STATE_DIR), env=clean_env())


def test_a_shell_in_a_subdirectory_finds_the_stack_and_down_unsets_what_up_exported(
    project_dir: Path, marker: str
) -> None:
    env = clean_env({"CELERY_GCS_TEST_MARKER": marker})
    env.pop(dev.STATE_DIR_ENV, None)
    variables = EXPORTED
    show = "; ".join(f'echo "{name}=${{{name}-<unset>}}"' for name in variables)
    script = f"""
        set -e
        eval "$({CLI} dev up)"
        {show}
        cd src/app
        if {CLI} dev status >/dev/null; then echo status=0; else echo status=$?; fi
        eval "$({CLI} dev down)"
        {show}
    """
    done = subprocess.run(
        ["bash", "-c", script], cwd=project_dir, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[len(variables)] == "status=0"  # found from src/app, and all up
    while_up = dict(line.split("=", 1) for line in lines[: len(variables)])
    after_down = dict(line.split("=", 1) for line in lines[len(variables) + 1 :])
    assert set(while_up) == set(variables)
    assert "<unset>" not in while_up.values()
    assert after_down == dict.fromkeys(variables, "<unset>")
    assert "Stopped GCS emulator" in done.stderr  # the down from src/app stopped the stack in project/
    # The stack's files (logs, the last ports) never show up in the user's repository.
    assert (project_dir / dev.DEFAULT_STATE_DIR).is_dir()
    git = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project_dir,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert git.stdout == ""
    assert not (project_dir / dev.DEFAULT_STATE_DIR / "state.json").exists()
    assert marked_processes(marker) == []
    # up says that the exported URL overrides the app's own setting.
    assert "Celery uses them instead of your app's result_backend" in done.stderr.replace("\n", " ")


def test_status_reads_a_parents_stack_unless_a_state_dir_or_the_variable_names_another(tmp_path: Path) -> None:
    found = tmp_path / dev.DEFAULT_STATE_DIR
    found.mkdir()
    (found / "state.json").write_text("{}")
    subdir = tmp_path / "a" / "b"
    subdir.mkdir(parents=True)
    env = clean_env()
    env.pop(dev.STATE_DIR_ENV, None)
    done = run_cli("dev", "status", env=env, cwd=subdir)
    assert f"the state file {found / 'state.json'} is unreadable" in done.stderr  # the parent's, found
    elsewhere = tmp_path / "elsewhere"
    done = run_cli("dev", "status", env={**clean_env(), dev.STATE_DIR_ENV: str(elsewhere)}, cwd=subdir)
    assert str(elsewhere / "state.json") in done.stderr.replace("\n", "")
    done = run_cli("dev", "status", "--state-dir", str(tmp_path / "mine"), env=env, cwd=subdir)
    assert str(tmp_path / "mine" / "state.json") in done.stderr.replace("\n", "")


def test_down_with_no_stack_still_prints_the_unset_lines(tmp_path: Path) -> None:
    done = run_cli("dev", "down", "--state-dir", str(tmp_path / "none"), env=clean_env())
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"unset {name}" for name in EXPORTED]
    assert dev.exported_names() == list(EXPORTED)
    assert "nothing to stop" in done.stderr


def test_up_without_the_local_extra_names_its_install_line_and_starts_nothing(
    tmp_path: Path, marker: str
) -> None:
    # As if only celery-gcs[cli] were installed: the emulator's package cannot be found.
    code = (
        "import sys; sys.modules['gcp_storage_emulator'] = None\n"
        "from celery_gcs.cli.main import main\n"
        f"sys.exit(main(['dev', 'up', '--state-dir', {str(tmp_path / 'stack')!r}]))"
    )
    env = clean_env({"CELERY_GCS_TEST_MARKER": marker})
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == EXIT_MISSING_EXTRA
    assert "celery-gcs dev needs the local extra" in done.stderr
    # The install comes from this checkout, as the package did; not from a PyPI name never published.
    assert f"-e '{Path(__file__).resolve().parents[2]}[cli,local]'" in done.stderr
    assert "'celery-gcs[cli,local]'" not in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "stack").exists()
    assert marked_processes(marker) == []
