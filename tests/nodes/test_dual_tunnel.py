"""Dual-tunnel connections on several nodes: real agents, real charons, a real lab peer
configured from the two-tunnel DownloadVpnConnectionConfig document.

Each lab node has a VPC network of its own, so a VPC -> customer ping is tried from the
VPC side of the node that carries the tunnel in use; a VPC segment shared by the nodes
is the VPC-side next hop's (docs/nodes.md).
"""

from __future__ import annotations

import time

import pytest

from tests.support.api import Api
from vpngw.dataplane.backends.lab import peer as lab_peer
from vpngw.dataplane.system import netns
from vpngw.store.leases import lease_key

from .dual import both_up_apart, make_dual_connection, tunnels_seen
from .fleet import Fleet, NodeSite
from .test_host_backend import PEER_HOST, VPC_HOST

pytestmark = pytest.mark.dataplane


def _peer_reaches_vpc(fleet: Fleet) -> bool:
    return netns.ping(fleet.lab.names.peer("cpe"), PEER_HOST, VPC_HOST)


def _vpc_reaches_peer(site: NodeSite) -> bool:
    return netns.ping(site.vpc_namespace, VPC_HOST, PEER_HOST)


def test_both_tunnels_come_up_on_two_different_nodes(fleet_on: tuple[Fleet, Api]) -> None:
    fleet, api = fleet_on
    sites = [fleet.add_node(i) for i in (1, 2)]
    for site in sites:
        fleet.start_agent(site)
    dual = make_dual_connection(api, fleet.db_url)
    lab_peer.create_peer(fleet.lab, lab_peer.peer_from_download("cpe", dual.peer_config))
    assert netns.wait_until(lambda: both_up_apart(fleet.db_url, dual), timeout_s=30, interval_s=0.2), (
        tunnels_seen(fleet.db_url, dual),
        [fleet.log_of(site)[-3000:] for site in sites],
    )
    seen = tunnels_seen(fleet.db_url, dual)
    by_name = {site.name: site for site in sites}
    # Each node runs one address of the gateway, in a charon of its own, named after the lease.
    for index in (1, 2):
        site = by_name[str(seen[index].holder)]
        assert site.gateway_namespaces() == {site.gateway_prefix + lease_key(dual.vpn_gateway_id, index)}
    # The peer reaches the VPC through the tunnel it sends on, and that node's VPC the peer.
    assert netns.wait_until(lambda: _peer_reaches_vpc(fleet), timeout_s=10)
    assert netns.wait_until(lambda: any(_vpc_reaches_peer(site) for site in sites), timeout_s=10)
    # The connection's own row is not run (its tunnels are): no charon connection named after it.
    for site in sites:
        assert dual.connection_id not in fleet.log_of(site)
        assert site.process is not None and site.process.poll() is None, fleet.log_of(site)


