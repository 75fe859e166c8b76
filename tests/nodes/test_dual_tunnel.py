"""Dual-tunnel connections on several nodes: real agents, real charons, a real lab peer
configured from the two-tunnel DownloadVpnConnectionConfig document, and lab nodes on one
shared VPC segment whose hosts route the peer's subnet to the gateway's VPC-side next hop
(set once, as an operator would)."""

from __future__ import annotations

import time

import pytest
from alibabacloud_vpc20160428 import models as tea

from tests.conftest import prepared
from tests.support.api import REGION, Api
from tests.support.sdk import tea_client
from tests.support.servers import live_server
from vpngw.config import Settings
from vpngw.dataplane.backends.lab import peer as lab_peer
from vpngw.dataplane.charon.vici_client import ViciClient
from vpngw.dataplane.system import netns
from vpngw.store.leases import lease_key

from .dual import DualConnection, both_up_apart, make_dual_connection, tunnels_seen
from .fleet import Fleet, NodeSite
from .test_host_backend import PEER_HOST, VPC_HOST
from .test_vpc_next_hop import next_hop_holders

pytestmark = pytest.mark.dataplane


def _up(fleet: Fleet, api: Api, count: int) -> tuple[list[NodeSite], DualConnection, str]:
    """``count`` nodes on one VPC segment, a dual-tunnel connection up on two of them, the
    segment's route to the peer through the gateway's next hop; (sites, connection, next hop)."""
    sites = [fleet.add_node(i, shared_vpc=True) for i in range(1, count + 1)]
    for site in sites:
        fleet.start_agent(site)
    dual = make_dual_connection(api, fleet.db_url)
    lab_peer.create_peer(fleet.lab, lab_peer.peer_from_download("cpe", dual.peer_config))
    assert netns.wait_until(lambda: both_up_apart(fleet.db_url, dual), timeout_s=30, interval_s=0.2), (
        tunnels_seen(fleet.db_url, dual),
        [fleet.log_of(site)[-3000:] for site in sites],
    )
    next_hop = str(api.ok("DescribeVpnGateway", VpnGatewayId=dual.vpn_gateway_id)["VpcNextHop"])
    netns.run("ip", "-n", sites[0].vpc_namespace, "route", "add", "10.10.1.0/24", "via", next_hop)
    return sites, dual, next_hop


def _peer_reaches_vpc(fleet: Fleet) -> bool:
    return netns.ping(fleet.lab.names.peer("cpe"), PEER_HOST, VPC_HOST)


def _vpc_reaches_peer(site: NodeSite) -> bool:
    return netns.ping(site.vpc_namespace, VPC_HOST, PEER_HOST)


def _peer_sends_on(fleet: Fleet, tunnel: int) -> None:
    """Make the peer send on ``tunnel`` (1 or 2): a rekey of its CHILD_SA there makes it
    the peer's newest outbound SA, which kernel-libipsec sends on."""
    with ViciClient.connect(str(fleet.lab.peer_run_dir("cpe") / "charon.vici"), 5) as client:
        client.rekey(f"peer-cpe-{tunnel}")


def _peer_ike_sas(fleet: Fleet) -> dict[str, set[int]]:
    """The peer's established IKE_SAs: connection name -> their unique ids (both sides
    start both tunnels, so a tunnel may have two IKE_SAs for a while)."""
    found: dict[str, set[int]] = {"peer-cpe-1": set(), "peer-cpe-2": set()}
    with ViciClient.connect(str(fleet.lab.peer_run_dir("cpe") / "charon.vici"), 5) as client:
        for sa in client.list_sas():
            if sa.state == "ESTABLISHED":
                found.setdefault(sa.name, set()).add(sa.uniqueid)
    return found


def _sdk_sees_both_tunnels_up(fleet: Fleet, dual: DualConnection, holders: dict[int, str]) -> None:
    """DescribeVpnConnection through the official Tea SDK, served by a real HTTP server on
    the fleet's database: both tunnels ipsec_sa_established, each on its address and node."""
    db, authenticator = prepared(Settings(db_url=fleet.db_url))
    with live_server(db, Settings(db_url=fleet.db_url), authenticator) as url:
        read = (
            tea_client(url, "v2")
            .describe_vpn_connection(
                tea.DescribeVpnConnectionRequest(region_id=REGION, vpn_connection_id=dual.connection_id)
            )
            .body
        )
    options = read.tunnel_options_specification.tunnel_options
    assert [
        (t.tunnel_id, t.tunnel_index, t.role, t.internet_ip, t.zone_no, t.state, t.status) for t in options
    ] == [
        (dual.tunnel_ids[0], 1, "master", dual.addresses[0], holders[1], "active", "ipsec_sa_established"),
        (dual.tunnel_ids[1], 2, "slave", dual.addresses[1], holders[2], "active", "ipsec_sa_established"),
    ]
    assert read.status == "ipsec_sa_established"


