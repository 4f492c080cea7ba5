"""The wheel as users get it: installed alone into a fresh virtualenv, it serves as the result backend.

Built with ``uv build``, installed with the locked runtime dependencies plus
``celery[redis]`` (what a production worker installs), and run as a real
prefork worker against the local stack: no extra, no checkout on the path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery_gcs import __version__
from celery_gcs.local.worker import WorkerProcess, celery_worker_argv

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
#: What the runtime must never load: the extras' packages and the tooling rooms.
TOOLING = ("rich", "psutil", "redis", "gcp_storage_emulator", "hpack", "hyperframe", "pulumi", "matplotlib")
TOOLING_ROOMS = ("celery_gcs.cli", "celery_gcs.local", "celery_gcs.worker")

#: Minutes, not seconds: run by `make test-package` (and .ci/run), not `make test`.
pytestmark = pytest.mark.package


def run(argv: list[object], **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{argv} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def uv_env() -> dict[str, str]:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([UV, "build", "--wheel", "--out-dir", out, ROOT], env=uv_env())
    (built,) = out.glob("celery_gcs-*.whl")
    return built


def make_venv(where: Path, wheel: Path, *extras: str) -> Path:
    """A fresh virtualenv with the locked dependencies of ``extras`` and the wheel; returns its python."""
    requirements = where / "requirements.txt"
    export = [UV, "export", "--frozen", "--no-dev", "--no-emit-project", "-o", requirements]
    run([*export, *(arg for extra in extras for arg in ("--extra", extra))], cwd=ROOT, env=uv_env())
    run([UV, "venv", where / "venv", "--python", sys.executable], env=uv_env())
    python = where / "venv" / "bin" / "python"
    run([UV, "pip", "install", "--python", python, "--require-hashes", "-r", requirements], env=uv_env())
    run([UV, "pip", "install", "--python", python, "--no-deps", wheel], env=uv_env())
    return python


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    return make_venv(tmp_path_factory.mktemp("runtime"), wheel, "worker")


def test_the_wheel_holds_the_package_its_types_marker_and_the_infra_components(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "celery_gcs/py.typed" in names
    assert "celery_gcs_infra/stack.py" in names
    assert not any(name.startswith(("tests/", "bench/", "infra/")) for name in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert f"Version: {__version__}" in text
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(line.split()[1].split(">")[0] for line in requires) == [
        "celery", "google-cloud-firestore", "google-cloud-storage",
    ]  # fmt: skip


def test_importing_the_backend_loads_no_tooling(runtime_python: Path) -> None:
    code = textwrap.dedent(f"""
        import importlib.util, json, sys
        import celery_gcs.backend
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {TOOLING!r} or m.startswith({TOOLING_ROOMS!r}))
        installed = sorted(m for m in ("rich", "gcp_storage_emulator", "pulumi") if importlib.util.find_spec(m))
        print(json.dumps({{"loaded": loaded, "installed": installed}}))
    """)
    found = json.loads(run([runtime_python, "-c", code]).stdout)
    assert found == {"loaded": [], "installed": []}


def test_the_command_without_its_extra_names_the_install_line(runtime_python: Path, wheel: Path) -> None:
    bin_dir = runtime_python.parent
    version = run([bin_dir / "celery-gcs", "--version"]).stdout
    assert version.strip() == f"celery-gcs {__version__}"
    done = subprocess.run([bin_dir / "celery-gcs", "demo"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    # From the wheel it was installed from, with the installer that put it there (uv: no pip in the venv).
    line = done.stderr.splitlines()[-1].strip()
    assert line == f"uv pip install --python {runtime_python} '{wheel}[cli,local]'"
    # and the line resolves as given (a dry run: the module's venv stays without the extras).
    words = shlex.split(line)
    run([UV, *words[1:3], "--dry-run", *words[3:]], env=uv_env(), timeout=300)


APP = """
import os
from celery import Celery

app = Celery("wheelapp", broker=os.environ["CELERY_BROKER_URL"])
app.conf.result_backend = os.environ["WHEEL_BACKEND"]

