"""Passes that touch only what changed (issue 18, item 3).

An idle gateway (its connection trapped: nothing up, nothing negotiating) is not looked
at by the ordinary passes: no ``list-sas``; a change through the API still reaches its
charon at once (its change stamp moved); what the stamps miss (a write made behind the
triggers' back, here) waits for the heal, which reads every gateway afresh in turn.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from typing import Any

import pytest
import vici
from sqlalchemy import text

from tests.support.api import build_world, connection_params
from vpngw.dataplane.charon.vici_client import IkeSa, ViciClient
from vpngw.dataplane.core import reconciler

from .world import LabWorld

pytestmark = pytest.mark.dataplane


def loaded(world: LabWorld, gateway_id: str, connection_id: str) -> str:
    """What charon holds of the connection (``list-conns``), as text ("" while charon is
    not up yet)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(world.network.gateway(gateway_id).vici_path)
    except OSError:
        sock.close()
        return ""
    try:
        return repr([dict(conn) for conn in vici.Session(sock).list_conns({"ike": connection_id})])
    finally:
        sock.close()


def idle_connection(world: LabWorld) -> tuple[str, str]:
    """A trapped connection (EffectImmediately=false: nothing negotiates) on a gateway of
    its own, once its charon holds it: (gateway id, connection id)."""
    place = build_world(world.api)
    connection_id = world.api.ok(
        "CreateVpnConnection", **connection_params(place, EffectImmediately="false")
    )["VpnConnectionId"]
    gateway_id = place.vpn_gateway_id
    assert world.wait_for(lambda: "rekey_time" in loaded(world, gateway_id, connection_id), 20)
    return gateway_id, str(connection_id)


