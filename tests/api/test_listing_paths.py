"""DescribeVpnConnections on the DBAPI cursor (describe_vpn_connections_listed) answers exactly
what the ORM path answers: every page, filter and page size, deep pages seeking from cached
boundaries included, observers (lease rows) and tags, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import REGION, Api, build_world, connection_params
from vpngw.actions import vpn_connections as vco
from vpngw.actions.dispatch import find_action, parse_params
from vpngw.actions.framework import Context
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.sealing import Sealer
from vpngw.store import queries
from vpngw.store.direct import NeedsSession
from vpngw.store.engine import Database
from vpngw.store.models import GatewayLease


@pytest.fixture
def listed(settings: Settings) -> Iterator[tuple[Api, Database, Sealer]]:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        yield Api(client), db, authenticator.sealer
    db.dispose()


def _both(db: Database, ctx: Context, **given: str) -> tuple[dict[str, Any], dict[str, Any]]:
    params = parse_params(find_action("DescribeVpnConnections"), {"RegionId": REGION, **given})
    assert isinstance(params, vco.DescribeVpnConnectionsParams)
    with db.transaction(write=False) as session:
        orm = vco.describe_vpn_connections(ctx, session, params).model_dump(by_alias=True, mode="json")
    with db.direct(write=False) as tx:
        direct = vco.describe_vpn_connections_listed(ctx, tx, params).model_dump(by_alias=True, mode="json")
    return orm, direct


def test_every_page_is_the_orm_page(
    listed: tuple[Api, Database, Sealer], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, db, sealer = listed
    monkeypatch.setattr(queries, "PAGE_BOUNDARY_EVERY", 4)  # deep pages seek from boundaries
    world = build_world(api)
    second = api.ok("CreateVpnGateway", VpcId=world.vpc_id, Bandwidth=10)["VpnGatewayId"]
    third = api.ok("CreateVpnGateway", VpcId=world.vpc_id, Bandwidth=10)["VpnGatewayId"]
    other_customer = api.ok("CreateCustomerGateway", IpAddress="198.19.0.99")["CustomerGatewayId"]
    ids = []
    for n in range(23):
        gateway = (world.vpn_gateway_id, second, third)[n % 3]
        extra: dict[str, Any] = {"VpnGatewayId": gateway, "LocalSubnet": f"10.{n}.0.0/24"}
        if n % 4 == 1:
            extra["CustomerGatewayId"] = other_customer
        if n % 5 == 2:
            extra.update(
                {"Tags.1.Key": "team", "Tags.1.Value": f"t{n}", "Tags.2.Key": "a", "Tags.2.Value": "b"}
            )
        if n % 6 == 3:
            extra["IkeConfig"] = json.dumps({"IkeVersion": "ikev2", "Psk": f"secret-{n}"})
            extra["HealthCheckConfig"] = json.dumps(
                {"enable": True, "dip": "10.10.1.1", "sip": f"10.{n}.0.1", "interval": 5}
            )
        ids.append(api.ok("CreateVpnConnection", **connection_params(world, **extra))["VpnConnectionId"])
    api.ok("DeleteVpnConnection", VpnConnectionId=ids.pop(7))  # a gap in the keys
    now_ms = int(time.time() * 1000)
    with db.transaction(write=True) as session:
        # Observers: one gateway held and confirmed, one held by a silent node; the third has none.
        session.add(
            GatewayLease(
                vpn_gateway_id=world.vpn_gateway_id,
                internet_ip="x",
                holder="node-a",
                expires_ms=now_ms + 60_000,
                epoch=1,
                observed_by="node-a",
                observed_until_ms=now_ms + 60_000,
                pass_error="",
            )
        )
        session.add(
            GatewayLease(
                vpn_gateway_id=second, internet_ip="y", holder="node-b", expires_ms=now_ms + 60_000, epoch=1
            )
        )
    ctx = Context(
        account_id=settings.default_account_id,
        request_id="r",
        settings=settings,
        now_ms=now_ms,
        host="h",
        sealer=sealer,
    )
    filters: list[dict[str, Any]] = [
        {},
        {"VpnGatewayId": second},
        {"CustomerGatewayId": other_customer},
        {"VpnConnectionId": ids[4]},
        {"VpnGatewayId": third, "CustomerGatewayId": world.customer_gateway_id},
        {"VpnGatewayId": "vpn-none"},
    ]
    seen = 0
    for given in filters:
        for size in (1, 3, 4, 7, 50):
            given = {key: str(value) for key, value in given.items()}
            for number in range(1, 25 // size + 3):
                orm, direct = _both(db, ctx, PageSize=str(size), PageNumber=str(number), **given)
                assert json.dumps(direct) == json.dumps(orm), (given, size, number)
                seen += len(orm["VpnConnections"]["VpnConnection"])
    assert seen > 100
    # What the listing shows came through: tags, observers' verdicts, opened Psks.
    orm, _ = _both(db, ctx, PageSize="50")
    items = orm["VpnConnections"]["VpnConnection"]
    assert len(items) == 22 and orm["TotalCount"] == 22
    assert {tag["Key"] for item in items for tag in item["Tag"]["Tag"]} == {"team", "a"}
    assert any("has not confirmed" in item["Diagnosis"] for item in items)
    assert any(item["IkeConfig"]["Psk"] == "secret-3" for item in items)


def test_what_the_cursor_path_does_not_serve_goes_to_the_session(
    listed: tuple[Api, Database, Sealer], settings: Settings
) -> None:
    api, db, sealer = listed
    world = build_world(api)
    api.ok("CreateVpnConnection", **connection_params(world))
    ctx = Context(settings.default_account_id, "r", settings, int(time.time() * 1000), "h", sealer)
    params = parse_params(find_action("DescribeVpnConnections"), {"RegionId": REGION, "Tag.1.Key": "team"})
    assert isinstance(params, vco.DescribeVpnConnectionsParams) and params.tag
    with db.direct(write=False) as tx, pytest.raises(NeedsSession):
        vco.describe_vpn_connections_listed(ctx, tx, params)
