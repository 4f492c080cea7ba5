"""celery-gcs: a Celery result backend on Google Cloud Storage, chords on Firestore.

Use it with ``result_backend = "gcs://BUCKET[/PREFIX]"``; see the README.
Everything public is named in ``__all__`` and loaded on first use, so
``import celery_gcs.conventions`` (the Pulumi components do) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

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
    "TimedOut",
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
        TimedOut,
        TransientError,
    )
    from .settings import Settings

_HOMES = {"GCSBackend": "backend", "Settings": "settings"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'celery_gcs' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_HOMES.get(name, 'errors')}", __name__), name)
