"""The HTTP server under the API: uvicorn, with the limits a tenant-facing server needs.

uvicorn (0.30 and later) gives most of what is needed; three things it lacks are added
here, each small:

* **A request-head timeout and a bounded head.** uvicorn closes idle keep-alive connections
  (``timeout_keep_alive``) but never a connection that has not finished its first request
  head: 140 idle sockets could hold every descriptor (issue 15). :class:`HttpToolsHeadProtocol`
  is uvicorn's httptools protocol plus one timer: a connection whose request head is not
  complete ``HEAD_TIMEOUT_S`` after it was accepted (or after its previous response) is
  closed. With TLS, the handshake gets the same bound (asyncio's default is 60 s). llhttp
  puts no bound on a head: the protocol keeps h11's (``MAX_HEAD_BYTES``, the same 400). The
  same protocol hands a response to the socket in one ``send`` (:class:`CoalescingTransport`):
  uvicorn writes the head and the body separately, and with ``TCP_NODELAY`` each write was a
  segment and a wake-up of the client of its own (docs/benchmarks.md).
* **Accept failures logged once per interval.** When descriptors run out, asyncio logs
  ``socket.accept() out of system resource`` for every failed ``accept()`` (135,109 lines in
  12 s in issue 15) and retries a second later. :class:`AcceptFailureLog` keeps the retry and
  logs one line per ``ACCEPT_FAILURE_LOG_INTERVAL_S``, with how many failures it stood for.
* **TLS with a certificate reloaded on SIGHUP.** :class:`TlsCertificate` holds the
  ``SSLContext`` (TLS 1.2 at least); SIGHUP loads the files again into it, which every new
  handshake uses; a pair that does not load is refused and the old one kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vpngw.systemd import notify

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 10.0
# h11's bound on a request head that is still incomplete (h11.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE):
# the httptools protocol keeps the same one, with the same answer.
MAX_HEAD_BYTES = 16 * 1024
INVALID_REQUEST = "Invalid HTTP request received."  # uvicorn's 400 text, both protocols
ACCEPT_FAILURE_LOG_INTERVAL_S = 10.0
ACCEPT_FAILURE = "socket.accept() out of system resource"  # asyncio's message


class HttpToolsHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, a C parser: about 0.1 ms less CPU per request
    than h11, docs/benchmarks.md) with the request-head timeout, one ``send`` per response,
    and two of h11's rules llhttp lacks: a head still incomplete after ``MAX_HEAD_BYTES``
    gets uvicorn's 400 and the connection is closed, and an HTTP/1.1 request without
    ``Host`` is refused with the same 400 (RFC 9112 3.2).

    The head's bytes are counted per ``data_received`` while a head is awaited. After a
    message completes in the middle of a read (pipelining), counting starts with the next
    read: the bound is then up to one read (256 KiB) late, never absent."""

    head_timeout_s = HEAD_TIMEOUT_S
    max_head_bytes = MAX_HEAD_BYTES
    _head_timer: asyncio.TimerHandle | None = None
    _awaiting_head = True  # between requests, or in a head not yet complete
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
        self._await_head()

    def data_received(self, data: bytes) -> None:
        awaiting = self._awaiting_head
        if awaiting:
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            awaiting
            and self._awaiting_head
            and self._head_bytes > self.max_head_bytes
            and not self.transport.is_closing()
        ):
            self.logger.warning(INVALID_REQUEST)
            self.send_400_response(INVALID_REQUEST)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._cancel_head_timer()
        if self.parser.get_http_version() == "1.1" and not any(name == b"host" for name, _ in self.headers):
            # h11 refuses an HTTP/1.1 request without Host (RFC 9112 3.2); llhttp does not.
            raise httptools.HttpParserError("HTTP/1.1 request without Host")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head, self._head_bytes = True, 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._awaiting_head:  # kept alive (or closing), waiting for the next request
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_is_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_is_late(self) -> None:
        self._head_timer = None
        serving = self.cycle is not None and not self.cycle.response_complete
        if self._awaiting_head and not serving and not self.transport.is_closing():
            self.transport.close()  # no answer: the client has not asked anything yet