def test_both_tunnels_come_up_on_two_different_nodes(fleet_on: tuple[Fleet, Api]) -> None:
    fleet, api = fleet_on
    sites, dual, next_hop = _up(fleet, api, 2)
    seen = tunnels_seen(fleet.db_url, dual)
    by_name = {site.name: site for site in sites}
    # Each node runs one address of the gateway, in a charon of its own, named after the lease.
    for index in (1, 2):
        site = by_name[str(seen[index].holder)]
        assert site.gateway_namespaces() == {site.gateway_prefix + lease_key(dual.vpn_gateway_id, index)}
    # Per tunnel, live, as the official SDK reads it: each up, on its own address and node.
    _sdk_sees_both_tunnels_up(fleet, dual, {index: str(seen[index].holder) for index in (1, 2)})
    # The node of the preferred (master) tunnel answers for the VPC-side next hop, alone.
    assert netns.wait_until(
        lambda: list(next_hop_holders(sites, next_hop)) == [seen[1].holder], timeout_s=30, interval_s=0.1
    ), next_hop_holders(sites, next_hop)
    # Both directions, whichever tunnel the peer sends on.
    for tunnel in (1, 2):
        _peer_sends_on(fleet, tunnel)
        assert netns.wait_until(lambda: _peer_reaches_vpc(fleet), timeout_s=10)
        assert netns.wait_until(lambda: _vpc_reaches_peer(sites[0]), timeout_s=10)
    # ModifyTunnelAttribute renegotiates that tunnel only: its IKE_SA is new (seen from the
    # peer), the other tunnel's is the same one, and both are up again.
    before = _peer_ike_sas(fleet)
    api.ok(
        "ModifyTunnelAttribute",
        VpnConnectionId=dual.connection_id,
        TunnelId=dual.tunnel_ids[1],
        **{"TunnelOptionsSpecification.TunnelIkeConfig.IkeLifetime": "3600"},
    )
    # charon numbers IKE_SAs in the order it makes them: a renegotiated tunnel has one newer
    # than every IKE_SA there was before the Modify.
    newest = max(number for numbers in before.values() for number in numbers)
    assert netns.wait_until(
        lambda: max(_peer_ike_sas(fleet)["peer-cpe-2"], default=0) > newest, timeout_s=15, interval_s=0.1
    ), (before, _peer_ike_sas(fleet))
    assert netns.wait_until(lambda: both_up_apart(fleet.db_url, dual), timeout_s=20, interval_s=0.2)
    after = _peer_ike_sas(fleet)["peer-cpe-1"]
    assert after and max(after) <= newest, (before, after)  # tunnel 1: no new IKE_SA
    assert netns.wait_until(lambda: _peer_reaches_vpc(fleet), timeout_s=10)
    # The connection's own row is not run (its tunnels are).
    for site in sites:
        assert dual.connection_id not in fleet.log_of(site)
        assert site.process is not None and site.process.poll() is None, fleet.log_of(site)


def test_a_dead_node_s_tunnel_fails_over_at_once_and_is_replaced_on_a_third_node(
    pg_fleet: tuple[Fleet, Api],
) -> None:
    fleet, api = pg_fleet
    sites, dual, next_hop = _up(fleet, api, 3)
    before = tunnels_seen(fleet.db_url, dual)
    by_name = {site.name: site for site in sites}
    victim, survivor = by_name[str(before[1].holder)], by_name[str(before[2].holder)]
    third = next(site for site in sites if site not in (victim, survivor))
    segment = victim.vpc_namespace
    time.sleep(1.0)  # the two nodes have heard each other
    _peer_sends_on(fleet, 1)  # the victim carries both directions
    assert netns.wait_until(lambda: _peer_reaches_vpc(fleet) and _vpc_reaches_peer(victim), timeout_s=10)
    assert list(next_hop_holders(sites, next_hop)) == [victim.name]

    killed_at = time.monotonic()
    fleet.die(victim)
    # Left alone, the peer would send into the dead tunnel until its DPD gives up (about
    # 8 s with the lab's retransmits) and the VPC until the lease ran out (5 s); the
    # survivor takes the next hop and rekeys within a fraction of a second.
    assert netns.wait_until(lambda: _vpc_reaches_peer(victim), timeout_s=10, interval_s=0.02)
    vpc_resumed = time.monotonic() - killed_at
    assert netns.wait_until(lambda: _peer_reaches_vpc(fleet), timeout_s=10, interval_s=0.02)
    peer_resumed = time.monotonic() - killed_at
    assert max(vpc_resumed, peer_resumed) < fleet.lease_s - 1, (
        vpc_resumed,
        peer_resumed,
        fleet.log_of(survivor),
    )
    assert "is lost: rekeying" in fleet.log_of(survivor)
    assert survivor.name in next_hop_holders(sites, next_hop)
    # Tunnel 1 is re-placed on the third node, not beside tunnel 2, within the lease time
    # (plus a takeover); the connection is dual again, and the preferred tunnel's new node
    # takes the next hop back.
    assert netns.wait_until(
        lambda: tunnels_seen(fleet.db_url, dual)[1].holder == third.name,
        timeout_s=fleet.lease_s + 5,
        interval_s=0.1,
    ), tunnels_seen(fleet.db_url, dual)
    assert netns.wait_until(lambda: both_up_apart(fleet.db_url, dual), timeout_s=30, interval_s=0.2), (
        tunnels_seen(fleet.db_url, dual)
    )
    after = tunnels_seen(fleet.db_url, dual)
    assert (after[1].holder, after[2].holder) == (third.name, survivor.name)
    assert netns.wait_until(
        lambda: list(next_hop_holders(sites, next_hop)) == [third.name], timeout_s=10, interval_s=0.1
    ), next_hop_holders(sites, next_hop)
    assert netns.wait_until(
        lambda: _peer_reaches_vpc(fleet) and netns.ping(segment, VPC_HOST, PEER_HOST), timeout_s=10
    )
    # The dead node comes back and stays out of the way.
    fleet.revive(victim)
    assert netns.wait_until(lambda: not victim.gateway_namespaces(), timeout_s=20)
    time.sleep(2.5)
    assert tunnels_seen(fleet.db_url, dual)[1].holder == third.name
