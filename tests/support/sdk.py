"""The official SDKs in tests: a Tea client pointed at a test server, and a loopback server
that records the bytes an SDK sends (answering a fixed JSON body) so tests can verify,
alter or replay them."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from alibabacloud_tea_openapi import models as openapi_models
from alibabacloud_vpc20160428.client import Client as TeaClient

from tests.support.api import REGION, TEST_KEY_ID, TEST_KEY_SECRET


def tea_client(server_url: str, signature: str | None) -> TeaClient:
    """The Tea SDK for the test account; ``signature`` 'v2' signs RPC v1, None ACS3."""
    config = openapi_models.Config(
        access_key_id=TEST_KEY_ID,
        access_key_secret=TEST_KEY_SECRET,
        region_id=REGION,
        endpoint=server_url.removeprefix("http://"),
        protocol="http",
    )
    if signature:
        config.signature_algorithm = signature
    return TeaClient(config)


@dataclasses.dataclass
class Captured:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@contextmanager
def capturing_server(answer: Mapping[str, object], into: list[Captured]) -> Iterator[int]:
    """A server on a loopback port (yielded) that appends every request to ``into``."""
    payload = json.dumps(answer).encode()

    class Recorder(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            into.append(Captured(self.command, self.path, headers, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _record
        do_POST = _record

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
