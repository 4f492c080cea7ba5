"""celery-gcs: a Celery result backend on Google Cloud Storage, chords on Firestore.

Use it with ``result_backend = "gcs://BUCKET[/PREFIX]"``; see the README.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "AccessDenied",
    "BucketNotFound",
    "CeleryGCSError",
    "ConfigurationError",
    "CorruptResult",
    "DatabaseNotFound",
    "GCSBackend",
    "ResultTooLarge",
    "Settings",
    "StoreError",
    "TransientError",
]

if TYPE_CHECKING:
    from .backend import GCSBackend
    from .errors import (
        AccessDenied,
        BucketNotFound,
        CeleryGCSError,
        ConfigurationError,
        CorruptResult,
        DatabaseNotFound,
        ResultTooLarge,
        StoreError,
        TransientError,
    )
    from .settings import Settings

_HOMES = {"GCSBackend": "backend", "Settings": "settings"}


def __getattr__(name: str) -> Any:
    # Lazy, so `import celery_gcs.defaults` (the Pulumi program does) stays cheap.
    if name not in __all__:
        raise AttributeError(f"module 'celery_gcs' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_HOMES.get(name, 'errors')}", __name__), name)
