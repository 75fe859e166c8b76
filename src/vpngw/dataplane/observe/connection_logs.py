"""charon's log lines, sorted by VPN connection.

charon's VICI ``log`` event names the IKE_SA it is about (``ikesa-name`` = the
connection's name, ``ikesa-uniqueid``), but not always: before a responder has chosen a
configuration (a proposal refused in IKE_SA_INIT, say) the IKE_SA has no name yet. Such
lines are attributed through the IKE_SA's unique id, learnt from its named lines or from
the peer address in "received packet: from <ip>[port]" / "initiating ... to <ip>", to
every connection of this gateway that has that peer. Lines about no IKE_SA at all (ESP
drops, plugin chatter) are not connection logs and are dropped here.

Each connection keeps its recent lines in memory (for the diagnosis) and the new ones
wait in :meth:`ConnectionLogs.drain` until the reconciler stores them
(DescribeVpnConnectionLogs). Thread-safe: the listener thread adds, the reconciler
thread reads.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

RECENT_LINES = 200
_PEER_ADDRESS = re.compile(
    r"(?:received packet: from|initiating \S+ .*? to|sending packet: from \S+ to) ([0-9a-fA-F.:]+)\["
)


@dataclass(frozen=True)
class LogLine:
    connection: str
    time_ms: int
    text: str


class ConnectionLogs:
    """The log lines of one charon, attributed to its connections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._peers: dict[str, tuple[str, ...]] = {}  # peer address -> connection names
        self._names: frozenset[str] = frozenset()
        self._by_uniqueid: dict[str, tuple[str, ...]] = {}
        self._recent: dict[str, deque[LogLine]] = {}
        self._pending: list[LogLine] = []

    def set_connections(self, peers: Mapping[str, str]) -> None:
        """The gateway's connections now: name -> the peer's address."""
        by_peer: dict[str, list[str]] = {}
        for name, address in peers.items():
            by_peer.setdefault(address, []).append(name)
        with self._lock:
            self._names = frozenset(peers)
            self._peers = {address: tuple(sorted(names)) for address, names in by_peer.items()}
            for gone in set(self._recent) - self._names:
                del self._recent[gone]

    def add(self, event: Mapping[str, object], *, now_ms: int | None = None) -> tuple[str, ...]:
        """Attribute one VICI ``log`` event; return the connections it went to."""
        text = str(event.get("msg", ""))
        if not text:
            return ()
        group = str(event.get("group", ""))
        uniqueid = str(event.get("ikesa-uniqueid", ""))
        name = str(event.get("ikesa-name", ""))
        stamp = now_ms if now_ms is not None else int(time.time() * 1000)
        with self._lock:
            targets = self._targets(name, uniqueid, text)
            for connection in targets:
                line = LogLine(connection, stamp, f"[{group}] {text}" if group else text)
                self._recent.setdefault(connection, deque(maxlen=RECENT_LINES)).append(line)
                self._pending.append(line)
        return targets

    def recent(self, connection: str) -> list[str]:
        """The connection's last lines (message text only), oldest first."""
        with self._lock:
            return [line.text for line in self._recent.get(connection, ())]

    def drain(self) -> list[LogLine]:
        """The lines added since the last drain, oldest first."""
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def _targets(self, name: str, uniqueid: str, text: str) -> tuple[str, ...]:
        if len(self._by_uniqueid) > 10_000:  # IKE_SAs come and go; ids are never reused
            self._by_uniqueid.clear()
        if name in self._names:
            if uniqueid:
                self._by_uniqueid[uniqueid] = (name,)
            return (name,)
        if uniqueid and uniqueid in self._by_uniqueid:
            return self._by_uniqueid[uniqueid]
        match = _PEER_ADDRESS.search(text)
        if match and uniqueid:
            targets = self._peers.get(match.group(1), ())
            if targets:
                self._by_uniqueid[uniqueid] = targets
            return targets
        return ()
