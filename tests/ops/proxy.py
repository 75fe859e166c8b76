"""A TCP relay between the test's clients and the server that can hold back answers.

A crash loses some answers the server already committed: the transaction is durable,
the client never hears of it. A kill at a random moment hits that window (after the
commit, before the response leaves) only now and then, so the crash test makes it
certain: the relay holds the server's responses, the server is killed, and the held
responses are dropped with the connections. Those clients must retry with their
ClientToken and get the committed result, not a second connection.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.support.postgres import free_port


class HoldingRelay:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._holding = False
        self._held: dict[socket.socket, list[bytes]] = {}  # client socket -> its held answers
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    # -- control ------------------------------------------------------------------

    def hold(self) -> None:
        """From now on, keep what the server sends instead of passing it on."""
        with self._lock:
            self._holding = True

    def held_connections(self) -> int:
        with self._lock:
            return len(self._held)

    def wait_held(self, count: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.held_connections() < count:
            assert time.monotonic() < deadline, f"only {self.held_connections()} answers held"
            time.sleep(0.005)

    def drop(self) -> None:
        """Close every connection: held answers are lost. Relaying resumes."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
            self._held.clear()
            self._holding = False
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        self._closed = True
        self.drop()
        _close(self._listener)

    # -- relaying -----------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                _close(client)  # no server: the client sees the connection drop
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, held_for: socket.socket | None) -> None:
        """Copy source to sink; answers (``held_for`` set) are kept while holding."""
        try:
            while data := source.recv(65536):
                with self._lock:
                    if held_for is not None and self._holding:
                        self._held.setdefault(held_for, []).append(data)
                        continue
                sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
