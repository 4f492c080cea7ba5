"""Task and group ids become object names safely, and distinct ids stay distinct."""

from __future__ import annotations

import uuid

import pytest
from celery_gcs.keys import encode_id

UUID = str(uuid.uuid4())


def test_ordinary_ids_are_kept_as_the_builtin_backend_writes_them() -> None:
    for task_id in (UUID, "my-task_1", "job:42@host", "a.b", "x=1,y+2"):
        assert encode_id(task_id) == task_id


@pytest.mark.parametrize(
    "task_id",
    ["a/b", "../../etc", "..", "a\nb", "a\rb", "tab\there", "nul\x00x", "space here", "ünïcode", "a~b", "50%"],
)
def test_unsafe_ids_are_encoded_without_slashes_dots_pairs_or_control_characters(task_id: str) -> None:
    name = encode_id(task_id)
    assert "/" not in name and ".." not in name
    assert all(ord(char) >= 0x20 and char.isascii() for char in name)
    assert "%" in name


def test_overlong_ids_are_hashed_to_a_bounded_name() -> None:
    long_id = "x" * 5000
    name = encode_id(long_id)
    assert name.startswith("%hash-") and len(name) < 100
    assert encode_id("y" * 5000) != name


def test_encoding_is_injective_across_the_three_forms() -> None:
    ids = [
        "a/b", "a%2Fb", "a.b", "a%2Eb", "..", "%2E%2E", "%hash-" + "0" * 64, "a~b", "a%7Eb",
        "x" * 513, "x" * 512, "é", "%C3%A9", "a b", "a%20b", UUID,
    ]  # fmt: skip
    names = [encode_id(task_id) for task_id in ids]
    assert len(set(names)) == len(ids)


@pytest.mark.parametrize("group_id", [UUID, "a~b", "~", "a~sent1", "%7E", "x" * 5000, "ü~"])
def test_no_encoded_id_holds_a_tilde_so_a_chords_sent_record_names_one_chord(group_id: str) -> None:
    """``StoredResults.chord_sent_key`` puts ``~sent<run>`` after the encoded group id."""
    assert "~" not in encode_id(group_id)
