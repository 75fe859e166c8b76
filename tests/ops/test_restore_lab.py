"""What a restore does to running tunnels: the data plane makes the lab match the
restored store. A gateway and a connection created after the backup are torn down; a
connection in the backup keeps its charon and its SAs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.dataplane.world import LabWorld
from tests.support.api import build_world, connection_params
from vpngw.cli.main import main
from vpngw.dataplane.backends.lab import network as lab_network
from vpngw.dataplane.charon.vici_client import ViciClient

pytestmark = pytest.mark.dataplane


def conns(world: LabWorld, gateway_id: str) -> frozenset[str]:
    with ViciClient.connect(world.network.gateway(gateway_id).vici_path, 5) as client:
        return client.list_conns()


def test_restore_tears_down_what_the_backup_does_not_hold(lab_world: LabWorld, tmp_path: Path) -> None:
    from vpngw.dataplane.core.reconciler import Reconciler

    url = lab_world.db.url
    place = build_world(lab_world.api)
    kept = lab_world.api.ok("CreateVpnConnection", **connection_params(place, EffectImmediately="true"))[
        "VpnConnectionId"
    ]
    lab_world.add_peer("cpe", kept)
    assert lab_world.wait_status(kept, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    assert main(["backup", str(tmp_path / "backup.db"), "--db", url]) == 0

    later = lab_world.api.ok(
        "CreateVpnConnection",
        **connection_params(place, LocalSubnet="10.2.1.0/24", RemoteSubnet="10.20.1.0/24"),
    )["VpnConnectionId"]
    other = build_world(lab_world.api, customer_ip="198.19.0.11")
    assert lab_world.reconciler.wait_for_pass()
    other_host = lab_world.network.gateway(other.vpn_gateway_id)
    assert later in conns(lab_world, place.vpn_gateway_id)
    assert other_host.namespace in lab_network.namespaces()
    pid = int(lab_world.network.gateway(place.vpn_gateway_id).pid_path.read_text())

    # As docs/operations.md says: stop the server, restore, start it.
    lab_world.reconciler.stop()
    lab_world.db.dispose()
    assert main(["restore", str(tmp_path / "backup.db"), "--db", url]) == 0
    assert Path(make_url(url).database or "").exists()
    successor = Reconciler(lab_world.db, lab_world.reconciler.sealer, lab_world.network, period_s=0.5)
    lab_world.reconciler = successor
    successor.start()
    assert successor.wait_for_pass()

    assert kept in conns(lab_world, place.vpn_gateway_id) and later not in conns(
        lab_world, place.vpn_gateway_id
    )
    assert other.vpn_gateway_id not in lab_world.network.gateway_ids()
    assert other_host.namespace not in lab_network.namespaces()
    assert int(lab_world.network.gateway(place.vpn_gateway_id).pid_path.read_text()) == pid
    assert lab_world.wait_status(kept, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
    lab_world.api.fails(
        "DescribeVpnConnection", 404, "InvalidVpnConnectionInstanceId.NotFound", VpnConnectionId=later
    )
