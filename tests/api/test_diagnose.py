"""DiagnoseVpnConnections: the stored diagnosis of each connection as the public API's
FailedReasonCode / SourceLog / FailedTime, empty when healthy; tenancy and paging (SQLite
and PostgreSQL). The diagnoses are the data plane's own, made from charon logs captured in
real negotiations (tests/dataplane/logs), and stored with the store functions it uses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import make_sealer, prepared
from tests.support.api import REGION, Api, build_world, connection_params, signed_query
from vpngw import accounts
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.dataplane.observe.diagnosis import KINDS, diagnose
from vpngw.rules.diagnosis_codes import CODES, NOT_RUNNING, UNKNOWN, reason_code
from vpngw.store import queries
from vpngw.store.engine import Database
from vpngw.store.freshness import Observer, effective

LOGS = Path(__file__).resolve().parents[1] / "dataplane" / "logs"


@dataclass
class Stack:
    api: Api
    db: Database

    def fail(self, connection_id: str, case: str, at_ms: int) -> str:
        """Store a captured negotiation's lines and the data plane's diagnosis of them."""
        lines = (LOGS / f"{case}.log").read_text().splitlines()
        found = diagnose(lines)
        assert found is not None
        with self.db.transaction(write=True) as session:
            queries.add_connection_logs(
                session, [(connection_id, at_ms - 1000 + n, line) for n, line in enumerate(lines)]
            )
            queries.write_observation(
                session,
                connection_id,
                status="ike_sa_not_established",
                diagnosis=found.message,
                traffic=None,
                now_ms=at_ms,
            )
        return found.message


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        yield Stack(Api(client), db)
    db.dispose()


def test_every_kind_the_data_plane_gives_has_a_reason_code() -> None:
    assert {kind for _, kind, _ in CODES} == set(KINDS)
    seen = set()
    for log in sorted(LOGS.glob("*.log")):
        found = diagnose(log.read_text().splitlines())
        if found is None:
            continue
        code = reason_code(found.message)
        assert code == dict((kind, c) for _, kind, c in CODES)[found.kind], (log.name, found.message)
        seen.add(found.kind)
    assert seen == set(KINDS)
    assert reason_code("") == "" and reason_code("Something new: ...") == UNKNOWN
    # What the store reports for a gateway no node runs, or whose holder is silent or failing.
    for observer in (
        Observer(holder=None, expires_ms=0, observed_by=None, observed_until_ms=0, pass_error=""),
        Observer(holder="n1", expires_ms=2, observed_by="n2", observed_until_ms=0, pass_error=""),
        Observer(holder="n1", expires_ms=2, observed_by="n1", observed_until_ms=2, pass_error="boom"),
    ):
        _, said = effective("ipsec_sa_established", "", observer, now_ms=1)
        assert reason_code(said) == NOT_RUNNING, said


def _items(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["VpnConnectionId"]: item for item in body["VpnConnections"]}


def test_failing_connections_are_diagnosed_and_healthy_ones_are_empty(stack: Stack) -> None:
    api = stack.api
    world = build_world(api)
    psk = "s3cret-psk"
    bad = api.ok("CreateVpnConnection", **connection_params(world, IkeConfig=f'{{"Psk":"{psk}"}}'))[
        "VpnConnectionId"
    ]
    slow = api.ok(
        "CreateVpnConnection",
        **connection_params(world, LocalSubnet="10.7.0.0/24", RemoteSubnet="10.70.0.0/24"),
    )["VpnConnectionId"]
    healthy = api.ok(
        "CreateVpnConnection",
        **connection_params(world, LocalSubnet="10.8.0.0/24", RemoteSubnet="10.80.0.0/24"),
    )["VpnConnectionId"]
    now = int(time.time() * 1000)
    message = stack.fail(bad, "psk_v2_responder", now)
    stack.fail(slow, "no_peer_v2_initiator", now)
    with stack.db.transaction(write=True) as session:  # a Psk in a log line is masked (charon never logs one)
        queries.add_connection_logs(session, [(bad, now, f"[IKE] odd line quoting {psk}")])

    body = api.ok("DiagnoseVpnConnections", VpnGatewayId=world.vpn_gateway_id)
    assert body["TotalCount"] == 3 and (body["PageNumber"], body["PageSize"]) == (1, 10)
    items = _items(body)
    assert items[bad]["FailedReasonCode"] == "PskOrIdentityMismatch"
    assert items[bad]["FailedReason"] == message and items[bad]["FailedTime"] == now
    assert items[bad]["Severity"] == "Critical"
    assert "MAC mismatched" in items[bad]["SourceLog"] and psk not in items[bad]["SourceLog"]
    assert "******" in items[bad]["SourceLog"]
    assert items[slow]["FailedReasonCode"] == "PeerNotResponding"
    assert "retransmit" in items[slow]["SourceLog"]
    assert items[healthy]["FailedReasonCode"] == "" and items[healthy]["SourceLog"] == ""
    assert items[healthy]["FailedTime"] is None and items[healthy]["Severity"] == "Normal"

    only = api.ok("DiagnoseVpnConnections", **{"VpnConnectionIds.1": slow})
    assert list(_items(only)) == [slow]
    paged = api.ok("DiagnoseVpnConnections", VpnGatewayId=world.vpn_gateway_id, PageSize=2, PageNumber=2)
    assert paged["TotalCount"] == 3 and len(paged["VpnConnections"]) == 1
    assert api.ok("DiagnoseVpnConnections")["TotalCount"] == 3
    api.fails(
        "DiagnoseVpnConnections",
        404,
        "InvalidTunnelId.NotFound",
        VpnGatewayId=world.vpn_gateway_id,
        **{"TunnelIds.1": "tun-1"},
    )
    api.fails(
        "DiagnoseVpnConnections", 404, "InvalidVpnGatewayInstanceId.NotFound", VpnGatewayId="vpn-nothere"
    )
    api.fails(
        "DiagnoseVpnConnections",
        404,
        "InvalidVpnConnectionInstanceId.NotFound",
        **{"VpnConnectionIds.1": "vco-x"},
    )
    # A connection on another gateway than the one named is not found there.
    other_vpc = api.ok("CreateVpc")["VpcId"]
    other_gateway = api.ok("CreateVpnGateway", VpcId=other_vpc, Bandwidth=10)["VpnGatewayId"]
    api.fails(
        "DiagnoseVpnConnections",
        404,
        "InvalidVpnConnectionInstanceId.NotFound",
        VpnGatewayId=other_gateway,
        **{"VpnConnectionIds.1": bad},
    )

    # Another account sees nothing of this one.
    other = accounts.create_account(stack.db, make_sealer(), "tenant-b")
    for params in ({"VpnGatewayId": world.vpn_gateway_id}, {"VpnConnectionIds.1": bad}, {}):
        query = {"Action": "DiagnoseVpnConnections", "RegionId": REGION, **params}
        response = api.client.post(
            "/",
            params=signed_query("POST", query, key_id=other.access_key_id, secret=other.access_key_secret),
        )
        if params:
            assert response.status_code == 404, response.text
        else:
            assert response.json()["TotalCount"] == 0
