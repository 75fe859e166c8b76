"""Slow and idle clients cannot hold the server.

Against a real ``vpngw serve`` process: a connection that has not sent a complete request
head within 10 s is closed (idle, trickling a byte a second, or kept alive after an
answer); and with a low descriptor limit, idle sockets that exhaust it neither lock
legitimate clients out for good nor flood the log."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ops.server_process import ServerProcess
from tests.support.api import signed_query
from vpngw.api.dialects import BODY_TIMEOUT_S
from vpngw.api.http_server import HEAD_TIMEOUT_S

SLACK_S = 4.0  # a shared, loaded machine


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def closed_after(sock: socket.socket, deadline_s: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (None if it does not by the deadline),
    sending ``trickle`` one byte a second meanwhile."""
    started = time.monotonic()
    sock.settimeout(1.0)
    sent = 0
    while time.monotonic() - started < deadline_s:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
        if sent < len(trickle):
            try:
                sock.sendall(trickle[sent : sent + 1])
            except OSError:
                return time.monotonic() - started
            sent += 1
    return None


def test_connections_without_a_complete_head_are_closed_in_time(server: ServerProcess) -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 40 + b"\r\n\r\n"
    kinds = {"idle": b"", "partial": b"", "trickle": head}
    sockets = {kind: socket.create_connection(("127.0.0.1", server.port)) for kind in kinds}
    sockets["partial"].sendall(head[:20])
    # A kept-alive connection: one answered request, then nothing.
    kept = socket.create_connection(("127.0.0.1", server.port))
    kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept.recv(65536).startswith(b"HTTP/1.1 400")
    results: dict[str, float | None] = {}

    def watch(kind: str, sock: socket.socket, trickle: bytes) -> None:
        results[kind] = closed_after(sock, HEAD_TIMEOUT_S + SLACK_S + 10, trickle)

    threads = [threading.Thread(target=watch, args=(k, sockets[k], kinds[k])) for k in kinds]
    threads.append(threading.Thread(target=watch, args=("kept", kept, b"G")))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sock in [*sockets.values(), kept]:
        sock.close()
    assert all(seconds is not None for seconds in results.values()), results
    assert all(seconds <= HEAD_TIMEOUT_S + SLACK_S for seconds in results.values() if seconds), results
    # Not too early: the trickler is still sending its head at 5 s.
    assert results["trickle"] is not None and results["trickle"] >= HEAD_TIMEOUT_S - 1, results


def test_a_request_that_arrives_in_time_is_answered(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[:6]:
            sock.sendall(bytes([byte]))
            time.sleep(0.5)  # 3 s for the first bytes, within the 10 s
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[6:])
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")  # answered: no Action


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_exhausted_descriptors_free_up_and_the_log_stays_small(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path, max_files=64)
    server.start()
    idle: list[socket.socket] = []
    try:
        assert server.process is not None
        query = signed_query("POST", {"Action": "DescribeRegions"})
        assert httpx.post(f"{server.url}/", params=query, timeout=10).status_code == 200  # warm
        spare = 64 - open_files(server.process.pid)
        assert 5 < spare < 64
        # More idle sockets than the server has descriptors: accept() fails with EMFILE.
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(spare + 20)]
        time.sleep(3)
        assert open_files(server.process.pid) >= 63
        # A legitimate client waits in the listen queue, and is served once the idle
        # sockets are closed by the head timeout and descriptors free up.
        started = time.monotonic()
        query = signed_query("POST", {"Action": "DescribeRegions"})
        answer = httpx.post(f"{server.url}/", params=query, timeout=3 * HEAD_TIMEOUT_S + 20)
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started < 3 * HEAD_TIMEOUT_S + 15
    finally:
        for sock in idle:
            sock.close()
        server.stop()
    log = server.log_text()
    failures = [line for line in log.splitlines() if "cannot accept connections" in line]
    assert 1 <= len(failures) <= 6, log[-3000:]
    assert "Too many open files" in failures[0]
    assert "out of system resource" not in log
    assert len(log) < 20_000, f"{len(log)} bytes of log"


def test_a_trickled_body_is_cut_off(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nAction=De")
        started = time.monotonic()
        sock.settimeout(2)
        answer = b""
        while time.monotonic() - started < BODY_TIMEOUT_S + SLACK_S + 10:
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                sock.sendall(b"s")  # a byte every 2 s: the body keeps coming, too slowly
                continue
            if not piece:
                break  # closed by the server
            answer += piece
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"InvalidBody.Timeout" in answer and b"connection: close" in answer.lower()
    assert BODY_TIMEOUT_S - 1 <= elapsed <= BODY_TIMEOUT_S + SLACK_S
