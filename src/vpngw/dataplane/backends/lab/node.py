"""Lab nodes: namespaces that play data-plane hosts on the lab WAN (``vpngw lab node``).

A lab node stands for a machine that runs ``vpngw agent --backend host``, so that the
several-node layout can be tried on one machine (docs/nodes.md). It is one namespace
``<lab>-n-<name>`` holding

* ``up0``, the host's uplink, a port of the lab WAN bridge with ``198.19.250.<k>/15``;
* ``vpcside0``, the host's VPC-side interface, a veth to ``<lab>-n-<name>-v``, which
  stands for the VPC's network: every address of the VPC subnets answers there (AnyIP),
  and its default route points back at the node;
* the operator's own routes: the VPC subnets through ``vpcside0``; forwarding on.

With ``shared_vpc`` (``vpngw lab node create --shared-vpc``) the node's ``vpcside0`` is a
port of one VPC segment that every such node of the lab shares instead: the namespace
``<lab>-vpc``, a bridge ``vpc`` that stands for the VPC's router and hosts. It holds
``169.254.51.254/24`` (each node has ``169.254.51.<k>/24``, k the last byte of its
uplink address), the first host of the VPC next-hop pool (``VPNGW_VPC_NEXT_HOP_POOL``,
as the WAN bridge holds the InternetIp pool's), and every address of the VPC subnets
(AnyIP). It has no default route: VPC hosts reach a remote subnet only through the route
an operator sets once, ``ip route add <RemoteSubnet> via <the gateway's VpcNextHop>``,
which keeps working when the gateway moves to another node (docs/hosts.md, section 5).

The agent itself runs in the machine's own namespace and drives the node's namespace
through ``--host-netns``, exactly as it would drive a real host's interfaces: nothing
of the lab backend is involved on the node's side.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from vpngw.config import DEFAULT_VPC_NEXT_HOP_POOL
from vpngw.dataplane.backends.base import node_gateway_prefix
from vpngw.dataplane.backends.lab import topology
from vpngw.dataplane.backends.lab.lab import Lab
from vpngw.dataplane.system import netns

UPLINK = "up0"
VPC_SIDE = "vpcside0"
VPC_LINK_NODE = "169.254.50.1"
VPC_LINK_VPC = "169.254.50.2"
UPLINK_NETWORK = ipaddress.IPv4Network("198.19.250.0/24")
DEFAULT_VPC_SUBNETS = ("10.1.0.0/16",)
# The shared VPC segment (``--shared-vpc``): its bridge and the nodes' link network on it.
SHARED_VPC_BRIDGE = "vpc"
SHARED_VPC_NODES = ipaddress.IPv4Network("169.254.51.0/24")
SHARED_VPC_ROUTER = "169.254.51.254"


@dataclass(frozen=True)
class LabNode:
    name: str
    namespace: str
    vpc_namespace: str
    uplink_ip: str
    # On the lab's shared VPC segment (``<lab>-vpc``) rather than a VPC network of its own.
    shared_vpc: bool = False

    def agent_arguments(self) -> list[str]:
        """The ``vpngw agent`` options that drive this node."""
        return [
            "--node",
            self.name,
            "--backend",
            "host",
            "--host-netns",
            self.namespace,
            "--uplink",
            UPLINK,
            "--vpc-side",
            VPC_SIDE,
        ]


def node_namespace(network: Lab, name: str) -> str:
    return f"{network.names.lab}-n-{name}"


def shared_vpc_namespace(network: Lab) -> str:
    """The lab's shared VPC segment (``--shared-vpc`` nodes)."""
    return network.names.vpc_segment


def lab_nodes(network: Lab) -> list[LabNode]:
    prefix = f"{network.names.lab}-n-"
    found = []
    present = netns.namespaces()
    for namespace in sorted(present):
        if namespace.startswith(prefix) and not namespace.endswith("-v"):
            addresses = (
                netns.lo_addresses(namespace, UPLINK) if netns.link_exists(namespace, UPLINK) else set()
            )
            uplink_ip = next(iter(sorted(addresses)), "").split("/")[0]
            name = namespace[len(prefix) :]
            if f"{namespace}-v" in present:
                found.append(LabNode(name, namespace, f"{namespace}-v", uplink_ip))
            else:
                found.append(LabNode(name, namespace, shared_vpc_namespace(network), uplink_ip, True))
    return found


def ensure_shared_vpc(
    network: Lab, vpc_subnets: Sequence[str], next_hop_pool: str = DEFAULT_VPC_NEXT_HOP_POOL
) -> str:
    """The lab's shared VPC segment, built if missing; the VPC subnets answer there.
    Returns its namespace."""
    namespace = shared_vpc_namespace(network)
    netns.ensure_namespace(namespace)
    if not netns.link_exists(namespace, SHARED_VPC_BRIDGE):
        netns.run("ip", "-n", namespace, "link", "add", SHARED_VPC_BRIDGE, "type", "bridge")
        netns.add_address(namespace, SHARED_VPC_BRIDGE, f"{SHARED_VPC_ROUTER}/{SHARED_VPC_NODES.prefixlen}")
        pool = ipaddress.IPv4Network(next_hop_pool)
        router = next(pool.hosts(), pool.network_address)
        netns.add_address(namespace, SHARED_VPC_BRIDGE, f"{router}/{pool.prefixlen}")
        netns.run("ip", "-n", namespace, "link", "set", SHARED_VPC_BRIDGE, "up")
    local = {
        str(route["dst"])
        for route in netns.ip_json("-n", namespace, "route", "show", "table", "local", "dev", "lo")
    }
    for subnet in vpc_subnets:
        if str(ipaddress.ip_network(subnet, strict=False)) not in local:
            netns.run("ip", "-n", namespace, "route", "add", "local", subnet, "dev", "lo")
    return namespace


