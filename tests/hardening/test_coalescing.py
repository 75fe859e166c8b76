"""CoalescingTransport: the writes of one event-loop iteration (a response's head and body)
reach the socket in one write, in order, and nothing buffered is lost when the connection is
closed right after (a 400, a connection that is not kept alive)."""

from __future__ import annotations

import asyncio
from typing import Any

from vpngw.api.http_server import CoalescingTransport


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_writes_of_one_iteration_go_out_as_one() -> None:
    async def run() -> Recording:
        inner = Recording()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        assert inner.writes == []  # not yet: the loop's next iteration sends both
        await asyncio.sleep(0)
        transport.write(b"next")
        await asyncio.sleep(0)
        return inner

    inner = asyncio.run(run())
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


def test_close_sends_what_is_buffered_first_and_abort_drops_it() -> None:
    async def run() -> tuple[Recording, Recording]:
        closed, aborted = Recording(), Recording()
        loop = asyncio.get_running_loop()
        first = CoalescingTransport(closed, loop)
        first.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        first.close()
        second = CoalescingTransport(aborted, loop)
        second.write(b"lost")
        aborted.abort = lambda: setattr(aborted, "closed", True)  # type: ignore[method-assign]
        second.abort()
        await asyncio.sleep(0)
        return closed, aborted

    closed, aborted = asyncio.run(run())
    assert closed.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"] and closed.closed
    assert aborted.writes == [] and aborted.closed
