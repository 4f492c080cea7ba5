"""Stand-ins for what the emulators cannot be made to do: deny a permission, refuse a
bucket look-up, serve the Firestore admin API. Each speaks the real wire protocol
(GCS's JSON API over HTTP, Firestore's gRPC services), so the doctor's real
clients talk to them unchanged.
"""

from __future__ import annotations

import json
import threading
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import grpc
from celery_gcs.local import services
from google.cloud import firestore_admin_v1
from google.cloud.firestore_v1.types import firestore as firestore_types


@dataclass
class FakeGCS:
    """A bucket's metadata and ``testIamPermissions``, answered as GCS would."""

    bucket: str
    granted: list[str] = field(default_factory=list)
    #: Status of the bucket look-up: 200 with the metadata, or an error status.
    bucket_status: int = 200
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                if path == f"/storage/v1/b/{fake.bucket}/iam/testPermissions":
                    self._send(
                        200,
                        {"kind": "storage#testIamPermissionsResponse", "permissions": fake.granted},
                    )
                elif path == f"/storage/v1/b/{fake.bucket}" and fake.bucket_status == 200:
                    self._send(200, fake.metadata())
                elif path == f"/storage/v1/b/{fake.bucket}":
                    message = "caller does not have storage.buckets.get access to the Google Cloud Storage bucket."
                    self._send(
                        fake.bucket_status,
                        {"error": {"code": fake.bucket_status, "message": message}},
                    )
                else:
                    self._send(404, {"error": {"code": 404, "message": "Not Found"}})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def metadata(self) -> dict[str, Any]:
        return {
            "kind": "storage#bucket",
            "name": self.bucket,
            "location": "EUROPE-WEST1",
            "lifecycle": {"rule": services.recommended_lifecycle()},
            "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}},
        }

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class FakeFirestore:
    """Firestore's ``RunQuery`` (no documents) and the admin API's ``GetField``.

    GetField answers a field carrying ``ttl_config`` (None: a field without a
    TTL policy); ``query_error`` makes RunQuery fail with that status instead.
    """

    ttl_config: firestore_admin_v1.Field.TtlConfig | None = None
    query_error: tuple[grpc.StatusCode, str] | None = None
    fields_asked: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        firestore_service = grpc.method_handlers_generic_handler(
            "google.firestore.v1.Firestore",
            {
                "RunQuery": grpc.unary_stream_rpc_method_handler(
                    self._run_query,
                    request_deserializer=firestore_types.RunQueryRequest.deserialize,
                    response_serializer=firestore_types.RunQueryResponse.serialize,
                )
            },
        )
        admin_service = grpc.method_handlers_generic_handler(
            "google.firestore.admin.v1.FirestoreAdmin",
            {
                "GetField": grpc.unary_unary_rpc_method_handler(
                    self._get_field,
                    request_deserializer=firestore_admin_v1.GetFieldRequest.deserialize,
                    response_serializer=firestore_admin_v1.Field.serialize,
                )
            },
        )
        self.server.add_generic_rpc_handlers((firestore_service, admin_service))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _run_query(self, request: Any, context: grpc.ServicerContext) -> Any:
        if self.query_error:
            context.abort(*self.query_error)
        return iter(())

    def _get_field(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fields_asked.append(request.name)
        if self.ttl_config is None:
            return firestore_admin_v1.Field(name=request.name)
        return firestore_admin_v1.Field(name=request.name, ttl_config=self.ttl_config)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)
