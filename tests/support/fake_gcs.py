"""A fake GCS for what the emulator cannot do: deny a permission, refuse a bucket look-up."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from celery_gcs import conventions

from .loopback import LoopbackService


@dataclass
class FakeGCS(LoopbackService):
    """A bucket's metadata and ``testIamPermissions`` over GCS's JSON API, as GCS answers them."""

    scheme = "http://"

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

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

        def close() -> None:
            server.shutdown()
            server.server_close()

        serving = threading.Thread(target=server.serve_forever, daemon=True)
        self.listen(server.server_address[1], serve=serving.start, close=close)

    def metadata(self) -> dict[str, Any]:
        return {
            "kind": "storage#bucket",
            "name": self.bucket,
            "location": "EUROPE-WEST1",
            "lifecycle": {"rule": conventions.lifecycle_rules()},
            "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}},
        }
