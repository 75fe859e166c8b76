"""Negotiate when traffic enters: the acquire strongSwan 5.9.8 never raises itself.

With ``start_action=trap`` charon installs the trap policy and a route into ``ipsec0``,
so the first packet toward the remote subnets reaches kernel-libipsec. On 5.9.8
libipsec then only logs ``could not find an outbound IPsec SA for reqid {N}, dropping
packet`` (5.9.8 leaves the acquire unimplemented there; it arrived in 5.9.11). This emulator reads that
line from charon's VICI log stream and initiates the connection whose child has the
static reqid N (render.py gives every child one): all of its children, so that an IKEv1
connection with several subnet pairs comes up whole, as the connection it is. The packet
that triggered it is lost, as with a kernel acquire; the tunnel is up some 20-30 ms later.

While an initiation is under way, further packets log the same line again: a reqid is
initiated at most once per :data:`HOLDOFF_S`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping

from vpngw.dataplane.charon.vici_client import ViciClient
from vpngw.dataplane.errors import DataplaneError

log = logging.getLogger(__name__)

ACQUIRE_LINE = re.compile(r"could not find an outbound IPsec SA for reqid \{(\d+)\}")
HOLDOFF_S = 2.0


def acquired_reqid(message: str) -> int | None:
    """The reqid a libipsec drop line names, or None for any other line."""
    match = ACQUIRE_LINE.search(message)
    return int(match.group(1)) if match else None


class AcquireEmulator:
    """Turns libipsec's drop lines into ``initiate`` calls. Runs on the listener thread."""

    def __init__(self, vici_path: str) -> None:
        self._path = vici_path
        self._targets: Mapping[int, tuple[str, tuple[str, ...]]] = {}
        self._last: dict[int, float] = {}

    def set_targets(self, targets: Mapping[int, tuple[str, tuple[str, ...]]]) -> None:
        """reqid -> (connection, all its children) for every trapped child. Replaced
        whole (one assignment, so the listener thread never sees half of it)."""
        self._targets = dict(targets)

    def on_log(self, event: Mapping[str, object]) -> bool:
        """Handle one VICI log event; True if it started a negotiation."""
        reqid = acquired_reqid(str(event.get("msg", "")))
        if reqid is None:
            return False
        target = self._targets.get(reqid)
        now = time.monotonic()
        if target is None or now - self._last.get(reqid, float("-inf")) < HOLDOFF_S:
            return False
        ike, children = target
        for sibling in self._targets:
            if self._targets[sibling][0] == ike:
                self._last[sibling] = now
        try:
            with ViciClient.connect(self._path, 2.0) as client:
                for child in children:
                    client.initiate(child, ike, timeout_ms=-1)
        except DataplaneError as error:
            log.info("on-demand initiate of %s failed: %s", ike, error)
            return False
        log.info("traffic for %s (reqid %d): negotiating", ike, reqid)
        return True
