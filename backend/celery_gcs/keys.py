"""Task and group ids as parts of GCS object names and Firestore document ids.

Ordinary ids (UUIDs, and most ids people choose) are kept as they are, so
object names match the built-in ``gs://`` backend's. Anything that could
leave the prefix or break a name (``/``, ``..``, control characters, non-ASCII,
over-long ids) is %-encoded, or hashed when still too long.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse

# Ids made of these characters (and without "..") are used as they are, so
# object names match the built-in backend's; anything else is %-encoded.
_VERBATIM_ID = re.compile(r"^[A-Za-z0-9_.:@+=,-]+$")
# Longest id kept readable in an object name; longer ones are hashed. GCS
# allows 1024 bytes per name, which must also hold the base path and prefix.
_MAX_ID_BYTES = 512


def encode_id(task_id: str) -> str:
    """A task or group id as it appears in an object name.

    Injective: verbatim ids contain no ``%``; %-encoded ones always do; hashed
    ones start with ``%hash-``, which %-encoding never produces.
    """
    if _VERBATIM_ID.match(task_id) and ".." not in task_id and len(task_id) <= _MAX_ID_BYTES:
        return task_id
    encoded = "".join(
        char if char.isascii() and (char.isalnum() or char in "_-") else urllib.parse.quote(char, safe="")
        for char in task_id
    )
    # quote() leaves nothing in "._~" escaped; escape them ourselves.
    encoded = encoded.replace(".", "%2E").replace("~", "%7E")
    if len(encoded.encode()) > _MAX_ID_BYTES:
        return "%hash-" + hashlib.sha256(task_id.encode()).hexdigest()
    return encoded


def part_document_id(task_id: str) -> str:
    """A task id as the id of its chord part's Firestore document.

    Its object-name form (``encode_id``), except where Firestore refuses that:
    ``encode_id`` keeps ``.`` and ``__name__`` as they are, fine in object
    names, but Firestore rejects ``.`` as an id and reserves ``__.*__``. Their
    first character is %-escaped, which ``encode_id`` never does to ``.`` or
    ``_``, so no two task ids share a document.
    """
    encoded = encode_id(task_id)
    if encoded == "." or (encoded.startswith("__") and encoded.endswith("__")):
        return f"%{ord(encoded[0]):02X}{encoded[1:]}"
    return encoded
