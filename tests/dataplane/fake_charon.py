"""A fake charon that speaks the VICI wire protocol on one end of a socket pair.

It runs in a thread, answers event (un)registrations, and replies to each command from
a script: the events to stream first, then the response message. It records every
request it decodes, so tests can assert what went on the wire. Framing and message
encoding reuse the ``vici`` package's own classes; the packet layout is decoded here.

Scripted behaviours beyond a normal reply: ``hang`` (never answer; the client must time
out), ``delay_s`` (answer late), and ``close`` (drop the connection).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from vici.protocol import FiniteStream, Message, Packet, Transport  # type: ignore[import-untyped]


@dataclass
class Script:
    """What the fake does when it receives one command."""

    response: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    delay_s: float = 0.0
    hang: bool = False
    close: bool = False


def refusal(errmsg: str) -> Script:
    return Script(response={"success": "no", "errmsg": errmsg})


def success() -> Script:
    return Script(response={"success": "yes"})


class FakeCharon:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._transport = Transport(sock)
        self.scripts: dict[str, list[Script]] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.registered: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def script(self, command: str, *scripts: Script) -> None:
        """Queue replies for ``command``; the last one repeats."""
        self.scripts[command] = list(scripts)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=2)

    def _next_script(self, command: str) -> Script | None:
        queue = self.scripts.get(command)
        if not queue:
            return None
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def _serve(self) -> None:
        streaming: str | None = None
        while True:
            try:
                packet = self._transport.receive()
            except OSError:
                return
            kind, length = struct.unpack("!BB", packet[:2])
            name = packet[2 : 2 + length].decode()
            body = packet[2 + length :]
            if kind == Packet.EVENT_REGISTER:
                self.registered.append(name)
                streaming = name
                self._send(struct.pack("!B", Packet.EVENT_CONFIRM))
            elif kind == Packet.EVENT_UNREGISTER:
                streaming = None
                self._send(struct.pack("!B", Packet.EVENT_CONFIRM))
            elif kind == Packet.CMD_REQUEST:
                self.requests.append((name, Message.deserialize(FiniteStream(body))))
                script = self._next_script(name)
                if script is None:
                    self._send(struct.pack("!B", Packet.CMD_UNKNOWN))
                    continue
                if script.close:
                    self._sock.shutdown(socket.SHUT_RDWR)
                    return
                if script.hang:
                    continue
                time.sleep(script.delay_s)
                for event in script.events:
                    event_name = (streaming or "").encode()
                    header = struct.pack("!BB", Packet.EVENT, len(event_name)) + event_name
                    self._send(header + Message.serialize(event))
                self._send(struct.pack("!B", Packet.CMD_RESPONSE) + Message.serialize(script.response))

    def _send(self, packet: bytes) -> None:
        with contextlib.suppress(OSError):  # the client may have gone away
            self._transport.send(packet)
