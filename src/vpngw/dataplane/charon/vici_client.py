"""A thin, typed client for one charon's VICI socket, over the ``vici`` package.

What this adds to ``vici.Session``:

* results are frozen dataclasses and sets of ``str``/``int``, never ``bytes`` or
  ``OrderedDict``;
* a daemon refusal (``success=no``) becomes :class:`ViciCommandError` with the command
  and charon's ``errmsg``; whether that is permanent (``load-conn`` rejected) or
  temporary (``initiate`` timed out: the peer may come back) is the caller's call;
* any socket or framing problem becomes :class:`CharonUnavailable` (a temporary error)
  and closes the client: after a timeout half a reply may still be in the socket, so
  the stream can no longer be trusted. Reconnect with :meth:`ViciClient.connect`.

The transport is injected: pass a connected socket (tests pass one end of a
``socketpair``), or use :meth:`ViciClient.connect` for a unix socket path. A client
is not thread-safe; use one per thread.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import vici
from vici.exception import (
    CommandException,
    DeserializationException,
    SessionException,
)

from vpngw.dataplane.errors import DataplaneError, TemporaryError

# vici.Session formats refusals as "Command failed: <errmsg>".
_REFUSAL_PREFIX = "Command failed: "

# Extra socket time on top of an initiate/terminate timeout, so that charon's own
# timeout (which it reports as a refusal) fires before ours (which desyncs the stream).
_DAEMON_GRACE_S = 5.0


class ViciCommandError(DataplaneError):
    """charon refused a command. ``log`` holds the control-log lines it streamed."""

    def __init__(self, command: str, errmsg: str, log: tuple[str, ...] = ()) -> None:
        super().__init__(f"{command}: {errmsg}")
        self.command = command
        self.errmsg = errmsg
        self.log = log


class CharonUnavailable(TemporaryError):
    """The VICI socket cannot be reached, timed out, or spoke garbage."""


@dataclass(frozen=True)
class ChildSa:
    """One CHILD_SA from ``list-sas``. SPIs are parsed from charon's hex; 0 = none yet."""

    name: str
    uniqueid: int
    reqid: int
    state: str
    spi_in: int
    spi_out: int
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]


@dataclass(frozen=True)
class IkeSa:
    """One IKE_SA from ``list-sas``; ``name`` is the connection name."""

    name: str
    uniqueid: int
    state: str
    local_host: str
    remote_host: str
    children: tuple[ChildSa, ...]


