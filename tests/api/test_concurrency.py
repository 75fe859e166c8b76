"""Concurrent clients against a real server: idempotency, quota and address allocation
must hold under races, on SQLite and on PostgreSQL, and nothing may answer 5xx."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.support.api import REGION, Api, build_world, connection_params, signed_query


def _post(server_url: str, action: str, params: dict[str, Any]) -> httpx.Response:
    query = {"Action": action, "RegionId": REGION, **{k: str(v) for k, v in params.items()}}
    with httpx.Client(base_url=server_url, timeout=30) as client:
        return client.post("/", params=signed_query("POST", query))


def _together(server_url: str, calls: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: _post(server_url, *call), calls))


def test_concurrent_retries_with_one_client_token_create_one_connection(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        world = build_world(Api(client))
    params = connection_params(world, ClientToken="same-token-everywhere")
    responses = _together(server_url, [("CreateVpnConnection", params)] * 8)
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert len({r.json()["VpnConnectionId"] for r in responses}) == 1
    listed = _post(server_url, "DescribeVpnConnections", {}).json()
    assert listed["TotalCount"] == 1


def test_concurrent_creates_respect_the_gateway_quota(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        world = build_world(Api(client))
    calls = [
        ("CreateVpnConnection", connection_params(world, LocalSubnet=f"10.1.{n}.0/24")) for n in range(12)
    ]
    responses = _together(server_url, calls)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [400] * 2, [r.text for r in responses]
    assert {r.json()["Code"] for r in responses if r.status_code == 400} == {"Resource.QuotaFull"}
    assert _post(server_url, "DescribeVpnConnections", {"PageSize": 50}).json()["TotalCount"] == 10


def test_concurrent_conflicting_creates_let_one_through(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        world = build_world(Api(client))
    calls = [
        (
            "CreateVpnConnection",
            connection_params(world, LocalSubnet="10.7.0.0/16", RemoteSubnet="10.77.0.0/16"),
        )
    ] * 6
    responses = _together(server_url, calls)
    assert sorted(r.status_code for r in responses) == [200] + [400] * 5, [r.text for r in responses]


def test_concurrent_gateways_get_distinct_addresses(server_url: str) -> None:
    vpc = _post(server_url, "CreateVpc", {}).json()["VpcId"]
    responses = _together(server_url, [("CreateVpnGateway", {"VpcId": vpc, "Bandwidth": 5})] * 8)
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    described = [
        _post(server_url, "DescribeVpnGateway", {"VpnGatewayId": r.json()["VpnGatewayId"]}).json()
        for r in responses
    ]
    assert len({gateway["InternetIp"] for gateway in described}) == 8
    # Their VPC-side next hops too (one pool lock for both pools).
    assert len({gateway["VpcNextHop"] for gateway in described}) == 8
    assert all(gateway["VpcNextHop"].startswith("100.64.0.") for gateway in described)
