"""A scrape while a real tunnel runs in a lab: the connection is up, its traffic and
health check are counted, reconcile passes are timed, and a killed charon is counted
when the data plane restarts it."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

from tests.dataplane.world import LabWorld
from tests.ops.test_metrics import operator_listener, scrape, value
from tests.support.api import build_world, connection_params

pytestmark = pytest.mark.dataplane

VPC_HOST = "10.1.1.5"
PEER_HOST = "10.10.1.7"


def test_scrape_during_a_real_tunnel(lab_world: LabWorld) -> None:
    place = build_world(lab_world.api)
    gateway_id = place.vpn_gateway_id
    check = {"enable": "true", "sip": "10.1.1.20", "dip": PEER_HOST, "interval": "1", "retry": "2"}
    connection_id = lab_world.api.ok(
        "CreateVpnConnection",
        **connection_params(
            place, EffectImmediately="true", AutoConfigRoute="true", HealthCheckConfig=json.dumps(check)
        ),
    )["VpnConnectionId"]
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    assert lab_world.wait_for(lambda: lab_world.ping_from_vpc(gateway_id, VPC_HOST, PEER_HOST), 5)
    assert lab_world.wait_for(
        lambda: lab_world.connection(connection_id)["VcoHealthCheck"]["Status"] == "success", 10
    )
    assert lab_world.wait_for(
        lambda: lab_world.connection(connection_id)["TrafficStatistics"]["PacketsIn"] > 0, 8
    )

    with operator_listener(lab_world.db) as client:
        scrape_during_the_tunnel(lab_world, client, connection_id, gateway_id)


def scrape_during_the_tunnel(lab_world: LabWorld, client: Any, connection_id: str, gateway_id: str) -> None:
    ids = {"vpn_connection_id": connection_id, "vpn_gateway_id": gateway_id}
    samples = scrape(client)
    stored = lab_world.connection(connection_id)["TrafficStatistics"]
    assert value(samples, "vpngw_tunnels_up") == 1
    assert value(samples, "vpngw_connections", status="ipsec_sa_established") == 1
    assert value(samples, "vpngw_connection_up", **ids) == 1
    assert value(samples, "vpngw_health_checks", verdict="success") == 1
    assert value(samples, "vpngw_connection_health_check_success", **ids) == 1
    packets_in = value(samples, "vpngw_connection_packets_total", direction="in", **ids)
    assert 0 < packets_in <= stored["PacketsIn"]
    assert value(samples, "vpngw_connection_bytes_total", direction="out", **ids) > 0
    assert value(samples, "vpngw_reconcile_pass_duration_seconds_count") > 0
    restarts = value(samples, "vpngw_charon_restarts_total", vpn_gateway_id=gateway_id)

    host = lab_world.network.gateway(gateway_id)
    pid = int(host.pid_path.read_text())
    os.kill(pid, signal.SIGKILL)
    assert lab_world.wait_for(
        lambda: (
            value(scrape(client), "vpngw_charon_restarts_total", vpn_gateway_id=gateway_id) == restarts + 1
        ),
        10,
    )
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    # The restarted charon's tunnel may still be settling (rekeyed, observed again) on a loaded machine.
    assert lab_world.wait_for(lambda: value(scrape(client), "vpngw_tunnels_up") == 1, 10)
