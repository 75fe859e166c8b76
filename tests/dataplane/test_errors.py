"""Errors act as they say (vpngw.dataplane.errors), seen through the API on a real lab.

* A permanent error of one connection (a stored spec strongSwan cannot run) is written on
  that connection, Status and Diagnosis, and leaves the gateway's other connections and
  their SAs alone; modifying the connection brings it back.
* A temporary error (charon cannot be started) is retried after its delay with backoff,
  not on every pass.
* Every backend refuses a second process with the same one error, BackendBusy.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.api import build_world, connection_params
from vpngw.dataplane.backends import base
from vpngw.dataplane.backends.host.network import HostConfig, HostNetwork
from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.core import gateway_agent
from vpngw.dataplane.errors import BackendBusy
from vpngw.dataplane.system import netns
from vpngw.store.models import VpnConnection

from .test_end_to_end import spis
from .world import LabWorld

pytestmark = pytest.mark.dataplane


def two_connections(world: LabWorld) -> tuple[str, str, str]:
    """(gateway id, connection A, connection B): one gateway, two customers, both up."""
    place = build_world(world.api, customer_ip="198.19.0.10")
    other = world.api.ok("CreateCustomerGateway", IpAddress="198.19.0.11")["CustomerGatewayId"]
    first = world.api.ok(
        "CreateVpnConnection",
        **connection_params(place, LocalSubnet="10.1.1.0/24", EffectImmediately="true"),
    )["VpnConnectionId"]
    second = world.api.ok(
        "CreateVpnConnection",
        **connection_params(
            place,
            CustomerGatewayId=other,
            LocalSubnet="10.1.2.0/24",
            RemoteSubnet="10.20.1.0/24",
            EffectImmediately="true",
        ),
    )["VpnConnectionId"]
    world.add_peer("a", first)
    world.add_peer("b", second)
    for connection_id in (first, second):
        assert (
            world.wait_status(connection_id, "ipsec_sa_established", 20)["Status"] == "ipsec_sa_established"
        )
    return place.vpn_gateway_id, first, second


def store_ike_value(world: LabWorld, connection_id: str, key: str, value: str) -> None:
    """Write a value into the stored IkeConfig as a newer vpngw (or a hand) might."""
    with world.db.transaction(write=True) as session:
        row = session.scalars(select(VpnConnection).where(VpnConnection.id == connection_id)).one()
        row.ike_config = {**row.ike_config, key: value}
    world.reconciler.wake()


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("IkeEncAlg", "rc4", "rc4"),  # refused where it is rendered (the agent)
        ("IkeVersion", "ikev3", "ikev3"),  # refused where the spec is built (the store's rows)
    ],
)
def test_a_permanent_error_stays_on_its_connection(
    lab_world: LabWorld, key: str, value: str, named: str
) -> None:
    gateway_id, first, second = two_connections(lab_world)
    before = spis(lab_world, gateway_id, first)
    assert before

    store_ike_value(lab_world, second, key, value)
    assert lab_world.wait_for(lambda: named in lab_world.connection(second)["Diagnosis"], 10)
    described = lab_world.connection(second)
    assert described["Status"] == "ike_sa_not_established"
    assert "cannot set up this connection" in described["Diagnosis"], described["Diagnosis"]
    assert "until its settings are modified" in described["Diagnosis"]
    assert lab_world.peers["b"].connection.ike.psk not in described["Diagnosis"]
    # charon no longer runs the old settings of the broken connection...
    assert not spis(lab_world, gateway_id, second)
    # ...and the other connection never noticed: same SAs, still established, no diagnosis.
    assert lab_world.reconciler.wait_for_pass()
    assert spis(lab_world, gateway_id, first) == before
    assert lab_world.connection(first)["Status"] == "ipsec_sa_established"
    assert lab_world.connection(first)["Diagnosis"] == ""

    # A Modify that makes it valid again brings it back.
    fixed = {"IkeEncAlg": "aes"} if key == "IkeEncAlg" else {"IkeVersion": "ikev1"}
    lab_world.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=second, IkeConfig=json.dumps(fixed))
    assert lab_world.wait_status(second, "ipsec_sa_established", 20)["Status"] == "ipsec_sa_established"
    assert lab_world.connection(second)["Diagnosis"] == ""
    assert spis(lab_world, gateway_id, first) == before


def test_a_temporary_error_is_retried_after_its_delay_with_backoff(
    lab_world: LabWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    place = build_world(lab_world.api)
    connection_id = lab_world.api.ok(
        "CreateVpnConnection", **connection_params(place, EffectImmediately="true")
    )["VpnConnectionId"]
    lab_world.add_peer("cpe", connection_id)
    assert lab_world.wait_status(connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"

    attempts: list[float] = []

    def cannot_start(host: object) -> int:
        attempts.append(time.monotonic())
        raise netns.NetnsError("charon did not come up (made to fail by the test)", delay=1.0)

    monkeypatch.setattr(gateway_agent.charon_daemon, "start_gateway_charon", cannot_start)
    os.kill(int(lab_world.network.gateway(place.vpn_gateway_id).pid_path.read_text()), signal.SIGKILL)
    assert lab_world.wait_for(lambda: len(attempts) >= 1, 10)
    time.sleep(7.0)  # passes run every 0.5 s (and on every wake): ~14 tries without backoff
    gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:], strict=False)]
    assert 2 <= len(attempts) <= 4, gaps  # after 1 s, 2 s, 4 s
    assert all(gap >= 0.9 * 2**index for index, gap in enumerate(gaps)), gaps  # 1 s, then doubling
    assert "not reachable" in lab_world.connection(connection_id)["Diagnosis"]

    monkeypatch.undo()
    assert (
        lab_world.wait_status(connection_id, "ipsec_sa_established", 20)["Status"] == "ipsec_sa_established"
    )
    assert lab_world.connection(connection_id)["Diagnosis"] == ""


def test_every_backend_refuses_a_second_process_with_backend_busy(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the machine-wide locks live in /run/vpngw")
    suffix = netns.unique_suffix()
    for backend in (
        LabNetwork(f"vt-busy-{suffix}", tmp_path / "lab"),
        HostNetwork(HostConfig(f"busy-{suffix}", "eth0", "br-vpc", tmp_path / "host")),
    ):
        held = backend.lock()
        try:
            with pytest.raises(BackendBusy, match="another vpngw process"):
                backend.lock()
        finally:
            held.close()
        backend.lock().close()  # released: the next process may take it
    for lock_file in (base.LOCK_DIR / f"vt-busy-{suffix}.lock", base.LOCK_DIR / f"busy-{suffix}.host.lock"):
        assert lock_file.exists()
        lock_file.unlink(missing_ok=True)  # names no other process uses


def test_lab_down_removes_the_locks_and_state_its_nodes_left(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the machine-wide locks live in /run/vpngw")
    from vpngw.cli.main import main
    from vpngw.dataplane.backends.lab import lab as lab_dirs
    from vpngw.dataplane.backends.lab import node as lab_node

    lab = f"vt-{netns.unique_suffix()}"
    network = LabNetwork(lab, lab_dirs.STATE_ROOT / lab, run_dir=lab_dirs.RUN_ROOT / lab)
    network.lock().close()
    node = f"{lab}-n1"
    try:
        lab_node.create_node(network, node, vpc_subnets=("10.1.1.0/24",))
        # What an agent of the node leaves: its lock and its default state directory.
        HostNetwork(HostConfig(node, "eth0", "br-vpc", tmp_path / "host")).lock().close()
        (lab_dirs.STATE_ROOT / node / "g-vpn-x").mkdir(parents=True)
        # Another process's lock, held: it stays.
        busy = HostNetwork(HostConfig(f"{lab}-n2", "eth0", "br-vpc", tmp_path / "host")).lock()
        assert {p.name for p in base.LOCK_DIR.glob(f"{lab}*.lock")} == {
            f"{lab}.lock",
            f"{node}.host.lock",
            f"{lab}-n2.host.lock",
        }
        assert main(["lab", "down", "--lab", lab]) == 0
        assert {p.name for p in base.LOCK_DIR.glob(f"{lab}*.lock")} == {f"{lab}-n2.host.lock"}
        assert not (lab_dirs.STATE_ROOT / node).exists()
        assert not [ns for ns in netns.namespaces() if ns.startswith(f"{lab}-")]
        busy.close()
    finally:
        network.teardown()
    assert not list(base.LOCK_DIR.glob(f"{lab}*.lock"))
