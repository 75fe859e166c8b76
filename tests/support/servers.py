"""A vpngw API server on a loopback port, in a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support.postgres import free_port
from vpngw.api.app import build_app
from vpngw.api.http_server import api_server
from vpngw.auth.authenticator import Authenticator
from vpngw.config import Settings
from vpngw.store.engine import Database


@contextmanager
def live_server(db: Database, settings: Settings, authenticator: Authenticator) -> Iterator[str]:
    """Yields the base URL (``http://127.0.0.1:PORT``) of a running server."""
    port = free_port()
    # The server vpngw serve runs (its protocol and limits), so the SDK tests cross them too.
    server = api_server(
        build_app(db, settings, authenticator), host="127.0.0.1", port=port, log_level="warning"
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        db.dispose()
