"""Addresses a host answers for only while it holds them: a gateway's InternetIp (on
``wan0``) and its VPC-side next hop (on ``nexthop0``), one :class:`LeasedAddresses` each.

Each address is added with a kernel lifetime (``valid_lft``) equal to what is left of the
hold (the node's lease) and refreshed at every renewal once little is left, so a node
that dies or loses the database stops answering for it, by the kernel's hand, before
another node may take it (docs/nodes.md). A new address is announced by gratuitous ARP,
so that the segment's neighbours forget the node that answered before; a fence flushes
it at once.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vpngw.dataplane.system import netlink, netns
from vpngw.dataplane.system.netns import NetnsError, link_exists

ARPING = "arping"
# A renewal refreshes an address's lifetime only once less than this is left (one ``ip``
# call per gateway every few seconds instead of every renewal).
REFRESH_BELOW_S = 2.5


class LeasedAddresses:
    """One kind of leased address (one interface name in every gateway's namespace)."""

    def __init__(self, interface: str, namespace_of: Callable[[str], str]) -> None:
        self.interface = interface
        self._namespace_of = namespace_of
        self._lock = threading.Lock()
        # Until when (monotonic) each gateway's address may be held: its lease.
        self._valid_until: dict[str, float] = {}
        # When (monotonic) the kernel drops each address, as this process last set it.
        self._address_until: dict[str, float] = {}

    def hold(self, vpn_gateway_id: str, address: str, valid_s: float) -> None:
        """The hold was renewed: ``valid_s`` seconds more. Refreshes the kernel's lifetime
        when little is left (and adds the address if the interface exists already)."""
        with self._lock:
            self._valid_until[vpn_gateway_id] = time.monotonic() + valid_s
            left = self._address_until.get(vpn_gateway_id, float("-inf")) - time.monotonic()
        if left > REFRESH_BELOW_S:
            return
        namespace = self._namespace_of(vpn_gateway_id)
        if not Path("/run/netns", namespace).exists():
            return  # not built yet (a gateway just taken): its build adds the address
        seconds = self._seconds_left(vpn_gateway_id)
        if left > 0 and seconds > 0:
            # Set by this process and still there: one netlink request, no process (a
            # renewal refreshes every gateway's addresses; as ``ip`` commands that took
            # seconds on a loaded node, docs/benchmarks.md "Nodes").
            set_at = time.monotonic()
            try:
                netlink.replace_address(namespace, self.interface, address, seconds)
            except NetnsError:
                pass  # the interface is gone: as below
            else:
                self._set(vpn_gateway_id, set_at + seconds)
                return
        if link_exists(namespace, self.interface):
            self.ensure(vpn_gateway_id, address)

    def ensure(self, vpn_gateway_id: str, address: str) -> None:
        """Add or refresh the address with what is left of the hold as its lifetime, and
        announce it (gratuitous ARP) when it is new here. Nothing without a hold."""
        namespace = self._namespace_of(vpn_gateway_id)
        seconds = self._seconds_left(vpn_gateway_id)
        if seconds <= 0:
            return  # no hold (yet, or any more): a host never answers for an address it does not hold
        with self._lock:
            known = self._address_until.get(vpn_gateway_id, float("-inf")) > time.monotonic()
        # Trust what this process set while it lasts (a hand-deleted address comes back
        # when that runs out, within a lease time); else ask the kernel.
        present = known or f"{address}/32" in netns.lo_addresses(namespace, self.interface)
        set_at = time.monotonic()
        netns.run("ip", "-n", namespace, *self._replace(address, seconds))
        self._set(vpn_gateway_id, set_at + seconds)
        if not present:
            announce(namespace, self.interface, address)

    def add_new(self, vpn_gateway_id: str, address: str) -> NewAddress | None:
        """For a namespace built just now (it holds no address yet): the ``ip`` command
        that adds the address with what is left of the hold as its lifetime, to run in
        one batch with the rest of the build, then :meth:`NewAddress.added`. None without
        a hold."""
        seconds = self._seconds_left(vpn_gateway_id)
        if seconds <= 0:
            return None
        return NewAddress(self, vpn_gateway_id, address, self._replace(address, seconds), seconds)

    def _seconds_left(self, vpn_gateway_id: str) -> int:
        with self._lock:
            until = self._valid_until.get(vpn_gateway_id, float("-inf"))
        left = until - time.monotonic()  # -inf without a hold
        return int(left) if left >= 1 else 0

    def _replace(self, address: str, seconds: int) -> list[str]:
        lifetime = ["valid_lft", str(seconds), "preferred_lft", str(seconds)]
        return ["addr", "replace", f"{address}/32", "dev", self.interface, *lifetime]

    def _set(self, vpn_gateway_id: str, until: float) -> None:
        with self._lock:
            self._address_until[vpn_gateway_id] = until

    def drop(self, vpn_gateway_id: str) -> None:
        """Stop answering at once (a fence): no hold, and the interface flushed."""
        with self._lock:
            self._valid_until[vpn_gateway_id] = float("-inf")
            self._address_until.pop(vpn_gateway_id, None)
        namespace = self._namespace_of(vpn_gateway_id)
        if namespace in netns.namespaces() and link_exists(namespace, self.interface):
            netns.run("ip", "-n", namespace, "addr", "flush", "dev", self.interface)

    def forget(self, vpn_gateway_id: str) -> None:
        """The gateway is removed from this host (its namespace, and the address, go)."""
        with self._lock:
            self._valid_until.pop(vpn_gateway_id, None)
            self._address_until.pop(vpn_gateway_id, None)


@dataclass(frozen=True)
class NewAddress:
    """A leased address about to be added to a namespace built just now."""

    addresses: LeasedAddresses
    vpn_gateway_id: str
    address: str
    command: list[str]  # the words after ``ip -n NAMESPACE``
    seconds: int
    set_at: float = field(default_factory=time.monotonic)

    def added(self) -> None:
        """The command ran: remember the address's lifetime, and announce it."""
        self.addresses._set(self.vpn_gateway_id, self.set_at + self.seconds)
        namespace = self.addresses._namespace_of(self.vpn_gateway_id)
        announce(namespace, self.addresses.interface, self.address)


def announce(namespace: str, interface: str, address: str) -> None:
    """Gratuitous ARP, so that the segment's neighbours forget the node that held the
    address before (in the background: arping takes a second)."""
    if shutil.which(ARPING) is None:
        return
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, ARPING, "-q", "-U", "-c", "2", "-I", interface, address],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    threading.Thread(target=process.wait, name="vpngw-arping", daemon=True).start()
