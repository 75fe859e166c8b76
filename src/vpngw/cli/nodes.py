"""``vpngw agent`` (a data-plane node without the API) and ``vpngw node`` (the fleet).

* ``vpngw agent --node NAME --db URL [--backend lab|host] [--uplink IF --vpc-side IF]``:
  registers the node, takes gateways through leases in the database, runs their
  tunnels; SIGTERM stops it (its charons keep running until its leases run out, so a
  quick restart keeps the tunnels).
* ``vpngw node list``: nodes, their heartbeats and the gateways they hold;
  ``vpngw node drain NAME`` / ``undrain NAME``; ``vpngw node move vpn-... --to NAME``
  (pins the gateway there; ``--to any`` unpins it); ``vpngw node forget NAME``.

docs/nodes.md describes the layout, the lease protocol and the failure cases.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from vpngw import systemd
from vpngw.cli import lab as lab_cli
from vpngw.cli.clock import check_clock
from vpngw.cli.database import admin_db_url, database_identity, live_node_names, prepare_database
from vpngw.cli.node_check import add_check_parser
from vpngw.config import settings_from_env
from vpngw.resealing import check_opens
from vpngw.sealing import Sealer, SealingError, load_sealer
from vpngw.store import leases as lease_store
from vpngw.store.engine import Database

if TYPE_CHECKING:
    from vpngw.dataplane.backends.base import NetworkBackend
    from vpngw.dataplane.core.reconciler import Reconciler
    from vpngw.dataplane.nodes.placement import LeaseTiming

_NODE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")
DEFAULT_HOST_STATE = "/var/lib/vpngw"


def check_node_name(name: str) -> str:
    if not _NODE_NAME.match(name):
        raise ValueError(f"node name {name!r}: 1-24 of a-z, 0-9 and '-', starting with a letter or digit")
    return name


def default_node_name() -> str:
    """The machine's short host name, made a valid node name."""
    name = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    return (name or "node")[:24]


def add_node_options(parser: argparse.ArgumentParser, *, node_required: bool) -> None:
    parser.add_argument(
        "--node",
        default=os.environ.get("VPNGW_NODE") or (None if node_required else default_node_name()),
        required=node_required and not os.environ.get("VPNGW_NODE"),
        help="this data-plane node's name (default $VPNGW_NODE, else the host name)",
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=int(os.environ.get("VPNGW_NODE_CAPACITY", "100")),
        help="how many gateways this node should run, relative to the others (default 100)",
    )
    parser.add_argument(
        "--lease-s",
        type=float,
        default=float(os.environ.get("VPNGW_LEASE_S", "5")),
        help="lease time in seconds (default 5): a lost node's gateways move after about this long",
    )
    parser.add_argument(
        "--renew-s",
        type=float,
        default=float(os.environ.get("VPNGW_RENEW_S", "1")),
        help="how often leases and the heartbeat are renewed (default 1)",
    )


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """Which network backend runs the gateways, and the host backend's options
    (``vpngw agent`` and ``vpngw serve``)."""
    parser.add_argument(
        "--backend",
        choices=("lab", "host"),
        # None when neither --backend nor VPNGW_BACKEND says: "lab", but serve then runs no
        # data plane on a database where host agents run (main.resolve_backend).
        default=os.environ.get("VPNGW_BACKEND") or None,
        help="lab: namespaces on a lab WAN of this machine; host: a real uplink and VPC side",
    )
    parser.add_argument(
        "--uplink",
        default=os.environ.get("VPNGW_UPLINK"),
        metavar="IF",
        help="host backend: the interface that carries the gateways' InternetIps",
    )
    parser.add_argument(
        "--vpc-side",
        default=os.environ.get("VPNGW_VPC_SIDE"),
        metavar="IF",
        help="host backend: the interface or bridge toward the VPC",
    )
    parser.add_argument(
        "--uplink-gateway",
        default=os.environ.get("VPNGW_UPLINK_GATEWAY"),
        metavar="IP",
        help="host backend: next hop toward customer gateways off the uplink's networks",
    )
    parser.add_argument(
        "--host-netns",
        default=os.environ.get("VPNGW_HOST_NETNS"),
        metavar="NS",
        help="host backend: a namespace that plays the host (default: vpngw's own)",
    )
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("VPNGW_STATE_DIR", DEFAULT_HOST_STATE),
        metavar="DIR",
        help=f"host backend: charon state (default {DEFAULT_HOST_STATE}/<node>)",
    )
    lab_cli.add_lab_options(parser)


