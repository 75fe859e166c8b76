"""The host backend: VPN gateways on a real machine's uplink and VPC-side network.

Each gateway still gets a namespace of its own, ``vpngw-<node>-g-<vpn-id>``, with its own
charon: strongSwan binds UDP 500/4500 on every address of its namespace, so two charons
cannot share the host's, and one charon per gateway keeps one gateway's trouble away
from the others (docs/nodes.md)::

      the host (or the namespace given as --host-netns)
      uplink  (e.g. eth0, on the Internet side)    vpc-side (e.g. br-vpc, toward the VPC)
        │  macvlan child, moved into the gateway     │   ▲  the host routes the local
        ▼                                            │   │  subnets there (its own routes)
      vpngw-<node>-g-vpn-AAA                         │   │
        wan0      InternetIp/32 (valid_lft = the lease)  │
        nexthop0  VpcNextHop/32 (valid_lft = the lease), macvlan child of the vpc-side
        vpc0      169.254.100.1/30 ── veth ── vg<hash> 169.254.100.2/32 in the host
        lo        first host of every local subnet, health-check sips
        charon

* The InternetIp sits on a macvlan child of the uplink (the uplink's L2 segment, a MAC of
  its own), so a gateway can move between nodes: the new holder announces it with a
  gratuitous ARP. It is added with a lifetime (``valid_lft``) equal to what is left of
  the node's lease and refreshed at every renewal: a node that dies or loses the
  database stops answering for the address, by the kernel's hand, before another node
  may take the lease.
* The VPC-side next hop (the gateway's ``VpcNextHop``, docs/hosts.md section 5) sits on a
  macvlan child of the VPC-side interface in the same way, bound to the same lease and
  announced the same way: VPC hosts route the remote subnets to it once, and the route
  follows the gateway to whichever node holds it. Traffic from the VPC enters there and
  goes to charon's routes (kernel-libipsec's TUN); the way back leaves by the transit veth.
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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vpngw.dataplane.backends.base import (
    GATEWAY_VPC_IF,
    TRANSIT_GATEWAY,
    TRANSIT_PREFIX,
    TRANSIT_VPC,
    VPC_NEXT_HOP_IF,
    WAN_IF,
    GatewayHost,
    gateway_addresses,
    machine_lock,
    node_gateway_prefix,
    routed_local_subnets,
)
from vpngw.dataplane.backends.host import charon_profile
from vpngw.dataplane.backends.host.leased_address import ARPING, LeasedAddresses
from vpngw.dataplane.spec.from_store import GatewayState
from vpngw.dataplane.system import netns
from vpngw.dataplane.system.netns import NetnsError, Route, ip_args, link_exists

log = logging.getLogger(__name__)

# The next hop's macvlan sits on the VPC segment, where other hosts live. In the gateway's
# namespace: ARP is answered only for an address of the interface asked on (never for the
# anchors and sips on lo, which may be real VPC hosts' addresses) and asked from that
# interface's own address; no reverse-path check (traffic from VPC hosts enters on the
# macvlan but the way back to them is the transit veth, and a VPC router may ARP from an
# address the namespace has no route to); no IPv6 chatter on the segment. Set on "all" and
# "default" before the macvlan is made, so that it is born with them (a crash in between
# leaves nothing half-set); the effective value is the larger of "all" and the interface's.
NEXT_HOP_SYSCTLS = (
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv4.conf.all.arp_ignore=1",
    "net.ipv4.conf.all.arp_announce=2",
    "net.ipv6.conf.default.disable_ipv6=1",
)


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
    addresses_expire = True

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.prefix = node_gateway_prefix(config.node)
        self._internet_ips = LeasedAddresses(WAN_IF, self._namespace)
        self._next_hops = LeasedAddresses(VPC_NEXT_HOP_IF, self._namespace)

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
            self._namespace(vpn_gateway_id),
            self.config.host_namespace,
            self.config.state_dir / f"g-{vpn_gateway_id}",
            charon_profile.strongswan_conf,
        )

    def _namespace(self, vpn_gateway_id: str) -> str:
        return f"{self.prefix}{vpn_gateway_id}"

    def gateway_ids(self) -> set[str]:
        return {ns[len(self.prefix) :] for ns in netns.namespaces() if ns.startswith(self.prefix)}

    def sync_gateway(self, state: GatewayState) -> None:
        gateway = self.gateway(state.vpn_gateway_id)
        namespace = gateway.namespace
        if netns.ensure_namespace(namespace):
            try:
                self._build_new(gateway, state)
                gateway.state_dir.mkdir(parents=True, exist_ok=True)
                return
            except NetnsError as error:
                # Something of the host was not as expected (a leftover link of a crashed
                # run, say): start the namespace again and go step by step, which copes.
                log.info(
                    "gateway %s: one-batch build failed (%s); building step by step",
                    state.vpn_gateway_id,
                    error,
                )
                netns.delete_namespace(namespace)
                netns.ensure_namespace(namespace)
        self._ensure_macvlan(namespace, self.config.uplink, WAN_IF)
        transit = self._ensure_transit(gateway)
        self._internet_ips.ensure(state.vpn_gateway_id, state.internet_ip)
        if state.vpc_next_hop is not None:
            if not link_exists(namespace, VPC_NEXT_HOP_IF):
                netns.write_sysctls(namespace, NEXT_HOP_SYSCTLS)
                self._ensure_macvlan(namespace, self.config.vpc_side, VPC_NEXT_HOP_IF)
            self._next_hops.ensure(state.vpn_gateway_id, state.vpc_next_hop)
        netns.sync_lo_addresses(namespace, gateway_addresses(state))
        netns.sync_routes(namespace, self._gateway_routes(state))
        netns.sync_routes(self.config.host_namespace, self._host_routes(state), dev=transit)
        gateway.state_dir.mkdir(parents=True, exist_ok=True)

    def _build_new(self, gateway: GatewayHost, state: GatewayState) -> None:
        """Build a gateway whose namespace was created just now (so it holds nothing) in
        three ``ip`` processes instead of some fifty (docs/benchmarks.md, "Nodes"): the
        host's side (the macvlans, moved in, and the transit veth), then everything inside
        the namespace, then the host's routes through the veth. Ends as the step-by-step
        sync below would; any failure raises NetnsError (the caller starts again)."""
        namespace, host = gateway.namespace, self.config.host_namespace
        transit = _hashed("vg", gateway.vpn_gateway_id)
        uplink_temp = _hashed("mv", f"{namespace}/{WAN_IF}")
        sysctls = [*NEXT_HOP_SYSCTLS] if state.vpc_next_hop is not None else []
        # Born with them (see NEXT_HOP_SYSCTLS): set before the macvlan enters.
        netns.write_sysctls(namespace, sysctls)
        on_host = [
            [
                "link",
                "add",
                "link",
                self.config.uplink,
                "name",
                uplink_temp,
                "type",
                "macvlan",
                "mode",
                "bridge",
            ],
            ["link", "set", uplink_temp, "netns", namespace],
        ]
        inside = [
            ["link", "set", "lo", "up"],
            ["link", "set", uplink_temp, "name", WAN_IF],
            ["link", "set", WAN_IF, "up"],
        ]
        if state.vpc_next_hop is not None:
            next_hop_temp = _hashed("mv", f"{namespace}/{VPC_NEXT_HOP_IF}")
            on_host += [
                ["link", "add", "link", self.config.vpc_side, "name", next_hop_temp]
                + ["type", "macvlan", "mode", "bridge"],
                ["link", "set", next_hop_temp, "netns", namespace],
            ]
            inside += [
                ["link", "set", next_hop_temp, "name", VPC_NEXT_HOP_IF],
                ["link", "set", VPC_NEXT_HOP_IF, "up"],
            ]
        on_host += [
            ["link", "add", transit, "type", "veth", "peer", "name", GATEWAY_VPC_IF, "netns", namespace],
            ["addr", "add", f"{TRANSIT_VPC}/32", "dev", transit],
            ["link", "set", transit, "up"],
        ]
        inside += [
            ["addr", "add", f"{TRANSIT_GATEWAY}/{TRANSIT_PREFIX}", "dev", GATEWAY_VPC_IF],
            ["link", "set", GATEWAY_VPC_IF, "up"],
        ]
        inside += [
            ["addr", "add", f"{address}/32", "dev", "lo"] for address in sorted(gateway_addresses(state))
        ]
        new_addresses = [
            new
            for new in (
                self._internet_ips.add_new(state.vpn_gateway_id, state.internet_ip),
                self._next_hops.add_new(state.vpn_gateway_id, state.vpc_next_hop)
                if state.vpc_next_hop is not None
                else None,
            )
            if new is not None
        ]
        inside += [new.command for new in new_addresses]
        inside += [["route", "replace", *netns.route_args(r)] for r in sorted(self._gateway_routes(state))]
        netns.run_batch(host, on_host)
        netns.run_batch(namespace, inside)
        for new in new_addresses:
            new.added()
        # Customer gateways on the uplink's own segment: one that dies must not stall
        # this charon's other tunnels (docs/nodes.md, "Dual-tunnel connections").
        netns.write_sysctls(namespace, [netns.unresolved_queue_setting(WAN_IF)])
        netns.run_batch(
            host,
            [["route", "replace", *netns.route_args(route)] for route in sorted(self._host_routes(state))],
        )

    def hold_internet_ip(self, vpn_gateway_id: str, internet_ip: str, valid_s: float) -> None:
        self._internet_ips.hold(vpn_gateway_id, internet_ip, valid_s)

    def hold_vpc_next_hop(self, vpn_gateway_id: str, address: str, valid_s: float) -> None:
        self._next_hops.hold(vpn_gateway_id, address, valid_s)

    def drop_vpc_next_hop(self, vpn_gateway_id: str) -> None:
        self._next_hops.drop(vpn_gateway_id)

    def fence(self, vpn_gateway_id: str) -> None:
        self._internet_ips.drop(vpn_gateway_id)
        self._next_hops.drop(vpn_gateway_id)
        namespace = self._namespace(vpn_gateway_id)
        if namespace in netns.namespaces():
            netns.kill_namespace_processes(namespace)

    def remove_gateway(self, vpn_gateway_id: str) -> None:
        """Every process of the gateway's namespace, the namespace (its macvlan and
        veth, and the host's routes on that veth, go with it) and its state."""
        self._internet_ips.forget(vpn_gateway_id)
        self._next_hops.forget(vpn_gateway_id)
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

    def _ensure_macvlan(self, namespace: str, parent: str, name: str) -> None:
        """A macvlan child of the host's ``parent`` (a MAC of its own on that segment),
        moved into the gateway's namespace as ``name``."""
        if link_exists(namespace, name):
            return
        host = ip_args(self.config.host_namespace)
        temporary = _hashed("mv", f"{namespace}/{name}")
        if link_exists(self.config.host_namespace, temporary):
            netns.run("ip", *host, "link", "del", temporary)
        netns.run(
            "ip", *host, "link", "add", "link", parent, "name", temporary, "type", "macvlan", "mode", "bridge"
        )
        netns.run("ip", *host, "link", "set", temporary, "netns", namespace)
        netns.run("ip", "-n", namespace, "link", "set", temporary, "name", name)
        if name == WAN_IF:
            # Customer gateways on the uplink's own segment: one that dies must not stall
            # this charon's other tunnels (docs/nodes.md, "Dual-tunnel connections").
            netns.limit_unresolved_queue(namespace, WAN_IF)
        netns.run("ip", "-n", namespace, "link", "set", name, "up")

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

    def _host_routes(self, state: GatewayState) -> set[Route]:
        """The host's routes to the RemoteSubnets through the gateway (AutoConfigRoute)."""
        transit = _hashed("vg", state.vpn_gateway_id)
        return {
            Route(str(ipaddress.ip_network(subnet, strict=False)), transit, TRANSIT_GATEWAY, onlink=True)
            for subnet in state.auto_routes
        }

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
