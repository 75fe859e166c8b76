"""What the data plane writes, as the API shows it: Status, Diagnosis, traffic, health,
negotiation logs (DescribeVpnConnectionLogs) and auto-configured routes
(DescribeVpnRouteEntries). The data plane's side is played here by the store functions it
calls, on both databases."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import make_sealer, prepared
from tests.support.api import REGION, Api, build_world, connection_params, signed_query
from vpngw import accounts
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.store import queries
from vpngw.store.engine import Database

SIGNATURE_KEYS = {
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
}


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
    listed = stack.api.ok("DescribeVpnConnections", VpnGatewayId=world.vpn_gateway_id)["VpnConnections"][
        "VpnConnection"
    ]
    assert listed[0]["TrafficStatistics"] == traffic

    stack.observe(vco, status="ike_sa_not_established", diagnosis="Authentication failed: ...", traffic=None)
    assert (
        stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["Diagnosis"]
        == "Authentication failed: ..."
    )
    stack.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=vco, Name="renamed")
    assert (
        stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["Diagnosis"] != ""
    )  # a name changes no tunnel
    stack.api.ok(
        "ModifyVpnConnectionAttribute", VpnConnectionId=vco, IkeConfig=json.dumps({"Psk": "new-key-123"})
    )
    assert stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["Diagnosis"] == ""


def test_health_status_is_written_only_when_it_changes(stack: Stack) -> None:
    world = build_world(stack.api)
    check = {"enable": "true", "sip": "10.1.1.20", "dip": "10.10.1.7", "interval": "2", "retry": "3"}
    vco = stack.api.ok(
        "CreateVpnConnection", **connection_params(world, HealthCheckConfig=json.dumps(check))
    )["VpnConnectionId"]
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

    def logs(**params: object) -> dict[str, Any]:
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
    stack.api.fails(
        "DescribeVpnConnectionLogs", 404, "InvalidVpnConnectionInstanceId.NotFound", VpnConnectionId="vco-x"
    )


def test_route_entries_follow_auto_config_route(stack: Stack) -> None:
    world = build_world(stack.api)
    gateway = world.vpn_gateway_id

    def entries(**params: object) -> list[tuple[str, str]]:
        body = stack.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway, **params)
        return [(e["RouteDest"], e["NextHop"]) for e in body["VpnRouteEntries"]["VpnRouteEntry"]]

    auto = stack.api.ok(
        "CreateVpnConnection",
        **connection_params(world, AutoConfigRoute="true", RemoteSubnet="10.10.1.0/24,10.10.2.0/24"),
    )["VpnConnectionId"]
    manual = stack.api.ok(
        "CreateVpnConnection",
        **connection_params(
            world, AutoConfigRoute="false", LocalSubnet="10.2.0.0/24", RemoteSubnet="10.20.0.0/24"
        ),
    )["VpnConnectionId"]
    assert entries() == [("10.10.1.0/24", auto), ("10.10.2.0/24", auto)]
    body = stack.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway, PageSize=1, PageNumber=2)
    assert (body["TotalCount"], body["PageNumber"], body["PageSize"]) == (2, 2, 1)
    entry = body["VpnRouteEntries"]["VpnRouteEntry"][0]
    assert (entry["VpnInstanceId"], entry["Weight"], entry["State"], entry["RouteEntryType"]) == (
        gateway,
        100,
        "published",
        "custom",
    )
    assert entries(RouteEntryType="bgp") == []

    stack.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=manual, AutoConfigRoute="true")
    stack.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=auto, AutoConfigRoute="false")
    assert entries() == [("10.20.0.0/24", manual)]
    stack.api.ok("DeleteVpnConnection", VpnConnectionId=manual)
    assert entries() == []
    stack.api.fails(
        "DescribeVpnRouteEntries",
        400,
        "InvalidParameter.RouteEntryType",
        VpnGatewayId=gateway,
        RouteEntryType="x",
    )
    stack.api.fails(
        "DescribeVpnRouteEntries", 404, "InvalidVpnGatewayInstanceId.NotFound", VpnGatewayId="vpn-x"
    )
    stack.api.fails("DescribeVpnRouteEntries", 400, "MissingParameter.VpnGatewayId")


def test_log_windows_are_inclusive_at_second_precision(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    t = 1_700_000_000  # seconds
    stack.log(
        vco,
        (t * 1000 - 1, "before"),
        (t * 1000, "first"),
        (t * 1000 + 999, "first-late"),
        ((t + 60) * 1000 + 999, "last"),
        ((t + 61) * 1000, "after"),
    )

    def messages(**params: object) -> list[str]:
        body = stack.api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco, PageSize=50, **params)
        assert body["Count"] == len(body["Data"]["Logs"])
        return [line.split(" ", 2)[2] for line in body["Data"]["Logs"]]

    inside = ["first", "first-late", "last"]
    assert messages(From=t, To=t + 60) == inside
    assert messages(From=t, MinutePeriod=1) == inside  # [From, From + 60]
    assert messages(To=t + 60, MinutePeriod=1) == inside  # [To - 60, To]
    assert messages(From=t, To=t) == ["first", "first-late"]  # one second
    assert messages(From=t, To=t + 60, MinutePeriod=10) == inside  # From and To win over MinutePeriod
    assert messages(From=t - 1, To=t - 1) == ["before"]
    assert messages(From=t + 61, MinutePeriod=1) == ["after"]
    assert messages(To=30, MinutePeriod=1) == []  # a window reaching before 1970 is fine
    # Second precision, truncated, in UTC.
    line = stack.api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco, From=t, To=t, PageSize=1)["Data"][
        "Logs"
    ][0]
    assert line == "2023-11-14 22:13:20 first"


def test_log_paging_counts_everything_and_completes_on_the_last_page(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    base = 1_700_000_000
    stack.log(vco, *[((base + n) * 1000, f"line {n:02d}") for n in range(20)])

    def page(**params: object) -> tuple[int, int, int, bool, list[str]]:
        body = stack.api.ok(
            "DescribeVpnConnectionLogs", VpnConnectionId=vco, From=base, MinutePeriod=1, **params
        )
        return (
            body["Count"],
            body["PageNumber"],
            body["PageSize"],
            body["IsCompleted"],
            [line[-7:] for line in body["Data"]["Logs"]],
        )

    assert page() == (20, 1, 10, False, [f"line {n:02d}" for n in range(10)])  # defaults: page 1 of 10
    assert page(PageNumber=2) == (20, 2, 10, True, [f"line {n:02d}" for n in range(10, 20)])  # ends exactly
    assert page(PageNumber=3) == (20, 3, 10, True, [])  # past the end
    assert page(PageSize=20) == (20, 1, 20, True, [f"line {n:02d}" for n in range(20)])
    assert page(PageSize=7, PageNumber=3)[3:] == (True, [f"line {n:02d}" for n in range(14, 20)])
    # A single-tunnel connection has no tunnels: a TunnelId names none of them.
    stack.api.fails(
        "DescribeVpnConnectionLogs", 404, "InvalidTunnelId.NotFound", VpnConnectionId=vco, TunnelId="tun-x"
    )
    empty = stack.api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco, From=base - 600, MinutePeriod=5)
    assert (empty["Count"], empty["IsCompleted"], empty["Data"]) == (0, True, {"Logs": []})


def test_the_default_window_is_the_last_minute_period(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    now_ms = int(time.time() * 1000)
    stack.log(
        vco,
        (now_ms - 90_000, "[IKE] 90 s ago"),
        (now_ms - 30_000, "[IKE] 30 s ago"),
        (now_ms - 599_000, "[IKE] almost 10 min ago"),
    )

    def messages(**params: object) -> list[str]:
        logs = stack.api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco, **params)["Data"]["Logs"]
        return [line.split(" ", 2)[2] for line in logs]

    assert messages(MinutePeriod=1) == ["[IKE] 30 s ago"]
    assert messages(MinutePeriod=2) == ["[IKE] 90 s ago", "[IKE] 30 s ago"]
    assert messages() == ["[IKE] almost 10 min ago", "[IKE] 90 s ago", "[IKE] 30 s ago"]  # 10 minutes


def test_logs_belong_to_their_connection_only(stack: Stack) -> None:
    world = build_world(stack.api)
    mine = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    other = stack.api.ok(
        "CreateVpnConnection",
        **connection_params(world, LocalSubnet="10.2.0.0/24", RemoteSubnet="10.20.0.0/24"),
    )["VpnConnectionId"]
    t = 1_700_000_000
    stack.log(mine, (t * 1000, "mine"))
    stack.log(other, (t * 1000, "other"))

    def messages(vco: str) -> list[str]:
        logs = stack.api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco, From=t, To=t)["Data"]["Logs"]
        return [line.split(" ", 2)[2] for line in logs]

    assert (messages(mine), messages(other)) == (["mine"], ["other"])
    stack.api.ok("DeleteVpnConnection", VpnConnectionId=mine)
    assert messages(other) == ["other"]  # the other connection's lines stay
    stack.api.fails(
        "DescribeVpnConnectionLogs", 404, "InvalidVpnConnectionInstanceId.NotFound", VpnConnectionId=mine
    )
    assert stack.log(mine, (t * 1000, "too late")) == 0  # the data plane's late lines are dropped


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"RegionId": ""}, "MissingParameter.RegionId"),
        ({"RegionId": "cn-nowhere"}, "InvalidRegionId.NotFound"),
        ({"PageNumber": 0}, "InvalidParameter.PageNumber"),
        ({"PageSize": 0}, "InvalidParameter.PageSize"),
        ({"MinutePeriod": "1.5"}, "InvalidParameter.MinutePeriod"),
        ({"From": 1_671_003_744_000, "To": 1_671_004_344_000}, "InvalidParameter.From"),  # milliseconds
        ({"From": 2**40, "MinutePeriod": 1, "To": 2**40 + 1}, "InvalidParameter.To"),
        ({"To": 100, "MinutePeriod": ""}, "MissingParameter.FromOrMinutePeriod"),  # empty counts as absent
        ({"From": 100, "To": 99, "MinutePeriod": 5}, "IllegalParam.TimeRange"),
    ],
)
def test_more_bad_log_requests(stack: Stack, params: dict[str, object], code: str) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    status = 404 if code.endswith(".NotFound") else 400
    stack.api.fails("DescribeVpnConnectionLogs", status, code, VpnConnectionId=vco, **params)


def test_another_account_sees_neither_logs_nor_routes(stack: Stack, settings: Settings) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world, AutoConfigRoute="true"))[
        "VpnConnectionId"
    ]
    stack.log(vco, (int(time.time() * 1000), "[IKE] secret"))
    other = accounts.create_account(stack.db, make_sealer(), "tenant-b")
    theirs = Api(_KeyedClient(stack.api.client, other.access_key_id, other.access_key_secret))
    theirs.fails(
        "DescribeVpnConnectionLogs", 404, "InvalidVpnConnectionInstanceId.NotFound", VpnConnectionId=vco
    )
    theirs.fails(
        "DescribeVpnRouteEntries",
        404,
        "InvalidVpnGatewayInstanceId.NotFound",
        VpnGatewayId=world.vpn_gateway_id,
    )
    assert stack.api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco)["Count"] == 1


@dataclass
class _KeyedClient:
    """A client whose signed requests carry another key pair."""

    client: TestClient
    key_id: str
    secret: str

    def post(self, path: str, *, params: dict[str, str]) -> Any:
        unsigned = {k: v for k, v in params.items() if k not in SIGNATURE_KEYS}
        return self.client.post(
            path, params=signed_query("POST", unsigned, key_id=self.key_id, secret=self.secret)
        )


def test_both_actions_on_the_apsara_route(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world, AutoConfigRoute="true"))[
        "VpnConnectionId"
    ]
    t = 1_700_000_000
    stack.log(vco, (t * 1000, "[IKE] hello"))
    logs = stack.api.apsara(
        "DescribeVpnConnectionLogs",
        json={"RegionId": REGION, "VpnConnectionId": vco, "From": t, "MinutePeriod": 1, "PageSize": 5},
    )
    assert logs.status_code == 200, logs.text
    assert logs.json()["Data"] == {"Logs": ["2023-11-14 22:13:20 [IKE] hello"]}
    routes = stack.api.apsara(
        "DescribeVpnRouteEntries", form={"RegionId": REGION, "VpnGatewayId": world.vpn_gateway_id}
    )
    assert routes.status_code == 200, routes.text
    assert routes.json()["TotalCount"] == 1
    bad = stack.api.apsara(
        "DescribeVpnConnectionLogs", json={"RegionId": REGION, "VpnConnectionId": vco, "To": t}
    )
    assert (bad.status_code, bad.json()["Code"]) == (400, "MissingParameter.FromOrMinutePeriod")


def test_route_entries_carry_every_field_and_follow_changes(stack: Stack) -> None:
    world = build_world(stack.api)
    gateway = world.vpn_gateway_id
    vco = stack.api.ok(
        "CreateVpnConnection",
        **connection_params(world, AutoConfigRoute="true", RemoteSubnet="10.10.2.0/24,10.10.1.0/24"),
    )["VpnConnectionId"]
    created = stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["CreateTime"]
    # Another gateway's connections are not this gateway's routes.
    other_gateway = stack.api.ok("CreateVpnGateway", VpcId=world.vpc_id, Bandwidth=10)["VpnGatewayId"]
    stack.api.ok(
        "CreateVpnConnection",
        **connection_params(
            world, VpnGatewayId=other_gateway, AutoConfigRoute="true", RemoteSubnet="10.99.0.0/24"
        ),
    )
    body = stack.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway, RouteEntryType="custom")
    assert (body["TotalCount"], body["PageNumber"], body["PageSize"]) == (2, 1, 10)
    assert body["VpnRouteEntries"]["VpnRouteEntry"][0] == {
        "VpnInstanceId": gateway,
        "RouteDest": "10.10.2.0/24",
        "NextHop": vco,
        "Weight": 100,
        "State": "published",
        "CreateTime": created,
        "Source": "",
        "AsPath": "",
        "Community": "",
        "RouteEntryType": "custom",
        "NextHopTunnelId": "",
        "Description": f"auto-configured by {vco}",
    }
    # In the order of the connection's RemoteSubnet.
    assert [e["RouteDest"] for e in body["VpnRouteEntries"]["VpnRouteEntry"]] == [
        "10.10.2.0/24",
        "10.10.1.0/24",
    ]

    stack.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=vco, RemoteSubnet="10.30.0.0/24")
    entries = stack.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway)["VpnRouteEntries"][
        "VpnRouteEntry"
    ]
    assert [(e["RouteDest"], e["NextHop"]) for e in entries] == [("10.30.0.0/24", vco)]
    past = stack.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway, PageNumber=2)
    assert (past["TotalCount"], past["VpnRouteEntries"]) == (1, {"VpnRouteEntry": []})
    later = stack.api.ok(
        "CreateVpnConnection",
        **connection_params(
            world, AutoConfigRoute="true", LocalSubnet="10.3.0.0/24", RemoteSubnet="10.40.0.0/24"
        ),
    )["VpnConnectionId"]
    entries = stack.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway)["VpnRouteEntries"][
        "VpnRouteEntry"
    ]
    assert [e["NextHop"] for e in entries] == [vco, later]  # connections in creation order
    bad: list[tuple[dict[str, object], str]] = [
        ({"PageSize": 51}, "InvalidParameter.PageSize"),
        ({"PageSize": 0}, "InvalidParameter.PageSize"),
        ({"PageNumber": 0}, "InvalidParameter.PageNumber"),
        ({"RouteEntryType": "CUSTOMISED"}, "InvalidParameter.RouteEntryType"),
    ]
    for params, code in bad:
        stack.api.fails("DescribeVpnRouteEntries", 400, code, VpnGatewayId=gateway, **params)
    stack.api.ok("DeleteVpnConnection", VpnConnectionId=vco)
    stack.api.ok("DeleteVpnConnection", VpnConnectionId=later)
    assert stack.api.ok("DescribeVpnRouteEntries", VpnGatewayId=gateway)["TotalCount"] == 0
    stack.api.ok("DeleteVpnGateway", VpnGatewayId=gateway)
    stack.api.fails(
        "DescribeVpnRouteEntries", 404, "InvalidVpnGatewayInstanceId.NotFound", VpnGatewayId=gateway
    )


def test_diagnosis_is_cleared_only_when_the_tunnel_changes(stack: Stack) -> None:
    world = build_world(stack.api)
    vco = stack.api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    stored = stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    failing = "Authentication failed: the pre-shared keys differ."

    def diagnosed_after(**modify: object) -> str:
        stack.observe(vco, status="ike_sa_not_established", diagnosis=failing, traffic=None)
        answer = stack.api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=vco, **modify)["Diagnosis"]
        assert stack.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["Diagnosis"] == answer
        return str(answer)

    # What Terraform sends on every update: the same subnets and the same blocks again.
    assert (
        diagnosed_after(
            Name="renamed",
            LocalSubnet=stored["LocalSubnet"],
            RemoteSubnet=stored["RemoteSubnet"],
            IkeConfig=json.dumps(stored["IkeConfig"]),
            IpsecConfig=json.dumps(stored["IpsecConfig"]),
            EnableDpd="true",
            EnableNatTraversal="true",
        )
        == failing
    )
    assert diagnosed_after(AutoConfigRoute="true") == failing
    assert (
        diagnosed_after(
            HealthCheckConfig=json.dumps({"enable": "true", "sip": "10.1.1.20", "dip": "10.10.1.7"})
        )
        == failing
    )
    assert diagnosed_after(EnableDpd="false") == ""
    assert diagnosed_after(EnableNatTraversal="false") == ""
    assert diagnosed_after(RemoteSubnet="10.10.0.0/16") == ""
    assert diagnosed_after(LocalSubnet="10.1.1.0/24") == ""
    assert diagnosed_after(IpsecConfig=json.dumps({"IpsecPfs": "disabled"})) == ""
    assert diagnosed_after(IkeConfig=json.dumps({"IkeVersion": "ikev2"})) == ""
    listed = stack.api.ok("DescribeVpnConnections")["VpnConnections"]["VpnConnection"]
    assert listed[0]["Diagnosis"] == "" and listed[0]["TrafficStatistics"]["BytesIn"] == 0
