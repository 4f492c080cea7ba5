"""A fake Cloud Firestore for what the emulator cannot do: refuse a call, serve the admin API."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from google.cloud import firestore_admin_v1
from google.cloud.firestore_v1.types import firestore as firestore_types

from .loopback import LoopbackService

#: A status code and a message template (project and database filled in by ``answer``).
Answer = tuple[grpc.StatusCode, str]

#: What Cloud Firestore says, by situation.
MISSING_DATABASE: Answer = (
    grpc.StatusCode.NOT_FOUND,
    (
        "The database {database} does not exist for project {project} Please visit "
        "https://console.cloud.google.com/datastore/setup?project={project} to add a Cloud Datastore "
        "or Cloud Firestore database."
    ),
)
PROJECT_WITHOUT_DATABASE: Answer = (
    grpc.StatusCode.NOT_FOUND,
    (
        "The project {project} does not exist or it does not contain an active Cloud Datastore or "
        "Cloud Firestore database. Please visit http://console.cloud.google.com to create a project or "
        "https://console.cloud.google.com/datastore/setup?project={project} to add a Cloud Datastore or "
        "Cloud Firestore database."
    ),
)
PERMISSION_DENIED: Answer = (
    grpc.StatusCode.PERMISSION_DENIED,
    "Missing or insufficient permissions.",
)
NO_DOCUMENT: Answer = (
    grpc.StatusCode.NOT_FOUND,
    "No document to update: projects/{project}/databases/{database}/documents/celery/chord-unlock-x",
)

#: Firestore methods that answer with a stream.
_STREAMING = {"BatchGetDocuments", "RunQuery", "RunAggregationQuery", "PartitionQuery"}
_RUN_QUERY = "/google.firestore.v1.Firestore/RunQuery"
_GET_FIELD = "/google.firestore.admin.v1.FirestoreAdmin/GetField"


def answer(situation: Answer, **names: str) -> Answer:
    """``situation`` with its project and database filled in."""
    code, message = situation
    return code, message.format(**names)


class FakeFirestore(LoopbackService, grpc.GenericRpcHandler):
    """Firestore's and its admin API's gRPC services.

    The emulator creates any database and accepts any project on first use, so
    it never says that a database is missing or that access is denied, and it
    has no admin API. This server does both, over the real wire protocol:

    * ``refusal``: every call fails with this status and message;
    * otherwise ``RunQuery`` finds no documents and ``GetField`` answers a field
      carrying ``ttl_config`` (None: a field without a TTL policy), except in the
      collection groups ``without_ttl`` names, whose fields have none.

    ``calls`` lists the methods called, ``fields_asked`` the fields GetField was asked for.
    """

    def __init__(
        self,
        *,
        refusal: Answer | None = None,
        ttl_config: firestore_admin_v1.Field.TtlConfig | None = None,
        without_ttl: tuple[str, ...] = (),
    ) -> None:
        self.refusal = refusal
        self.ttl_config = ttl_config
        self.without_ttl = without_ttl
        self.calls: list[str] = []
        self.fields_asked: list[str] = []
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((self,))
        port = server.add_insecure_port("127.0.0.1:0")
        self.listen(port, serve=server.start, close=lambda: server.stop(grace=None))

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        name = method.rsplit("/", 1)[-1]
        self.calls.append(name)
        if self.refusal is not None:
            return self._refuse(name, *self.refusal)
        if method == _RUN_QUERY:
            return grpc.unary_stream_rpc_method_handler(
                lambda request, context: iter(()),
                request_deserializer=firestore_types.RunQueryRequest.deserialize,
                response_serializer=firestore_types.RunQueryResponse.serialize,
            )
        if method == _GET_FIELD:
            return grpc.unary_unary_rpc_method_handler(
                self._get_field,
                request_deserializer=firestore_admin_v1.GetFieldRequest.deserialize,
                response_serializer=firestore_admin_v1.Field.serialize,
            )
        return None  # UNIMPLEMENTED, as for any method the tests do not need

    def _get_field(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fields_asked.append(request.name)
        group = request.name.split("/collectionGroups/", 1)[1].split("/", 1)[0]
        if self.ttl_config is None or group in self.without_ttl:
            return firestore_admin_v1.Field(name=request.name)
        return firestore_admin_v1.Field(name=request.name, ttl_config=self.ttl_config)

    @staticmethod
    def _refuse(name: str, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            context.abort(code, message)

        def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            context.abort(code, message)
            yield b""  # never reached: makes this a generator

        if name in _STREAMING:
            return grpc.unary_stream_rpc_method_handler(stream)
        return grpc.unary_unary_rpc_method_handler(unary)
