"""Lab nodes: namespaces that play data-plane hosts on the lab WAN (``vpngw lab node``).

A lab node stands for a machine that runs ``vpngw agent --backend host``, so that the
several-node layout can be tried on one machine (docs/nodes.md). It is one namespace
``<lab>-n-<name>`` holding

* ``up0``, the host's uplink, a port of the lab WAN bridge with ``198.19.250.<k>/15``;
* ``vpcside0``, the host's VPC-side interface, a veth to ``<lab>-n-<name>-v``, which
  stands for the VPC's network: every address of the VPC subnets answers there (AnyIP),
  and its default route points back at the node;
* the operator's own routes: the VPC subnets through ``vpcside0``; forwarding on.

The agent itself runs in the machine's own namespace and drives the node's namespace
through ``--host-netns``, exactly as it would drive a real host's interfaces: nothing
of the lab backend is involved on the node's side.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class LabNode:
    name: str
    namespace: str
    vpc_namespace: str
    uplink_ip: str

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


def lab_nodes(network: Lab) -> list[LabNode]:
    prefix = f"{network.names.lab}-n-"
    found = []
    for namespace in sorted(netns.namespaces()):
        if namespace.startswith(prefix) and not namespace.endswith("-v"):
            addresses = (
                netns.lo_addresses(namespace, UPLINK) if netns.link_exists(namespace, UPLINK) else set()
            )
            uplink_ip = next(iter(sorted(addresses)), "").split("/")[0]
            name = namespace[len(prefix) :]
            found.append(LabNode(name, namespace, f"{namespace}-v", uplink_ip))
    return found


def create_node(
    network: Lab,
    name: str,
    *,
    vpc_subnets: Sequence[str] = DEFAULT_VPC_SUBNETS,
    uplink_ip: str | None = None,
) -> LabNode:
    """Build node ``name`` (it must not exist); its uplink takes the next free address
    of 198.19.250.0/24 unless ``uplink_ip`` is given."""
    namespace = node_namespace(network, name)
    if namespace in netns.namespaces():
        raise netns.NetnsError(f"lab node {name} exists already ({namespace}); remove it first")
    if uplink_ip is None:
        taken = {node.uplink_ip for node in lab_nodes(network)}
        uplink_ip = next(str(a) for a in UPLINK_NETWORK.hosts() if str(a) not in taken)
    node = LabNode(name, namespace, f"{namespace}-v", uplink_ip)
    try:
        network.ensure_wan()
        netns.ensure_namespace(node.namespace)
        port = topology.bridge_port(node.namespace)
        netns.add_veth_pair(node.namespace, UPLINK, network.names.wan, port)
        netns.run("ip", "-n", network.names.wan, "link", "set", port, "master", topology.WAN_BRIDGE)
        netns.add_address(node.namespace, UPLINK, f"{uplink_ip}/{topology.WAN_NETWORK.prefixlen}")
        netns.ensure_namespace(node.vpc_namespace)
        netns.add_veth_pair(node.namespace, VPC_SIDE, node.vpc_namespace, "h0")
        netns.add_address(node.namespace, VPC_SIDE, f"{VPC_LINK_NODE}/30")
        netns.add_address(node.vpc_namespace, "h0", f"{VPC_LINK_VPC}/30")
        for subnet in vpc_subnets:
            netns.run(
                "ip", "-n", node.namespace, "route", "add", subnet, "via", VPC_LINK_VPC, "dev", VPC_SIDE
            )
            netns.run("ip", "-n", node.vpc_namespace, "route", "add", "local", subnet, "dev", "lo")
        netns.run(
            "ip", "-n", node.vpc_namespace, "route", "add", "default", "via", VPC_LINK_NODE, "dev", "h0"
        )
    except BaseException:
        remove_node(network, name)
        raise
    return node


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
    return existed
