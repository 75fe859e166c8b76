"""Request bodies are bounded while they stream, with a Content-Length or chunked.

The attack of issue 15: several concurrent ``Transfer-Encoding: chunked`` POSTs of a
hundred megabytes each, against a real ``vpngw serve`` process. The server must stop
reading each at 1 MiB, answer 413 and close, and its resident memory must stay flat.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.ops.server_process import ServerProcess
from tests.support.api import REGION, signature_params, signed_query

STREAM_BYTES = 100 * 1024 * 1024  # per client; the limit is 1 MiB
CHUNK = b"a=" + b"x" * (64 * 1024 - 2)
STREAMS = 3
RSS_GROWTH_LIMIT = 48 * 1024 * 1024  # three bodies held whole would be 300 MB and more


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssSampler(threading.Thread):
    """The peak resident set of a process, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, rss_bytes(pid), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))


@dataclass
class Outcome:
    sent: int = 0
    status_line: bytes = b""
    ended_by: str = ""


def stream_chunked(port: int, path: str, total: int) -> Outcome:
    """POST ``total`` bytes as chunks until the server answers or closes."""
    outcome = Outcome()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        frame = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
        try:
            while outcome.sent < total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    outcome.ended_by = "answer"
                    break
                sock.sendall(frame)
                outcome.sent += len(CHUNK)
            else:
                sock.sendall(b"0\r\n\r\n")
                outcome.ended_by = "complete"
        except OSError as error:  # the server closed: broken pipe or reset
            outcome.ended_by = type(error).__name__
        try:
            outcome.status_line = sock.recv(65536).split(b"\r\n", 1)[0]
        except OSError:
            pass
    return outcome


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("path", ["/", "/apsara/route/Vpc/DescribeRegions"])
def test_concurrent_chunked_streams_are_cut_at_the_limit_with_flat_memory(
    server: ServerProcess, path: str
) -> None:
    assert server.process is not None
    sampler = RssSampler(server.process.pid)
    baseline = sampler.peak
    sampler.start()
    outcomes: list[Outcome] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(stream_chunked(server.port, path, STREAM_BYTES)))
        for _ in range(STREAMS)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    sampler.done.set()
    sampler.join()
    assert len(outcomes) == STREAMS, "a stream never ended"
    growth = sampler.peak - baseline
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.0f} MiB ({outcomes})"
    for outcome in outcomes:
        # The server stopped reading soon after the limit (socket buffers hold a few MB).
        assert outcome.ended_by != "complete" and outcome.sent < 32 * 1024 * 1024, outcome
        assert outcome.status_line in (
            b"",
            b"HTTP/1.1 413 Request Entity Too Large",
            b"HTTP/1.1 413 Content Too Large",
        ), outcome
    assert any(o.status_line.startswith(b"HTTP/1.1 413") for o in outcomes), outcomes
    assert time.monotonic() - started < 120
    # And the server still serves.
    answer = httpx.post(
        f"{server.url}/", params=signed_query("POST", {"Action": "DescribeRegions"}), timeout=10
    )
    assert answer.status_code == 200, answer.text


def test_a_chunked_body_within_the_limit_is_read_whole(server: ServerProcess) -> None:
    params = {"Action": "DescribeRegions", "RegionId": REGION}
    query = {"Action": "DescribeRegions", **signature_params("POST", params)}

    def body() -> Iterator[bytes]:  # a generator body goes out chunked
        yield b"RegionId="
        yield REGION.encode()

    response = httpx.post(
        f"{server.url}/",
        params=query,
        content=body(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    # The signature covers the body's RegionId: it matches only if the body was read whole.
    assert response.status_code == 200, response.text
    assert response.json()["Regions"]


def test_a_declared_length_over_the_limit_is_refused_before_any_byte(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
        answer = b""
        while piece := sock.recv(65536):  # until the server closes the connection
            answer += piece
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"InvalidBody.TooLarge" in answer and b"connection: close" in answer.lower()
