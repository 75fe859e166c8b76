"""``vpngw lab``: the local lab around ``vpngw serve``'s data plane.

* ``vpngw lab peer create NAME --connection vco-...``: a customer-side peer configured
  from the connection's DownloadVpnConnectionConfig (through the API, signed with the
  same key pair as ``vpngw call``), or ``--config FILE`` with that JSON;
* ``vpngw lab peer delete NAME`` / ``vpngw lab peer list``;
* ``vpngw lab exec (--peer NAME | --vpc vpn-... | --gateway vpn-...) -- COMMAND``: run a
  command (ping) from a peer-side or VPC-side address;
* ``vpngw lab node create NAME`` / ``delete NAME`` / ``list``: namespaces that play
  hosts for ``vpngw agent --backend host`` (several nodes on one machine, docs/nodes.md);
* ``vpngw lab show``: the lab's namespaces; ``vpngw lab down``: remove the whole lab.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vpngw.dataplane.backends.lab import topology

if TYPE_CHECKING:
    from vpngw.dataplane.backends.lab.network import LabNetwork

# The lab backend's modules (peers, nodes, the lab's network) are imported by the commands
# that use them, not here: `vpngw agent` imports this module for its options, and on the
# host backend it never runs a lab (three agents starting at once on two cores pay every
# import in their time to take their gateways; docs/benchmarks.md, "Spread: the agent's
# start-up").


def add_lab_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lab",
        default=os.environ.get("VPNGW_LAB", topology.DEFAULT_LAB),
        help="the lab's name: the prefix of its namespaces (default vpngw)",
    )
    parser.add_argument(
        "--lab-state",
        default=os.environ.get("VPNGW_LAB_STATE") or None,
        metavar="DIR",
        help="keep the lab's charon state, sockets and pids in DIR/<lab> (default: machine-wide, "
        "/var/lib/vpngw/<lab> and /run/vpngw/<lab> as root; docs/operations.md)",
    )


def network_of(args: argparse.Namespace, *, owner: str | None = None) -> LabNetwork:
    """The lab the options name; ``owner``: the database this process serves (a data
    plane), None for commands that only look or add peers."""
    from vpngw.dataplane.backends.lab.lab import default_dirs
    from vpngw.dataplane.backends.lab.network import LabNetwork

    if args.lab_state:
        return LabNetwork(args.lab, Path(args.lab_state).absolute() / args.lab, owner=owner)
    state_dir, run_dir = default_dirs(args.lab)
    return LabNetwork(args.lab, state_dir, run_dir=run_dir, owner=owner)


def build_lab_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab_cmd = commands.add_parser("lab", help="the local lab: peers, commands in namespaces, teardown")
    sub = lab_cmd.add_subparsers(dest="sub", required=True)

    peer = sub.add_parser("peer", help="customer-side IPsec peers").add_subparsers(
        dest="peer_sub", required=True
    )
    create = peer.add_parser("create", help="create a peer (namespace, charon, hosts) for a connection")
    create.add_argument("name")
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--connection", metavar="VCO_ID", help="configure from this connection's DownloadVpnConnectionConfig"
    )
    source.add_argument(
        "--config",
        metavar="FILE",
        help="a DownloadVpnConnectionConfig JSON response (or its VpnConnectionConfig)",
    )
    create.add_argument(
        "--initiate", action="store_true", help="the peer negotiates at once (default: it only responds)"
    )
    create.add_argument("--endpoint", default=os.environ.get("VPNGW_ENDPOINT", "http://127.0.0.1:8080"))
    create.add_argument("--credentials", metavar="FILE", default=None)
    create.add_argument("--region", default=os.environ.get("VPNGW_REGION"), help="RegionId of the connection")
    add_lab_options(create)
    create.set_defaults(run=cmd_peer_create)
    delete = peer.add_parser("delete", help="remove a peer")
    delete.add_argument("name")
    add_lab_options(delete)
    delete.set_defaults(run=cmd_peer_delete)
    listing = peer.add_parser("list", help="list the lab's peers")
    add_lab_options(listing)
    listing.set_defaults(run=cmd_peer_list)

    node = sub.add_parser("node", help="namespaces that play data-plane hosts (docs/nodes.md)")
    node_sub = node.add_subparsers(dest="node_sub", required=True)
    node_create = node_sub.add_parser(
        "create", help="a host namespace with an uplink on the lab WAN and a VPC side"
    )
    node_create.add_argument("name")
    node_create.add_argument(
        "--vpc-subnet",
        action="append",
        metavar="CIDR",
        help="a VPC subnet reached through the VPC side (default 10.1.0.0/16; repeatable)",
    )
    node_create.add_argument(
        "--shared-vpc",
        action="store_true",
        help="put the node's VPC side on the lab's shared VPC segment (<lab>-vpc, made if missing) "
        "instead of a VPC network of its own: VPC hosts route remote subnets to a gateway's "
        "VpcNextHop (docs/lab.md)",
    )
    add_lab_options(node_create)
    node_create.set_defaults(run=cmd_node_create)
    node_delete = node_sub.add_parser("delete", help="remove a lab node and what its agent left on it")
    node_delete.add_argument("name")
    add_lab_options(node_delete)
    node_delete.set_defaults(run=cmd_node_delete)
    node_list = node_sub.add_parser("list", help="the lab's nodes and the agent options that drive each")
    add_lab_options(node_list)
    node_list.set_defaults(run=cmd_node_list)

    run = sub.add_parser("exec", help="run a command inside a peer's or a gateway's namespace")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--peer", metavar="NAME")
    where.add_argument("--vpc", metavar="VPN_GATEWAY_ID", help="the VPC side behind this VPN gateway")
    where.add_argument(
        "--gateway", metavar="VPN_GATEWAY_ID", help="the gateway's own namespace (where charon runs)"
    )
    where.add_argument("--node", metavar="NAME", help="a lab node's host namespace")
    where.add_argument("--node-vpc", metavar="NAME", help="the VPC network behind a lab node")
    where.add_argument(
        "--shared-vpc",
        action="store_true",
        help="the lab's shared VPC segment (its router and hosts; nodes made with --shared-vpc)",
    )
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    add_lab_options(run)
    run.set_defaults(run=cmd_exec)

    show = sub.add_parser("show", help="list the lab's namespaces")
    add_lab_options(show)
    show.set_defaults(run=cmd_show)
    down = sub.add_parser("down", help="remove every namespace and charon of the lab")
    add_lab_options(down)
    down.set_defaults(run=cmd_down)


def _fail(message: str) -> int:
    print(f"vpngw lab: {message}", file=sys.stderr)
    return 2


def _prerequisites() -> str | None:
    from vpngw.dataplane.charon import daemon as charon_daemon

    return charon_daemon.missing_prerequisites()


def cmd_peer_create(args: argparse.Namespace) -> int:
    # Here, not at the top: `vpngw agent` imports this module, and the HTTP client with
    # its signer is a tenth of a second it never needs (docs/benchmarks.md, "Nodes").
    from vpngw.cli.call import CallError, call_action
    from vpngw.dataplane.backends.lab import peer as lab_peer
    from vpngw.dataplane.system import netns

    reason = _prerequisites()
    if reason:
        return _fail(reason)
    try:
        if args.config:
            document = json.loads(Path(args.config).read_text())
        else:
            params = {"VpnConnectionId": args.connection}
            if args.region:
                params["RegionId"] = args.region
            else:
                params["RegionId"] = _region_of(args)
            document = call_action(args.endpoint, args.credentials, "DownloadVpnConnectionConfig", params)
        config = document.get("VpnConnectionConfig", document)
        peer = lab_peer.peer_from_download(args.name, config, initiate=args.initiate)
        network = network_of(args)
        pid = lab_peer.create_peer(network, peer)
    except (CallError, OSError, ValueError, KeyError, netns.NetnsError) as error:
        return _fail(f"cannot create peer {args.name}: {error}")
    spec = peer.connection
    print(f"vpngw lab: peer {peer.name} is up: namespace {network.names.peer(peer.name)}, charon pid {pid}")
    talks_to = " and ".join(each.remote_addr for each in peer.connections)
    tunnels = f" ({len(peer.connections)} tunnels, both started)" if peer.dual else ""
    print(
        f"  WAN address {', '.join(peer.wan_ips)}, talks to {talks_to}{tunnels}; hosts: every address of {', '.join(spec.local_subnets)}"
    )
    print(
        f"  try: vpngw lab exec --peer {peer.name} -- ping -I <an address of {spec.local_subnets[0]}> <a VPC address>"
    )
    return 0


def _region_of(args: argparse.Namespace) -> str:
    """The connection's region: the first region whose DescribeVpnConnection knows it."""
    from vpngw.cli.call import CallError, call_action

    regions = call_action(args.endpoint, args.credentials, "DescribeRegions", {})
    listed = regions.get("Regions")
    for region in listed.get("Region", []) if isinstance(listed, dict) else []:
        try:
            call_action(
                args.endpoint,
                args.credentials,
                "DescribeVpnConnection",
                {"RegionId": region["RegionId"], "VpnConnectionId": args.connection},
            )
        except CallError:
            continue
        return str(region["RegionId"])
    raise CallError(f"connection {args.connection} not found in any region (pass --region)")


