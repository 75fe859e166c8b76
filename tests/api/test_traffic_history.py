"""DescribeVpnConnectionTraffic (the traffic history recorded by write_observation) and
DescribeNodes (the operator's view of the data-plane nodes), on both databases. The data
plane's side is played by the store functions it calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from tests.api.test_observations import Stack, _KeyedClient
from tests.conftest import make_sealer, prepared
from tests.support.api import Api, build_world, connection_params
from vpngw import accounts
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.store import leases, queries, traffic_history
from vpngw.store.models import VpnConnectionTrafficPoint


def counters(n: int) -> dict[str, int]:
    return {"BytesIn": 100 * n, "BytesOut": 50 * n, "PacketsIn": n, "PacketsOut": n // 2}


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        yield Stack(Api(client), db)
    db.dispose()


def _write(stack: Stack, vco: str, traffic: dict[str, int] | None, now_ms: int, status: str = "up") -> bool:
    with stack.db.transaction(write=True) as session:
        return queries.write_observation(
            session, vco, status=status, diagnosis="", traffic=traffic, now_ms=now_ms
        )


def _points(stack: Stack, vco: str, **window: Any) -> list[dict[str, Any]]:
    body = stack.api.ok("DescribeVpnConnectionTraffic", VpnConnectionId=vco, **window)
    assert body["Count"] == len(body["TrafficPoints"]["TrafficPoint"])
    assert body["Interval"] == 10
    points: list[dict[str, Any]] = body["TrafficPoints"]["TrafficPoint"]
    return points


def _stored_points(stack: Stack) -> int:
    with stack.db.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(VpnConnectionTrafficPoint)) or 0)


def test_one_point_per_bucket_with_the_last_counters(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    assert _points(stack, vco) == []  # nothing observed yet
    start = (int(time.time() * 1000) // 10_000 - 30) * 10_000  # five minutes ago, on a bucket start
    _write(stack, vco, counters(1), start + 1000)
    _write(stack, vco, counters(2), start + 3000)  # same bucket: replaces the first
    _write(stack, vco, counters(3), start + 12_000)
    _write(stack, vco, None, start + 25_000, status="down")  # nothing observed: no point
    _write(stack, vco, counters(1), start + 41_000, status="up")  # restarted counters (a rekey)
    points = _points(stack, vco)
    assert [(p["Time"], p["BytesIn"], p["PacketsOut"]) for p in points] == [
        (start + 3000, 200, 1),
        (start + 12_000, 300, 1),
        (start + 41_000, 100, 0),
    ]
    assert set(points[0]) == {"Time", "BytesIn", "BytesOut", "PacketsIn", "PacketsOut"}
    # A window: From/To in unix seconds, both ends inclusive.
    second = _points(stack, vco, From=(start + 12_000) // 1000, To=(start + 12_000) // 1000)
    assert [p["BytesIn"] for p in second] == [300]
    body = stack.api.ok("DescribeVpnConnectionTraffic", VpnConnectionId=vco, To=(start + 20_000) // 1000)
    assert (body["From"], body["To"]) == ((start + 20_000) // 1000 - 3600, (start + 20_000) // 1000)
    assert [p["BytesIn"] for p in body["TrafficPoints"]["TrafficPoint"]] == [200, 300]


def test_history_is_bounded_to_24_hours_and_goes_with_its_connection(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    other = stack.api.ok(
        "CreateVpnConnection",
        **connection_params(world, LocalSubnet="10.2.0.0/24", RemoteSubnet="10.20.0.0/24"),
    )["VpnConnectionId"]
    now = int(time.time() * 1000)
    day = traffic_history.RETENTION_MS
    _write(stack, other, counters(1), now - day - 60_000)  # another connection's old point
    _write(stack, vco, counters(1), now - day - 30_000)
    assert _stored_points(stack) == 2
    _write(stack, vco, counters(2), now)  # any write prunes every point older than 24 h
    assert _stored_points(stack) == 1
    assert [p["BytesIn"] for p in _points(stack, vco, From=now // 1000 - 3600)] == [200]
    stack.api.ok("DeleteVpnConnection", VpnConnectionId=vco)
    assert _stored_points(stack) == 0
    assert not _write(stack, vco, counters(3), now + 10_000)  # the data plane writes late: dropped
    assert _stored_points(stack) == 0


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"From": 100, "To": 99}, 400, "IllegalParam.TimeRange"),
        ({"From": 0, "To": 86401}, 400, "IllegalParam.TimeRange"),  # longer than the history
        ({"From": -1}, 400, "InvalidParameter.From"),
        ({"To": "soon"}, 400, "InvalidParameter.To"),
        ({"VpnConnectionId": "vco-nothere"}, 404, "InvalidVpnConnectionInstanceId.NotFound"),
    ],
)
def test_bad_traffic_requests(stack: Stack, params: dict[str, Any], status: int, code: str) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    stack.api.fails("DescribeVpnConnectionTraffic", status, code, **{"VpnConnectionId": vco, **params})


def test_missing_connection_id_is_refused(stack: Stack) -> None:
    stack.api.fails("DescribeVpnConnectionTraffic", 400, "MissingParameter.VpnConnectionId")


def test_another_account_sees_no_traffic_and_no_nodes(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    _write(stack, vco, counters(1), int(time.time() * 1000))
    other = accounts.create_account(stack.db, make_sealer(), "tenant-b")
    theirs = Api(_KeyedClient(stack.api.client, other.access_key_id, other.access_key_secret))
    theirs.fails(
        "DescribeVpnConnectionTraffic", 404, "InvalidVpnConnectionInstanceId.NotFound", VpnConnectionId=vco
    )
    body = theirs.fails("DescribeNodes", 403, "Forbidden.Operator")
    assert "operator" in body["Message"]
    assert len(_points(stack, vco)) == 1


def test_describe_nodes_shows_heartbeats_and_held_gateways(stack: Stack) -> None:
    assert stack.api.ok("DescribeNodes")["Nodes"] == {"Node": []}
    world = build_world(stack.api)
    now = int(time.time() * 1000)
    with stack.db.transaction(write=True) as session:
        leases.heartbeat(
            session,
            node="n1",
            backend="lab",
            addresses=["198.18.0.1"],
            capacity=100,
            now_ms=now,
            starting=True,
        )
        leases.heartbeat(session, node="n2", backend="host", addresses=[], capacity=50, now_ms=now - 60_000)
        leases.sync_lease_rows(session, now_ms=now)
        assert leases.acquire(session, world.vpn_gateway_id, "n1", now_ms=now, lease_ms=60_000, skew_ms=0)
    body = stack.api.ok("DescribeNodes", RegionId="")  # no region needed
    assert body["TotalCount"] == 2
    first, second = body["Nodes"]["Node"]
    assert (first["NodeName"], first["Backend"], first["Live"], first["Capacity"]) == ("n1", "lab", True, 100)
    assert first["Addresses"] == ["198.18.0.1"]
    assert first["HeartbeatTime"] == now and first["StartedTime"] == now and not first["Draining"]
    held = first["VpnGateways"]["VpnGateway"]
    assert [(g["VpnGatewayId"], g["InternetIp"], g["Epoch"]) for g in held] == [
        (world.vpn_gateway_id, world.internet_ip, 1)
    ]
    assert 0 < held[0]["LeaseLeftMs"] <= 60_000
    assert (second["NodeName"], second["Live"], second["VpnGateways"]["VpnGateway"]) == ("n2", False, [])
    assert second["HeartbeatAgeMs"] >= 60_000
