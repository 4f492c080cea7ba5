"""Helpers every component shares: the type-token package, errors, validators.

Validation lives in the argument dataclasses, so a team program that builds
:class:`CeleryStackArgs` by hand gets the same checks as ``pulumi up`` on a
stack file. A failed check raises :class:`SettingError` naming the argument;
``celery_gcs_infra.settings`` re-raises it naming the stack config key instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pulumi

#: Package part of every component's ``pkg:module:Type`` token.
PACKAGE = "celery-gcs"

#: Label every labelled resource carries, so they can be found by app.
APP_LABEL = {"app": "celery-gcs", "managed-by": "pulumi"}


class SettingError(ValueError):
    """An argument has a value the deployment cannot use.

    ``field`` is the argument's name (snake case), ``problem`` says what is
    wrong and ``fix`` what to do instead.
    """

    def __init__(self, field: str, problem: str, fix: str) -> None:
        super().__init__(f"{field}: {problem}. {fix}")
        self.field = field
        self.problem = problem
        self.fix = fix


def token(module: str, type_name: str) -> str:
    """The ``pkg:module:Type`` token of one of our components."""
    return f"{PACKAGE}:{module}:{type_name}"


def child(parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
    """Options for a child resource: always parented, anything else on top."""
    return pulumi.ResourceOptions(parent=parent, **kwargs)


def invoke_options(
    parent: pulumi.Resource, opts: pulumi.ResourceOptions | None
) -> pulumi.InvokeOutputOptions:
    """Options for a component's invoke: parented, and after whatever the component waits for.

    An invoke does not inherit its parent's ``depends_on``; without it a lookup
    (the storage agent, the cluster, the project number) could run before the
    API it calls is enabled.
    """
    waits = opts.depends_on if opts is not None else None
    if waits is None:
        depends_on: list = []
    elif isinstance(waits, pulumi.Resource):
        depends_on = [waits]
    else:
        depends_on = list(waits)  # type: ignore[arg-type]
    return pulumi.InvokeOutputOptions(parent=parent, depends_on=depends_on)


def member(email: pulumi.Input[str]) -> pulumi.Output[str]:
    """The IAM member (``serviceAccount:EMAIL``) of a service account's email."""
    return pulumi.Output.from_input(email).apply(lambda e: f"serviceAccount:{e}")


# --- validators -----------------------------------------------------------
# Each returns the value so a dataclass can write ``check(...)`` inline.

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def check(condition: bool, field: str, problem: str, fix: str) -> None:
    if not condition:
        raise SettingError(field, problem, fix)


def project_id(value: str, field: str = "project") -> str:
    check(
        bool(_PROJECT.match(value)),
        field,
        f"{value!r} is not a Google Cloud project ID",
        "Use the project ID (6-30 lowercase letters, digits and hyphens), not its name or number",
    )
    return value


def region(value: str, field: str = "region") -> str:
    check(
        bool(_REGION.match(value)),
        field,
        f"{value!r} is not a Google Cloud region",
        "Use a region such as europe-west1 or us-central1 (not a zone like us-central1-a)",
    )
    return value


def dns_label(value: str, field: str, max_len: int = 63) -> str:
    check(
        len(value) <= max_len and bool(_DNS_LABEL.match(value)),
        field,
        f"{value!r} is not a valid name",
        f"Use at most {max_len} lowercase letters, digits and hyphens, "
        "starting and ending with a letter or digit",
    )
    return value


def labels(value: Mapping[str, str], field: str = "labels") -> dict[str, str]:
    for key, val in value.items():
        check(
            bool(_LABEL_KEY.match(key)) and bool(_LABEL_VALUE.match(val)),
            field,
            f"label {key}={val!r} is not a valid Google Cloud label",
            "Use lowercase letters, digits, '_' and '-', keys starting with a letter, "
            "at most 63 characters each",
        )
    return dict(value)


def network_id(project: str, network: str) -> str:
    """``projects/P/global/networks/N`` from a name, a partial path or a URL."""
    if "projects/" in network:
        return network[network.index("projects/") :]
    return f"projects/{project}/global/networks/{network}"


def network_project(network: str, default: str) -> str:
    """The project a network path names (a Shared VPC host), or ``default`` for a bare name."""
    if "projects/" in network:
        return network[network.index("projects/") :].split("/")[1]
    return default