@app.task
def add(x, y):
    return x + y

@app.task
def total(values):
    return sum(values)
"""

CLIENT = """
from celery import chord
from wheelapp import add, total

print(add.delay(2, 3).get(timeout=60))
print(chord(add.s(n, n) for n in range(10))(total.s()).get(timeout=60))
print(type(add.app.backend).__module__)
"""


@pytest.fixture
def wheel_worker(tmp_path: Path, runtime_python: Path, local) -> Iterator[dict[str, str]]:
    (tmp_path / "wheelapp.py").write_text(APP)
    env = {
        **local.env(),
        "PATH": f"{runtime_python.parent}:/usr/bin:/bin",
        "WHEEL_BACKEND": f"gcs://{local.bucket}/wheel-{uuid.uuid4().hex[:8]}",
        "PYTHONPATH": str(tmp_path),
    }
    argv = celery_worker_argv("wheelapp", name=f"wheel{uuid.uuid4().hex[:6]}@localhost", python=str(runtime_python))
    worker = WorkerProcess(argv, env=env, cwd=tmp_path, log_path=tmp_path / "worker.log")
    worker.start(timeout=60)
    try:
        yield env
    finally:
        worker.stop()


def test_the_wheel_alone_serves_as_the_result_backend(
    tmp_path: Path, runtime_python: Path, wheel_worker: dict[str, str]
) -> None:
    done = run([runtime_python, "-c", CLIENT], cwd=tmp_path, env=wheel_worker, timeout=120)
    assert done.stdout.split() == ["5", str(sum(2 * n for n in range(10))), "celery_gcs.backend"]


def test_the_components_without_the_infra_extra_name_the_install(runtime_python: Path, wheel: Path) -> None:
    done = subprocess.run([runtime_python, "-c", "import celery_gcs_infra"], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "celery_gcs_infra needs celery-gcs's infra extra (pulumi" in done.stderr
    assert done.stderr.strip().splitlines()[-1].strip() == f"uv pip install --python {runtime_python} '{wheel}[infra]'"


@pytest.mark.timeout(600)  # a bound: `make venv-infra` alone took 3 minutes on a loaded 2-core machine
def test_make_venv_infra_is_enough_to_run_the_program_and_holds_no_dev_tools(tmp_path: Path) -> None:
    """What deploying needs, without the 700 MB of every extra and dev tool that `make venv` installs."""
    from tests.infra.infra_scenarios import HERE, scenarios

    venv = tmp_path / "venv"
    env = {key: value for key, value in uv_env().items() if key not in ("PYTHONPATH", "UV_PROJECT_ENVIRONMENT")}
    run(["make", "-C", ROOT, "venv-infra", f"VENV={venv}", f"PYTHON={sys.executable}"], env=env, timeout=600)
    python = venv / "bin" / "python"
    absent = "import importlib.util as u; print([m for m in ('pytest', 'ruff', 'rich', 'gcp_storage_emulator', 'matplotlib') if u.find_spec(m)])"
    assert run([python, "-c", absent]).stdout.strip() == "[]"
    spec = scenarios()["dev"]
    config, inventory = tmp_path / "dev.config.json", tmp_path / "dev.inventory.json"
    config.write_text(json.dumps(spec))
    run([python, HERE / "run_program.py", spec["program"], spec["stack"], config, inventory], cwd=ROOT, env=env)
    found = json.loads(inventory.read_text())
    assert found["error"] is None, found["error"]
    assert "gcp:storage/bucket:Bucket" in {resource["type"] for resource in found["resources"]}
    # README's next step, in the same lean .venv: the stack's config checked offline (the dev example's).
    project = tmp_path / "project"
    (project / "infra").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", project)
    shutil.copy(ROOT / "infra" / "__main__.py", project / "infra")
    shutil.copytree(ROOT / "worker_image", project / "worker_image")
    shutil.copy(ROOT / "infra" / "examples" / "Pulumi.dev.yaml", project)
    checked = run([python, "-m", "celery_gcs_infra.check", "dev"], cwd=project, env=env, timeout=300)
    assert "Pulumi.dev.yaml: the program runs to the end:" in checked.stdout


def test_a_team_program_imports_the_components_from_the_installed_package(tmp_path: Path, wheel: Path) -> None:
    """``pip install 'celery-gcs[infra]'``, then a team's own program, with no checkout on the path."""
    from tests.infra.infra_scenarios import HERE, scenarios

    python = make_venv(tmp_path, wheel, "infra")
    spec = scenarios()["team"]
    config, inventory = tmp_path / "team.config.json", tmp_path / "team.inventory.json"
    config.write_text(json.dumps(spec))
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run([python, HERE / "run_program.py", spec["program"], spec["stack"], config, inventory], cwd=tmp_path, env=env)
    found = json.loads(inventory.read_text())
    assert found["error"] is None, found["error"]
    types = {resource["type"] for resource in found["resources"]}
    assert {"gcp:storage/bucket:Bucket", "kubernetes:apps/v1:Deployment"} <= types


