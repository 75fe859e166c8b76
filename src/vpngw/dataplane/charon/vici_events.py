"""charon's VICI event stream (``log``, ``ike-updown``, ``child-updown``) on a thread.

A listener needs its own VICI session (a session that listens can send nothing else),
so it lives apart from :class:`~.vici_client.ViciClient`. Events are decoded to plain
``str`` values and handed to a callback on the listener's thread; the callback must be
quick and must not raise. When charon goes away the thread ends, :attr:`alive` turns
false and ``on_end`` is called (the reconciler looks at the gateway at once: it restarts
charon and starts a new listener).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

import vici
from vici.protocol import Message, Packet

log = logging.getLogger(__name__)

Event = dict[str, Any]
EventHandler = Callable[[str, Event], None]

EVENTS: tuple[str, ...] = ("log", "ike-updown", "child-updown")
# Between events the thread blocks in its receive without a timeout: stop() ends the wait
# by shutting the socket down, and a charon that goes away closes it. It woke every 30 s
# (every 0.2 s before that) to look at a flag nothing needs: with 1,000 gateways, 33
# wake-ups a second, 0.005 cores of an idle fleet (docs/benchmarks.md, "Issue 18, next
# session").
LISTEN_TIMEOUT_S: float | None = None


def decode(value: object) -> Any:
    """VICI values are ``bytes``, lists and ``OrderedDict``s: make them ``str``/list/dict."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


class EventListener:
    """Listens to one charon until :meth:`stop` or until charon's socket closes."""

    def __init__(
        self,
        vici_path: str,
        handler: EventHandler,
        *,
        name: str = "vici-events",
        on_end: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_end``: called on the listener's thread when the stream ends by itself
        (charon went away, or could not be reached), not after :meth:`stop`; its argument
        says whether the listener had registered (False: it never reached charon)."""
        self._path = vici_path
        self._handler = handler
        self._on_end = on_end
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._sock: socket.socket | None = None

    def start(self) -> None:
        """Start listening (without waiting: registering takes a moment, and nothing is
        lost meanwhile that matters; the first trapped packet comes later)."""
        self._thread.start()

    def wait_ready(self, timeout_s: float = 5.0) -> bool:
        """True once registered with charon, so that events from then on arrive."""
        return self._ready.wait(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stopping.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread's receive now
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = sock
        session = None
        try:
            if self._stopping.is_set():
                # stop() ran before the socket above was there to shut down: it found none.
                return
            sock.settimeout(5.0)
            sock.connect(self._path)
            session = vici.Session(sock)
            # vici's Session.listen() with the same steps, but ready as soon as registered and
            # waiting LISTEN_TIMEOUT_S between events: stop() shuts the socket down to end
            # the wait, so the thread does not wake up for nothing (it woke every 0.2 s,
            # per charon: a tenth of an idle fleet's CPU; then every 30 s).
            for kind in EVENTS:
                session._register_unregister(kind, True)  # noqa: SLF001 - listen()'s own first step
            self._ready.set()
            sock.settimeout(LISTEN_TIMEOUT_S)
            while not self._stopping.is_set():
                try:
                    packet = Packet.parse(session.transport.receive())
                except TimeoutError:
                    continue
                if packet.response_type != Packet.EVENT:
                    continue
                kind_bytes = packet.event_type
                try:
                    self._handler(
                        kind_bytes.decode() if isinstance(kind_bytes, bytes) else str(kind_bytes),
                        decode(Message.deserialize(packet.payload)),
                    )
                except Exception:
                    log.exception("VICI event handler failed")
        except Exception as exc:  # noqa: BLE001 - socket closed, charon died: the reconciler restarts us
            if not self._stopping.is_set():
                log.info("VICI event stream %s ended: %s", self._path, exc)
        finally:
            if session is not None and not self._stopping.is_set():
                for kind in EVENTS:
                    with contextlib.suppress(Exception):
                        session._register_unregister(kind, False)  # noqa: SLF001 - as listen() ends
            sock.close()
            if self._on_end is not None and not self._stopping.is_set():
                try:
                    self._on_end(self._ready.is_set())
                except Exception:
                    log.exception("VICI event stream end handler failed")
