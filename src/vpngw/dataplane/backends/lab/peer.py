"""Lab peers: a customer's IPsec gateway and its hosts, on the lab WAN (``vpngw lab peer``).

A peer is one namespace ``<lab>-p-<name>`` holding

* ``wan0`` on the lab bridge, with the customer gateway's IpAddress;
* the hosts of its subnets: every address of each subnet is local (an AnyIP route), so
  ``vpngw lab exec --peer NAME ping -I 10.2.0.7 ...`` works for any host; the first
  host of each subnet is also a real address on ``lo``, which strongSwan 5.9.8 needs to
  install a CHILD_SA;
* its own charon, configured from the connection as the customer sees it (what
  DownloadVpnConnectionConfig returns), or from hand-given settings.

This is a stand-in for the customer's device, so that a tunnel can be seen on one
machine; anything else that speaks IKE can take its place (docs/lab.md).
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vpngw.dataplane.backends.base import gateway_anchor
from vpngw.dataplane.backends.lab import charon_profile, topology
from vpngw.dataplane.backends.lab.lab import Lab
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.spec.desired import ConnectionSpec
from vpngw.dataplane.spec.from_store import connection_spec
from vpngw.dataplane.spec.render import render_connection, render_shared_key
from vpngw.dataplane.system import netns
from vpngw.dataplane.system.netns import Route


@dataclass(frozen=True)
class PeerSpec:
    """A lab peer: its name and its connections, seen from the peer (one for a
    single-tunnel connection; one per tunnel of a dual-tunnel connection)."""

    name: str
    connection: ConnectionSpec
    # The tunnels of a dual-tunnel connection beyond the first (``connection``).
    more: tuple[ConnectionSpec, ...] = ()
    # A dual-tunnel connection's peer: customer-side settings of dualtunnel.md.
    dual: bool = False

    @property
    def connections(self) -> tuple[ConnectionSpec, ...]:
        return (self.connection, *self.more)

    @property
    def wan_ip(self) -> str:
        return self.connection.local_addr

    @property
    def wan_ips(self) -> list[str]:
        """Every address of the peer on the WAN (tunnels may name two customer gateways)."""
        return list(dict.fromkeys(spec.local_addr for spec in self.connections))


# A dual-tunnel peer's DPD: its dead tunnel's CHILD_SA goes within about a second plus
# its retransmits, and its traffic then leaves through the other tunnel at once.
PEER_DPD_DELAY = "1s"


def peer_from_download(name: str, config: Mapping[str, Any], *, initiate: bool = False) -> PeerSpec:
    """A peer configured from DownloadVpnConnectionConfig's ``VpnConnectionConfig``
    (already the customer's perspective: ``Local`` is the customer gateway, and its
    IkeConfig/IpsecConfig carry the same keys as a stored connection's).

    A dual-tunnel connection's configuration lists its tunnels under
    ``TunnelsConfig.TunnelConfig`` (each with ``TunnelId``, ``Local``, ``Remote``,
    ``IkeConfig``, ``IpsecConfig``; the subnets are the connection's): the peer then runs
    one connection per tunnel, both initiated at once, as a customer's device should
    (docs/nodes.md, "What a customer should set")."""
    tunnels = _tunnel_configs(config)
    if not tunnels:
        spec = _peer_connection(f"peer-{name}", config, config, initiate=initiate)
        return PeerSpec(topology.check_peer_name(name), spec)
    specs = [
        _peer_connection(f"peer-{name}-{index}", config, tunnel, initiate=True)
        for index, tunnel in enumerate(tunnels, start=1)
    ]
    return PeerSpec(topology.check_peer_name(name), specs[0], tuple(specs[1:]), dual=True)


def _tunnel_configs(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    listed = config.get("TunnelsConfig")
    if isinstance(listed, Mapping):
        listed = listed.get("TunnelConfig")
    if not isinstance(listed, list):
        return []
    return [tunnel for tunnel in listed if isinstance(tunnel, Mapping)]


def _peer_connection(
    name: str, config: Mapping[str, Any], tunnel: Mapping[str, Any], *, initiate: bool
) -> ConnectionSpec:
    return connection_spec(
        connection_id=name,
        gateway_ip=str(tunnel["Local"]),
        customer_ip=str(tunnel["Remote"]),
        local_subnet=str(config["LocalSubnet"]),
        remote_subnet=str(config["RemoteSubnet"]),
        ike_config=tunnel["IkeConfig"],
        ipsec_config=tunnel["IpsecConfig"],
        effect_immediately=initiate,
        enable_dpd=True,
        enable_nat_traversal=True,
    )


def peer_conn(peer: PeerSpec, spec: ConnectionSpec) -> dict[str, Any]:
    """The ``load-conn`` message of one of the peer's connections."""
    conn = render_connection(spec)
    settings = conn[spec.name]
    if peer.dual:
        # dualtunnel.md's customer: both tunnels started, a short DPD whose verdict only
        # clears the dead tunnel (the gateway side re-initiates a re-placed tunnel).
        settings["dpd_delay"] = PEER_DPD_DELAY
        settings["keyingtries"] = "1"
        for child in settings["children"].values():
            child["dpd_action"] = "clear"
            child["close_action"] = "none"
    elif spec.effect_immediately:
        # A customer's device keeps trying (vpngw's own side retries in the reconciler).
        settings["keyingtries"] = "0"
    return conn


def create_peer(network: Lab, peer: PeerSpec) -> int:
    """Build the peer's namespace, start its charon and load its connections; return the
    charon's pid. Fails if a peer of that name exists (remove it first)."""
    namespace = network.names.peer(peer.name)
    if namespace in netns.namespaces():
        raise netns.NetnsError(f"peer {peer.name} exists already ({namespace}); remove it first")
    try:
        charon = start_peer_site(
            network,
            peer.name,
            peer.wan_ips,
            peer.connection.local_subnets,
            far_addresses=[spec.remote_addr for spec in peer.connections],
        )
        with charon.client() as client:
            for spec in peer.connections:
                client.load_shared(render_shared_key(spec))
            for spec in peer.connections:
                client.load_conn(peer_conn(peer, spec))
        return charon.pid
    except BaseException:
        remove_peer(network, peer.name)
        raise


def start_peer_site(
    network: Lab,
    name: str,
    wan_addresses: Sequence[str],
    subnets: Sequence[str],
    *,
    far_addresses: Sequence[str] = (),
) -> charon_daemon.Charon:
    """The namespace of peer ``name`` with a charon, no connection loaded yet.

    It holds every address of ``wan_addresses`` on ``wan0`` (one customer gateway each),
    every host of ``subnets`` (AnyIP, plus the first host as a real address for charon),
    and host routes to ``far_addresses`` outside the lab WAN. The charon's pid is kept
    in the peer's state dir, so :func:`remove_peer` and ``vpngw lab down`` find it.
    """
    namespace = network.names.peer(name)
    netns.ensure_namespace(namespace)
    network.attach_to_wan(namespace, wan_addresses[0])
    for address in wan_addresses[1:]:
        netns.add_address(namespace, topology.WAN_IF, f"{address}/32")
    netns.sync_lo_addresses(namespace, {a for a in map(gateway_anchor, subnets) if a})
    routes = {Route(str(ipaddress.ip_network(s, strict=False)), "lo", kind="local") for s in subnets}
    routes |= {
        Route(f"{a}/32", topology.WAN_IF)
        for a in far_addresses
        if ipaddress.ip_address(a) not in topology.WAN_NETWORK
    }
    netns.sync_routes(namespace, routes)
    run_dir = network.peer_run_dir(name)
    charon = charon_daemon.start_charon(
        namespace, network.peer_dir(name), charon_profile.strongswan_conf, run_dir=run_dir
    )
    (run_dir / "charon.pid").write_text(f"{charon.pid}\n")
    return charon


def remove_peer(network: Lab, name: str) -> bool:
    """Stop every process in the peer's namespace (found from the namespace itself, so
    a charon whose pid file was deleted goes too), then delete the namespace and its
    state; False if there was none."""
    namespace = network.names.peer(name)
    state_dir = network.peer_dir(name)
    pid = netns.read_pid(network.peer_run_dir(name) / "charon.pid")
    if pid is not None and netns.pid_alive(pid):
        netns.kill_pid(pid)
    existed = namespace in netns.namespaces()
    netns.kill_namespace_processes(namespace)
    netns.delete_namespace(namespace)
    network.detach_from_wan(namespace)
    shutil.rmtree(state_dir, ignore_errors=True)
    shutil.rmtree(network.peer_run_dir(name), ignore_errors=True)
    return existed


def peer_names(network: Lab) -> list[str]:
    names = (network.names.peer_name_of(ns) for ns in netns.namespaces())
    return sorted(name for name in names if name)


def mirror_spec(spec: ConnectionSpec) -> ConnectionSpec:
    """The same connection seen from the peer: local and remote swapped.

    The mirror only responds (``effect_immediately=False``), so a test decides which
    side initiates.
    """
    ike = replace(spec.ike, local_id=spec.ike.remote_id, remote_id=spec.ike.local_id)
    return replace(
        spec,
        local_addr=spec.remote_addr,
        remote_addr=spec.local_addr,
        local_subnets=spec.remote_subnets,
        remote_subnets=spec.local_subnets,
        ike=ike,
        effect_immediately=False,
    )
