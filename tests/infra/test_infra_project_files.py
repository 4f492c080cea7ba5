"""Pulumi.yaml, the stack files and the docs agree with the program's settings."""

from __future__ import annotations

import re

import pytest
import yaml
from celery_gcs import conventions
from celery_gcs_infra import settings

from .infra_scenarios import EXAMPLES, ROOT

TYPES = {str: "string", int: "integer", bool: "boolean"}
DECLARATION_FIELDS = {"type", "description", "default", "secret", "items"}


@pytest.fixture(scope="module")
def project() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def test_project_runs_the_python_program_in_the_repository_venv(project):
    assert project["name"] == settings.NAMESPACE
    assert project["runtime"] == {"name": "python", "options": {"virtualenv": ".venv"}}
    assert project["main"] == "infra/"
    assert (ROOT / project["main"] / "__main__.py").is_file()


def test_every_setting_declared_with_type_description_and_default(project):
    declared = project["config"]
    assert set(declared) == {o.key for o in settings.OPTIONS}
    for option in settings.OPTIONS:
        decl = declared[option.key]
        assert set(decl) <= DECLARATION_FIELDS, option.key
        assert decl["type"] == TYPES[option.kind], option.key
        assert len(decl["description"]) > 10, option.key
        if option.default is None:
            assert "default" not in decl, f"{option.key} is required"
            assert decl["description"].startswith("Required.")
        else:
            assert decl["default"] == option.default, option.key
            assert isinstance(decl["default"], option.kind), option.key


def test_shared_names_are_the_backend_defaults(project):
    assert project["config"]["firestoreCollection"]["default"] == conventions.FIRESTORE_COLLECTION


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_use_known_keys_and_load(stack):
    config = yaml.safe_load((EXAMPLES / f"Pulumi.{stack}.yaml").read_text())["config"]
    for key in config:
        namespace, name = key.split(":")
        assert namespace == settings.NAMESPACE and name in settings.BY_KEY, key
    values = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()}
    args = settings.load(values, stack=stack, build_context=str(ROOT))
    assert args.protect is (stack == "prod")


def test_docs_walk_through_environments():
    text = (ROOT / "docs" / "environments.md").read_text()
    for needle in ["pulumi stack init", "dev", "staging", "prod", "--secret", "protect"]:
        assert needle in text, needle
    required = [o.key for o in settings.OPTIONS if o.default is None]
    for key in required:
        assert f"celery-gcs:{key}" in text, key
    for option in settings.OPTIONS:
        assert f"| `{option.key}` |" in text, f"{option.key} missing from the settings table"
    # Every key the docs set is a real setting.
    for key in re.findall(r"celery-gcs:([A-Za-z]+)", text):
        assert key in settings.BY_KEY, key


def test_readme_has_the_deploy_section():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploying to GCP with Pulumi", 1)
    assert len(section) == 2
    assert "docs/environments.md" in section[1]


def test_no_stack_file_in_the_project_root_for_stack_init_to_pick_up():
    """`pulumi stack init dev` would silently take a Pulumi.dev.yaml full of another team's values."""
    assert sorted(p.name for p in ROOT.glob("Pulumi.*.y*ml")) == []
    assert sorted(p.name for p in EXAMPLES.glob("Pulumi.*.yaml")) == ["Pulumi.dev.yaml", "Pulumi.prod.yaml"]


def test_the_template_asks_for_every_required_key_and_only_real_ones(project):
    """`pulumi new` prompts for what the template lists; every key without a default must be there."""
    template = project["template"]
    assert template["displayName"] and template["description"]
    asked = {key.split(":", 1)[1] for key in template["config"]}
    required = {name for name, decl in project["config"].items() if "default" not in decl}
    assert required <= asked <= set(settings.BY_KEY)
    for key, decl in template["config"].items():
        assert key.startswith(f"{settings.NAMESPACE}:") and decl["description"], key
