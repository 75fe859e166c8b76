"""Several nodes, real agents, one database: spread, exclusivity, failover and fencing.

Every agent is a real ``vpngw agent`` process (host backend) on its own node namespace;
the peer is a real charon on the lab WAN. Times are not asserted beyond what the lease
protocol promises (they are measured by bench/failover_bench.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from tests.conftest import TEST_MASTER_KEY
from tests.support.api import Api, build_world, connection_params
from tests.support.postgres import PostgresServer
from vpngw.dataplane.system import netns
from vpngw.store import leases as lease_store
from vpngw.store.engine import Database

from .fleet import REPO, Fleet, NodeSite
from .proxy import CuttableProxy
from .test_host_backend import PEER_HOST, VPC_HOST, add_peer, wait_status

pytestmark = pytest.mark.dataplane


def answering(sites: list[NodeSite]) -> Counter[str]:
    """How many nodes hold each InternetIp on a gateway's uplink now (what the WAN sees)."""
    seen: Counter[str] = Counter()
    for site in sites:
        for namespace in site.gateway_namespaces():
            try:
                links = netns.ip_json("-n", namespace, "-4", "addr", "show", "dev", "wan0")
            except netns.NetnsError:
                continue  # being deleted
            for link in links:
                for info in link.get("addr_info", []):  # type: ignore[union-attr]
                    seen[str(info["local"])] += 1  # type: ignore[index]
    return seen


def holders(db_url: str) -> dict[str, str]:
    db = Database(db_url)
    try:
        with db.transaction(write=False) as session:
            now_ms = int(time.time() * 1000)
            return {
                lease.vpn_gateway_id: lease.holder
                for lease in lease_store.leases(session)
                if lease.holder and lease.expires_ms >= now_ms and lease.internet_ip
            }
    finally:
        db.dispose()


def test_gateways_spread_over_three_nodes_and_each_answers_on_one_node_only(
    fleet_on: tuple[Fleet, Api],
) -> None:
    fleet, api = fleet_on
    sites = [fleet.add_node(i) for i in (1, 2, 3)]
    for site in sites:
        fleet.start_agent(site)
    worst: Counter[str] = Counter()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for address, count in answering(sites).items():
                worst[address] = max(worst[address], count)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        vpc = api.ok("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
        created = [api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=10)["VpnGatewayId"] for _ in range(7)]
        assert netns.wait_until(lambda: len(holders(fleet.db_url)) == 7, timeout_s=20, interval_s=0.2)
        # Churn while the sampler watches: delete some, create more.
        for gateway_id in created[:3]:
            api.ok("DeleteVpnGateway", VpnGatewayId=gateway_id)
        created = created[3:] + [
            api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=10)["VpnGatewayId"] for _ in range(5)
        ]
        assert netns.wait_until(
            lambda: set(holders(fleet.db_url)) == set(created), timeout_s=20, interval_s=0.2
        )
        ips = {api.ok("DescribeVpnGateway", VpnGatewayId=g)["InternetIp"] for g in created}
        assert netns.wait_until(lambda: set(answering(sites)) == ips, timeout_s=20, interval_s=0.2)
    finally:
        stop.set()
        sampler.join(5)
    assert worst and max(worst.values()) == 1, f"an address answered on several nodes at once: {worst}"
    placed = holders(fleet.db_url)
    load = Counter(placed.values())
    assert set(load) == {site.name for site in sites}, load  # every node runs some
    assert max(load.values()) - min(load.values()) <= 2, load
    for gateway_id in created:  # the API says where each runs
        assert api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["NodeName"] == placed[gateway_id]
    for site in sites:
        assert site.process is not None and site.process.poll() is None, fleet.log_of(site)


