"""The shape of a chord's counters: a tree of countdowns, each written about FAN_IN times whatever the chord's size.

A chord of ``size`` header parts has ``leaves`` counters at level 0; each part
counts down the leaf its task id hashes to. A counter that reaches zero is
*full*: it counts down its parent (``FAN_IN`` children each) once, and so on
up to the single counter at the top, whose filling completes the header.
Each counter starts at what it waits for: a leaf at the number of header ids
hashing to it, a node above at its number of non-empty children. Empty
counters are never written.

Hashing spreads the parts of one leaf over the whole run of the chord, so
even at thousands of parts a second no counter takes more than a few writes a
second; and each part costs one commit, plus one more for every ``FAN_IN``
that fill a counter, whatever the chord's size. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

#: Children per counter. A counter is written once per child: exactly this
#: many above the leaves, this many on average at a leaf (the ids hashing to
#: it); and a part pays one extra commit per FAN_IN parts.
FAN_IN = 16


@dataclass(frozen=True, order=True, slots=True)
class Node:
    """One counter: ``index`` among the counters of ``level`` (0: the leaves) of a tree of ``leaves`` leaves."""

    level: int
    index: int
    leaves: int

    @property
    def document_id(self) -> str:
        # The tree's size is in the id: a process that remembers another
        # chord under the same group id (a different size, so another tree)
        # finds no such counter, and reads the chord again.
        return f"{self.level}-{self.index}-of-{self.leaves}"

    @classmethod
    def from_document_id(cls, document_id: str) -> Node:
        place, leaves = document_id.split("-of-")
        level, index = place.split("-")
        return cls(int(level), int(index), int(leaves))


def leaf_count(size: int) -> int:
    """How many leaves a chord of ``size`` header parts has."""
    return max(1, math.ceil(size / FAN_IN))


def top_level(leaves: int) -> int:
    """The level of the one counter whose filling completes the header."""
    level, count = 0, leaves
    while count > 1:
        level, count = level + 1, math.ceil(count / FAN_IN)
    return level


def leaf_of(task_id: str, leaves: int) -> Node:
    """The leaf a header task counts down: a stable hash of its id, the same in every process."""
    digest = hashlib.blake2b(task_id.encode(), digest_size=8).digest()
    return Node(0, int.from_bytes(digest, "big") % leaves, leaves)


def parent(node: Node) -> Node:
    return Node(node.level + 1, node.index // FAN_IN, node.leaves)


def is_top(node: Node, leaves: int) -> bool:
    return node.level == top_level(leaves)


def initial_counts(task_ids: Iterable[str], leaves: int) -> dict[Node, int]:
    """What each non-empty counter waits for: header parts (leaves) or non-empty children (above)."""
    counts: dict[Node, int] = dict(Counter(leaf_of(task_id, leaves) for task_id in task_ids))
    level_nodes = list(counts)
    for _ in range(top_level(leaves)):
        above = Counter(parent(node) for node in level_nodes)
        counts.update(above)
        level_nodes = list(above)
    return counts


def path(leaf: Node, leaves: int) -> list[Node]:
    """The counters from ``leaf`` up to the top, both included."""
    nodes = [leaf]
    while not is_top(nodes[-1], leaves):
        nodes.append(parent(nodes[-1]))
    return nodes
