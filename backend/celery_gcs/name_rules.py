"""Naming rules of GCS buckets and Firestore databases and collections.

Shared by the backend's settings and the Pulumi program, so both reject the
same names with the same words. Imports nothing but the standard library.
"""

from __future__ import annotations

import ipaddress
import re

from . import conventions

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
_DATABASE_RE = re.compile(r"^[a-z][a-z0-9-]{2,61}[a-z0-9]$")


def bucket_problem(name: str) -> str | None:
    """What is wrong with a bucket name under GCS's naming rules, or None."""
    if not 3 <= len(name) <= 222:
        return "bucket names are 3 to 222 characters"
    if not _BUCKET_RE.match(name):
        return "use lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    if any(len(part) > 63 or not part for part in name.split(".")):
        return "each dot-separated part is 1 to 63 characters"
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        return "names may not start with 'goog' or contain 'google'"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return None
    return "a bucket name may not be an IP address"


def project_problem(project: str) -> str | None:
    if not project or any(c.isspace() or c == "/" for c in project):
        return "a project id has no spaces or slashes"
    return None


def database_problem(database: str) -> str | None:
    if database == conventions.FIRESTORE_DATABASE or _DATABASE_RE.match(database):
        return None
    return "use '(default)' or 4-63 lowercase letters, digits and '-', starting with a letter"


def collection_problem(collection: str) -> str | None:
    if not collection or "/" in collection or collection in (".", ".."):
        return "a collection id is a non-empty name without '/'"
    if collection.startswith("__") and collection.endswith("__"):
        return "ids of the form __name__ are reserved by Firestore"
    if len(collection.encode()) > 1500:
        return "a collection id is at most 1500 bytes"
    return None
