"""Request heads on vpngw's HTTP protocol (uvicorn's httptools parser, llhttp).

llhttp puts no bound on a request head and accepts an HTTP/1.1 request without ``Host``;
h11, the parser before it, did neither. Against a real ``vpngw serve`` process: a head still
incomplete past 16 KiB gets h11's answer (400 ``Invalid HTTP request received.``, connection
closed) and nothing more is read, a head just under the bound is served, a request without
``Host`` is refused the same way, and keep-alive and pipelined requests are answered in order.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ops.server_process import ServerProcess
from tests.support.api import signed_query
from vpngw.api.http_server import MAX_HEAD_BYTES

INVALID = b"Invalid HTTP request received."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir: Path = tmp_path_factory.mktemp("heads")
    process = ServerProcess(f"sqlite:///{workdir / 'vpngw.db'}", workdir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def exchange(port: int, pieces: list[bytes]) -> tuple[bytes, bool]:
    """Send ``pieces`` one by one (a pause between them, so each is its own read), then read
    until the server closes. Returns what came back and whether every piece was sent."""
    sent_all = True
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:  # the server closed first
                sent_all = False
                break
            time.sleep(0.1)
        answer = read_until_closed(sock)
    return answer, sent_all


def header_lines(total: int) -> list[bytes]:
    """``total`` bytes of ``X-Pad`` header lines, 1 KiB each."""
    line = b"X-Pad: " + b"a" * (1024 - 9) + b"\r\n"
    return [line] * (total // len(line))


def test_a_head_past_the_bound_gets_400_and_the_connection_is_closed(server: ServerProcess) -> None:
    start = b"GET / HTTP/1.1\r\nHost: x\r\n"
    lines = header_lines(MAX_HEAD_BYTES + 4096)  # each 1 KiB line its own read, never a blank line
    answer, _ = exchange(server.port, [start, *lines])
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.endswith(INVALID) and b"connection: close" in answer.lower()
    # And one long header line split in two reads: the same answer.
    answer, _ = exchange(server.port, [start + b"X-Long: " + b"b" * 10_000, b"b" * 10_000])
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(INVALID), answer[:200]


def test_a_head_that_never_ends_is_cut_near_the_bound(server: ServerProcess) -> None:
    """1 MiB of header lines: the server stops reading near 16 KiB, not at the end."""
    start = b"GET / HTTP/1.1\r\nHost: x\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(start)
        sent = len(start)
        closed = False
        for line in header_lines(1024 * 1024):
            try:
                sock.sendall(line)
            except OSError:
                closed = True
                break
            sent += len(line)
            if sent > 64 * 1024:
                time.sleep(0.01)  # let the server's answer and close arrive
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400 ") or closed, answer[:200]
    assert sent < 1024 * 1024, "the whole megabyte of head was accepted"


def test_a_head_under_the_bound_is_served(server: ServerProcess) -> None:
    start = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    lines = header_lines(MAX_HEAD_BYTES - 2048)
    answer, sent_all = exchange(server.port, [start, *lines, b"\r\n"])
    assert sent_all
    # vpngw's own answer: the request reached the API (no Action in it).
    assert answer.startswith(b"HTTP/1.1 400 ") and b"MissingParameter.Action" in answer, answer[:300]


def test_an_http11_request_without_host_is_refused(server: ServerProcess) -> None:
    answer, _ = exchange(server.port, [b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(INVALID), answer[:200]
    # HTTP/1.0 needs no Host.
    answer, _ = exchange(server.port, [b"GET / HTTP/1.0\r\n\r\n"])
    assert b"MissingParameter.Action" in answer, answer[:300]


def test_pipelined_and_kept_alive_requests_are_answered_in_order(server: ServerProcess) -> None:
    def first() -> bytes:  # a fresh nonce each time
        query = httpx.QueryParams(signed_query("GET", {"Action": "DescribeRegions"}))
        return f"GET /?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()

    second = b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer, _ = exchange(server.port, [first() + second])
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 404 " in answer
    assert answer.index(b'"Regions"') < answer.index(b"InvalidAction.NotFound")
    # After a pipelined pair, a head that then grows past the bound is still refused.
    third = b"GET / HTTP/1.1\r\nHost: x\r\n"
    answer, _ = exchange(server.port, [first() + third, *header_lines(MAX_HEAD_BYTES + 4096)])
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(INVALID), answer[-200:]
