"""The Dockerfile, the entrypoint and the .dockerignore, read without building: hadolint and dockerfile-parse."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from .support import DOCKERFILE, ENTRYPOINT, EXPORT_ARGS, ROOT

HADOLINT = Path(sys.executable).parent / "hadolint"


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def stages(parser: DockerfileParser) -> list[list[dict]]:
    """Instructions grouped by stage, FROM first."""
    result: list[list[dict]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            result.append([])
        if result and instruction["instruction"] != "COMMENT":
            result[-1].append(instruction)
    return result


def instructions(stage: list[dict], kind: str) -> list[dict]:
    return [i for i in stage if i["instruction"] == kind]


def test_hadolint_passes_and_every_ignored_rule_is_justified() -> None:
    done = subprocess.run(
        [HADOLINT, "--no-color", DOCKERFILE], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#") and "hadolint" not in above, (
                f"unjustified ignore on line {number + 1}"
            )


def test_hadolint_catches_what_it_should(tmp_path: Path) -> None:
    # The lint is live: an unpinned apt install in our Dockerfile fails it.
    broken = DOCKERFILE.read_text().replace('"tini=${TINI_VERSION}"', "tini")
    assert broken != DOCKERFILE.read_text()
    (tmp_path / "Dockerfile").write_text(broken)
    done = subprocess.run(
        [HADOLINT, "--no-color", tmp_path / "Dockerfile"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "DL3008" in done.stdout


def test_the_base_is_a_build_argument_defaulting_to_a_pinned_python_slim(
    dockerfile: DockerfileParser,
) -> None:
    default = dockerfile.args["BASE_IMAGE"]
    assert re.fullmatch(r"python:3\.12-slim@sha256:[0-9a-f]{64}", default), default
    froms = [i["value"] for stage in stages(dockerfile) for i in instructions(stage, "FROM")]
    assert froms == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE} AS runtime"]
    # The ARG comes before the first FROM, so FROM can use it.
    kinds = [i["instruction"] for i in dockerfile.structure if i["instruction"] != "COMMENT"]
    assert kinds.index("ARG") < kinds.index("FROM")


def test_dependencies_come_from_the_lock_before_the_project(dockerfile: DockerfileParser) -> None:
    builder = stages(dockerfile)[0]
    values = [f"{i['instruction']} {i['value']}" for i in builder]

    def position(pattern: str) -> int:
        matches = [n for n, value in enumerate(values) if re.search(pattern, value)]
        assert matches, f"no instruction matches {pattern!r}"
        return matches[0]

    copy_lock = position(r"^COPY .*\buv\.lock\b")
    install_deps = position(
        r"^RUN .*uv export " + re.escape(" ".join(EXPORT_ARGS)) + r" -o requirements\.txt.*--require-hashes -r requirements\.txt"
    )
    copy_project = position(r"^COPY backend\b")
    install_project = position(r"^RUN .*uv pip install .*--no-deps \.")
    assert copy_lock < install_deps < copy_project < install_project
    assert "backend" not in values[copy_lock] and "README" not in values[copy_lock]
    # uv is pinned to the lock's version of it.
    lock_uv = re.search(r'name = "uv"\nversion = "([^"]+)"', (ROOT / "uv.lock").read_text())
    assert lock_uv and f"UV_VERSION={lock_uv.group(1)}" in [
        i["value"] for i in instructions(builder, "ARG")
    ]


def test_the_runtime_stage_holds_the_virtualenv_only(dockerfile: DockerfileParser) -> None:
    runtime = stages(dockerfile)[-1]
    from_builder = [
        i["value"] for i in instructions(runtime, "COPY") if "--from=builder" in i["value"]
    ]
    assert from_builder == ["--from=builder /opt/venv /opt/venv"]  # not uv, not the sources


def test_a_fixed_numeric_non_root_user(dockerfile: DockerfileParser) -> None:
    runtime = stages(dockerfile)[-1]
    (user,) = instructions(runtime, "USER")
    uid = dockerfile.args["APP_UID"]
    assert user["value"] == "${APP_UID}:${APP_UID}" and uid.isdigit() and int(uid) >= 1000
    (create,) = [i["value"] for i in instructions(runtime, "RUN") if "useradd" in i["value"]]
    assert '--uid "${APP_UID}"' in create and '--gid "${APP_UID}"' in create


def test_tini_is_pid_1_in_exec_form_and_the_script_ends_in_exec(
    dockerfile: DockerfileParser,
) -> None:
    runtime = stages(dockerfile)[-1]
    (entrypoint,) = instructions(runtime, "ENTRYPOINT")
    assert json.loads(entrypoint["value"]) == [
        "/usr/bin/tini",
        "--",
        "/usr/local/bin/celery-gcs-entrypoint",
    ]
    (cmd,) = instructions(runtime, "CMD")
    assert json.loads(cmd["value"]) == ["worker"]
    copies = [i["value"] for i in instructions(runtime, "COPY")]
    assert "worker_image/entrypoint.sh /usr/local/bin/celery-gcs-entrypoint" in copies
    (tini,) = [i["value"] for i in instructions(runtime, "RUN") if "apt-get install" in i["value"]]
    assert '"tini=${TINI_VERSION}"' in tini

    script = ENTRYPOINT.read_text().splitlines()
    assert script[0] == "#!/bin/sh"
    code = [line.strip() for line in script if line.strip() and not line.lstrip().startswith("#")]
    assert code[-1] == 'exec "$@"'
    mode = subprocess.run(
        ["git", "ls-files", "--stage", ENTRYPOINT.relative_to(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert mode.startswith("100755"), "entrypoint.sh must be committed executable"


def test_no_caches_are_left_in_layers(dockerfile: DockerfileParser) -> None:
    for stage in stages(dockerfile):
        for run in instructions(stage, "RUN"):
            command = run["value"]
            if "apt-get install" in command:
                assert "--no-install-recommends" in command and "apt-get update" in command
                assert "rm -rf /var/lib/apt/lists/*" in command
            if "pip install" in command and "uv pip install" not in command:
                assert "--no-cache-dir" in command
    builder_env = stages(dockerfile)[0]
    assert any("UV_NO_CACHE=1" in i["value"] for i in instructions(builder_env, "ENV"))


def test_oci_labels(dockerfile: DockerfileParser) -> None:
    labels = dockerfile.labels
    for key in ("title", "description", "licenses", "source", "version", "revision", "base.name"):
        assert f"org.opencontainers.image.{key}" in labels
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.base.name"] == dockerfile.args["BASE_IMAGE"]


def test_configuration_is_by_environment_with_probe_files_in_a_dedicated_directory(
    dockerfile: DockerfileParser,
) -> None:
    envs = dockerfile.envs
    assert envs["CELERY_GCS_HEALTH_DIR"] == "/run/celery-worker"
    assert envs["PYTHONPATH"] == "/app" and envs["PATH"].startswith("/opt/venv/bin:")
    runtime = stages(dockerfile)[-1]
    (workdir,) = instructions(runtime, "WORKDIR")
    assert workdir["value"] == "/app"
    (create,) = [i["value"] for i in instructions(runtime, "RUN") if "useradd" in i["value"]]
    assert "chown celery:celery /run/celery-worker" in create


def _ignored(patterns: list[str], path: str) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [pattern, pattern.replace("**/", "")]
        if any(fnmatch.fnmatch(path, p) or path.startswith(p + "/") for p in candidates):
            ignored = not negate
    return ignored


def test_the_dockerignore_sits_at_the_context_root_and_keeps_out_local_state(
    dockerfile: DockerfileParser,
) -> None:
    ignore = ROOT / ".dockerignore"
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for local in (
        ".git",
        ".venv",
        ".cache",
        ".devstack",
        "backend/celery_gcs/__pycache__",
        ".env",
        "key.pem",
    ):
        assert _ignored(patterns, local), local
    sources = [
        word
        for stage in stages(dockerfile)
        for i in instructions(stage, "COPY")
        if "--from" not in i["value"]
        for word in i["value"].split()[:-1]
    ]
    # ARG defaults of every stage (dockerfile.args holds the last stage's only).
    defaults = dict(
        i["value"].split("=", 1)
        for stage in stages(dockerfile)
        for i in instructions(stage, "ARG")
        if "=" in i["value"]
    )
    sources = [defaults.get(s[2:-1], s) if s.startswith("${") else s for s in sources]
    assert {
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "backend",
        "worker_image/entrypoint.sh",
    } <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(patterns, source), f"{source} is copied but .dockerignore excludes it"
    # The APP_DIR the tests build with stays in the context.
    assert not _ignored(patterns, "tests/image/app/image_tasks.py")
    # So does the example app the stack files build (appDir, appRequirements).
    assert not _ignored(patterns, "worker_image/example_app/acme/tasks.py")
    assert not _ignored(patterns, "worker_image/example_app/requirements.txt")


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(title)
    return text[start : text.index("\n#", start + len(title))]


def test_the_readmes_build_argument_table_lists_every_build_argument(dockerfile: DockerfileParser) -> None:
    declared = {
        i["value"].split("=", 1)[0] for i in dockerfile.structure if i["instruction"] == "ARG"
    }
    table = _readme_section("How it is built")
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    names = {name for cell in first_cells for name in re.findall(r"`([A-Z_]+)`", cell)}
    assert names == declared, f"missing from README: {declared - names}; not in the Dockerfile: {names - declared}"


def test_bringing_your_tasks_says_how_their_packages_are_installed() -> None:
    section = _readme_section("### Bringing your tasks")
    assert "APP_REQUIREMENTS" in section and "appRequirements" in section
    assert "cannot" not in section and "Neither way installs" not in section
    assert "inside the Pulumi project" in section  # appDir and appRequirements: the build context
