"""What the data plane writes, as the API shows it: Status, Diagnosis, traffic, health,
negotiation logs (DescribeVpnConnectionLogs) and auto-configured routes
(DescribeVpnRouteEntries). The data plane's side is played here by the store functions it
calls, on both databases."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import Api, build_world, connection_params
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.store import queries
from vpngw.store.engine import Database


@dataclass
class Stack:
    api: Api
    db: Database

    def observe(self, connection_id: str, **fields: object) -> bool:
        with self.db.transaction(write=True) as session:
            return queries.write_observation(session, connection_id, now_ms=int(time.time() * 1000), **fields)  # type: ignore[arg-type]

    def log(self, connection_id: str, *lines: tuple[int, str]) -> int:
        with self.db.transaction(write=True) as session:
            return queries.add_connection_logs(session, [(connection_id, t, m) for t, m in lines])


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        yield Stack(Api(client), db)
    db.dispose()


def test_observations_appear_in_describe_and_only_differences_are_written(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    fresh = stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert (fresh["Status"], fresh["Diagnosis"]) == ("ike_sa_not_established", "")
    assert fresh["TrafficStatistics"] == {"BytesIn": 0, "BytesOut": 0, "PacketsIn": 0, "PacketsOut": 0}

    traffic = {"BytesIn": 840, "BytesOut": 420, "PacketsIn": 10, "PacketsOut": 5}
    assert stack.observe(vco, status="ipsec_sa_established", diagnosis="", traffic=traffic)
    assert not stack.observe(vco, status="ipsec_sa_established", diagnosis="", traffic=traffic)
    assert not stack.observe("vco-neverexisted", status="ipsec_sa_established", diagnosis="", traffic=None)
    described = stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert (described["Status"], described["TrafficStatistics"]) == ("ipsec_sa_established", traffic)
    listed = stack.api.ok("DescribeVpnConnections", VpnGatewayId=world.vpn_gateway_id)["VpnConnections"]["VpnConnection"]
    assert listed[0]["TrafficStatistics"] == traffic

    stack.observe(vco, status="ike_sa_not_established", diagnosis="Authentication failed: ...", traffic=None)
    assert stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["Diagnosis"] == "Authentication failed: ..."
    stack.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=vco, Name="renamed")
    assert stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["Diagnosis"] != ""  # a name changes no tunnel
    stack.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=vco, IkeConfig=json.dumps({"Psk": "new-key-123"}))
    assert stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["Diagnosis"] == ""


def test_health_status_is_written_only_when_it_changes(stack: Stack) -> None:
    world = build_world(stack.api)
    check = {"enable": "true", "sip": "10.1.1.20", "dip": "10.10.1.7", "interval": "2", "retry": "3"}
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world, HealthCheckConfig=json.dumps(check)))["VpnConnectionId"]
    assert stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["VcoHealthCheck"]["Status"] == "failed"
    with stack.db.transaction(write=True) as session:
        assert queries.write_health_status(session, vco, "success")
        assert not queries.write_health_status(session, vco, "success")
        assert not queries.write_health_status(session, "vco-gone", "success")
    assert stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["VcoHealthCheck"]["Status"] == "success"


def test_logs_are_windowed_paged_and_deleted_with_the_connection(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    base = 1_700_000_000  # seconds
    lines = [((base + n * 30) * 1000, f"[IKE] line {n}") for n in range(25)]  # 12.5 minutes of lines
    assert stack.log(vco, *lines) == 25
    assert stack.log("vco-gone", (base * 1000, "dropped")) == 0

    def logs(**params: object) -> dict[str, object]:
        return stack.api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco, **params)

    everything = logs(From=base, To=base + 24 * 30, PageSize=50)
    assert everything["Count"] == 25 and everything["IsCompleted"] is True
    assert everything["Data"]["Logs"][0] == "2023-11-14 22:13:20 [IKE] line 0"  # UTC, oldest first
    first = logs(From=base, MinutePeriod=2)  # [base, base+120]: lines 0..4, both ends inclusive
    assert first["Count"] == 5 and first["Data"]["Logs"][-1].endswith("line 4")
    last = logs(To=base + 24 * 30, MinutePeriod=1)  # [To-60, To]: lines 22..24
    assert [line[-7:] for line in last["Data"]["Logs"]] == ["line 22", "line 23", "line 24"]
    page = logs(From=base, To=base + 24 * 30, PageSize=10, PageNumber=3)
    assert (page["Count"], len(page["Data"]["Logs"]), page["IsCompleted"]) == (25, 5, True)
    middle = logs(From=base, To=base + 24 * 30, PageSize=10, PageNumber=2)
    assert middle["IsCompleted"] is False and middle["Data"]["Logs"][0].endswith("line 10")
    assert logs()["Count"] == 0  # the last 10 minutes: these lines are from 2023

    stack.api.ok("DeleteVpnConnection", VpnConnectionId=vco)
    with stack.db.transaction(write=False) as session:
        assert queries.connection_log_page(session, vco, from_ms=0, to_ms=2**50, offset=0, limit=50)[0] == 0


def test_recent_lines_are_found_by_the_default_window_and_pruned(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    now_ms = int(time.time() * 1000)
    stack.log(vco, (now_ms - 11 * 60_000, "[IKE] too old"), (now_ms - 60_000, "[IKE] recent"))
    found = stack.api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco)["Data"]["Logs"]
    assert [line.split(" ", 2)[2] for line in found] == ["[IKE] recent"]
    assert stack.api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco, MinutePeriod=1)["Count"] <= 1
    with stack.db.transaction(write=True) as session:
        assert queries.prune_connection_logs(session, older_than_ms=now_ms - 5 * 60_000) == 1


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"From": 100}, "MissingParameter.ToOrMinutePeriod"),
        ({"To": 100}, "MissingParameter.FromOrMinutePeriod"),
        ({"From": 200, "To": 100}, "IllegalParam.TimeRange"),
        ({"MinutePeriod": 0}, "InvalidParameter.MinutePeriod"),
        ({"MinutePeriod": 11}, "InvalidParameter.MinutePeriod"),
        ({"From": "yesterday", "To": 5}, "InvalidParameter.From"),
        ({"To": -1, "From": 0}, "InvalidParameter.To"),
        ({"PageSize": 51}, "InvalidParameter.PageSize"),
    ],
)
def test_bad_log_windows_get_specific_errors(stack: Stack, params: dict[str, object], code: str) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    stack.api.fails("DescribeVpnConnectionLogs", 400, code, VpnConnectionId=vco, **params)
    stack.api.fails("DescribeVpnConnectionLogs", 400, "MissingParameter.VpnConnectionId")
    stack.api.fails("DescribeVpnConnectionLogs", 404, "InvalidVpnConnectionInstanceId.NotFound", VpnConnectionId="vco-x")


def test_route_entries_follow_auto_config_route(stack: Stack) -> None:
    world = build_world(stack.api)
    gateway = world.vpn_gateway_id

    def entries(**params: object) -> list[tuple[str, str]]:
        body = stack.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway, **params)
        return [(e["RouteDest"], e["NextHop"]) for e in body["VpnRouteEntries"]["VpnRouteEntry"]]

    auto = stack.api.ok("CreateVpnConnection", **connection_params(
        world, AutoConfigRoute="true", RemoteSubnet="10.10.1.0/24,10.10.2.0/24"))["VpnConnectionId"]
    manual = stack.api.ok("CreateVpnConnection", **connection_params(
        world, AutoConfigRoute="false", LocalSubnet="10.2.0.0/24", RemoteSubnet="10.20.0.0/24"))["VpnConnectionId"]
    assert entries() == [("10.10.1.0/24", auto), ("10.10.2.0/24", auto)]
    body = stack.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway, PageSize=1, PageNumber=2)
    assert (body["TotalCount"], body["PageNumber"], body["PageSize"]) == (2, 2, 1)
    entry = body["VpnRouteEntries"]["VpnRouteEntry"][0]
    assert (entry["VpnInstanceId"], entry["Weight"], entry["State"], entry["RouteEntryType"]) == (gateway, 100, "published", "custom")
    assert entries(RouteEntryType="bgp") == []

    stack.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=manual, AutoConfigRoute="true")
    stack.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=auto, AutoConfigRoute="false")
    assert entries() == [("10.20.0.0/24", manual)]
    stack.api.ok("DeleteVpnConnection", VpnConnectionId=manual)
    assert entries() == []
    stack.api.fails("DescribeVpnRouteEntries", 400, "InvalidParameter.RouteEntryType", VpnGatewayId=gateway, RouteEntryType="x")
    stack.api.fails("DescribeVpnRouteEntries", 404, "InvalidVpnGatewayInstanceId.NotFound", VpnGatewayId="vpn-x")
    stack.api.fails("DescribeVpnRouteEntries", 400, "MissingParameter.VpnGatewayId")
