"""The host backend, end to end: a real agent on a "host" (a namespace with an uplink veth
and a VPC-side veth given by name) brings up a tunnel to a lab peer, and traffic from the
VPC side crosses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.api import Api, build_world, connection_params
from vpngw.dataplane.backends.host import charon_profile as host_profile
from vpngw.dataplane.backends.lab import peer as lab_peer
from vpngw.dataplane.system import netns

from .fleet import Fleet

pytestmark = pytest.mark.dataplane

VPC_HOST = "10.1.1.5"
PEER_HOST = "10.10.1.7"


def wait_status(api: Api, connection_id: str, status: str, timeout_s: float = 20) -> dict[str, object]:
    seen: dict[str, object] = {}

    def reached() -> bool:
        seen.update(api.ok("DescribeVpnConnection", VpnConnectionId=connection_id))
        return seen["Status"] == status

    netns.wait_until(reached, timeout_s=timeout_s, interval_s=0.2)
    return seen


def add_peer(fleet: Fleet, api: Api, connection_id: str, name: str = "cpe") -> None:
    config = api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection_id)["VpnConnectionConfig"]
    lab_peer.create_peer(fleet.lab, lab_peer.peer_from_download(name, config))


def test_a_host_node_runs_a_tunnel_from_its_uplink_to_its_vpc_side(fleet_on: tuple[Fleet, Api]) -> None:
    fleet, api = fleet_on
    site = fleet.add_node(1)
    place = build_world(api)
    connection_id = api.ok(
        "CreateVpnConnection",
        **connection_params(
            place, LocalSubnet="10.1.1.0/24", EffectImmediately="true", AutoConfigRoute="true"
        ),
    )["VpnConnectionId"]
    # Before the agent runs, nothing answers for the gateway.
    assert not netns.ping(fleet.lab.names.wan, "198.18.0.1", place.internet_ip)
    fleet.start_agent(site)
    add_peer(fleet, api, connection_id)
    described = wait_status(api, connection_id, "ipsec_sa_established")
    assert described["Status"] == "ipsec_sa_established", fleet.log_of(site)
    gateway = api.ok("DescribeVpnGateway", VpnGatewayId=place.vpn_gateway_id)
    assert gateway["NodeName"] == site.name

    # Its charon runs the host backend's production profile (DoS protection, standard
    # retransmits, syslog), not the lab's test tuning.
    state_dir = site.state_dir / site.name / f"g-{place.vpn_gateway_id}"
    pid = int((state_dir / "charon.pid").read_text())
    environ = dict(
        item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
    )
    running = Path(environ["STRONGSWAN_CONF"]).read_text()
    assert running == host_profile.strongswan_conf(str(state_dir / "charon.vici"), state_dir / "charon.log")
    assert "dos_protection = yes" in running and "retransmit_tries = 5" in running

    # The InternetIp is on a macvlan of the uplink in the gateway's namespace, with a
    # lifetime (the lease), and the host routes the remote subnet to the gateway.
    namespace = f"{site.gateway_prefix}{place.vpn_gateway_id}"
    assert namespace in site.gateway_namespaces()
    addresses = netns.ip_json("-n", namespace, "-4", "addr", "show", "dev", "wan0")
    infos = [info for link in addresses for info in link["addr_info"]]  # type: ignore[union-attr]
    assert [info["local"] for info in infos] == [place.internet_ip]  # type: ignore[index]
    assert 0 < int(infos[0]["valid_life_time"]) <= fleet.lease_s  # type: ignore[index]
    routes = netns.owned_routes(site.node.namespace)
    assert {r.dst for r in routes} == {"10.10.1.0/24"}

    # Traffic crosses the tunnel both ways: from the VPC side to the peer's host, and back.
    peer_ns = fleet.lab.names.peer("cpe")
    assert netns.wait_until(lambda: netns.ping(site.vpc_namespace, VPC_HOST, PEER_HOST), timeout_s=10)
    assert netns.ping(peer_ns, PEER_HOST, VPC_HOST)

    # Deleting the connection takes the host's route away; deleting the gateway its namespace.
    api.ok("DeleteVpnConnection", VpnConnectionId=connection_id)
    assert netns.wait_until(lambda: not netns.owned_routes(site.node.namespace), timeout_s=10)
    assert not netns.ping(site.vpc_namespace, VPC_HOST, PEER_HOST)
    api.ok("DeleteVpnGateway", VpnGatewayId=place.vpn_gateway_id)
    assert netns.wait_until(lambda: not site.gateway_namespaces(), timeout_s=10)
    assert site.process is not None and site.process.poll() is None, fleet.log_of(site)


def test_an_agent_restarted_within_its_lease_keeps_its_charon_and_tunnel(
    sqlite_fleet: tuple[Fleet, Api],
) -> None:
    from vpngw.dataplane.charon.vici_client import ViciClient

    fleet, api = sqlite_fleet
    site = fleet.add_node(1)
    fleet.start_agent(site)
    place = build_world(api)
    connection_id = api.ok(
        "CreateVpnConnection",
        **connection_params(
            place, LocalSubnet="10.1.1.0/24", EffectImmediately="true", AutoConfigRoute="true"
        ),
    )["VpnConnectionId"]
    add_peer(fleet, api, connection_id)
    assert wait_status(api, connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    state_dir = site.state_dir / site.name / f"g-{place.vpn_gateway_id}"

    def charon_and_spis() -> tuple[int, set[int]]:
        with ViciClient.connect(str(state_dir / "charon.vici"), 5) as client:
            spis = {
                c.spi_in
                for sa in client.list_sas(connection_id)
                for c in sa.children
                if c.state == "INSTALLED"
            }
        return int((state_dir / "charon.pid").read_text()), spis

    before = charon_and_spis()
    assert before[1]
    fleet.stop_agent(site)  # SIGTERM: charons stay, the lease and the address's lifetime run on
    fleet.start_agent(site)
    assert netns.wait_until(lambda: netns.ping(site.vpc_namespace, VPC_HOST, PEER_HOST), timeout_s=10)
    assert charon_and_spis() == before  # adopted: same charon, same SAs
    assert api.ok("DescribeVpnGateway", VpnGatewayId=place.vpn_gateway_id)["NodeName"] == site.name
