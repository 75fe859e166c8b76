"""The VPC-side next hop of each VPN gateway (docs/hosts.md, section 5): allocated from
``VPNGW_VPC_NEXT_HOP_POOL`` at CreateVpnGateway, unique, shown by DescribeVpnGateway(s),
a clear error when the pool is full, and given at an API server's start to gateways
created before it existed. On SQLite and on PostgreSQL (the pool lock differs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import Api
from vpngw.api.app import build_app
from vpngw.cli.database import assign_vpc_next_hops
from vpngw.config import Settings, settings_from_env
from vpngw.store import leases
from vpngw.store.engine import Database

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def tiny_pool(db_url: str) -> Iterator[tuple[Api, Database, Settings]]:
    """A pool with room for five next hops (its first host is never handed out)."""
    settings = Settings(db_url=db_url, vpc_next_hop_pool="10.9.0.0/29")
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        yield Api(client), db, settings
    db.dispose()


def _next_hop(api: Api, gateway_id: str) -> str:
    return str(api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["VpcNextHop"])


def test_each_gateway_gets_its_own_next_hop_from_the_pool(api: Api) -> None:
    vpc = api.ok("CreateVpc")["VpcId"]
    first = api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=5)["VpnGatewayId"]
    second = api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=5)["VpnGatewayId"]
    # The default pool (the lab's shared VPC segment), skipping its first host.
    assert (_next_hop(api, first), _next_hop(api, second)) == ("100.64.0.2", "100.64.0.3")
    listed = api.ok("DescribeVpnGateways", VpcId=vpc)["VpnGateways"]["VpnGateway"]
    assert {g["VpnGatewayId"]: g["VpcNextHop"] for g in listed} == {
        first: "100.64.0.2",
        second: "100.64.0.3",
    }
    assert (
        api.ok("ModifyVpnGatewayAttribute", VpnGatewayId=first, Name="gw-one")["VpcNextHop"] == "100.64.0.2"
    )
    # A freed address is handed out again (the data plane waits until the deleted
    # gateway is torn down before it runs the new one: docs/nodes.md).
    api.ok("DeleteVpnGateway", VpnGatewayId=first)
    third = api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=5)["VpnGatewayId"]
    assert _next_hop(api, third) == "100.64.0.2"


def test_a_full_pool_refuses_the_gateway_and_changes_nothing(
    tiny_pool: tuple[Api, Database, Settings],
) -> None:
    api, _db, _settings = tiny_pool
    vpc = api.ok("CreateVpc")["VpcId"]
    made = [api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=5)["VpnGatewayId"] for _ in range(5)]
    assert sorted(_next_hop(api, g) for g in made) == [f"10.9.0.{n}" for n in range(2, 7)]
    body = api.fails("CreateVpnGateway", 400, "Resource.QuotaFull", VpcId=vpc, Bandwidth=5)
    assert "VPNGW_VPC_NEXT_HOP_POOL" in body["Message"] and "next hop" in body["Message"]
    assert api.ok("DescribeVpnGateways", VpcId=vpc)["TotalCount"] == 5  # nothing half-written
    # The InternetIp it would have had is still free: the next gateway takes it.
    api.ok("DeleteVpnGateway", VpnGatewayId=made[0])
    again = api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=5)["VpnGatewayId"]
    described = api.ok("DescribeVpnGateway", VpnGatewayId=again)
    assert (described["InternetIp"], described["VpcNextHop"]) == ("198.18.0.2", "10.9.0.2")
    api.fails("CreateVpnGateway", 400, "Resource.QuotaFull", VpcId=vpc, Bandwidth=5)

    # The error is documented.
    errors = (DOCS / "errors.md").read_text()
    assert "VPNGW_VPC_NEXT_HOP_POOL" in errors


def test_gateways_older_than_next_hops_get_one_when_a_server_starts(
    tiny_pool: tuple[Api, Database, Settings],
) -> None:
    api, db, settings = tiny_pool
    vpc = api.ok("CreateVpc")["VpcId"]
    made = [api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=5)["VpnGatewayId"] for _ in range(2)]
    with db.transaction(write=True) as session:
        leases.sync_lease_rows(session, now_ms=0)  # as a node would have made them
        # As migration 0013 leaves gateways made before it (and their leases).
        session.execute(text("UPDATE vpn_gateways SET vpc_next_hop = NULL"))
        session.execute(text("UPDATE gateway_leases SET vpc_next_hop = NULL"))
    assert [_next_hop(api, g) for g in made] == ["", ""]
    assign_vpc_next_hops(db, settings)
    assert [_next_hop(api, g) for g in made] == ["10.9.0.2", "10.9.0.3"]  # in creation order
    with db.transaction(write=False) as session:
        assert {row.vpn_gateway_id: row.vpc_next_hop for row in leases.leases(session)} == {
            made[0]: "10.9.0.2",
            made[1]: "10.9.0.3",
        }
    assign_vpc_next_hops(db, settings)  # nothing left to do: unchanged
    assert [_next_hop(api, g) for g in made] == ["10.9.0.2", "10.9.0.3"]


def test_a_full_pool_at_start_leaves_the_rest_without_and_says_so(
    tiny_pool: tuple[Api, Database, Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    api, db, settings = tiny_pool
    vpc = api.ok("CreateVpc")["VpcId"]
    made = [api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=5)["VpnGatewayId"] for _ in range(2)]
    with db.transaction(write=True) as session:
        session.execute(text("UPDATE vpn_gateways SET vpc_next_hop = NULL"))
    smaller = Settings(db_url=settings.db_url, vpc_next_hop_pool="10.9.0.0/31")  # one address
    assign_vpc_next_hops(db, smaller)
    assert [_next_hop(api, g) for g in made] == ["10.9.0.1", ""]
    assert f"1 gateways have no VPC-side next hop ({made[1]})" in capsys.readouterr().err


def test_a_bad_pool_setting_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPNGW_VPC_NEXT_HOP_POOL", "10.0.0.1/24")
    with pytest.raises(ValueError, match="VPNGW_VPC_NEXT_HOP_POOL='10.0.0.1/24' is not an IPv4 network"):
        settings_from_env()
