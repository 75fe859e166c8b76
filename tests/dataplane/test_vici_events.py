"""charon's event listener (charon/vici_events.py): between events its thread waits
without waking (1,000 idle gateways are 1,000 listeners), and stop() still ends it at once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpngw.dataplane.charon.vici_events import EventListener

from .fake_charon import FakeCharon


@pytest.fixture
def vici_path(tmp_path: Path) -> Iterator[str]:
    """A VICI socket path served by fake charons (one per connection)."""
    path = str(tmp_path / "charon.vici")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    fakes: list[FakeCharon] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            fakes.append(FakeCharon(conn))

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield path
    finally:
        server.close()
        for fake in fakes:
            fake.stop()


def test_an_idle_listener_blocks_until_stopped(vici_path: str) -> None:
    listener = EventListener(vici_path, lambda kind, event: None, name="idle-test")
    listener.start()
    assert listener.wait_ready(5.0)
    sock = listener._sock  # noqa: SLF001 - what decides whether the thread wakes up
    assert sock is not None
    assert sock.gettimeout() is None  # no periodic wake-up between events
    time.sleep(0.2)
    assert listener.alive
    started = time.monotonic()
    listener.stop()
    assert not listener.alive
    assert time.monotonic() - started < 1.0


def test_a_listener_stopped_before_its_thread_runs_ends_at_once(vici_path: str) -> None:
    listener = EventListener(vici_path, lambda kind, event: None, name="early-stop-test")
    listener.stop()  # nothing to shut down yet
    listener.start()
    deadline = time.monotonic() + 2.0
    while listener.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not listener.alive
    assert not listener.wait_ready(0.0)
