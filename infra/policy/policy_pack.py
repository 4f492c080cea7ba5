"""The rules of ``stack_rules.py`` as Pulumi stack validation policies.

``__main__.py`` serves :func:`policies` as the ``celery-gcs`` policy pack; the
infra tests call the same policy objects over their mocked inventories.
"""

from __future__ import annotations

from typing import Any

import stack_rules
from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PACK_NAME = "celery-gcs"


def _plain(value: Any) -> Any:
    """A property tree without the SDK's proxies; values unknown during preview become UNKNOWN."""
    if hasattr(value, "keys") and hasattr(value, "__getitem__") and not isinstance(value, dict | str):
        out = {}
        for key in value:
            try:
                out[key] = _plain(value[key])
            except UnknownValueError:
                out[key] = stack_rules.UNKNOWN
        return out
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if not isinstance(value, str | bytes) and hasattr(value, "__len__") and hasattr(value, "__getitem__"):
        items = []
        for i in range(len(value)):
            try:
                items.append(_plain(value[i]))
            except UnknownValueError:
                items.append(stack_rules.UNKNOWN)
        return items
    return value


def resource(r: PolicyResource) -> stack_rules.Resource:
    """The rules' view of one resource of the stack."""
    return {
        "type": r.resource_type,
        "name": r.name,
        "urn": r.urn,
        "parent": r.parent.urn if r.parent is not None else "",
        "dependencies": [d.urn for d in r.dependencies],
        "props": _plain(r.props),
        "protect": bool(r.opts.protect),
        "additional_secret_outputs": list(r.opts.additional_secret_outputs or []),
    }


def _stack_policy(rule: stack_rules.Rule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message, urn in rule.check([resource(r) for r in args.resources]):
            report_violation(message, urn or None)

    return StackValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def policies() -> list[StackValidationPolicy]:
    """One mandatory stack policy per rule."""
    return [_stack_policy(rule) for rule in stack_rules.RULES]