def test_the_demo_runs_from_the_cli_and_local_extras_alone(tmp_path: Path, wheel: Path) -> None:
    """What `make demo` installs on a fresh machine is enough for the demo (no dev tools, no infra)."""
    python = make_venv(tmp_path, wheel, "cli", "local")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env = {key: value for key, value in env.items() if not key.startswith(("STORAGE_EMULATOR", "FIRESTORE_EMULATOR"))}
    env["PATH"] = f"{python.parent}:{env.get('PATH', '/usr/bin:/bin')}"
    small = ["--chord-size", "20", "--group-size", "5", "--chain-length", "3", "--concurrency", "1"]
    done = subprocess.run(
        [python.parent / "celery-gcs", "demo", *small, "--json", tmp_path / "summary.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] is True


#: A task of README's proj.py run to a failure (None is no number); prints its id.
FAIL_ONE = "from proj import add; r = add.delay(2, None); r.get(timeout=10, propagate=False); print(r.id)"
#: A copy of that failure under id old-ID, as if stored ten days ago (the listing's date done).
BACKDATE = """
import datetime as dt, sys
from google.cloud import storage

bucket = storage.Client().bucket("celery-results")
failure = bucket.get_blob("celery-task-meta-" + sys.argv[1])
old = bucket.blob("celery-task-meta-old-" + sys.argv[1])
old.metadata = {**failure.metadata, "celery-date-done": (dt.datetime.now(dt.UTC) - dt.timedelta(days=10)).isoformat()}
old.upload_from_string(failure.download_as_bytes(), content_type=failure.content_type)
"""


def readme_blocks(section: str, language: str) -> list[str]:
    """The ``language`` code blocks of a README section, as written there."""
    text = (ROOT / "README.md").read_text()
    body = text[text.index(section) + len(section) :]
    ends = [found for found in (body.find("\n## "), body.find("\n### ")) if found >= 0]
    return re.findall(rf"```{language}\n(.*?)```", body[: min(ends, default=len(body))], re.DOTALL)


def test_readmes_use_it_in_your_app_steps_work_from_the_wheel(tmp_path: Path, wheel: Path) -> None:
    """README "Use it in your app", verbatim where it can be: install, configure, dev up, a worker, get()."""
    python = make_venv(tmp_path, wheel, "cli", "local")
    (proj,) = [b for b in readme_blocks("### 2. Configure", "python") if b.startswith("# proj.py")]
    (tmp_path / "proj.py").write_text(proj)
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    base = {k: v for k, v in base.items() if not k.startswith(("STORAGE_EMULATOR", "FIRESTORE_EMULATOR", "CELERY_"))}
    base["PATH"] = f"{python.parent}:{base.get('PATH', '/usr/bin:/bin')}"
    shell = 'eval "$(celery-gcs dev up)" && env -0'
    up = run(["bash", "-c", shell], cwd=tmp_path, env=base, timeout=180)
    env = dict(item.split("=", 1) for item in up.stdout.split("\0") if "=" in item)
    env["PYTHONPATH"] = str(tmp_path)
    try:
        argv = celery_worker_argv("proj", name=f"readme{uuid.uuid4().hex[:6]}@localhost", python=str(python))
        worker = WorkerProcess(argv, env=env, cwd=tmp_path, log_path=tmp_path / "worker.log").start(timeout=60)
        try:
            got = run([python, "-c", "from proj import add; r = add.delay(2, 3); print(r.get(timeout=10), r.id)"],
                      cwd=tmp_path, env=env)  # fmt: skip
            answer, task_id = got.stdout.split()
            assert answer == "5"
            # The commands README shows next, verbatim but for the task's id.
            (commands,) = [b for b in readme_blocks("### 3. Run it on your machine", "sh") if "results list" in b]
            said = {}
            for line in commands.strip().splitlines():
                command = line.split("#", 1)[0].strip()
                said[command] = run(["bash", "-c", command.replace("TASK_ID", task_id)], cwd=tmp_path, env=env,
                                    timeout=120).stdout  # fmt: skip
            assert list(said) == [
                "celery-gcs results list", "celery-gcs results list --name proj.add --json",
                "celery-gcs results show TASK_ID", "celery-gcs results purge --dry-run", "celery-gcs doctor -A proj",
            ]  # fmt: skip
            assert task_id in said["celery-gcs results list"] and "proj.add" in said["celery-gcs results list"]
            (row,) = [json.loads(line) for line in said["celery-gcs results list --name proj.add --json"].splitlines()]
            assert (row["task_id"], row["state"], row["task"]) == (task_id, "SUCCESS", "proj.add")
            shown = json.loads(said["celery-gcs results show TASK_ID"])
            assert (shown["status"], shown["result"]) == ("SUCCESS", 5)
            assert "1 of 1 results in gs://celery-results/ match" in said["celery-gcs results purge --dry-run"]
            doctor = said["celery-gcs doctor -A proj"]  # the exported backend wins over proj.py's, and it says so
            assert "Note: CELERY_RESULT_BACKEND is exported" in doctor and "0 failed" in doctor
            # README "Browsing and removing results", verbatim but for the ids: a task failed now, and a
            # failure stored ten days ago (as its listing's date done says), to be listed, deleted and purged.
            failed = run([python, "-c", FAIL_ONE], cwd=tmp_path, env=env).stdout.strip()
            run([python, "-c", BACKDATE, failed], cwd=tmp_path, env=env)
            (browsing,) = [b for b in readme_blocks("### Browsing and removing results", "sh") if "purge" in b]
            said = {}
            for line in browsing.strip().splitlines():
                command = line.split("#", 1)[0].strip()
                ids = command.replace("TASK_ID [TASK_ID ...]", f"{task_id} {failed}").replace("TASK_ID", task_id)
                said[command] = run(["bash", "-c", ids], cwd=tmp_path, env=env, timeout=120).stdout
            assert task_id in said["celery-gcs results list"] and f"old-{failed}" in said["celery-gcs results list"]
            recent = said["celery-gcs results list --state FAILURE --since 1h --limit 20"]
            assert failed in recent and f"old-{failed}" not in recent and task_id not in recent
            assert json.loads(said["celery-gcs results show TASK_ID"])["status"] == "SUCCESS"
            assert "Deleted 2 of 2 results (2 delete requests)." in said["celery-gcs results delete TASK_ID [TASK_ID ...]"]
            assert "1 of 1 results in gs://celery-results/ match" in said[
                "celery-gcs results purge --state FAILURE --before 7d --dry-run"
            ]
            assert "Deleted 1 results with 1 delete requests." in said[
                "celery-gcs results purge --state FAILURE --before 7d --yes"
            ]
            listed = run(["celery-gcs", "results", "list", "--json"], cwd=tmp_path, env=env).stdout
            assert listed == ""
        finally:
            worker.stop()
    finally:
        down = run(["bash", "-c", 'eval "$(celery-gcs dev down)" && echo "backend=${CELERY_RESULT_BACKEND:-unset}"'],
                   cwd=tmp_path, env=env, timeout=60)  # fmt: skip
    assert "backend=unset" in down.stdout
