"""charon's VICI event stream (``log``, ``ike-updown``, ``child-updown``) on a thread.

A listener needs its own VICI session (a session that listens can send nothing else),
so it lives apart from :class:`~.vici_client.ViciClient`. Events are decoded to plain
``str`` values and handed to a callback on the listener's thread; the callback must be
quick and must not raise. When charon goes away the thread ends and :attr:`alive` turns
false; the reconciler starts a new listener for the new charon.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

import vici

log = logging.getLogger(__name__)

Event = dict[str, Any]
EventHandler = Callable[[str, Event], None]

EVENTS: tuple[str, ...] = ("log", "ike-updown", "child-updown")


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

    def __init__(self, vici_path: str, handler: EventHandler, *, name: str = "vici-events") -> None:
        self._path = vici_path
        self._handler = handler
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

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
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stream = None
        try:
            sock.settimeout(5.0)
            sock.connect(self._path)
            session = vici.Session(sock)
            stream = session.listen(list(EVENTS), timeout=0.2)
            for kind, message in stream:
                self._ready.set()
                if self._stopping.is_set():
                    break
                if kind is None:
                    continue
                try:
                    self._handler(kind.decode() if isinstance(kind, bytes) else str(kind), decode(message))
                except Exception:
                    log.exception("VICI event handler failed")
        except Exception as exc:  # noqa: BLE001 - socket closed, charon died: the reconciler restarts us
            if not self._stopping.is_set():
                log.info("VICI event stream %s ended: %s", self._path, exc)
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()  # unregisters, if charon still listens
            sock.close()