def add_agent_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = commands.add_parser(
        "agent", help="run a data-plane node (no API): tunnels for the gateways it leases"
    )
    add_node_options(agent, node_required=True)
    add_backend_options(agent)
    agent.add_argument("--period-s", type=float, default=1.0, help="the reconciler's period (default 1 s)")
    agent.add_argument(
        "--metrics",
        default=os.environ.get("VPNGW_AGENT_METRICS"),
        metavar="HOST:PORT",
        help="serve this node's own metrics (reconcile passes, charon restarts) for Prometheus there",
    )
    agent.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on stderr as text or as one JSON object each (docs/operations.md)",
    )
    agent.add_argument("--db", metavar="URL", default=None, help="database URL (default $VPNGW_DB)")
    # vpngw serve's data-plane process: the read end of serve's wake-up pipe (cli/dataplane_process.py).
    agent.add_argument("--wake-fd", type=int, default=None, help=argparse.SUPPRESS)
    agent.set_defaults(run=cmd_agent)


def add_node_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = commands.add_parser("node", help="data-plane nodes: list, drain, move gateways")
    sub = node.add_subparsers(dest="sub", required=True)
    listing = sub.add_parser("list", help="nodes, heartbeats and the gateways they hold")
    listing.add_argument("--json", action="store_true")
    for name, helptext in (
        ("drain", "give the node's gateways to other nodes and take no new ones"),
        ("undrain", "let the node take gateways again"),
        ("forget", "remove a node that holds nothing from the list"),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("name")
        command.set_defaults(run=cmd_node_state, action=name)
    move = sub.add_parser("move", help="run a gateway on one node only (pins it; --to any unpins)")
    move.add_argument("vpn_gateway_id")
    move.add_argument("--to", required=True, metavar="NODE")
    move.set_defaults(run=cmd_node_move)
    listing.set_defaults(run=cmd_node_list)
    add_check_parser(sub)
    for parser in sub.choices.values():
        parser.add_argument("--db", metavar="URL", default=None, help="database URL (default $VPNGW_DB)")
        parser.add_argument(
            "--lease-s",
            type=float,
            default=float(os.environ.get("VPNGW_LEASE_S", "5")),
            help=argparse.SUPPRESS,
        )


# -- the agent -------------------------------------------------------------------


def timing_of(args: argparse.Namespace) -> LeaseTiming:
    from vpngw.dataplane.nodes.placement import LeaseTiming

    return LeaseTiming(lease_s=args.lease_s, renew_s=args.renew_s)


def node_reconciler(
    args: argparse.Namespace, db: Database, backend: NetworkBackend, sealer: Sealer, *, period_s: float = 1.0
) -> Reconciler:
    """A reconciler that runs only what this node leases (``vpngw agent`` and ``vpngw serve``)."""
    from vpngw.dataplane.core.reconciler import Reconciler
    from vpngw.dataplane.nodes.placement import LeaseKeeper, NodeIdentity

    check_clock(db, timing_of(args))
    identity = NodeIdentity(check_node_name(args.node), backend.kind, node_addresses(), args.capacity)
    holder: list[Reconciler] = []
    keeper = LeaseKeeper(
        db, identity, backend, timing=timing_of(args), on_change=lambda: holder[0].wake_pass()
    )
    reconciler = Reconciler(db, sealer, backend, period_s=period_s, leases=keeper)
    holder.append(reconciler)
    return reconciler


def node_addresses() -> tuple[str, ...]:
    try:
        return tuple(
            sorted(
                {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
            )
        )
    except OSError:
        return ()


def describe_backend(args: argparse.Namespace) -> str:
    """One line on where ``backend_of(args)`` runs the gateways (for the start-up line)."""
    if args.backend == "host":
        where = f" in namespace {args.host_netns}" if args.host_netns else ""
        return f"host backend: uplink {args.uplink}, VPC side {args.vpc_side}{where}; see docs/nodes.md"
    network = lab_cli.network_of(args)
    return (
        f"lab {args.lab!r} (WAN namespace {network.names.wan}, 198.18.0.0/15; "
        f"state in {network.state_dir}); see docs/lab.md"
    )


def backend_of(args: argparse.Namespace, *, db_url: str | None = None) -> NetworkBackend:
    """The backend ``--backend`` names; ``db_url``: the database this data plane serves (a
    lab refuses to be taken over from another database)."""
    if args.backend == "host":
        from vpngw.dataplane.backends.host.network import HostConfig, HostNetwork

        if not args.uplink or not args.vpc_side:
            raise ValueError("the host backend needs --uplink IF and --vpc-side IF")
        return HostNetwork(
            HostConfig(
                node=args.node,
                uplink=args.uplink,
                vpc_side=args.vpc_side,
                state_dir=Path(args.state_dir).absolute() / args.node,
                host_namespace=args.host_netns,
                uplink_gateway=args.uplink_gateway,
            )
        )
    return lab_cli.network_of(args, owner=database_identity(db_url) if db_url else None)


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too; ``:PORT`` means 127.0.0.1) as ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def cmd_agent(args: argparse.Namespace) -> int:
    from vpngw.dataplane.charon.daemon import missing_prerequisites
    from vpngw.dataplane.errors import DataplaneError

    try:
        # Checked before anything starts: a bad value must not leave a registered node.
        metrics_address = listen_address(args.metrics) if args.metrics else None
    except ValueError as error:
        print(f"vpngw agent: --metrics: {error}", file=sys.stderr)
        return 2
    reason = missing_prerequisites()
    if reason:
        print(f"vpngw agent: cannot run a data plane here: {reason}", file=sys.stderr)
        return 2
    try:
        check_node_name(args.node)
        settings = settings_from_env(args.db)
        # An agent never makes a master key, and refuses one that does not open the
        # fleet's secrets: it would take leases and run nothing (docs/hosts.md).
        sealer, _where = load_sealer(create=False)
        db = prepare_database(settings)
        check_opens(db, sealer)
        backend = backend_of(args, db_url=settings.db_url)
        reconciler = node_reconciler(args, db, backend, sealer, period_s=args.period_s)
        reconciler.start()
    except (ValueError, DataplaneError, SealingError) as error:  # BackendBusy, a missing uplink, ...
        print(f"vpngw agent: refusing to start: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    orphaned = threading.Event()  # serve, whose data plane this is, is gone: nobody to notify
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.wake_fd is not None:
        from vpngw.cli.dataplane_process import follow_wake_pipe

        def serve_gone() -> None:
            orphaned.set()
            stop.set()

        # serve's writes wake a pass; the pipe's end means serve is gone: stop as on SIGTERM.
        follow_wake_pipe(args.wake_fd, reconciler.wake, serve_gone)
    if metrics_address is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_address[1], addr=metrics_address[0])
    print(
        f"vpngw agent: node {args.node} ({backend.kind} backend) is up; leases of {args.lease_s:g} s",
        flush=True,
    )
    systemd.notify("READY=1")
    try:
        # Woken every half second: Python runs a signal's handler only on the main thread,
        # and a SIGTERM the kernel hands to another of the agent's threads does not end an
        # untimed wait (an agent once ignored SIGTERM until it was killed 20 s later).
        while not stop.wait(0.5):
            pass
    finally:
        if not orphaned.is_set():
            systemd.notify("STOPPING=1")
        reconciler.stop()
        db.dispose()
        print(f"vpngw agent: node {args.node} stopped; its leases run out in {args.lease_s:g} s", flush=True)
    return 0


# -- the fleet -------------------------------------------------------------------


def _db(args: argparse.Namespace) -> Database:
    """The fleet's database, named explicitly and existing (admin_db_url)."""
    return prepare_database(settings_from_env(admin_db_url(args.db)))


def fleet(db: Database, *, lease_s: float) -> dict[str, object]:
    """Nodes and leases as ``vpngw node list --json`` prints them."""
    now_ms = int(time.time() * 1000)
    lease_ms = int(lease_s * 1000)
    with db.transaction(write=False) as session:
        nodes, rows = lease_store.nodes(session), lease_store.leases(session)
    held: dict[str, list[str]] = {}
    for lease in rows:
        if lease.holder and lease.expires_ms >= now_ms:
            held.setdefault(lease.holder, []).append(lease.vpn_gateway_id)
    return {
        "Nodes": [
            {
                "Name": n.name,
                "Backend": n.backend,
                "Capacity": n.capacity,
                "Live": n.heartbeat_ms >= now_ms - lease_ms,
                "HeartbeatAgeMs": now_ms - n.heartbeat_ms,
                "Draining": n.draining,
                "Gateways": held.get(n.name, []),
            }
            for n in nodes
        ],
        "Gateways": [
            {
                "VpnGatewayId": lease.vpn_gateway_id,
                "NodeName": lease.holder if lease.holder and lease.expires_ms >= now_ms else "",
                "LeaseLeftMs": max(lease.expires_ms - now_ms, 0) if lease.holder else 0,
                "PinnedNode": lease.pinned_node or "",
                "Epoch": lease.epoch,
            }
            for lease in rows
            if lease.exists
        ],
    }


def cmd_node_list(args: argparse.Namespace) -> int:
    shown = fleet(_db(args), lease_s=args.lease_s)
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    print(f"{'NODE':<24} {'BACKEND':<7} {'LIVE':<5} {'HEARTBEAT':>10} {'DRAINING':<8} GATEWAYS")
    for node in cast(list[dict[str, Any]], shown["Nodes"]):  # fleet() builds it so
        age = f"{node['HeartbeatAgeMs'] / 1000:.1f}s ago"
        gateways = ",".join(node["Gateways"]) or "-"
        print(
            f"{node['Name']:<24} {node['Backend']:<7} {'yes' if node['Live'] else 'no':<5} {age:>10} "
            f"{'yes' if node['Draining'] else 'no':<8} {gateways}"
        )
    return 0


def cmd_node_state(args: argparse.Namespace) -> int:
    db = _db(args)
    if args.action == "forget" and args.name in live_node_names(db.url, within_ms=int(args.lease_s * 1000)):
        # It would be back at its next heartbeat: stop its agent (or drain it) first.
        print(
            f"vpngw node: {args.name} is live (a heartbeat within the lease time); stop its agent first",
            file=sys.stderr,
        )
        return 2
    with db.transaction(write=True) as session:
        if args.action == "forget":
            done = lease_store.forget_node(session, args.name)
            failure = f"node {args.name} does not exist or still holds gateways (drain it first)"
        else:
            done = lease_store.set_draining(session, args.name, args.action == "drain")
            failure = f"no node {args.name} (vpngw node list)"
    if not done:
        print(f"vpngw node: {failure}", file=sys.stderr)
        return 2
    what = {
        "drain": "draining: its gateways move to other nodes",
        "undrain": "takes gateways again",
        "forget": "forgotten",
    }[args.action]
    print(f"vpngw node: {args.name} {what}")
    return 0


def cmd_node_move(args: argparse.Namespace) -> int:
    target = None if args.to == "any" else args.to
    db = _db(args)
    with db.transaction(write=True) as session:
        known = {n.name for n in lease_store.nodes(session)}
        if target is not None and target not in known:
            print(f"vpngw node: no node {target} (vpngw node list)", file=sys.stderr)
            return 2
        if not lease_store.pin(session, args.vpn_gateway_id, target):
            print(f"vpngw node: no gateway {args.vpn_gateway_id}", file=sys.stderr)
            return 2
    where = f"node {target}" if target else "any node"
    print(f"vpngw node: {args.vpn_gateway_id} runs on {where} from the next lease renewal")
    return 0