class CoalescingTransport:
    """A transport whose writes of one event-loop iteration go out in one ``write``: a
    response's head and body become one segment. Everything else is the wrapped transport's;
    closing it sends what is buffered first."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._buffer:
            self._loop.call_soon(self.flush)
        self._buffer.append(bytes(data))

    def flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(part) for part in self._buffer)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()


class AcceptFailureLog:
    """The event loop's exception handler: accept failures (descriptors or memory exhausted)
    are logged once per interval with a count; anything else as asyncio would."""

    def __init__(self, interval_s: float = ACCEPT_FAILURE_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.last_logged = -float("inf")
        self.unlogged = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if message.startswith("Exception in callback") and "._start_serving(" in message:
            # asyncio (3.11) schedules one retry per failed accept() of a burst, up to the
            # listen backlog; those still pending when the server has closed its socket fail
            # on its descriptor (-1). They are retries of a listener that is gone: nothing to say.
            return
        if message != ACCEPT_FAILURE:
            loop.default_exception_handler(context)
            return
        self.unlogged += 1
        now = time.monotonic()
        if now - self.last_logged < self.interval_s:
            return
        error = context.get("exception")
        log.error(
            "cannot accept connections: %s (%d failed accepts since the previous such line); new "
            "connections wait in the listen queue, accepts are retried every second; this line comes "
            "at most every %.0f s",
            error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__,
            self.unlogged,
            self.interval_s,
        )
        self.last_logged, self.unlogged = now, 0


class TlsCertificate:
    """The server's ``SSLContext`` and the files it is loaded from."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.context = self._new_context()
        self.context.load_cert_chain(cert_file, key_file)

    @staticmethod
    def _new_context() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # OpenSSL's secure default ciphers
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def reload(self) -> bool:
        """Load the files again (SIGHUP): new handshakes use the new pair, established
        connections keep theirs. A pair that does not load changes nothing."""
        try:
            self._new_context().load_cert_chain(self.cert_file, self.key_file)  # check first
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as error:
            log.error("TLS certificate not reloaded, the previous one stays: %s", error)
            return False
        log.info("TLS certificate reloaded from %s", self.cert_file)
        return True


class NotifyingServer(uvicorn.Server):
    """uvicorn, telling the service manager it is ready once it listens (not before:
    ``startup`` binds the sockets), and that it is stopping when it begins to."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            notify("READY=1")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        notify("STOPPING=1")
        await super().shutdown(sockets)


class ApiServer(NotifyingServer):
    """uvicorn's server with the accept-failure log, the TLS handshake bound and SIGHUP."""

    def __init__(self, config: uvicorn.Config, tls: TlsCertificate | None) -> None:
        super().__init__(config)
        self.tls = tls
        # Run (in a thread) once the API has shut down, before the process ends: uvicorn
        # re-raises SIGTERM after run() returns, so code after run() never sees a signal's stop.
        self.after_shutdown: Callable[[], None] | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.after_shutdown is not None:
            await asyncio.to_thread(self.after_shutdown)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(AcceptFailureLog())
        if threading.current_thread() is threading.main_thread():  # not in a test's thread
            # Always handled: SIGHUP's default action would end the server (systemctl reload).
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        if self.tls is not None:
            # uvicorn passes no handshake timeout to create_server: bound it like a request head.
            create_server = loop.create_server
            loop.create_server = functools.partial(  # type: ignore[method-assign]
                create_server, ssl_handshake_timeout=HEAD_TIMEOUT_S
            )
            try:
                await super().startup(sockets)
            finally:
                loop.create_server = create_server  # type: ignore[method-assign]
        else:
            await super().startup(sockets)

    def reload(self) -> None:
        if self.tls is None:
            log.info("SIGHUP: nothing to reload (no --tls-cert)")
        else:
            self.tls.reload()


def api_server(
    app: Any, *, host: str, port: int, log_level: str, tls: TlsCertificate | None = None
) -> ApiServer:
    """The server ``vpngw serve`` runs (and the tests)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        loop="asyncio",  # the handlers above are asyncio's
        http=HttpToolsHeadProtocol,
        # uvicorn's own access log prints query strings (signatures, Psk values): ours does not.
        access_log=False,
        # uvicorn's loggers go through vpngw's handler too, so they are escaped alike (logs.py).
        log_config=None,
    )
    config.load()
    if tls is not None:
        config.ssl = tls.context  # the context SIGHUP reloads, used for every new handshake
    return ApiServer(config, tls)


def listening_socket(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound once and shared by every worker process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (with
    # proto 0 every keep-alive answer waited for the client's delayed ACK, about 40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_workers(workers: int, sock: socket.socket, serve: Callable[[socket.socket], bool]) -> int:
    """``vpngw serve --workers N``: N forked processes accept on one socket, each with its
    own interpreter (the GIL caps one process near one core), its own database connections
    and its own event loop; they share only the database (nonces, ClientTokens and every
    resource live there, so replays and retries are caught across them).

    ``serve(sock)`` runs one worker's server and tells whether it started. The parent
    forwards SIGTERM/SIGINT/SIGHUP to the workers, waits for all of them, and returns 1 if
    any failed. A worker that dies is not restarted (systemd restarts the unit)."""
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = 0 if serve(sock) else 1
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    failed = False
    for child in children:
        while True:
            try:
                _pid, status = os.waitpid(child, 0)
                break
            except ChildProcessError:
                status = 0
                break
            except InterruptedError:
                continue
        failed = failed or os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM, -signal.SIGINT)
    return 1 if failed else 0
