"""A gRPC server that answers every Firestore call with one error, as the real service would.

The Firestore emulator creates any database and accepts any project on first
use, so it never says that a database is missing or that access is denied.
This server does, with the status codes and messages Cloud Firestore sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

#: Firestore methods that answer with a stream.
_STREAMING = {"BatchGetDocuments", "RunQuery", "RunAggregationQuery", "PartitionQuery"}

#: What Cloud Firestore says, by situation (project and database filled in).
MISSING_DATABASE = (
    grpc.StatusCode.NOT_FOUND,
    (
        "The database {database} does not exist for project {project} Please visit "
        "https://console.cloud.google.com/datastore/setup?project={project} to add a Cloud Datastore "
        "or Cloud Firestore database."
    ),
)
PROJECT_WITHOUT_DATABASE = (
    grpc.StatusCode.NOT_FOUND,
    (
        "The project {project} does not exist or it does not contain an active Cloud Datastore or "
        "Cloud Firestore database. Please visit http://console.cloud.google.com to create a project or "
        "https://console.cloud.google.com/datastore/setup?project={project} to add a Cloud Datastore or "
        "Cloud Firestore database."
    ),
)
PERMISSION_DENIED = (grpc.StatusCode.PERMISSION_DENIED, "Missing or insufficient permissions.")
NO_DOCUMENT = (
    grpc.StatusCode.NOT_FOUND,
    "No document to update: projects/{project}/databases/{database}/documents/celery/chord-unlock-x",
)


class RefusingFirestore(grpc.GenericRpcHandler):
    """Serve on a free loopback port; every call fails with ``code`` and ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        self.message = message
        self.calls: list[str] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((self,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def start(self) -> RefusingFirestore:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        method = handler_call_details.method.rsplit("/", 1)[-1]
        self.calls.append(method)

        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            context.abort(self.code, self.message)

        def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            context.abort(self.code, self.message)
            yield b""  # never reached: makes this a generator

        if method in _STREAMING:
            return grpc.unary_stream_rpc_method_handler(stream)
        return grpc.unary_unary_rpc_method_handler(unary)