def test_a_dead_node_s_tunnel_is_replaced_on_a_third_node_and_traffic_resumes(
    pg_fleet: tuple[Fleet, Api],
) -> None:
    fleet, api = pg_fleet
    sites = [fleet.add_node(i) for i in (1, 2, 3)]
    for site in sites:
        fleet.start_agent(site)
    dual = make_dual_connection(api, fleet.db_url)
    lab_peer.create_peer(fleet.lab, lab_peer.peer_from_download("cpe", dual.peer_config))
    assert netns.wait_until(lambda: both_up_apart(fleet.db_url, dual), timeout_s=30, interval_s=0.2)
    assert netns.wait_until(lambda: _peer_reaches_vpc(fleet), timeout_s=10)
    before = tunnels_seen(fleet.db_url, dual)
    by_name = {site.name: site for site in sites}
    victim, survivor = by_name[str(before[1].holder)], by_name[str(before[2].holder)]
    third = next(site for site in sites if site not in (victim, survivor))

    killed_at = time.monotonic()
    fleet.die(victim)
    # Both directions resume (on per-node VPC networks, from the VPC of the node whose
    # tunnel the peer sends on: the survivor's, or the third node's once it has tunnel 1).
    alive = [survivor, third]
    assert netns.wait_until(lambda: _peer_reaches_vpc(fleet), timeout_s=15, interval_s=0.05)
    assert netns.wait_until(
        lambda: any(_vpc_reaches_peer(site) for site in alive), timeout_s=15, interval_s=0.05
    )
    # Tunnel 1 is reported down (naming the dead node) until its address is re-placed...
    assert netns.wait_until(
        lambda: (
            victim.name in tunnels_seen(fleet.db_url, dual)[1].diagnosis
            or tunnels_seen(fleet.db_url, dual)[1].holder == third.name
        ),
        timeout_s=15,
        interval_s=0.1,
    )
    # ...on the third node, not beside tunnel 2, within the lease time (plus a takeover).
    assert netns.wait_until(
        lambda: tunnels_seen(fleet.db_url, dual)[1].holder == third.name,
        timeout_s=fleet.lease_s + 5,
        interval_s=0.1,
    ), tunnels_seen(fleet.db_url, dual)
    assert time.monotonic() - killed_at <= fleet.lease_s + 5
    assert netns.wait_until(lambda: both_up_apart(fleet.db_url, dual), timeout_s=30, interval_s=0.2), (
        tunnels_seen(fleet.db_url, dual)
    )
    after = tunnels_seen(fleet.db_url, dual)
    assert (after[1].holder, after[2].holder) == (third.name, survivor.name)
    assert _peer_reaches_vpc(fleet)
    # The dead node comes back and stays out of the way.
    fleet.revive(victim)
    assert netns.wait_until(lambda: not victim.gateway_namespaces(), timeout_s=20)
    time.sleep(2.5)
    assert tunnels_seen(fleet.db_url, dual)[1].holder == third.name


def _peer_sends_on(fleet: Fleet, tunnel: int) -> None:
    """Make the peer send on ``tunnel`` (1 or 2): a rekey of its CHILD_SA there makes it
    the peer's newest outbound SA, which kernel-libipsec sends on."""
    from vpngw.dataplane.charon.vici_client import ViciClient

    with ViciClient.connect(str(fleet.lab.peer_run_dir("cpe") / "charon.vici"), 5) as client:
        client.rekey(f"peer-cpe-{tunnel}")


def test_the_survivor_rekeys_so_the_customer_follows_before_any_lease_runs_out(
    sqlite_fleet: tuple[Fleet, Api],
) -> None:
    fleet, api = sqlite_fleet
    sites = [fleet.add_node(i) for i in (1, 2)]
    for site in sites:
        fleet.start_agent(site)
    dual = make_dual_connection(api, fleet.db_url)
    lab_peer.create_peer(fleet.lab, lab_peer.peer_from_download("cpe", dual.peer_config))
    assert netns.wait_until(lambda: both_up_apart(fleet.db_url, dual), timeout_s=30, interval_s=0.2)
    seen = tunnels_seen(fleet.db_url, dual)
    by_name = {site.name: site for site in sites}
    victim, survivor = by_name[str(seen[1].holder)], by_name[str(seen[2].holder)]
    time.sleep(1.0)  # the two nodes have heard each other
    _peer_sends_on(fleet, 1)
    assert netns.wait_until(lambda: _peer_reaches_vpc(fleet), timeout_s=10)
    assert _vpc_reaches_peer(victim)  # the peer answers through tunnel 1, so the victim's VPC hears it

    killed_at = time.monotonic()
    fleet.die(victim)
    # Left alone the peer would send into the dead tunnel until its DPD gives up (about 8 s
    # with the lab's retransmits) or the address is re-placed (the lease time, 5 s, plus a
    # takeover); the survivor's rekey draws its traffic within a fraction of a second.
    assert netns.wait_until(lambda: _peer_reaches_vpc(fleet), timeout_s=10, interval_s=0.02)
    resumed_after = time.monotonic() - killed_at
    assert resumed_after < 2.5, (resumed_after, fleet.log_of(survivor)[-3000:])
    assert _vpc_reaches_peer(survivor)
    assert "is lost: rekeying" in fleet.log_of(survivor)
