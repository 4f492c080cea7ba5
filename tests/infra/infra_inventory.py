"""Read access to a captured resource inventory (see run_program.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class Inventory:
    def __init__(self, run: dict[str, Any]) -> None:
        self.stack: str = run["stack"]
        self.resources: list[dict[str, Any]] = run["resources"]
        self.outputs: dict[str, Any] = run["outputs"]
        self.secret_outputs: list[str] = run["secret_outputs"]
        self.invokes: list[dict[str, Any]] = run["invokes"]
        #: What each component passed to register_outputs, by URN.
        self.registered_outputs: dict[str, dict[str, Any]] = run["registered_outputs"]
        self.by_urn = {r["urn"]: r for r in self.resources}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.resources)

    def of_type(self, typ: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == typ]

    def one(self, typ: str) -> dict[str, Any]:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, found {[r['name'] for r in found]}"
        return found[0]

    def named(self, name: str) -> dict[str, Any]:
        found = [r for r in self.resources if r["name"] == name]
        assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
        return found[0]

    def types(self) -> set[str]:
        return {r["type"] for r in self.resources}

    def parent(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        return self.by_urn.get(resource["parent"])

    def ancestors(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        chain = []
        current = self.parent(resource)
        while current is not None:
            chain.append(current)
            current = self.parent(current)
        return chain

    def waits_for(self, resource: dict[str, Any]) -> set[str]:
        """URNs a resource is created after: its own dependencies and its ancestors'.

        The SDK registers a child only once its parent is registered, and registers a
        resource only once everything in its ``depends_on`` exists, so a component's
        dependencies hold for all of its children.
        """
        urns = set(resource["dependencies"])
        for ancestor in self.ancestors(resource):
            urns |= set(ancestor["dependencies"])
        return urns

    def kubernetes_objects(self) -> list[dict[str, Any]]:
        """Objects sent to the API server as manifests (a Helm release is not one)."""
        return [
            r
            for r in self.resources
            if r["type"].startswith("kubernetes:")
            and r["custom"]
            and not r["type"].startswith(("pulumi:providers:", "kubernetes:helm.sh/"))
        ]
