"""stores/chord_tree.py: the counters' tree, counted down part by part as the coordinator does."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter

import pytest
from celery_gcs.stores import chord_tree
from celery_gcs.stores.chord_tree import FAN_IN, Node


def _count_all(task_ids: list[str]) -> tuple[int, Counter[Node]]:
    """Count every part down as the coordinator does; (parts whose count filled the top, writes per counter)."""
    leaves = chord_tree.leaf_count(len(task_ids))
    remaining = chord_tree.initial_counts(task_ids, leaves)
    writes: Counter[Node] = Counter(dict.fromkeys(remaining, 1))  # the write that created each counter
    completions = 0
    for task_id in task_ids:
        node = chord_tree.leaf_of(task_id, leaves)
        while True:
            remaining[node] -= 1
            writes[node] += 1
            assert remaining[node] >= 0
            if remaining[node] > 0:
                break
            if chord_tree.is_top(node, leaves):
                completions += 1
                break
            writes[node] += 1  # marked reported
            node = chord_tree.parent(node)
    return completions, writes


@pytest.mark.parametrize("size", [1, 2, FAN_IN, FAN_IN + 1, 100, 1_000, 20_000])
def test_the_last_part_and_only_it_fills_the_top_counter(size: int) -> None:
    ids = [str(uuid.uuid4()) for _ in range(size)]
    completions, writes = _count_all(ids)
    assert completions == 1
    # A counter is written once per child (FAN_IN on average: leaves get the
    # task ids hashing to them), plus its creation and its report.
    assert max(writes.values()) <= 3 * FAN_IN + 2
    above = [count for node, count in writes.items() if node.level > 0]
    assert max(above, default=0) <= FAN_IN + 2


@pytest.mark.parametrize("size", [100, 1_000, 20_000])
def test_commits_per_part_do_not_grow_with_the_chord(size: int) -> None:
    ids = [str(uuid.uuid4()) for _ in range(size)]
    leaves = chord_tree.leaf_count(size)
    counts = chord_tree.initial_counts(ids, leaves)
    reports = sum(1 for node in counts if not chord_tree.is_top(node, leaves))
    # One commit per part, plus one per counter filled below the top.
    assert (size + reports) / size < 1 + 2 / FAN_IN


def test_a_chord_of_one_part_has_one_counter_which_is_the_top() -> None:
    assert chord_tree.initial_counts(["a"], chord_tree.leaf_count(1)) == {Node(0, 0, 1): 1}
    assert chord_tree.is_top(Node(0, 0, 1), 1)


def test_every_path_ends_at_the_one_top_counter() -> None:
    leaves = chord_tree.leaf_count(20_000)
    tops = {chord_tree.path(Node(0, index, leaves), leaves)[-1] for index in range(leaves)}
    assert tops == {Node(chord_tree.top_level(leaves), 0, leaves)}


def test_a_task_hashes_to_the_same_leaf_in_every_process() -> None:
    """Python's own hash() differs per process; the leaf must not."""
    code = "from celery_gcs.stores import chord_tree; print(chord_tree.leaf_of('task-1', 997).index)"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert seen == {str(chord_tree.leaf_of("task-1", 997).index)}


def test_counter_document_ids_round_trip() -> None:
    assert Node.from_document_id(Node(3, 41, 2000).document_id) == Node(3, 41, 2000)