def _tunnel(fleet: Fleet, api: Api) -> tuple[str, str]:
    place = build_world(api)
    connection_id = api.ok(
        "CreateVpnConnection",
        **connection_params(
            place, LocalSubnet="10.1.1.0/24", EffectImmediately="true", AutoConfigRoute="true"
        ),
    )["VpnConnectionId"]
    add_peer(fleet, api, connection_id)
    assert wait_status(api, connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    return place.vpn_gateway_id, connection_id


def _peer_ping(fleet: Fleet) -> bool:
    return netns.ping(fleet.lab.names.peer("cpe"), PEER_HOST, VPC_HOST)


def test_a_killed_node_s_gateway_moves_and_the_node_does_not_take_it_back(
    pg_fleet: tuple[Fleet, Api],
) -> None:
    fleet, api = pg_fleet
    sites = [fleet.add_node(i) for i in (1, 2, 3)]
    for site in sites:
        fleet.start_agent(site)
    gateway_id, connection_id = _tunnel(fleet, api)
    assert netns.wait_until(lambda: _peer_ping(fleet), timeout_s=10)
    first = api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["NodeName"]
    victim = next(site for site in sites if site.name == first)

    internet_ip = api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["InternetIp"]
    others = [site for site in sites if site is not victim]
    killed_at = time.monotonic()
    fleet.kill_agent(victim)
    # The victim's charon outlives its agent, but the kernel drops its InternetIp when the
    # lease runs out; only then does another node answer for the address.
    down_at = up_at = reported = None
    while time.monotonic() - killed_at < 20 and (down_at is None or up_at is None):
        now = time.monotonic()
        if down_at is None and answering([victim])[internet_ip] == 0:
            down_at = now
        if up_at is None and answering(others)[internet_ip] > 0:
            up_at = now
        if reported is None and up_at is None:
            described = api.ok("DescribeVpnConnection", VpnConnectionId=connection_id)
            if first in described["Diagnosis"]:
                assert described["Status"] == "ike_sa_not_established"
                reported = now
        time.sleep(0.02)
    assert down_at is not None and up_at is not None
    assert down_at - killed_at <= fleet.lease_s and down_at < up_at
    # Status was honest meanwhile: the lost node named, before the takeover.
    assert reported is not None and reported < up_at
    assert netns.wait_until(lambda: _peer_ping(fleet), timeout_s=15, interval_s=0.05)
    second = api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["NodeName"]
    assert second not in ("", first)
    assert wait_status(api, connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"

    # The killed node comes back: it must not take the gateway back nor keep its charon.
    fleet.start_agent(victim)
    assert netns.wait_until(lambda: not victim.gateway_namespaces(), timeout_s=15), (
        victim.gateway_namespaces()
    )
    time.sleep(2 * 1.0 + 0.5)  # two renewals of the returned node
    assert api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["NodeName"] == second
    assert not victim.gateway_namespaces()
    assert max(answering(sites).values()) == 1
    assert _peer_ping(fleet)
    assert victim.process is not None and victim.process.poll() is None, fleet.log_of(victim)


def test_a_node_cut_off_from_the_database_fences_itself_before_another_takes_over(
    pg_fleet: tuple[Fleet, Api], postgres_server: PostgresServer
) -> None:
    fleet, api = pg_fleet
    proxy = CuttableProxy(postgres_server.port)
    try:
        isolated, survivor = fleet.add_node(1), fleet.add_node(2)
        fleet.start_agent(
            isolated, db_url=fleet.db_url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
        )
        gateway_id, connection_id = _tunnel(fleet, api)
        assert api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["NodeName"] == isolated.name
        fleet.start_agent(survivor)
        internet_ip = api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["InternetIp"]
        namespace = f"{isolated.gateway_prefix}{gateway_id}"

        def isolated_answers() -> bool:
            return answering([isolated])[internet_ip] > 0 or bool(netns.namespace_pids(namespace))

        assert isolated_answers()
        cut_at = time.monotonic()
        proxy.cut()
        down_at = up_at = None
        while time.monotonic() - cut_at < 20 and (down_at is None or up_at is None):
            now = time.monotonic()
            if down_at is None and not isolated_answers():
                down_at = now
            if up_at is None and answering([survivor])[internet_ip] > 0:
                up_at = now
            time.sleep(0.02)
        assert down_at is not None, fleet.log_of(isolated)
        assert up_at is not None, fleet.log_of(survivor)
        assert down_at - cut_at <= fleet.lease_s  # fenced within the lease time
        assert down_at < up_at  # and before the other node answers for the address
        assert netns.wait_until(lambda: _peer_ping(fleet), timeout_s=15, interval_s=0.1)
        assert wait_status(api, connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"

        proxy.restore()  # back on the network: it finds the gateway taken and stays out
        time.sleep(3)
        assert not isolated.gateway_namespaces() or answering([isolated])[internet_ip] == 0
        assert api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["NodeName"] == survivor.name
        assert netns.wait_until(lambda: not isolated.gateway_namespaces(), timeout_s=10)
    finally:
        proxy.close()


def vpngw_node(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VPNGW_MASTER_KEY": TEST_MASTER_KEY}
    return subprocess.run(
        [sys.executable, "-m", "vpngw.cli.main", "node", *args, "--db", fleet.db_url],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_operator_moves_a_gateway_and_drains_a_node(sqlite_fleet: tuple[Fleet, Api]) -> None:
    fleet, api = sqlite_fleet
    one, two = fleet.add_node(1), fleet.add_node(2)
    fleet.start_agent(one)
    gateway_id, _connection_id = _tunnel(fleet, api)
    fleet.start_agent(two)
    assert netns.wait_until(lambda: _peer_ping(fleet), timeout_s=10)
    assert netns.wait_until(
        lambda: two.name in vpngw_node(fleet, "list").stdout, timeout_s=15, interval_s=0.2
    )

    def node_of() -> str:
        return str(api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["NodeName"])

    assert node_of() == one.name
    moved = vpngw_node(fleet, "move", gateway_id, "--to", two.name)
    assert moved.returncode == 0 and f"runs on node {two.name}" in moved.stdout, moved.stderr
    assert netns.wait_until(lambda: node_of() == two.name, timeout_s=15, interval_s=0.2)
    assert netns.wait_until(lambda: _peer_ping(fleet), timeout_s=15, interval_s=0.1)
    assert netns.wait_until(lambda: not one.gateway_namespaces(), timeout_s=10)
    assert vpngw_node(fleet, "move", "vpn-nosuchgateway", "--to", two.name).returncode == 2
    assert vpngw_node(fleet, "move", gateway_id, "--to", "nosuchnode").returncode == 2

    # Unpinned, and its node drained: it goes back to the other node, and stays there.
    assert vpngw_node(fleet, "move", gateway_id, "--to", "any").returncode == 0
    drained = vpngw_node(fleet, "drain", two.name)
    assert drained.returncode == 0, drained.stderr
    assert netns.wait_until(lambda: node_of() == one.name, timeout_s=15, interval_s=0.2)
    assert netns.wait_until(lambda: _peer_ping(fleet), timeout_s=15, interval_s=0.1)
    listed = json.loads(vpngw_node(fleet, "list", "--json").stdout)
    by_name = {n["Name"]: n for n in listed["Nodes"]}
    assert by_name[two.name]["Draining"] and by_name[two.name]["Gateways"] == []
    assert by_name[one.name]["Gateways"] == [gateway_id] and by_name[one.name]["Live"]
    assert [g["NodeName"] for g in listed["Gateways"]] == [one.name]
    assert vpngw_node(fleet, "forget", one.name).returncode == 2  # it still holds a gateway
