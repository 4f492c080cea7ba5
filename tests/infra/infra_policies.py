"""The policy pack (infra/policy) run over a captured inventory, as the Pulumi engine would run it.

Each inventory resource becomes a ``pulumi_policy.PolicyResource`` (parent and
dependencies linked as objects, as the SDK's stack analysis links them), and
each of the pack's StackValidationPolicy objects validates the whole list. The
rules themselves live only in ``infra/policy/stack_rules.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    StackValidationArgs,
)
from pulumi_policy.proxy import unknown_checking_proxy

PACK_DIR = Path(__file__).resolve().parents[2] / "infra" / "policy"
if str(PACK_DIR) not in sys.path:
    sys.path.insert(0, str(PACK_DIR))

import policy_pack
import stack_rules

POLICIES = {p.name: p for p in policy_pack.policies()}


def policy_resources(resources: list[dict[str, Any]]) -> list[PolicyResource]:
    """What the engine hands a stack policy: the resources with their properties and options."""
    made = {
        r["urn"]: PolicyResource(
            resource_type=r["type"],
            # As the engine hands them over: unknown values raise when read.
            props=unknown_checking_proxy(r["inputs"]),
            urn=r["urn"],
            name=r["name"],
            opts=PolicyResourceOptions(
                protect=bool(r.get("protect")),
                ignore_changes=[],
                delete_before_replace=None,
                aliases=[],
                custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
                additional_secret_outputs=list(r.get("additional_secret_outputs") or []),
                parent=r["parent"] or None,
            ),
            provider=None,
            parent=None,
            dependencies=[],
            property_dependencies={},
        )
        for r in resources
    }
    for r in resources:
        made[r["urn"]].parent = made.get(r["parent"])
        made[r["urn"]].dependencies = [made[d] for d in r["dependencies"] if d in made]
    return list(made.values())


def run(policy: str, resources: list[dict[str, Any]]) -> list[str]:
    """One policy's violation messages."""
    found: list[str] = []
    args = StackValidationArgs(policy_resources(resources))
    POLICIES[policy].validate(args, lambda message, urn=None: found.append(message))
    return found


def check(resources: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every policy's violations, by policy name (only the violated ones)."""
    return {name: found for name in POLICIES if (found := run(name, resources))}


__all__ = ["POLICIES", "check", "run", "stack_rules"]
