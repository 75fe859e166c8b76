"""vpngw end to end: API calls in, real tunnels out, live state back through the API.

Every test runs the API and the reconciler on a fresh database with a lab of its own
(real charons in namespaces, removed afterwards), and a lab peer playing the customer's
gateway, configured from the connection's DownloadVpnConnectionConfig.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.support.api import build_world, connection_params
from vpngw.dataplane.charon.vici_client import ViciClient
from vpngw.dataplane.system import netns

from .world import LabWorld

pytestmark = pytest.mark.dataplane

VPC_HOST = "10.1.1.5"
PEER_HOST = "10.10.1.7"


def create(world: LabWorld, **extra: object) -> tuple[str, str]:
    """(vpn gateway id, connection id) of a new connection to customer 198.19.0.10."""
    place = build_world(world.api)
    params = connection_params(place, **extra)
    connection_id = world.api.ok("CreateVpnConnection", **params)["VpnConnectionId"]
    return place.vpn_gateway_id, connection_id


def spis(world: LabWorld, gateway_id: str, connection_id: str) -> set[int]:
    agent_host = world.network.gateway(gateway_id)
    with ViciClient.connect(agent_host.vici_path, 5) as client:
        return {
            c.spi_in for sa in client.list_sas(connection_id) for c in sa.children if c.state == "INSTALLED"
        }


def test_ping_fails_before_the_connection_passes_with_it_and_fails_after_delete(lab_world: LabWorld) -> None:
    place = build_world(lab_world.api)
    gateway_id = place.vpn_gateway_id
    assert lab_world.reconciler.wait_for_pass()
    # Before: the gateway exists (namespaces, charon) but no connection, so no route.
    assert not lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST)

    connection_id = lab_world.api.ok(
        "CreateVpnConnection", **connection_params(place, EffectImmediately="true", AutoConfigRoute="true")
    )["VpnConnectionId"]
    lab_world.add_peer("cpe", connection_id)
    described = lab_world.wait_status(connection_id, "ipsec_sa_established")
    assert described["Status"] == "ipsec_sa_established", described
    assert lab_world.wait_for(lambda: lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST), 5)
    assert lab_world.ping_from_peer(
        "cpe", PEER_HOST, "10.1.2.9"
    )  # the other local subnet, back the other way

    with ViciClient.connect(lab_world.network.gateway(gateway_id).vici_path, 5) as client:
        assert client.shared_key_ids() == {f"psk-{connection_id}"}
    routes = lab_world.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway_id)["VpnRouteEntries"][
        "VpnRouteEntry"
    ]
    assert [(r["RouteDest"], r["NextHop"]) for r in routes] == [("10.10.1.0/24", connection_id)]
    assert lab_world.vpc_routes(gateway_id) == {"10.10.1.0/24"}
    assert lab_world.wait_for(
        lambda: lab_world.connection(connection_id)["TrafficStatistics"]["PacketsIn"] > 0, 8
    )

    logs = lab_world.api.ok("DescribeVpnConnectionLogs", VpnConnectionId=connection_id, PageSize=50)
    assert logs["Count"] > 0
    assert any("established" in line for line in logs["Data"]["Logs"]), logs

    lab_world.api.ok("DeleteVpnConnection", VpnConnectionId=connection_id)
    assert lab_world.reconciler.wait_for_pass()
    assert not lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST)
    assert lab_world.vpc_routes(gateway_id) == set()
    with ViciClient.connect(lab_world.network.gateway(gateway_id).vici_path, 5) as client:
        assert client.list_conns() == frozenset()
        assert client.list_sas() == []
        assert client.shared_key_ids() == frozenset()
    assert netns.lo_addresses(lab_world.network.gateway(gateway_id).namespace) == set()


def test_effect_immediately_false_negotiates_when_traffic_enters(lab_world: LabWorld) -> None:
    gateway_id, connection_id = create(lab_world, EffectImmediately="false", AutoConfigRoute="true")
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.reconciler.wait_for_pass()
    time.sleep(1.0)
    assert lab_world.connection(connection_id)["Status"] == "ike_sa_not_established"

    # The first packet is dropped while it triggers the negotiation, as with a kernel acquire.
    netns.ping(lab_world.network.names.vpc(gateway_id), VPC_HOST, PEER_HOST)
    assert lab_world.wait_for(lambda: lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST), 5)
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"


def test_modify_renegotiates_with_new_spis_when_effect_immediately(lab_world: LabWorld) -> None:
    gateway_id, connection_id = create(lab_world, EffectImmediately="true")
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    before = spis(lab_world, gateway_id, connection_id)
    assert before

    lab_world.api.ok(
        "ModifyVpnConnectionAttribute",
        VpnConnectionId=connection_id,
        IpsecConfig=json.dumps({"IpsecLifetime": 3600}),
    )
    assert lab_world.wait_for(lambda: spis(lab_world, gateway_id, connection_id) not in (set(), before), 10)
    assert not spis(lab_world, gateway_id, connection_id) & before
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"


def test_auto_config_route_false_installs_no_vpc_route_and_modify_adds_it(lab_world: LabWorld) -> None:
    gateway_id, connection_id = create(lab_world, EffectImmediately="true", AutoConfigRoute="false")
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    assert lab_world.vpc_routes(gateway_id) == set()
    assert not lab_world.ping_from_vpc(
        gateway_id, VPC_HOST, PEER_HOST
    )  # the tunnel is up, the VPC has no route
    assert lab_world.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway_id)["TotalCount"] == 0

    lab_world.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=connection_id, AutoConfigRoute="true")
    assert lab_world.wait_for(lambda: lab_world.vpc_routes(gateway_id) == {"10.10.1.0/24"}, 5)
    assert lab_world.wait_for(lambda: lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST), 5)


def test_wrong_psk_is_diagnosed_as_an_authentication_failure_and_passes_no_traffic(
    lab_world: LabWorld,
) -> None:
    gateway_id, connection_id = create(lab_world, EffectImmediately="true", AutoConfigRoute="true")
    lab_world.add_peer("cpe", connection_id, ike={"Psk": "not-the-right-key"})
    assert lab_world.wait_for(
        lambda: "authentication" in lab_world.connection(connection_id)["Diagnosis"].lower(), 10
    )
    described = lab_world.connection(connection_id)
    assert described["Status"] == "ike_sa_not_established"
    assert "not-the-right-key" not in json.dumps(described)
    assert not lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST)

    # Another wrong key: the Modify clears the diagnosis, and the same failure is
    # diagnosed again (nothing the data plane remembers hides it).
    lab_world.api.ok(
        "ModifyVpnConnectionAttribute",
        VpnConnectionId=connection_id,
        IkeConfig=json.dumps({"Psk": "wrong-again-1"}),
    )
    assert lab_world.connection(connection_id)["Diagnosis"] == ""
    assert lab_world.wait_for(
        lambda: "authentication" in lab_world.connection(connection_id)["Diagnosis"].lower(), 10
    )
    # The operator sets the peer's key: the tunnel comes up and the diagnosis goes.
    lab_world.api.ok(
        "ModifyVpnConnectionAttribute",
        VpnConnectionId=connection_id,
        IkeConfig=json.dumps({"Psk": "not-the-right-key"}),
    )
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Diagnosis"] == ""
    assert lab_world.wait_for(lambda: lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST), 5)


def test_mismatched_proposals_are_diagnosed_naming_both_sides(lab_world: LabWorld) -> None:
    _gateway_id, connection_id = create(
        lab_world, EffectImmediately="false", IkeConfig=json.dumps({"IkeEncAlg": "aes", "IkeAuthAlg": "sha1"})
    )
    # The peer initiates with proposals we do not accept: our charon, as responder, logs both.
    assert lab_world.reconciler.wait_for_pass()
    lab_world.add_peer(
        "cpe", connection_id, initiate=True, ike={"IkeEncAlg": "aes256", "IkeAuthAlg": "sha256"}
    )
    assert lab_world.wait_for(lambda: lab_world.connection(connection_id)["Diagnosis"] != "", 10)
    diagnosis = lab_world.connection(connection_id)["Diagnosis"]
    assert "proposal" in diagnosis.lower()
    assert "AES_CBC_256" in diagnosis and "AES_CBC_128" in diagnosis, diagnosis
    assert lab_world.connection(connection_id)["Status"] == "ike_sa_not_established"


def test_health_check_detects_a_dead_peer_and_recovers(lab_world: LabWorld) -> None:
    check = {"enable": "true", "sip": "10.1.1.20", "dip": PEER_HOST, "interval": "1", "retry": "2"}
    gateway_id, connection_id = create(
        lab_world, EffectImmediately="true", AutoConfigRoute="false", HealthCheckConfig=json.dumps(check)
    )
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.wait_for(
        lambda: lab_world.connection(connection_id)["VcoHealthCheck"]["Status"] == "success", 10
    )

    os.kill(lab_world.peer_pid("cpe"), signal.SIGKILL)
    killed = time.monotonic()
    assert lab_world.wait_for(
        lambda: lab_world.connection(connection_id)["VcoHealthCheck"]["Status"] == "failed", 8
    )
    # interval x retry + one interval, plus the API's own poll and pass period.
    assert time.monotonic() - killed <= 1 * 2 + 1 + 1.5

    lab_world.remove_peer("cpe")
    # The new peer initiates: its INITIAL_CONTACT replaces our stale SAs at once.
    lab_world.add_peer("cpe", connection_id, initiate=True)
    assert lab_world.wait_for(
        lambda: lab_world.connection(connection_id)["VcoHealthCheck"]["Status"] == "success", 15
    )
    assert (
        lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST) is False
    )  # AutoConfigRoute off: no VPC route


def test_killed_charon_is_restarted_and_tunnels_return_within_ten_seconds(lab_world: LabWorld) -> None:
    gateway_id, connection_id = create(lab_world, EffectImmediately="true", AutoConfigRoute="true")
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    host = lab_world.network.gateway(gateway_id)
    pid = int(host.pid_path.read_text())

    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    assert lab_world.wait_for(lambda: lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST), 10)
    assert time.monotonic() - killed < 10
    assert int(host.pid_path.read_text()) != pid
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"


def test_a_restarted_reconciler_adopts_running_charons_without_renegotiating(lab_world: LabWorld) -> None:
    from vpngw.dataplane.core.reconciler import Reconciler

    gateway_id, connection_id = create(lab_world, EffectImmediately="true")
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    pid = int(lab_world.network.gateway(gateway_id).pid_path.read_text())
    before = spis(lab_world, gateway_id, connection_id)

    lab_world.reconciler.stop()
    successor = Reconciler(lab_world.db, lab_world.reconciler.sealer, lab_world.network, period_s=0.5)
    lab_world.reconciler = successor
    successor.start()
    assert successor.wait_for_pass()
    assert int(lab_world.network.gateway(gateway_id).pid_path.read_text()) == pid
    assert spis(lab_world, gateway_id, connection_id) == before


def test_deleting_the_gateway_leaves_no_namespace_or_charon(lab_world: LabWorld) -> None:
    place = build_world(lab_world.api)
    assert lab_world.reconciler.wait_for_pass()
    host = lab_world.network.gateway(place.vpn_gateway_id)
    pid = int(host.pid_path.read_text())
    assert host.namespace in netns.namespaces() and netns.pid_alive(pid)

    lab_world.api.ok("DeleteVpnGateway", VpnGatewayId=place.vpn_gateway_id)
    assert lab_world.reconciler.wait_for_pass()
    assert host.namespace not in netns.namespaces()
    assert host.vpc_namespace not in netns.namespaces()
    assert not netns.pid_alive(pid)
    assert not host.state_dir.exists()


@pytest.mark.parametrize("version", ["ikev1", "ikev2"])
def test_several_subnets_per_side_all_carry_traffic(lab_world: LabWorld, version: str) -> None:
    gateway_id, connection_id = create(
        lab_world,
        EffectImmediately="true",
        AutoConfigRoute="true",
        LocalSubnet="10.1.1.0/24,10.1.2.0/24",
        RemoteSubnet="10.10.1.0/24,10.10.2.0/24",
        IkeConfig=json.dumps({"IkeVersion": version}),
    )
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    for source in ("10.1.1.5", "10.1.2.5"):
        for destination in ("10.10.1.7", "10.10.2.7"):
            assert lab_world.wait_for(
                lambda s=source, d=destination: lab_world.ping_from_vpc(gateway_id, s, d), 5
            ), f"{source} -> {destination}"


def test_a_second_reconciler_on_the_same_lab_is_refused(lab_world: LabWorld) -> None:
    from vpngw.dataplane.core.reconciler import Reconciler
    from vpngw.dataplane.errors import BackendBusy

    second = Reconciler(lab_world.db, lab_world.reconciler.sealer, lab_world.network)
    with pytest.raises(BackendBusy, match="another vpngw process"):
        second.start()


def test_status_is_honest_while_the_daemon_cannot_be_restarted(
    lab_world: LabWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vpngw.dataplane.core import gateway_agent
    from vpngw.dataplane.system.netns import NetnsError as LabError

    gateway_id, connection_id = create(lab_world, EffectImmediately="true", AutoConfigRoute="true")
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"

    def cannot_start(host: object) -> int:
        raise LabError("charon did not come up (made to fail by the test)")

    monkeypatch.setattr(gateway_agent.charon_daemon, "start_gateway_charon", cannot_start)
    os.kill(int(lab_world.network.gateway(gateway_id).pid_path.read_text()), signal.SIGKILL)
    described = lab_world.wait_status(connection_id, "ike_sa_not_established")
    assert described["Status"] == "ike_sa_not_established"
    assert "not reachable" in described["Diagnosis"]

    monkeypatch.undo()
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    assert lab_world.connection(connection_id)["Diagnosis"] == ""
    assert lab_world.wait_for(lambda: lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST), 5)


def test_a_connection_modified_while_vpngw_was_down_is_renegotiated_on_adoption(lab_world: LabWorld) -> None:
    """charon itself renegotiates a replaced always-up connection; a trapped one keeps its
    old SAs unless vpngw knows the settings changed: it remembers them beside charon."""
    from vpngw.dataplane.core.reconciler import Reconciler

    gateway_id, connection_id = create(lab_world, EffectImmediately="false", AutoConfigRoute="true")
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.reconciler.wait_for_pass()
    netns.ping(lab_world.network.names.vpc(gateway_id), VPC_HOST, PEER_HOST)  # the trigger
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    pid = int(lab_world.network.gateway(gateway_id).pid_path.read_text())
    before = spis(lab_world, gateway_id, connection_id)
    assert before

    lab_world.reconciler.stop()
    lab_world.api.ok(
        "ModifyVpnConnectionAttribute",
        VpnConnectionId=connection_id,
        IpsecConfig=json.dumps({"IpsecLifetime": 7200}),
    )
    assert spis(lab_world, gateway_id, connection_id) == before  # nobody acted on it yet
    successor = Reconciler(lab_world.db, lab_world.reconciler.sealer, lab_world.network, period_s=0.5)
    lab_world.reconciler = successor
    successor.start()
    assert successor.wait_for_pass()
    assert int(lab_world.network.gateway(gateway_id).pid_path.read_text()) == pid  # adopted, not restarted
    assert not spis(lab_world, gateway_id, connection_id) & before  # the old SAs are gone
    netns.ping(lab_world.network.names.vpc(gateway_id), VPC_HOST, PEER_HOST)
    assert lab_world.wait_for(lambda: lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST), 5)