def cmd_peer_delete(args: argparse.Namespace) -> int:
    from vpngw.dataplane.backends.lab import peer as lab_peer

    if not lab_peer.remove_peer(network_of(args), args.name):
        return _fail(f"no peer {args.name}")
    print(f"vpngw lab: peer {args.name} removed")
    return 0


def cmd_peer_list(args: argparse.Namespace) -> int:
    from vpngw.dataplane.backends.lab import peer as lab_peer

    for name in lab_peer.peer_names(network_of(args)):
        print(name)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from vpngw.dataplane.backends.lab import node as lab_node
    from vpngw.dataplane.system import netns

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        return _fail("nothing to run: vpngw lab exec --peer NAME -- ping ...")
    names = network_of(args).names
    if args.peer:
        namespace = names.peer(args.peer)
    elif args.vpc:
        namespace = names.vpc(args.vpc)
    elif args.shared_vpc:
        namespace = names.vpc_segment
    elif args.node or args.node_vpc:
        namespace = lab_node.node_namespace(network_of(args), args.node or args.node_vpc) + (
            "-v" if args.node_vpc else ""
        )
    else:
        namespace = names.gateway(args.gateway)
    if namespace not in netns.namespaces():
        return _fail(f"no namespace {namespace} in lab {args.lab} (see vpngw lab show)")
    os.execvp("ip", ["ip", "netns", "exec", namespace, *command])
    return 127  # not reached


