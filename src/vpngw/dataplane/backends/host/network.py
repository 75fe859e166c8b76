"""The host backend: VPN gateways on a real machine's uplink and VPC-side network.

Each gateway still gets a namespace of its own, ``vpngw-<node>-g-<vpn-id>``, with its own
charon: strongSwan binds UDP 500/4500 on every address of its namespace, so two charons
cannot share the host's, and one charon per gateway keeps one gateway's trouble away
from the others (docs/nodes.md)::

      the host (or the namespace given as --host-netns)
      uplink  (e.g. eth0, on the Internet side)    vpc-side (e.g. br-vpc, toward the VPC)
        │  macvlan child, moved into the gateway        ▲  the host routes the local
        ▼                                               │  subnets there (its own routes)
      vpngw-<node>-g-vpn-AAA                            │
        wan0  InternetIp/32 (valid_lft = the lease)      │
        vpc0  169.254.100.1/30 ── veth ── vg<hash> 169.254.100.2/32 in the host
        lo    first host of every local subnet, health-check sips
        charon

* The InternetIp sits on a macvlan child of the uplink (the uplink's L2 segment, a MAC of
  its own), so a gateway can move between nodes: the new holder announces it with a
  gratuitous ARP. It is added with a lifetime (``valid_lft``) equal to what is left of
  the node's lease and refreshed at every renewal: a node that dies or loses the
  database stops answering for the address, by the kernel's hand, before another node
  may take the lease.
* The gateway routes its local subnets to the host over its transit veth; the host
  reaches them through its VPC-side interface (its own routes: the VPC's network is the
  operator's). With AutoConfigRoute, the host gets routes to the RemoteSubnets through
  the gateway (protocol 199, on the gateway's own veth, so each gateway owns its routes).
* Customer gateways are reached on the uplink's own networks, or through
  ``uplink_gateway`` when given (a host route per customer address, never a default
  route: nothing can leave around the tunnel).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vpngw.dataplane.backends.base import (
    GATEWAY_VPC_IF,
    TRANSIT_GATEWAY,
    TRANSIT_PREFIX,
    TRANSIT_VPC,
    WAN_IF,
    GatewayHost,
    gateway_addresses,
    machine_lock,
    node_gateway_prefix,
    routed_local_subnets,
)
from vpngw.dataplane.backends.host import charon_profile
from vpngw.dataplane.spec.from_store import GatewayState
from vpngw.dataplane.system import netns
from vpngw.dataplane.system.netns import NetnsError, Route, ip_args, link_exists

log = logging.getLogger(__name__)

ARPING = "arping"
# A lease renewal refreshes an InternetIp's lifetime only once less than this is left
# (one ``ip`` call per gateway every few seconds instead of every renewal).
REFRESH_BELOW_S = 2.5


@dataclass(frozen=True)
class HostConfig:
    """One node's network, as the operator gives it (``vpngw agent --backend host``)."""

    node: str
    uplink: str
    vpc_side: str
    state_dir: Path
    # The namespace that plays the host (tests, or a host that keeps its uplink in a
    # namespace); None: the namespace vpngw runs in.
    host_namespace: str | None = None
    # Next hop toward customer gateways that are not on the uplink's own networks.
    uplink_gateway: str | None = None


def _hashed(prefix: str, text: str) -> str:
    """An interface name (at most 15 characters) stable for ``text``."""
    return prefix + hashlib.sha256(text.encode()).hexdigest()[: 15 - len(prefix)]


