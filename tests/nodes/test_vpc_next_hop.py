"""The VPC-side next hop follows the gateway (docs/hosts.md, section 5): two lab nodes on
one shared VPC segment, real agents, real charons, a real lab peer. VPC hosts route the
remote subnet to the gateway's VpcNextHop once; when the holder dies (agent and charons
killed with SIGKILL), traffic from the VPC to the peer resumes through the other node
with no route changed on the VPC side, and the next hop never answers on two nodes."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest

from tests.support.api import Api
from vpngw.dataplane.system import netns

from .fleet import Fleet, NodeSite
from .test_failover import _tunnel
from .test_host_backend import PEER_HOST, VPC_HOST

pytestmark = pytest.mark.dataplane

NEXT_HOP_IF = "nexthop0"


def next_hop_holders(sites: list[NodeSite], address: str) -> dict[str, str]:
    """node name -> MAC of the interface that holds ``address`` on that node now."""
    found: dict[str, str] = {}
    for site in sites:
        for namespace in site.gateway_namespaces():
            try:
                links = netns.ip_json("-n", namespace, "-4", "addr", "show", "dev", NEXT_HOP_IF)
                if any(info.get("local") == address for link in links for info in netns.addr_infos(link)):
                    (link,) = netns.ip_json("-n", namespace, "link", "show", "dev", NEXT_HOP_IF)
                    found[site.name] = str(link["address"])
            except netns.NetnsError:
                continue  # not built yet, or being deleted
    return found


def neighbour_mac(namespace: str, address: str) -> str | None:
    """The MAC the VPC segment sends ``address``'s traffic to (its ARP entry), if any."""
    for entry in netns.ip_json("-n", namespace, "neigh", "show", address):
        if "lladdr" in entry and entry.get("state") != ["FAILED"]:
            return str(entry["lladdr"])
    return None


def arp_answered(namespace: str, address: str) -> bool:
    """Does anything on the segment answer an ARP request for ``address``?"""
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, "arping", "-q", "-c", "2", "-w", "2", "-I", "vpc", address],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def vpc_routes(namespace: str) -> list[dict[str, object]]:
    return netns.ip_json("-n", namespace, "route", "show", "table", "all")


def test_vpc_to_peer_traffic_follows_the_next_hop_when_its_node_dies(
    sqlite_fleet: tuple[Fleet, Api],
) -> None:
    fleet, api = sqlite_fleet
    sites = [fleet.add_node(1, shared_vpc=True), fleet.add_node(2, shared_vpc=True)]
    segment = sites[0].vpc_namespace
    assert sites[1].vpc_namespace == segment == f"{fleet.lab.names.lab}-vpc"
    for site in sites:
        fleet.start_agent(site)
    gateway_id, _connection_id = _tunnel(fleet, api)
    gateway = api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)
    next_hop = gateway["VpcNextHop"]
    assert next_hop == "100.64.0.2"  # the default pool's first address after the router's

    # The segment has no way to the peer until the operator's route: one, set once.
    assert not netns.ping(segment, VPC_HOST, PEER_HOST)
    netns.run("ip", "-n", segment, "route", "add", "10.10.1.0/24", "via", next_hop)
    routes_before = vpc_routes(segment)
    assert netns.wait_until(lambda: netns.ping(segment, VPC_HOST, PEER_HOST), timeout_s=15)

    first = gateway["NodeName"]
    victim = next(site for site in sites if site.name == first)
    survivor = next(site for site in sites if site is not victim)
    holders = next_hop_holders(sites, next_hop)
    assert list(holders) == [victim.name]  # only the holder answers for the next hop
    assert neighbour_mac(segment, next_hop) == holders[victim.name]  # and the VPC sends to it
    # On the segment the gateway answers ARP for its next hop only, never for the other
    # addresses of its namespace (the first host of each local subnet, 10.1.1.1 here,
    # is a real VPC host's or router's address on a real segment).
    assert arp_answered(segment, next_hop)
    assert not arp_answered(segment, "10.1.1.1")

    worst: Counter[str] = Counter()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            worst["answering"] = max(worst["answering"], len(next_hop_holders(sites, next_hop)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        # The node dies: its agent and its gateway's charon, with no chance to clean up.
        fleet.kill_agent(victim)
        for namespace in victim.gateway_namespaces():
            for pid in netns.namespace_pids(namespace):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert netns.wait_until(
            lambda: list(next_hop_holders(sites, next_hop)) == [survivor.name], timeout_s=20, interval_s=0.05
        ), next_hop_holders(sites, next_hop)
        moved_at = time.monotonic()
        assert moved_at - killed_at <= fleet.lease_s + 5  # taken over once the lease ran out
        # Announced by gratuitous ARP: the segment sends to the survivor at once, not
        # when its ARP entry would have gone stale (15 s or more).
        survivor_mac = next_hop_holders(sites, next_hop)[survivor.name]
        assert netns.wait_until(lambda: neighbour_mac(segment, next_hop) == survivor_mac, timeout_s=5), (
            neighbour_mac(segment, next_hop),
            survivor_mac,
        )
        # VPC -> peer traffic resumes through the survivor; the VPC side changed nothing.
        assert netns.wait_until(
            lambda: netns.ping(segment, VPC_HOST, PEER_HOST), timeout_s=20, interval_s=0.1
        ), fleet.log_of(survivor)
    finally:
        stop.set()
        sampler.join(5)
    assert worst["answering"] == 1, "the next hop answered on two nodes at once"
    assert api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["NodeName"] == survivor.name
    assert vpc_routes(segment) == routes_before
    assert survivor.process is not None and survivor.process.poll() is None, fleet.log_of(survivor)
