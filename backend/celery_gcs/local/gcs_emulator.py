"""Run gcp-storage-emulator, made to behave like GCS where celery-gcs depends on it.

The emulator is real code serving the real JSON API, but six of its gaps
would make tests pass that fail on GCS, or fail or crawl where GCS would not:

* it ignores ``ifGenerationMatch``, so create-only and compare-and-swap
  writes always succeed; here they answer 412 as GCS does;
* it answers a missing bucket with an empty 404, where GCS says "The
  specified bucket does not exist."; here it says so;
* its downloads omit ``x-goog-generation``, which GCS sends and the client
  reads to learn which generation it got; here they carry it;
* its HTTP server listens with a backlog of 5, refusing bursts of parallel
  connections; here the backlog is 1024;
* it re-serialises the metadata of every object after every write, so a
  write costs time in proportion to the objects stored (a 10,000-part chord
  would take hours); in memory there is nothing to persist, so it doesn't;
* it lists every object in one page, ignoring ``maxResults`` and
  ``pageToken``; here listings come in pages of at most 1,000, in name
  order, with ``nextPageToken``, as GCS sends them.

Run as ``python -m celery_gcs.local.gcs_emulator PORT``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus, server
from typing import Any

E_NO_BUCKET = "The specified bucket does not exist."
#: GCS's largest (and default) page of a listing.
MAX_PAGE = 1000

# The emulator serves one request at a time; this carries the precondition of
# the request being served from the handler down to Storage.create_file.
_precondition = threading.local()


class _PreconditionFailed(Exception):
    pass


def _error(response: Any, status: HTTPStatus, message: str, reason: str) -> None:
    response.status = status
    body = {"code": status.value, "message": message, "errors": [{"message": message, "reason": reason}]}
    response.json({"error": body})


def _faithful(handler: Callable[..., Any], storage: Any) -> Callable[..., Any]:
    def wrapped(request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        bucket = request.params.get("bucket_name") if request.params else None
        if bucket and bucket not in storage.buckets:
            return _error(response, HTTPStatus.NOT_FOUND, E_NO_BUCKET, "notFound")
        match = request.query.get("ifGenerationMatch")
        _precondition.generation = int(match[0]) if match else None
        try:
            result = handler(request, response, *args, **kwargs)
            if request.path.startswith("/download/") and response.status == HTTPStatus.OK:
                current = storage.objects.get(bucket, {}).get(request.params.get("object_id"))
                if current:
                    response["x-goog-generation"] = current["generation"]
                    response["x-goog-metageneration"] = current["metageneration"]
            return result
        except _PreconditionFailed:
            message = "At least one of the pre-conditions you specified did not hold."
            return _error(response, HTTPStatus.PRECONDITION_FAILED, message, "conditionNotMet")
        finally:
            _precondition.generation = None

    return wrapped


def _paged(ls: Callable[..., Any]) -> Callable[..., Any]:
    """A listing in GCS's pages: name order, at most ``maxResults`` (1,000) items, then a page token."""

    def paged(request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        result = ls(request, response, *args, **kwargs)
        if response.status != HTTPStatus.OK:
            return result
        listing = json.loads(response._content)
        items = sorted(listing.get("items") or [], key=lambda item: item["name"])
        after = (request.query.get("pageToken") or [""])[0]
        size = min(int((request.query.get("maxResults") or [MAX_PAGE])[0]), MAX_PAGE)
        rest = [item for item in items if item["name"] > after]
        listing["items"] = rest[:size]
        listing.pop("nextPageToken", None)
        if len(rest) > size:
            listing["nextPageToken"] = rest[size - 1]["name"]
        response.json(listing)
        return result

    return paged


def _checked_create_file(storage: Any) -> Callable[..., Any]:
    create_file = storage.create_file

    def checked(bucket_name: str, file_name: str, *args: Any, **kwargs: Any) -> Any:
        expected = getattr(_precondition, "generation", None)
        if expected is not None:
            current = storage.objects.get(bucket_name, {}).get(file_name)
            actual = int(current["generation"]) if current else 0
            if actual != expected:
                raise _PreconditionFailed()
        return create_file(bucket_name, file_name, *args, **kwargs)

    return checked


def serve(port: int) -> None:
    from gcp_storage_emulator import server as emulator_server
    from gcp_storage_emulator.handlers import objects

    server.HTTPServer.request_queue_size = 1024
    emulator = emulator_server.create_server("127.0.0.1", port, in_memory=True)
    storage = emulator._storage
    storage._write_config_to_file = lambda: None  # in memory: nothing to persist
    storage.create_file = _checked_create_file(storage)
    emulator_server.HANDLERS = tuple(
        (
            pattern,
            {
                method: _faithful(_paged(handler) if handler is objects.ls else handler, storage)
                for method, handler in methods.items()
            },
        )
        for pattern, methods in emulator_server.HANDLERS
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    emulator.run()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m celery_gcs.local.gcs_emulator PORT")
    serve(int(sys.argv[1]))