class HostNetwork:
    """The ``host`` network backend of one node."""

    kind = "host"

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.prefix = node_gateway_prefix(config.node)
        self._lock = threading.Lock()
        # Until when (monotonic) each gateway's InternetIp may be held: its lease.
        self._valid_until: dict[str, float] = {}
        # When (monotonic) the kernel drops each InternetIp, as this process last set it.
        self._address_until: dict[str, float] = {}

    # -- NetworkBackend -------------------------------------------------------------

    def lock(self) -> IO[bytes]:
        # Named after the node (a lab node's name starts with its lab's): `lab down` and
        # the tests find and remove it with the rest of what the node left.
        return machine_lock(
            f"{self.config.node}.host",
            f"node {self.config.node!r} is driven by another vpngw process on this machine",
        )

    def prepare(self) -> None:
        host = self.config.host_namespace
        for role, ifname in (("uplink", self.config.uplink), ("VPC-side interface", self.config.vpc_side)):
            if not link_exists(host, ifname):
                where = f" in namespace {host}" if host else ""
                raise NetnsError(f"the {role} {ifname!r} does not exist{where} (--uplink / --vpc-side)")
        if self._sysctl("net.ipv4.ip_forward") != "1":
            log.warning("net.ipv4.ip_forward is off on this host: VPC traffic cannot reach the gateways")
        if shutil.which(ARPING) is None:
            log.warning(
                "arping is not installed: a gateway that moves here is not announced (apt-get install iputils-arping)"
            )

    def gateway(self, vpn_gateway_id: str) -> GatewayHost:
        return GatewayHost(
            vpn_gateway_id,
            f"{self.prefix}{vpn_gateway_id}",
            self.config.host_namespace,
            self.config.state_dir / f"g-{vpn_gateway_id}",
            charon_profile.strongswan_conf,
        )

    def gateway_ids(self) -> set[str]:
        return {ns[len(self.prefix) :] for ns in netns.namespaces() if ns.startswith(self.prefix)}

    def sync_gateway(self, state: GatewayState) -> None:
        gateway = self.gateway(state.vpn_gateway_id)
        namespace = gateway.namespace
        netns.ensure_namespace(namespace)
        self._ensure_wan(namespace)
        transit = self._ensure_transit(gateway)
        self._ensure_internet_ip(state.vpn_gateway_id, state.internet_ip)
        netns.sync_lo_addresses(namespace, gateway_addresses(state))
        netns.sync_routes(namespace, self._gateway_routes(state))
        host_routes = {
            Route(str(ipaddress.ip_network(subnet, strict=False)), transit, TRANSIT_GATEWAY, onlink=True)
            for subnet in state.auto_routes
        }
        netns.sync_routes(self.config.host_namespace, host_routes, dev=transit)
        gateway.state_dir.mkdir(parents=True, exist_ok=True)

    def hold_internet_ip(self, vpn_gateway_id: str, internet_ip: str, valid_s: float) -> None:
        with self._lock:
            self._valid_until[vpn_gateway_id] = time.monotonic() + valid_s
        with self._lock:
            fresh = (
                self._address_until.get(vpn_gateway_id, float("-inf")) - time.monotonic() > REFRESH_BELOW_S
            )
        if not fresh and link_exists(self.gateway(vpn_gateway_id).namespace, WAN_IF):
            self._ensure_internet_ip(vpn_gateway_id, internet_ip)

    def fence(self, vpn_gateway_id: str) -> None:
        with self._lock:
            self._valid_until[vpn_gateway_id] = float("-inf")
            self._address_until.pop(vpn_gateway_id, None)
        namespace = self.gateway(vpn_gateway_id).namespace
        if namespace in netns.namespaces():
            if link_exists(namespace, WAN_IF):
                netns.run("ip", "-n", namespace, "addr", "flush", "dev", WAN_IF)
            netns.kill_namespace_processes(namespace)

    def remove_gateway(self, vpn_gateway_id: str) -> None:
        """Every process of the gateway's namespace, the namespace (its macvlan and
        veth, and the host's routes on that veth, go with it) and its state."""
        with self._lock:
            self._valid_until.pop(vpn_gateway_id, None)
            self._address_until.pop(vpn_gateway_id, None)
        gateway = self.gateway(vpn_gateway_id)
        netns.kill_namespace_processes(gateway.namespace)
        netns.delete_namespace(gateway.namespace)
        transit = _hashed("vg", vpn_gateway_id)
        if link_exists(self.config.host_namespace, transit):  # the kernel frees it asynchronously
            try:
                netns.run("ip", *ip_args(self.config.host_namespace), "link", "del", transit)
            except NetnsError:
                if link_exists(self.config.host_namespace, transit):
                    raise
        shutil.rmtree(gateway.state_dir, ignore_errors=True)

    # -- pieces ---------------------------------------------------------------------

    def _ensure_wan(self, namespace: str) -> None:
        if link_exists(namespace, WAN_IF):
            return
        host = ip_args(self.config.host_namespace)
        temporary = _hashed("mv", namespace)
        if link_exists(self.config.host_namespace, temporary):
            netns.run("ip", *host, "link", "del", temporary)
        netns.run(
            "ip",
            *host,
            "link",
            "add",
            "link",
            self.config.uplink,
            "name",
            temporary,
            "type",
            "macvlan",
            "mode",
            "bridge",
        )
        netns.run("ip", *host, "link", "set", temporary, "netns", namespace)
        netns.run("ip", "-n", namespace, "link", "set", temporary, "name", WAN_IF)
        # Customer gateways on the uplink's own segment: one that dies must not stall
        # this charon's other tunnels (docs/nodes.md, "Dual-tunnel connections").
        netns.limit_unresolved_queue(namespace, WAN_IF)
        netns.run("ip", "-n", namespace, "link", "set", WAN_IF, "up")

    def _ensure_transit(self, gateway: GatewayHost) -> str:
        transit = _hashed("vg", gateway.vpn_gateway_id)
        if link_exists(gateway.namespace, GATEWAY_VPC_IF):
            return transit
        host = self.config.host_namespace
        if link_exists(host, transit):
            netns.run("ip", *ip_args(host), "link", "del", transit)
        netns.run(
            "ip",
            *ip_args(host),
            "link",
            "add",
            transit,
            "type",
            "veth",
            "peer",
            "name",
            GATEWAY_VPC_IF,
            "netns",
            gateway.namespace,
        )
        netns.run("ip", *ip_args(host), "addr", "add", f"{TRANSIT_VPC}/32", "dev", transit)
        netns.run("ip", *ip_args(host), "link", "set", transit, "up")
        netns.add_address(gateway.namespace, GATEWAY_VPC_IF, f"{TRANSIT_GATEWAY}/{TRANSIT_PREFIX}")
        netns.run("ip", "-n", gateway.namespace, "link", "set", GATEWAY_VPC_IF, "up")
        return transit

    def _ensure_internet_ip(self, vpn_gateway_id: str, internet_ip: str) -> None:
        """Add or refresh the InternetIp with what is left of the lease as its lifetime,
        and announce it (gratuitous ARP) when it is new here."""
        namespace = self.gateway(vpn_gateway_id).namespace
        with self._lock:
            until = self._valid_until.get(vpn_gateway_id, float("-inf"))
        seconds = int(until - time.monotonic())
        if seconds <= 0:
            return  # no lease (yet, or any more): a host never answers for an address it does not hold
        lifetime = ["valid_lft", str(seconds), "preferred_lft", str(seconds)]
        with self._lock:
            known = self._address_until.get(vpn_gateway_id, float("-inf")) > time.monotonic()
        # Trust what this process set while it lasts (a hand-deleted address comes back
        # when that runs out, within a lease time); else ask the kernel.
        present = known or f"{internet_ip}/32" in netns.lo_addresses(namespace, WAN_IF)
        set_at = time.monotonic()
        netns.run("ip", "-n", namespace, "addr", "replace", f"{internet_ip}/32", "dev", WAN_IF, *lifetime)
        with self._lock:
            self._address_until[vpn_gateway_id] = set_at + seconds
        if not present:
            self._announce(namespace, internet_ip)

    def _announce(self, namespace: str, internet_ip: str) -> None:
        """Gratuitous ARP, so that the uplink's neighbours forget the node that held the
        address before (in the background: arping takes a second)."""
        if shutil.which(ARPING) is None:
            return
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, ARPING, "-q", "-U", "-c", "2", "-I", WAN_IF, internet_ip],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        threading.Thread(target=process.wait, name="vpngw-arping", daemon=True).start()

    def _gateway_routes(self, state: GatewayState) -> set[Route]:
        routes = {
            Route(subnet, GATEWAY_VPC_IF, TRANSIT_VPC, onlink=True) for subnet in routed_local_subnets(state)
        }
        on_link = self._uplink_networks()
        for network in on_link:
            routes.add(Route(str(network), WAN_IF))
        # Customer gateways, and a dual-tunnel gateway's other address (its partner, which
        # this address's charon namespace exchanges liveness datagrams with).
        far = [spec.remote_addr for spec in state.connections]
        if state.partner_ip is not None:
            far.append(state.partner_ip)
        for remote in far:
            address = ipaddress.ip_address(remote)
            if any(address in network for network in on_link):
                continue
            routes.add(
                Route(
                    f"{address}/32",
                    WAN_IF,
                    self.config.uplink_gateway,
                    onlink=self.config.uplink_gateway is not None,
                )
            )
        return routes

    def _uplink_networks(self) -> set[ipaddress.IPv4Network]:
        """The IPv4 networks the host has on its uplink (the gateways are on them too)."""
        found: set[ipaddress.IPv4Network] = set()
        for link in netns.ip_json(
            *ip_args(self.config.host_namespace), "-4", "addr", "show", "dev", self.config.uplink
        ):
            for info in netns.addr_infos(link):
                network = ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
                if network.prefixlen < 32:
                    found.add(network)
        return found

    def _sysctl(self, name: str) -> str:
        command = ["sysctl", "-n", name]
        if self.config.host_namespace:
            command = ["ip", "netns", "exec", self.config.host_namespace, *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        return done.stdout.strip()
