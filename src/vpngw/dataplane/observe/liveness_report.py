"""The partner watch's datagram: one address's report to its partner, authenticated.

A report says who sends it (the sender's lease key), whether its tunnels are up, and
when it was sent (the sender's wall clock, in nanoseconds), followed by an HMAC-SHA256
(truncated to 128 bits) under a key derived from the fleet's master key for this one
gateway (:meth:`vpngw.sealing.Sealer.derived_keys`). Every node that runs the gateway
already holds the master key (it opens the connections' pre-shared keys), so nothing new
is distributed.

What the receiver checks, and why (docs/nodes.md, "The liveness exchange"):

* the MAC, under any key of the keyring (the first one signs: a master-key rotation
  that adds the new key everywhere before putting it first never loses a report);
* that the sender is not the receiver itself (both addresses share the gateway's key: a
  report reflected back to its own sender would otherwise pass);
* that it is newer than the last one taken (a replayed report is dropped), and within
  :data:`MAX_CLOCK_SKEW_NS` of the receiver's clock (after a restart the receiver has no
  "last one": the window bounds what a replay can do then).

Pure: no sockets, no clock of its own.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

MAGIC = b"vpngw-live2"
MAC_BYTES = 16
# The nodes' clocks must agree within this (NTP); a report outside it is dropped.
MAX_CLOCK_SKEW_NS = 30 * 10**9


@dataclass(frozen=True)
class Report:
    sender: str  # the sender's lease key
    tunnels_up: bool
    sent_ns: int  # the sender's wall clock


def key_purpose(vpn_gateway_id: str) -> str:
    """The purpose the gateway's report key is derived for (both its addresses use it)."""
    return f"partner watch {vpn_gateway_id}"


def seal(keys: Sequence[bytes], report: Report) -> bytes:
    """The datagram of ``report``, signed with the first key."""
    body = b" ".join(
        (MAGIC, report.sender.encode(), b"1" if report.tunnels_up else b"0", b"%d" % report.sent_ns)
    )
    return body + b" " + _mac(keys[0], body).hex().encode()


def open_report(keys: Sequence[bytes], datagram: bytes) -> Report | None:
    """The report in ``datagram`` if it is well formed and its MAC holds under one of
    ``keys``; None otherwise (a forged, damaged or foreign datagram)."""
    body, _, mac_hex = datagram.rpartition(b" ")
    parts = body.split(b" ")
    if len(parts) != 4 or parts[0] != MAGIC or parts[2] not in (b"0", b"1") or not parts[3].isdigit():
        return None
    try:
        mac = bytes.fromhex(mac_hex.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not any(hmac.compare_digest(_mac(key, body), mac) for key in keys):
        return None
    try:
        sender = parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    return Report(sender, parts[2] == b"1", int(parts[3]))


def acceptable(report: Report, *, receiver: str, last_sent_ns: int, now_ns: int) -> bool:
    """Whether an authentic ``report`` counts for ``receiver`` (its own lease key): not its
    own report reflected, newer than the last one taken, and within the clock window."""
    return report.sender != receiver and report.sent_ns > last_sent_ns and not off_clock(report, now_ns)


def off_clock(report: Report, now_ns: int) -> bool:
    """Whether ``report`` was sent further from ``now_ns`` than the clocks may disagree."""
    return abs(report.sent_ns - now_ns) > MAX_CLOCK_SKEW_NS


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES]