def _shared_vpc_port(namespace: str) -> str:
    """The bridge-side name of a node's veth on the shared VPC segment (15 characters)."""
    return "s" + hashlib.sha256(namespace.encode()).hexdigest()[:12]


def create_node(
    network: Lab,
    name: str,
    *,
    vpc_subnets: Sequence[str] = DEFAULT_VPC_SUBNETS,
    uplink_ip: str | None = None,
    shared_vpc: bool = False,
    next_hop_pool: str = DEFAULT_VPC_NEXT_HOP_POOL,
) -> LabNode:
    """Build node ``name`` (it must not exist); its uplink takes the next free address
    of 198.19.250.0/24 unless ``uplink_ip`` is given. ``shared_vpc``: its VPC side is a
    port of the lab's shared VPC segment (built with ``next_hop_pool``'s first host if
    missing), not a VPC network of its own."""
    namespace = node_namespace(network, name)
    if namespace in netns.namespaces():
        raise netns.NetnsError(f"lab node {name} exists already ({namespace}); remove it first")
    if uplink_ip is None:
        taken = {node.uplink_ip for node in lab_nodes(network)}
        uplink_ip = next(str(a) for a in UPLINK_NETWORK.hosts() if str(a) not in taken)
    if shared_vpc:
        node = LabNode(name, namespace, shared_vpc_namespace(network), uplink_ip, True)
    else:
        node = LabNode(name, namespace, f"{namespace}-v", uplink_ip)
    try:
        network.ensure_wan()
        netns.ensure_namespace(node.namespace)
        port = topology.bridge_port(node.namespace)
        netns.add_veth_pair(node.namespace, UPLINK, network.names.wan, port)
        netns.run("ip", "-n", network.names.wan, "link", "set", port, "master", topology.WAN_BRIDGE)
        netns.add_address(node.namespace, UPLINK, f"{uplink_ip}/{topology.WAN_NETWORK.prefixlen}")
        if shared_vpc:
            _join_shared_vpc(network, node, vpc_subnets, next_hop_pool)
        else:
            _own_vpc(node, vpc_subnets)
    except BaseException:
        remove_node(network, name)
        raise
    return node


def _own_vpc(node: LabNode, vpc_subnets: Sequence[str]) -> None:
    """A VPC network for this node alone, behind a /30 link; it routes back to the node."""
    netns.ensure_namespace(node.vpc_namespace)
    netns.add_veth_pair(node.namespace, VPC_SIDE, node.vpc_namespace, "h0")
    netns.add_address(node.namespace, VPC_SIDE, f"{VPC_LINK_NODE}/30")
    netns.add_address(node.vpc_namespace, "h0", f"{VPC_LINK_VPC}/30")
    for subnet in vpc_subnets:
        netns.run("ip", "-n", node.namespace, "route", "add", subnet, "via", VPC_LINK_VPC, "dev", VPC_SIDE)
        netns.run("ip", "-n", node.vpc_namespace, "route", "add", "local", subnet, "dev", "lo")
    netns.run("ip", "-n", node.vpc_namespace, "route", "add", "default", "via", VPC_LINK_NODE, "dev", "h0")


def _join_shared_vpc(network: Lab, node: LabNode, vpc_subnets: Sequence[str], next_hop_pool: str) -> None:
    """The node's VPC side as a port of the shared segment, with the host's own routes to
    the VPC subnets through the segment's router."""
    segment = ensure_shared_vpc(network, vpc_subnets, next_hop_pool)
    port = _shared_vpc_port(node.namespace)
    netns.add_veth_pair(node.namespace, VPC_SIDE, segment, port)
    netns.run("ip", "-n", segment, "link", "set", port, "master", SHARED_VPC_BRIDGE)
    index = int(ipaddress.IPv4Address(node.uplink_ip)) & 0xFF
    address = SHARED_VPC_NODES.network_address + index
    if address == ipaddress.IPv4Address(SHARED_VPC_ROUTER) or index == 0:
        raise netns.NetnsError(
            f"lab node {node.name}: no address on the shared VPC segment for {node.uplink_ip}"
        )
    netns.add_address(node.namespace, VPC_SIDE, f"{address}/{SHARED_VPC_NODES.prefixlen}")
    for subnet in vpc_subnets:
        netns.run(
            "ip", "-n", node.namespace, "route", "add", subnet, "via", SHARED_VPC_ROUTER, "dev", VPC_SIDE
        )


def gateway_namespaces(node_name: str) -> set[str]:
    """The namespaces an agent of ``node_name`` made for its gateways (host backend)."""
    prefix = node_gateway_prefix(node_name)
    return {namespace for namespace in netns.namespaces() if namespace.startswith(prefix)}


def remove_node(network: Lab, name: str) -> bool:
    """Remove the node, its VPC side and whatever gateways its agent left on it (their
    processes first); False if there was no such node. Stop its agent before."""
    namespace = node_namespace(network, name)
    existed = namespace in netns.namespaces()
    for gateway in sorted(gateway_namespaces(name)):
        netns.kill_namespace_processes(gateway)
        netns.delete_namespace(gateway)
    for each in (namespace, f"{namespace}-v"):
        netns.kill_namespace_processes(each)
        netns.delete_namespace(each)
    network.detach_from_wan(namespace)
    # A shared segment stays for the lab's other nodes (``vpngw lab down`` removes it);
    # the node's port on it went with the node's veth.
    return existed