def cmd_show(args: argparse.Namespace) -> int:
    from vpngw.dataplane.system import netns

    names = network_of(args).names
    for namespace in sorted(netns.namespaces()):
        if names.owns(namespace):
            print(namespace)
    return 0


def cmd_node_create(args: argparse.Namespace) -> int:
    from vpngw.config import settings_from_env
    from vpngw.dataplane.backends.lab import node as lab_node
    from vpngw.dataplane.system import netns

    reason = _prerequisites()
    if reason:
        return _fail(reason)
    try:
        node = lab_node.create_node(
            network_of(args),
            args.name,
            vpc_subnets=args.vpc_subnet or lab_node.DEFAULT_VPC_SUBNETS,
            shared_vpc=args.shared_vpc,
            next_hop_pool=settings_from_env().vpc_next_hop_pool,
        )
    except (netns.NetnsError, ValueError) as error:
        return _fail(f"cannot create node {args.name}: {error}")
    print(
        f"vpngw lab: node {node.name} is up: namespace {node.namespace}, uplink {lab_node.UPLINK} {node.uplink_ip}, "
        f"VPC side {lab_node.VPC_SIDE} (the VPC network is {node.vpc_namespace}"
        + (
            ", shared: vpngw lab exec --shared-vpc -- ip route add REMOTE_SUBNET via VPC_NEXT_HOP)"
            if node.shared_vpc
            else ")"
        )
    )
    print(f"  run its agent: vpngw agent {' '.join(node.agent_arguments())} --db URL")
    return 0


def cmd_node_delete(args: argparse.Namespace) -> int:
    from vpngw.dataplane.backends.lab import node as lab_node

    if not lab_node.remove_node(network_of(args), args.name):
        return _fail(f"no node {args.name}")
    print(f"vpngw lab: node {args.name} removed")
    return 0


def cmd_node_list(args: argparse.Namespace) -> int:
    from vpngw.dataplane.backends.lab import node as lab_node

    for node in lab_node.lab_nodes(network_of(args)):
        print(f"{node.name}\t{node.uplink_ip}\tvpngw agent {' '.join(node.agent_arguments())}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from vpngw.dataplane.backends.base import remove_machine_locks
    from vpngw.dataplane.backends.lab import lab as lab_dirs
    from vpngw.dataplane.backends.lab import node as lab_node

    network = network_of(args)
    for node in lab_node.lab_nodes(network):
        lab_node.remove_node(network, node.name)
        # What an agent of the node left: its default state directory and its lock.
        shutil.rmtree(lab_dirs.STATE_ROOT / node.name, ignore_errors=True)
        remove_machine_locks(f"{node.name}.host")
    network.teardown()  # and the lock files of the lab and its nodes
    print(f"vpngw lab: lab {args.lab} removed")
    return 0