class ViciClient:
    """Commands for one charon. Close it (or use ``with``) when done."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._session = vici.Session(sock)
        self._closed = False

    @classmethod
    def connect(cls, path: str, timeout: float) -> ViciClient:
        """Connect to charon's unix socket; ``timeout`` bounds every later read too."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise CharonUnavailable(f"cannot connect to {path}: {exc}") from exc
        return cls(sock)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()

    def __enter__(self) -> ViciClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- configuration ------------------------------------------------------------

    def load_conn(self, conn: Mapping[str, Any]) -> None:
        """Add or replace connections, e.g. the output of ``render_connection``."""
        self._request("load-conn", conn)

    def unload_conn(self, name: str) -> None:
        self._request("unload-conn", {"name": name})

    def load_shared(self, secret: Mapping[str, Any]) -> None:
        """Add or replace a shared secret, e.g. the output of ``render_shared_key``."""
        self._request("load-shared", secret)

    def unload_shared(self, key_id: str) -> None:
        self._request("unload-shared", {"id": key_id})

    def shared_key_ids(self) -> frozenset[str]:
        """The ids of the loaded shared secrets (``get-shared``); never the secrets."""
        reply = self._request("get-shared", None)
        return frozenset(_texts(reply.get("keys", [])))

    def list_conns(self) -> frozenset[str]:
        """Names of the loaded connections."""
        names: set[str] = set()
        for event in self._stream("list-conns", "list-conn", None):
            names.update(event)
        return frozenset(names)

    # -- SAs ----------------------------------------------------------------------

    def initiate(self, child: str, ike: str, timeout_ms: int = 10_000) -> None:
        """Initiate CHILD_SA ``child`` of connection ``ike`` and wait up to ``timeout_ms``.

        A negative ``timeout_ms`` returns at once without waiting for the result.
        On failure charon's control log is attached to the ViciCommandError.
        """
        message = {"child": child, "ike": ike, "timeout": str(timeout_ms), "loglevel": "1"}
        self._stream("initiate", "control-log", message, wait_ms=timeout_ms)

    def terminate(self, ike: str, timeout_ms: int = 5_000, *, force: bool = False) -> None:
        """Delete every IKE_SA of connection ``ike`` (with their CHILD_SAs).

        charon refuses with "no matching SAs to terminate found" if there is none.
        ``force`` deletes without waiting for the peer's answer.
        """
        message = {"ike": ike, "timeout": str(timeout_ms), "loglevel": "1"}
        if force:
            message["force"] = "yes"
        self._stream("terminate", "control-log", message, wait_ms=timeout_ms)

    def rekey(self, child: str) -> int:
        """Rekey every CHILD_SA of config ``child`` now (the new SAs are the peer's newest:
        kernel-libipsec sends on its newest outbound SA). Returns how many were rekeyed;
        charon answers with an error if there is none."""
        reply = self._request("rekey", {"child": child})
        return _int(reply.get("matches", 0))

    def list_sas(self, ike: str | None = None) -> list[IkeSa]:
        """Current IKE_SAs (of connection ``ike`` only, if given) with their CHILD_SAs."""
        filters = {"ike": ike} if ike is not None else None
        events = self._stream("list-sas", "list-sa", filters)
        try:
            return [_ike_sa(name, raw) for event in events for name, raw in event.items()]
        except (ValueError, TypeError, AttributeError) as exc:
            raise CharonUnavailable(f"list-sas: unexpected reply: {exc}") from exc

    def version(self) -> str:
        """charon's version, e.g. ``5.9.8``."""
        return _text(self._request("version", None).get("version", b""))

    # -- plumbing -----------------------------------------------------------------

    def _request(self, command: str, message: Mapping[str, Any] | None) -> dict[str, Any]:
        self._ensure_open(command)
        try:
            reply: dict[str, Any] = self._session.request(command, message)
            return reply
        except CommandException as exc:
            raise ViciCommandError(command, _errmsg(exc)) from None
        except (OSError, SessionException, DeserializationException) as exc:
            raise self._broken(command, exc) from exc

    def _stream(
        self,
        command: str,
        event: str,
        message: Mapping[str, Any] | None,
        *,
        wait_ms: int | None = None,
    ) -> list[dict[str, Any]]:
        """Send a streamed command; return its events (each fully received)."""
        self._ensure_open(command)
        events: list[dict[str, Any]] = []
        try:
            with self._read_timeout_at_least(wait_ms):
                for item in self._session.streamed_request(command, event, message):
                    events.append(item)
        except CommandException as exc:
            # For initiate/terminate the events are control-log lines: why it failed.
            log = tuple(_text(e["msg"]) for e in events if "msg" in e)
            raise ViciCommandError(command, _errmsg(exc), log) from None
        except (OSError, SessionException, DeserializationException) as exc:
            raise self._broken(command, exc) from exc
        return events

    @contextmanager
    def _read_timeout_at_least(self, wait_ms: int | None) -> Iterator[None]:
        """Let the socket wait longer than charon's own timeout for this one command."""
        old = self._sock.gettimeout()
        if wait_ms is not None and wait_ms >= 0 and old is not None:
            self._sock.settimeout(max(old, wait_ms / 1000 + _DAEMON_GRACE_S))
        try:
            yield
        finally:
            if not self._closed:
                self._sock.settimeout(old)

    def _ensure_open(self, command: str) -> None:
        if self._closed:
            raise CharonUnavailable(f"{command}: the VICI client is closed")

    def _broken(self, command: str, exc: Exception) -> CharonUnavailable:
        self.close()
        return CharonUnavailable(f"{command}: {type(exc).__name__}: {exc}")


def _errmsg(exc: CommandException) -> str:
    return str(exc).removeprefix(_REFUSAL_PREFIX)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _int(value: object, base: int = 10) -> int:
    """charon's numbers arrive as ASCII bytes; absent or empty means 0."""
    text = _text(value) if value is not None else ""
    return int(text, base) if text else 0


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(_text(v) for v in value)


def _ike_sa(name: str, raw: Mapping[str, Any]) -> IkeSa:
    children = raw.get("child-sas", {})
    return IkeSa(
        name=name,
        uniqueid=_int(raw.get("uniqueid")),
        state=_text(raw.get("state", b"")),
        local_host=_text(raw.get("local-host", b"")),
        remote_host=_text(raw.get("remote-host", b"")),
        children=tuple(_child_sa(child) for child in children.values()),
    )


def _child_sa(raw: Mapping[str, Any]) -> ChildSa:
    # The section key is "<name>-<uniqueid>"; the config name is the "name" field.
    return ChildSa(
        name=_text(raw.get("name", b"")),
        uniqueid=_int(raw.get("uniqueid")),
        reqid=_int(raw.get("reqid")),
        state=_text(raw.get("state", b"")),
        spi_in=_int(raw.get("spi-in"), 16),
        spi_out=_int(raw.get("spi-out"), 16),
        bytes_in=_int(raw.get("bytes-in")),
        bytes_out=_int(raw.get("bytes-out")),
        packets_in=_int(raw.get("packets-in")),
        packets_out=_int(raw.get("packets-out")),
        local_ts=_texts(raw.get("local-ts")),
        remote_ts=_texts(raw.get("remote-ts")),
    )