def test_an_idle_gateway_is_not_looked_at_until_it_changes_and_the_heal_pass_reads_all(
    lab_world: LabWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway_id, connection_id = idle_connection(lab_world)
    assert lab_world.reconciler.wait_for_pass()

    looked: list[float] = []
    list_sas = ViciClient.list_sas

    def counted(self: ViciClient, ike: str | None = None) -> list[IkeSa]:
        looked.append(time.monotonic())
        return list_sas(self, ike)

    monkeypatch.setattr(ViciClient, "list_sas", counted)
    time.sleep(1.5)  # the look that loading the connection's log lines asked for
    looked.clear()
    time.sleep(3.0)  # six ordinary passes (period 0.5 s)
    assert looked == [], "an idle gateway was listed by ordinary passes"

    # A change through the API reaches charon at once (its stamp moved).
    before = loaded(lab_world, gateway_id, connection_id)
    lab_world.api.ok(
        "ModifyVpnConnectionAttribute",
        VpnConnectionId=connection_id,
        IkeConfig=json.dumps({"IkeLifetime": 7200}),
    )
    assert lab_world.wait_for(lambda: loaded(lab_world, gateway_id, connection_id) != before, 5)
    assert lab_world.wait_for(lambda: bool(looked), 5), "the changed gateway was looked at"

    # A change the stamps miss (written, then the stamp put back, in one transaction: as if
    # a trigger were missing) is not seen by the ordinary passes; a full pass realises it,
    # and so does the heal spread over the ordinary passes, within HEAL_EVERY_S.
    before = miss_a_change(lab_world, gateway_id, connection_id, 7000)
    time.sleep(2.0)
    assert loaded(lab_world, gateway_id, connection_id) == before, "an ordinary pass saw an unmoved stamp"
    lab_world.reconciler.heal()
    assert lab_world.wait_for(lambda: loaded(lab_world, gateway_id, connection_id) != before, 5)

    monkeypatch.setattr(reconciler, "HEAL_EVERY_S", 2.0)
    before = miss_a_change(lab_world, gateway_id, connection_id, 6000)
    assert lab_world.wait_for(lambda: loaded(lab_world, gateway_id, connection_id) != before, 6)


def miss_a_change(world: LabWorld, gateway_id: str, connection_id: str, ipsec_lifetime: int) -> str:
    """Change the connection's IpsecLifetime behind the stamp's back; what charon held."""
    with world.db.engine.begin() as connection:
        stamp = connection.execute(
            text("SELECT desired_generation FROM vpn_gateways WHERE id = :g"), {"g": gateway_id}
        ).scalar_one()
        change_ipsec_lifetime(connection, connection_id, ipsec_lifetime)
        connection.execute(
            text("UPDATE vpn_gateways SET desired_generation = :s WHERE id = :g"),
            {"s": stamp, "g": gateway_id},
        )
    return loaded(world, gateway_id, connection_id)


def test_an_idle_gateways_killed_charon_is_restarted_at_once(lab_world: LabWorld) -> None:
    """Nothing watches an idle gateway, but its charon's event stream ends when charon
    dies, and that asks for a look: charon is back long before the heal pass."""
    gateway_id, connection_id = idle_connection(lab_world)
    pid_path = lab_world.network.gateway(gateway_id).pid_path
    pid = int(pid_path.read_text())
    os.kill(pid, signal.SIGKILL)
    assert lab_world.wait_for(
        lambda: (
            pid_path.read_text().strip() != str(pid)
            and "rekey_time" in loaded(lab_world, gateway_id, connection_id)
        ),
        10,
    )


def test_a_large_fleet_is_healed_less_often_not_at_a_higher_rate() -> None:
    """Every gateway once a minute up to HEAL_GATEWAYS_PER_S; beyond it, the period grows
    with the fleet, so the heal's cost per second stays flat."""
    assert reconciler.heal_period_s(0) == reconciler.HEAL_EVERY_S
    assert reconciler.heal_period_s(100) == reconciler.HEAL_EVERY_S
    assert reconciler.heal_period_s(1000) == 1000 / reconciler.HEAL_GATEWAYS_PER_S > reconciler.HEAL_EVERY_S
    for gateways in (10, 100, 480, 481, 1000, 5000):
        assert gateways / reconciler.heal_period_s(gateways) <= reconciler.HEAL_GATEWAYS_PER_S


def count_stamp_reads(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    reads: list[float] = []
    of_gateways = reconciler.desired_generation.of_gateways

    def counted(session: Any) -> dict[str, int]:
        reads.append(time.monotonic())
        return of_gateways(session)

    monkeypatch.setattr(reconciler.desired_generation, "of_gateways", counted)
    return reads


def change_ipsec_lifetime(connection: Any, connection_id: str, ipsec_lifetime: int) -> None:
    """A write to the connection (its trigger bumps the gateway's stamp), made as another
    API server would: nothing wakes this data plane."""
    ipsec = json.loads(
        connection.execute(
            text("SELECT ipsec_config FROM vpn_connections WHERE id = :i"), {"i": connection_id}
        ).scalar_one()
    )
    ipsec["IpsecLifetime"] = ipsec_lifetime
    connection.execute(
        text("UPDATE vpn_connections SET ipsec_config = :c WHERE id = :i"),
        {"c": json.dumps(ipsec), "i": connection_id},
    )


def test_idle_passes_read_the_stamps_sum_not_every_stamp_and_a_write_without_a_wake_still_arrives(
    lab_world: LabWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway_id, connection_id = idle_connection(lab_world)
    assert lab_world.reconciler.wait_for_pass()  # woken: it reads every stamp
    reads = count_stamp_reads(monkeypatch)
    time.sleep(3.0)  # six ordinary passes (period 0.5 s), nothing written
    assert reads == [], "idle passes read every stamp (the count and sum had not moved)"

    before = loaded(lab_world, gateway_id, connection_id)
    with lab_world.db.engine.begin() as connection:
        change_ipsec_lifetime(connection, connection_id, 7100)
    assert lab_world.wait_for(lambda: loaded(lab_world, gateway_id, connection_id) != before, 3)
    assert len(reads) == 1  # the sum moved: the stamps were read, once


def test_changes_whose_stamps_cancel_out_in_the_sum_arrive_at_the_periodic_read(
    lab_world: LabWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One gateway's stamp up, another's down, in one transaction (as a gateway deleted and
    another created with bumps in between would leave them): the count and sum are as
    before, and the stamps read every STAMPS_READ_EVERY_S (here 1 s; the heal is off) still
    find the change."""
    monkeypatch.setattr(reconciler, "STAMPS_READ_EVERY_S", 1.0)
    monkeypatch.setattr(reconciler, "HEAL_EVERY_S", 3600.0)
    gateway_id, connection_id = idle_connection(lab_world)
    vpc = lab_world.api.ok("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
    other = lab_world.api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=10)["VpnGatewayId"]
    assert lab_world.reconciler.wait_for_pass()
    reads = count_stamp_reads(monkeypatch)
    before = loaded(lab_world, gateway_id, connection_id)
    with lab_world.db.engine.begin() as connection:
        total = connection.execute(text("SELECT sum(desired_generation) FROM vpn_gateways")).scalar_one()
        change_ipsec_lifetime(connection, connection_id, 7200)
        connection.execute(
            text("UPDATE vpn_gateways SET desired_generation = desired_generation - 1 WHERE id = :g"),
            {"g": other},
        )
        assert (
            connection.execute(text("SELECT sum(desired_generation) FROM vpn_gateways")).scalar_one() == total
        )
    assert lab_world.wait_for(lambda: loaded(lab_world, gateway_id, connection_id) != before, 4)
    assert reads, "found by a periodic read of every stamp"
