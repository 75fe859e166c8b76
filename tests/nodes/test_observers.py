"""Observations expire with their observer (docs/nodes.md, store/freshness.py).

Real agents and charons: a node without the fleet's master key refuses to start, a
holder whose gateway it can no longer observe (its charon frozen) keeps its lease but
its connections read down with a Diagnosis naming it, and come back when it recovers.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.api import Api
from vpngw import metrics
from vpngw.dataplane.system import netns
from vpngw.sealing import new_master_key_line
from vpngw.store import leases as lease_store
from vpngw.store.engine import Database

from .fleet import Fleet
from .test_failover import _tunnel, holders
from .test_host_backend import wait_status

pytestmark = pytest.mark.dataplane


def tunnels_up(db_url: str) -> float:
    db = Database(db_url)
    try:
        for family in metrics.StoreCollector(db).collect():
            if family.name == "vpngw_tunnels_up":
                return float(family.samples[0].value)
    finally:
        db.dispose()
    raise AssertionError("no vpngw_tunnels_up")


def node_names(db_url: str) -> set[str]:
    db = Database(db_url)
    try:
        with db.transaction(write=False) as session:
            return {node.name for node in lease_store.nodes(session)}
    finally:
        db.dispose()


def _exits(fleet: Fleet, site_index: int, timeout_s: float = 30) -> int | None:
    site = fleet.nodes[site_index]
    assert site.process is not None
    try:
        return site.process.wait(timeout_s)
    except Exception:
        return None


def test_an_agent_without_the_fleet_s_master_key_refuses_to_start(
    fleet_on: tuple[Fleet, Api], tmp_path: Path
) -> None:
    fleet, api = fleet_on
    wrong, absent = fleet.add_node(1), fleet.add_node(2)
    # Another fleet's key: it opens none of the stored secrets.
    fleet.start_agent(wrong, env={"VPNGW_MASTER_KEY": new_master_key_line()})
    assert _exits(fleet, 0) == 2, fleet.log_of(wrong)
    assert "refusing to start" in fleet.log_of(wrong)
    assert "does not open the secrets" in fleet.log_of(wrong)
    # No key at all: the agent does not make one.
    key_file = tmp_path / "no-such.key"
    environ = {k: v for k, v in os.environ.items() if k != "VPNGW_MASTER_KEY"}
    fleet.start_agent(absent, env={**environ, "VPNGW_MASTER_KEY": "", "VPNGW_MASTER_KEY_FILE": str(key_file)})
    assert _exits(fleet, 1) == 2, fleet.log_of(absent)
    assert "no master key" in fleet.log_of(absent)
    assert not key_file.exists()
    # Neither registered nor took anything.
    assert node_names(fleet.db_url) == set()
    assert holders(fleet.db_url) == {}
    api.ok("CreateVpc", CidrBlock="10.0.0.0/8")  # the API is unaffected


def _charons_of(namespaces: set[str]) -> list[int]:
    return [pid for namespace in namespaces for pid in netns.namespace_pids(namespace)]


def test_a_holder_that_cannot_observe_its_gateway_keeps_the_lease_but_not_the_status(
    fleet_on: tuple[Fleet, Api],
) -> None:
    fleet, api = fleet_on
    site = fleet.add_node(1)
    fleet.start_agent(site)
    gateway_id, connection_id = _tunnel(fleet, api)
    assert tunnels_up(fleet.db_url) == 1.0
    pids = _charons_of(site.gateway_namespaces())
    assert pids
    for pid in pids:  # the holder runs on, but can no longer see (nor run) its gateway
        os.kill(pid, signal.SIGSTOP)
    try:
        seen = wait_status(api, connection_id, "ike_sa_not_established", timeout_s=40)
        assert seen["Status"] == "ike_sa_not_established", seen
        assert site.name in str(seen["Diagnosis"]), seen
        assert holders(fleet.db_url) == {gateway_id: site.name}  # it still holds the lease
        assert tunnels_up(fleet.db_url) == 0.0
        # DiagnoseVpnConnections agrees with DescribeVpnConnection.
        diagnosed = api.ok("DiagnoseVpnConnections", VpnGatewayId=gateway_id)["VpnConnections"][0]
        assert diagnosed["Severity"] == "Critical" and site.name in diagnosed["FailedReason"], diagnosed
        assert site.process is not None and site.process.poll() is None
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    # It recovers: the holder confirms again and the tunnel reads up.
    seen = wait_status(api, connection_id, "ipsec_sa_established", timeout_s=60)
    assert seen["Status"] == "ipsec_sa_established", seen
    assert seen["Diagnosis"] == ""
    assert netns.wait_until(lambda: tunnels_up(fleet.db_url) == 1.0, timeout_s=10)


def test_a_node_whose_clock_disagrees_with_the_database_s_is_refused(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time
    import types

    from tests.conftest import prepared
    from vpngw.cli import clock as nodes_cli
    from vpngw.config import Settings
    from vpngw.dataplane.nodes.placement import LeaseTiming

    db, _auth = prepared(Settings(db_url=postgres_url))
    try:
        measured = nodes_cli.clock_offset_s(db)
        assert measured is not None and abs(measured[0]) < 0.2  # one machine, one clock
        nodes_cli.check_clock(db, LeaseTiming())
        # This machine's clock cannot be moved here: the node reads a clock 2 s ahead.
        monkeypatch.setattr(nodes_cli, "time", types.SimpleNamespace(time=lambda: time.time() + 2.0))
        with pytest.raises(ValueError, match=r"clock is \+2\.\d+ s off the database"):
            nodes_cli.check_clock(db, LeaseTiming())
    finally:
        db.dispose()
