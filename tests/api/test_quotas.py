"""Per-account quotas of VPCs, VPN gateways and customer gateways (issue 15, item 8).

Counted per account and region, set by the operator (``vpngw account quota``), answered as
``Resource.QuotaFull`` naming the quota, and held under concurrent creates on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from tests.conftest import make_sealer, prepared
from tests.support.api import REGION, Api, signed_query
from tests.support.servers import live_server
from vpngw import accounts
from vpngw.api.app import build_app
from vpngw.cli.main import main
from vpngw.config import Settings
from vpngw.store.engine import Database

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def small(db_url: str) -> Settings:
    return Settings(db_url=db_url, quota_vpcs=2, quota_vpn_gateways=2, quota_customer_gateways=2)


@pytest.fixture
def stack(small: Settings) -> Iterator[tuple[Api, Database]]:
    db, authenticator = prepared(small)
    with TestClient(build_app(db, small, authenticator), raise_server_exceptions=False) as client:
        yield Api(client), db
    db.dispose()


def _full(api: Api, action: str, quota: str, **params: object) -> None:
    body = api.fails(action, 400, "Resource.QuotaFull", **params)
    assert f"quota {quota} " in body["Message"], body["Message"]


def test_each_quota_is_counted_per_account_and_region(stack: tuple[Api, Database]) -> None:
    api, db = stack
    vpcs = [api.ok("CreateVpc")["VpcId"] for _ in range(2)]
    _full(api, "CreateVpc", "vpcs")
    api.ok("CreateVpc", RegionId="cn-hangzhou")  # another region has its own count
    gateways = [api.ok("CreateVpnGateway", VpcId=vpcs[0], Bandwidth=5)["VpnGatewayId"] for _ in range(2)]
    _full(api, "CreateVpnGateway", "vpn_gateways", VpcId=vpcs[1], Bandwidth=5)
    for n in range(2):
        api.ok("CreateCustomerGateway", IpAddress=f"198.19.1.{n + 1}")
    _full(api, "CreateCustomerGateway", "customer_gateways", IpAddress="198.19.1.9")
    # A delete frees a place.
    api.ok("DeleteVpnGateway", VpnGatewayId=gateways[0])
    api.ok("CreateVpnGateway", VpcId=vpcs[1], Bandwidth=5)
    # Another account has quotas of its own.
    other = accounts.create_account(db, make_sealer(), "tenant-b")
    response = api.client.post(
        "/",
        params=signed_query(
            "POST",
            {"Action": "CreateVpc", "RegionId": REGION},
            key_id=other.access_key_id,
            secret=other.access_key_secret,
        ),
    )
    assert response.status_code == 200, response.text
    # The operator raises the first account's VPC quota; a create fits again.
    accounts.set_quotas(db, "default", {"vpcs": 3})
    api.ok("CreateVpc")
    _full(api, "CreateVpc", "vpcs")
    # The per-gateway connection quota stays as it was.
    assert "max_connections_per_gateway" in Settings.__dataclass_fields__


def test_concurrent_creates_never_exceed_the_quota(db_url: str) -> None:
    settings = Settings(db_url=db_url)
    db, authenticator = prepared(settings)
    accounts.set_quotas(db, "default", {"vpcs": 3, "customer_gateways": 2})
    codes: list[tuple[int, str]] = []
    lock = threading.Lock()
    with live_server(db, settings, authenticator) as url:

        def create(action: str, params: dict[str, str]) -> None:
            query = {"Action": action, "RegionId": REGION, **params}
            with httpx.Client(base_url=url, timeout=60) as client:
                response = client.post("/", params=signed_query("POST", query))
            with lock:
                codes.append((response.status_code, response.json().get("Code", "")))

        threads = [threading.Thread(target=create, args=("CreateVpc", {})) for _ in range(12)]
        threads += [
            threading.Thread(
                target=create, args=("CreateCustomerGateway", {"IpAddress": f"198.19.2.{n + 1}"})
            )
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with httpx.Client(base_url=url, timeout=60) as client:
            api = Api(client)
            assert api.ok("DescribeVpcs")["TotalCount"] == 3
            assert api.ok("DescribeCustomerGateways")["TotalCount"] == 2
    assert all(status < 500 for status, _code in codes), codes
    assert sorted(codes).count((200, "")) == 5, codes
    assert sorted(codes).count((400, "Resource.QuotaFull")) == 15, codes


def test_vpngw_account_quota_shows_and_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert main(["account", "create", "tenant", "--db", url]) == 0
    capsys.readouterr()
    assert main(["account", "quota", "tenant", "--db", url]) == 0
    shown = json.loads(capsys.readouterr().out)["Quotas"]
    assert {kind: (q["Quota"], q["Default"]) for kind, q in shown.items()} == {
        "vpcs": (10, True),
        "vpn_gateways": (500, True),
        "customer_gateways": (100, True),
    }
    assert main(["account", "quota", "tenant", "--vpcs", "3", "--vpn-gateways", "0", "--db", url]) == 0
    shown = json.loads(capsys.readouterr().out)["Quotas"]
    assert (shown["vpcs"]["Quota"], shown["vpcs"]["Default"]) == (3, False)
    assert shown["vpn_gateways"]["Quota"] == 0 and shown["customer_gateways"]["Default"] is True
    assert main(["account", "quota", "tenant", "--vpcs", "default", "--db", url]) == 0
    assert json.loads(capsys.readouterr().out)["Quotas"]["vpcs"] == {
        "Quota": 10,
        "Default": True,
        "HeldPerRegion": {},
    }
    with pytest.raises(SystemExit):
        main(["account", "quota", "tenant", "--vpcs", "-1", "--db", url])


def test_the_defaults_are_documented() -> None:
    defaults = Settings()
    text = (DOCS / "security.md").read_text()
    for option, value in (
        ("VPNGW_QUOTA_VPCS", defaults.quota_vpcs),
        ("VPNGW_QUOTA_VPN_GATEWAYS", defaults.quota_vpn_gateways),
        ("VPNGW_QUOTA_CUSTOMER_GATEWAYS", defaults.quota_customer_gateways),
    ):
        assert f"`{option}` (default {value})" in text, option
    assert defaults.quota_vpn_gateways == 500
