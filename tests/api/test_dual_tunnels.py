"""Dual-tunnel gateways and connections over HTTP (issue #20, the API half), on SQLite and
PostgreSQL: CreateVpnGateway with DisasterRecoveryVSwitchId, TunnelOptionsSpecification on
Create/ModifyVpnConnectionAttribute, ModifyTunnelAttribute, the per-tunnel Describe fields,
logs, download and diagnosis; every bad input a specific error with nothing written."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import Api
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.store import queries
from vpngw.store.engine import Database
from vpngw.store.models import GatewayLease

TOS = "TunnelOptionsSpecification"


@dataclass
class Dual:
    api: Api
    db: Database
    vpc_id: str
    gateway_id: str
    internet_ip: str
    second_ip: str
    cgw1: str
    cgw2: str
    cgw1_ip: str = "198.19.0.10"
    cgw2_ip: str = "198.19.0.11"

    def rows(self) -> dict[str, int]:
        """How many rows each table touched by a connection write holds."""
        with self.db.engine.connect() as connection:
            return {
                table: int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in (
                    "vpn_connections",
                    "vpn_connection_tunnels",
                    "resource_tags",
                    "idempotency_records",
                )
            }

    def tunnels(self, **extra: Any) -> dict[str, Any]:
        """A valid TunnelOptionsSpecification (entry 1 master on cgw1, entry 2 slave on cgw2)."""
        return {
            f"{TOS}.1.CustomerGatewayId": self.cgw1,
            f"{TOS}.1.Role": "master",
            f"{TOS}.2.CustomerGatewayId": self.cgw2,
            f"{TOS}.2.Role": "slave",
            **extra,
        }

    def create(self, **extra: Any) -> str:
        params = {
            "VpnGatewayId": self.gateway_id,
            "LocalSubnet": "10.1.1.0/24",
            "RemoteSubnet": "10.10.1.0/24",
        }
        params.update(self.tunnels())
        params.update(extra)
        return str(self.api.ok("CreateVpnConnection", **params)["VpnConnectionId"])


@pytest.fixture
def dual(settings: Settings) -> Iterator[Dual]:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        api = Api(client)
        vpc = api.ok("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
        gateway = api.ok(
            "CreateVpnGateway", VpcId=vpc, Bandwidth=10, VSwitchId="vsw-a", DisasterRecoveryVSwitchId="vsw-b"
        )["VpnGatewayId"]
        got = api.ok("DescribeVpnGateway", VpnGatewayId=gateway)
        cgw1 = api.ok("CreateCustomerGateway", IpAddress="198.19.0.10")["CustomerGatewayId"]
        cgw2 = api.ok("CreateCustomerGateway", IpAddress="198.19.0.11")["CustomerGatewayId"]
        yield Dual(api, db, vpc, gateway, got["InternetIp"], got["DisasterRecoveryInternetIp"], cgw1, cgw2)
    db.dispose()


def test_a_dual_tunnel_gateway_has_two_addresses(dual: Dual) -> None:
    api = dual.api
    got = api.ok("DescribeVpnGateway", VpnGatewayId=dual.gateway_id)
    assert got["VSwitchId"] == "vsw-a" and got["DisasterRecoveryVSwitchId"] == "vsw-b"
    assert dual.internet_ip and dual.second_ip and dual.internet_ip != dual.second_ip
    assert (got["NodeName"], got["DisasterRecoveryNodeName"]) == ("", "")
    listed = api.ok("DescribeVpnGateways")["VpnGateways"]["VpnGateway"]
    assert [(g["InternetIp"], g["DisasterRecoveryInternetIp"]) for g in listed] == [
        (dual.internet_ip, dual.second_ip)
    ]
    # A single-tunnel gateway: no second address, and the pool skips both of the first one's.
    single = api.ok("CreateVpnGateway", VpcId=dual.vpc_id, Bandwidth=10)["VpnGatewayId"]
    other = api.ok("DescribeVpnGateway", VpnGatewayId=single)
    assert other["DisasterRecoveryInternetIp"] == "" and other["DisasterRecoveryVSwitchId"] == ""
    assert other["InternetIp"] not in (dual.internet_ip, dual.second_ip)
    # The node holding each address, from the two lease rows (the data plane writes them).
    with dual.db.transaction(write=True) as session:
        for key, node in ((dual.gateway_id, "node-a"), (dual.gateway_id + ".dr", "node-b")):
            session.add(
                GatewayLease(
                    vpn_gateway_id=key, internet_ip="x", holder=node, expires_ms=2**62, epoch=1, pass_error=""
                )
            )
    got = api.ok("DescribeVpnGateway", VpnGatewayId=dual.gateway_id)
    assert (got["NodeName"], got["DisasterRecoveryNodeName"]) == ("node-a", "node-b")


def test_bad_gateway_inputs(dual: Dual) -> None:
    api = dual.api
    before = api.ok("DescribeVpnGateways")["TotalCount"]
    api.fails(
        "CreateVpnGateway",
        400,
        "MissingParameter.VSwitchId",
        VpcId=dual.vpc_id,
        Bandwidth=10,
        DisasterRecoveryVSwitchId="vsw-b",
    )
    api.fails(
        "CreateVpnGateway",
        400,
        "InvalidParameter.DisasterRecoveryVSwitchId",
        VpcId=dual.vpc_id,
        Bandwidth=10,
        VSwitchId="vsw-a",
        DisasterRecoveryVSwitchId="vsw-a",
    )
    api.fails(
        "CreateVpnGateway",
        400,
        "InvalidParameter.DisasterRecoveryVSwitchId",
        VpcId=dual.vpc_id,
        Bandwidth=10,
        VSwitchId="vsw-a",
        DisasterRecoveryVSwitchId="v" * 65,
    )
    assert api.ok("DescribeVpnGateways")["TotalCount"] == before


def test_create_fills_the_public_defaults_per_tunnel(dual: Dual) -> None:
    vco = dual.create()
    got = dual.api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    options = got["TunnelOptionsSpecification"]["TunnelOptions"]
    assert [(t["TunnelIndex"], t["Role"], t["CustomerGatewayId"], t["InternetIp"]) for t in options] == [
        (1, "master", dual.cgw1, dual.internet_ip),
        (2, "slave", dual.cgw2, dual.second_ip),
    ]
    psks = []
    for tunnel, remote in zip(options, (dual.cgw1_ip, dual.cgw2_ip), strict=True):
        assert tunnel["TunnelId"].startswith("tun-") and len(tunnel["TunnelId"]) == 25
        assert (tunnel["State"], tunnel["Status"], tunnel["ZoneNo"]) == (
            "active",
            "ike_sa_not_established",
            "",
        )
        assert "not known to be established" in tunnel["Diagnosis"]
        assert (tunnel["EnableDpd"], tunnel["EnableNatTraversal"]) == ("true", "true")
        ike = dict(tunnel["TunnelIkeConfig"])
        psks.append(ike.pop("Psk"))
        assert ike == {
            "IkeVersion": "ikev1",
            "IkeMode": "main",
            "IkeEncAlg": "aes",
            "IkeAuthAlg": "md5",
            "IkePfs": "group2",
            "IkeLifetime": 86400,
            "LocalId": tunnel["InternetIp"],
            "RemoteId": remote,
        }
        assert tunnel["TunnelIpsecConfig"] == {
            "IpsecEncAlg": "aes",
            "IpsecAuthAlg": "md5",
            "IpsecPfs": "group2",
            "IpsecLifetime": 86400,
        }
    assert all(len(p) == 16 and p.isalnum() for p in psks) and psks[0] != psks[1]
    # The top level mirrors the master tunnel; the Status summarises both tunnels.
    assert got["CustomerGatewayId"] == dual.cgw1 and got["IkeConfig"]["Psk"] == psks[0]
    assert got["Status"] == "ike_sa_not_established" and got["State"] == "active"
    assert got["Diagnosis"].count("Tunnel tun-") == 2
    listed = dual.api.ok("DescribeVpnConnections")["VpnConnections"]["VpnConnection"][0]
    assert listed["TunnelOptionsSpecification"] == got["TunnelOptionsSpecification"]


def test_every_tunnel_setting_is_honoured_and_sealed_at_rest(dual: Dual) -> None:
    vco = dual.create(
        **{
            f"{TOS}.1.Role": "slave",
            f"{TOS}.2.Role": "master",
            f"{TOS}.1.EnableDpd": "False",
            f"{TOS}.2.EnableNatTraversal": "false",
            f"{TOS}.1.TunnelIkeConfig.Psk": "first*psk/1",
            f"{TOS}.1.TunnelIkeConfig.IkeVersion": "ikev2",
            f"{TOS}.1.TunnelIkeConfig.LocalId": "gw.example",
            f"{TOS}.1.TunnelIkeConfig.IkeLifetime": "3600",
            f"{TOS}.2.TunnelIkeConfig.Psk": "second-psk",
            f"{TOS}.2.TunnelIkeConfig.RemoteId": "peer2.example",
            f"{TOS}.2.TunnelIpsecConfig.IpsecPfs": "disabled",
            f"{TOS}.2.TunnelIpsecConfig.IpsecEncAlg": "AES256",
        }
    )
    options = dual.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["TunnelOptionsSpecification"][
        "TunnelOptions"
    ]
    first, second = options
    assert (first["Role"], first["EnableDpd"], first["EnableNatTraversal"]) == ("slave", "false", "true")
    assert first["TunnelIkeConfig"]["Psk"] == "first*psk/1"
    assert (first["TunnelIkeConfig"]["IkeVersion"], first["TunnelIkeConfig"]["IkeLifetime"]) == (
        "ikev2",
        3600,
    )
    assert first["TunnelIkeConfig"]["LocalId"] == "gw.example"
    assert (second["Role"], second["EnableNatTraversal"]) == ("master", "false")
    assert second["TunnelIkeConfig"]["RemoteId"] == "peer2.example"
    assert second["TunnelIpsecConfig"]["IpsecPfs"] == "disabled"
    assert second["TunnelIpsecConfig"]["IpsecEncAlg"] == "aes256"
    top = dual.api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert top["CustomerGatewayId"] == dual.cgw2 and top["IkeConfig"]["Psk"] == "second-psk"
    with dual.db.engine.connect() as connection:
        stored = " ".join(
            str(row[0]) for row in connection.execute(text("SELECT ike_config FROM vpn_connection_tunnels"))
        )
    assert "first*psk/1" not in stored and "second-psk" not in stored and "sealed:v1:" in stored


def test_the_customer_gateway_filter_finds_either_tunnel(dual: Dual) -> None:
    """DescribeVpnConnections' CustomerGatewayId finds a connection by the customer
    gateway of its master tunnel or of its slave tunnel."""
    api = dual.api
    cgw3 = api.ok("CreateCustomerGateway", IpAddress="198.19.0.12")["CustomerGatewayId"]
    first = dual.create()  # master on cgw1, slave on cgw2
    second = dual.create(
        RemoteSubnet="10.10.2.0/24",
        **{f"{TOS}.1.CustomerGatewayId": dual.cgw2, f"{TOS}.2.CustomerGatewayId": cgw3},
    )
    expected = {dual.cgw1: [first], dual.cgw2: [first, second], cgw3: [second]}
    for cgw, ids in expected.items():
        got = api.ok("DescribeVpnConnections", CustomerGatewayId=cgw, PageSize=1)
        assert got["TotalCount"] == len(ids)
        listed = api.ok("DescribeVpnConnections", CustomerGatewayId=cgw)["VpnConnections"]["VpnConnection"]
        assert [c["VpnConnectionId"] for c in listed] == ids
    assert api.ok("DescribeVpnConnections", CustomerGatewayId="cgw-nothere")["TotalCount"] == 0
    both = api.ok("DescribeVpnConnections", CustomerGatewayId=cgw3, VpnGatewayId=dual.gateway_id)
    assert [c["VpnConnectionId"] for c in both["VpnConnections"]["VpnConnection"]] == [second]


def test_tunnel_index_orders_the_entries(dual: Dual) -> None:
    vco = dual.create(**{f"{TOS}.1.TunnelIndex": "2", f"{TOS}.2.TunnelIndex": "1"})
    options = dual.api.ok("DescribeVpnConnection", VpnConnectionId=vco)["TunnelOptionsSpecification"][
        "TunnelOptions"
    ]
    assert [(t["TunnelIndex"], t["CustomerGatewayId"], t["Role"]) for t in options] == [
        (1, dual.cgw2, "slave"),
        (2, dual.cgw1, "master"),
    ]


BAD_CREATES: list[tuple[dict[str, Any], int, str]] = [
    ({f"{TOS}.2.Role": "master"}, 400, "InvalidParameter.TunnelOptionsSpecification.Role"),
    ({f"{TOS}.1.Role": "primary"}, 400, "InvalidParameter.TunnelOptionsSpecification.Role"),
    (
        {f"{TOS}.3.Role": "slave", f"{TOS}.3.CustomerGatewayId": "cgw-x"},
        400,
        "InvalidParameter.TunnelOptionsSpecification",
    ),
    ({f"{TOS}.1.Colour": "red"}, 400, "InvalidParameter.TunnelOptionsSpecification"),
    ({f"{TOS}.1.EnableDpd": "yes"}, 400, "InvalidParameter.TunnelOptionsSpecification.EnableDpd"),
    (
        {f"{TOS}.2.EnableNatTraversal": "1"},
        400,
        "InvalidParameter.TunnelOptionsSpecification.EnableNatTraversal",
    ),
    ({f"{TOS}.1.TunnelIndex": "3"}, 400, "InvalidParameter.TunnelOptionsSpecification.TunnelIndex"),
    (
        {f"{TOS}.1.TunnelIndex": "1", f"{TOS}.2.TunnelIndex": "1"},
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIndex",
    ),
    ({f"{TOS}.1.TunnelId": "tun-1"}, 400, "InvalidParameter.TunnelOptionsSpecification.TunnelId"),
    (
        {f"{TOS}.1.TunnelIkeConfig.Psk": "has space"},
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig.Psk",
    ),
    (
        {f"{TOS}.1.TunnelIkeConfig.Psk": "x" * 101},
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig.Psk",
    ),
    (
        {f"{TOS}.2.TunnelIkeConfig.IkePfs": "group3"},
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig.IkePfs",
    ),
    (
        {f"{TOS}.2.TunnelIkeConfig.IkeVersion": "ikev3"},
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig.IkeVersion",
    ),
    (
        {f"{TOS}.1.TunnelIkeConfig.IkeLifetime": "86401"},
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig.IkeLifetime",
    ),
    (
        {f"{TOS}.1.TunnelIkeConfig.LocalId": "a b"},
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig.LocalId",
    ),
    (
        {f"{TOS}.1.TunnelIkeConfig.Nope": "x"},
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig",
    ),
    (
        {f"{TOS}.1.TunnelIpsecConfig.IpsecAuthAlg": "sha3"},
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIpsecConfig.IpsecAuthAlg",
    ),
    (
        {f"{TOS}.2.TunnelIpsecConfig.IpsecLifetime": "-1"},
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIpsecConfig.IpsecLifetime",
    ),
    ({f"{TOS}.1.TunnelBgpConfig.LocalAsn": "65000"}, 400, "OperationUnsupported.Bgp"),
    ({f"{TOS}.2.RemoteCaCertificate": "-----BEGIN"}, 400, "OperationUnsupported.RemoteCaCertificate"),
    ({f"{TOS}.2.CustomerGatewayId": "cgw-nothere"}, 404, "InvalidCustomerGatewayInstanceId.NotFound"),
    ({"IkeConfig": json.dumps({"Psk": "top"})}, 400, "IncorrectTunnelMode.DualTunnelGateway"),
    ({"IpsecConfig": json.dumps({"IpsecPfs": "group5"})}, 400, "IncorrectTunnelMode.DualTunnelGateway"),
    # A top-level flag that disagrees with the tunnels' (both on by default).
    ({"EnableDpd": "false"}, 400, "IncorrectTunnelMode.DualTunnelGateway"),
    ({"EnableNatTraversal": "false"}, 400, "IncorrectTunnelMode.DualTunnelGateway"),
    (
        {"EnableDpd": "true", f"{TOS}.2.EnableDpd": "false"},
        400,
        "IncorrectTunnelMode.DualTunnelGateway",
    ),
    ({"EnableTunnelsBgp": "true"}, 400, "OperationUnsupported.EnableTunnelsBgp"),
]


def test_top_level_flags_that_echo_the_tunnels_are_accepted(dual: Dual) -> None:
    """Terraform's provider sends EnableDpd / EnableNatTraversal whenever its state knows
    them (read from the top level, a copy of the master tunnel's): an echo is no error."""
    api = dual.api
    base = {"VpnGatewayId": dual.gateway_id, "LocalSubnet": "10.1.1.0/24", "RemoteSubnet": "10.10.1.0/24"}
    created = api.ok(
        "CreateVpnConnection", **base, **dual.tunnels(), EnableDpd="true", EnableNatTraversal="true"
    )
    vco = created["VpnConnectionId"]
    got = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert [t["EnableDpd"] for t in got["TunnelOptionsSpecification"]["TunnelOptions"]] == ["true", "true"]
    assert got["EnableDpd"] is True
    renamed = api.ok(
        "ModifyVpnConnectionAttribute",
        VpnConnectionId=vco,
        Name="echo",
        EnableDpd="true",
        EnableNatTraversal="true",
    )
    assert renamed["Name"] == "echo"
    api.fails(
        "ModifyVpnConnectionAttribute",
        400,
        "IncorrectTunnelMode.DualTunnelGateway",
        VpnConnectionId=vco,
        EnableDpd="false",
    )
    assert api.ok("DescribeVpnConnection", VpnConnectionId=vco)["Name"] == "echo"


def test_bad_tunnel_options_get_specific_errors_and_write_nothing(dual: Dual) -> None:
    api = dual.api
    base = {"VpnGatewayId": dual.gateway_id, "LocalSubnet": "10.1.1.0/24", "RemoteSubnet": "10.10.1.0/24"}
    empty = dual.rows()
    for extra, status, code in BAD_CREATES:
        body = api.fails(
            "CreateVpnConnection", status, code, **{**base, **dual.tunnels(), **extra}, ClientToken="t1"
        )
        assert "top" not in body["Message"] and "has space" not in body["Message"]
        assert dual.rows() == empty, code
    # The top-level CustomerGatewayId belongs to single-tunnel gateways.
    api.fails(
        "CreateVpnConnection",
        400,
        "IncorrectTunnelMode.DualTunnelGateway",
        **base,
        **dual.tunnels(),
        CustomerGatewayId=dual.cgw1,
    )
    # Missing pieces.
    api.fails("CreateVpnConnection", 400, "MissingParameter.TunnelOptionsSpecification", **base)
    api.fails(
        "CreateVpnConnection",
        400,
        "MissingParameter.TunnelOptionsSpecification",
        **base,
        CustomerGatewayId=dual.cgw1,
    )
    without_role = {k: v for k, v in dual.tunnels().items() if k != f"{TOS}.2.Role"}
    body = api.fails(
        "CreateVpnConnection", 400, "MissingParameter.TunnelOptionsSpecification.Role", **base, **without_role
    )
    assert f"{TOS}.2.Role" in body["Message"]
    without_cgw = {k: v for k, v in dual.tunnels().items() if k != f"{TOS}.1.CustomerGatewayId"}
    api.fails(
        "CreateVpnConnection",
        400,
        "MissingParameter.TunnelOptionsSpecification.CustomerGatewayId",
        **base,
        **without_cgw,
    )
    one = {k: v for k, v in dual.tunnels().items() if k.startswith(f"{TOS}.1.")}
    api.fails("CreateVpnConnection", 400, "InvalidParameter.TunnelOptionsSpecification", **base, **one)
    # An empty IkeConfig ({}, as Terraform sends one) is no setting at all.
    assert dual.rows() == empty
    dual.create(IkeConfig="{}")


def test_the_psk_is_named_never_shown_in_errors(dual: Dual) -> None:
    body = dual.api.fails(
        "CreateVpnConnection",
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig.Psk",
        VpnGatewayId=dual.gateway_id,
        LocalSubnet="10.1.1.0/24",
        RemoteSubnet="10.10.1.0/24",
        **dual.tunnels(**{f"{TOS}.2.TunnelIkeConfig.Psk": "secret with space"}),
    )
    assert f'"{TOS}.2.TunnelIkeConfig.Psk"' in body["Message"] and "secret" not in body["Message"]


def test_single_tunnel_gateways_refuse_tunnel_options(dual: Dual) -> None:
    api = dual.api
    single = api.ok("CreateVpnGateway", VpcId=dual.vpc_id, Bandwidth=10)["VpnGatewayId"]
    base = {"VpnGatewayId": single, "LocalSubnet": "10.1.1.0/24", "RemoteSubnet": "10.10.1.0/24"}
    empty = dual.rows()
    api.fails("CreateVpnConnection", 400, "IncorrectTunnelMode.SingleTunnelGateway", **base, **dual.tunnels())
    api.fails(
        "CreateVpnConnection",
        400,
        "IncorrectTunnelMode.SingleTunnelGateway",
        **base,
        **dual.tunnels(),
        CustomerGatewayId=dual.cgw1,
    )
    api.fails("CreateVpnConnection", 400, "MissingParameter.CustomerGatewayId", **base)
    api.fails(
        "CreateVpnConnection", 400, "MissingParameter.CustomerGatewayId", **{**base, "VpnGatewayId": "vpn-no"}
    )
    api.fails(
        "CreateVpnConnection",
        404,
        "InvalidVpnGatewayInstanceId.NotFound",
        **{**base, "VpnGatewayId": "vpn-no"},
        **dual.tunnels(),
    )
    assert dual.rows() == empty
    vco = api.ok("CreateVpnConnection", **base, CustomerGatewayId=dual.cgw1)["VpnConnectionId"]
    got = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert got["TunnelOptionsSpecification"] == {"TunnelOptions": []}
    api.fails(
        "ModifyVpnConnectionAttribute",
        400,
        "IncorrectTunnelMode.SingleTunnelGateway",
        VpnConnectionId=vco,
        **{f"{TOS}.1.TunnelId": "tun-x", f"{TOS}.1.EnableDpd": "false"},
    )
    api.fails(
        "ModifyTunnelAttribute",
        404,
        "InvalidTunnelId.NotFound",
        VpnConnectionId=vco,
        TunnelId="tun-x",
        **{f"{TOS}.EnableDpd": "false"},
    )
    again = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert {k: v for k, v in again.items() if k != "RequestId"} == {
        k: v for k, v in got.items() if k != "RequestId"
    }


def test_idempotency_and_dry_run(dual: Dual) -> None:
    api = dual.api
    base = {"VpnGatewayId": dual.gateway_id, "LocalSubnet": "10.1.1.0/24", "RemoteSubnet": "10.10.1.0/24"}
    empty = dual.rows()
    api.fails("CreateVpnConnection", 400, "DryRunOperation", **base, **dual.tunnels(), DryRun="true")
    assert dual.rows() == empty
    first = api.ok("CreateVpnConnection", **base, **dual.tunnels(), ClientToken="dual-1")
    again = api.ok("CreateVpnConnection", **base, **dual.tunnels(), ClientToken="dual-1")
    assert again["VpnConnectionId"] == first["VpnConnectionId"]
    assert dual.rows()["vpn_connection_tunnels"] == 2
    api.fails(
        "CreateVpnConnection",
        400,
        "IdempotentParameterMismatch",
        **base,
        **dual.tunnels(**{f"{TOS}.1.TunnelIkeConfig.Psk": "other"}),
        ClientToken="dual-1",
    )
    vco = first["VpnConnectionId"]
    tunnel = api.ok("DescribeVpnConnection", VpnConnectionId=vco)["TunnelOptionsSpecification"][
        "TunnelOptions"
    ][0]
    change = {"VpnConnectionId": vco, "TunnelId": tunnel["TunnelId"], f"{TOS}.TunnelIkeConfig.Psk": "new-psk"}
    one = api.ok("ModifyTunnelAttribute", **change, ClientToken="mt-1")
    two = api.ok("ModifyTunnelAttribute", **change, ClientToken="mt-1")
    assert one["TunnelIkeConfig"]["Psk"] == two["TunnelIkeConfig"]["Psk"] == "new-psk"
    with dual.db.engine.connect() as connection:
        records = " ".join(
            str(r[0]) for r in connection.execute(text("SELECT response FROM idempotency_records"))
        )
    assert "new-psk" not in records


def test_modify_tunnel_attribute_changes_one_tunnel_only(dual: Dual) -> None:
    api = dual.api
    vco = dual.create()
    before = api.ok("DescribeVpnConnection", VpnConnectionId=vco)["TunnelOptionsSpecification"][
        "TunnelOptions"
    ]
    first, second = before
    # The data plane's observations of both tunnels, and a diagnosis on each.
    with dual.db.transaction(write=True) as session:
        queries.record_tunnel_observations(
            session,
            [
                queries.TunnelObservation(
                    first["TunnelId"], "ike_sa_not_established", "Peer not responding: x", None
                ),
                queries.TunnelObservation(
                    second["TunnelId"], "ike_sa_not_established", "Peer not responding: y", None
                ),
            ],
            now_ms=int(time.time() * 1000),
            observed_by=None,
        )
    changed = api.ok(
        "ModifyTunnelAttribute",
        VpnConnectionId=vco,
        TunnelId=second["TunnelId"],
        **{
            f"{TOS}.EnableDpd": "False",
            f"{TOS}.CustomerGatewayId": dual.cgw1,
            f"{TOS}.TunnelIkeConfig.Psk": "changed-psk",
            f"{TOS}.TunnelIpsecConfig.IpsecPfs": "group14",
        },
    )
    assert (changed["TunnelId"], changed["Role"], changed["InternetIp"]) == (
        second["TunnelId"],
        "slave",
        dual.second_ip,
    )
    assert changed["EnableDpd"] == "false" and changed["CustomerGatewayId"] == dual.cgw1
    assert changed["TunnelIkeConfig"]["Psk"] == "changed-psk"
    assert changed["TunnelIkeConfig"]["IkeMode"] == "main"  # what was not given is kept
    after = api.ok("DescribeVpnConnection", VpnConnectionId=vco)["TunnelOptionsSpecification"][
        "TunnelOptions"
    ]
    assert after[0] == first | {"Diagnosis": "Peer not responding: x"}
    assert after[1]["TunnelIpsecConfig"]["IpsecPfs"] == "group14"
    assert after[1]["Diagnosis"] == ""  # renegotiated: diagnosed afresh
    # Bad inputs: specific errors, nothing changed.
    tid = second["TunnelId"]
    for params, status, code in [
        (
            {f"{TOS}.TunnelIkeConfig.IkeEncAlg": "rot13"},
            400,
            "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig.IkeEncAlg",
        ),
        ({f"{TOS}.Role": "master"}, 400, "InvalidParameter.TunnelOptionsSpecification.Role"),
        ({f"{TOS}.TunnelBgpConfig.TunnelCidr": "169.254.10.0/30"}, 400, "OperationUnsupported.Bgp"),
        ({f"{TOS}.CustomerGatewayId": "cgw-gone"}, 404, "InvalidCustomerGatewayInstanceId.NotFound"),
        ({}, 400, "MissingParameter.TunnelOptionsSpecification"),
    ]:
        api.fails("ModifyTunnelAttribute", status, code, VpnConnectionId=vco, TunnelId=tid, **params)
    api.fails(
        "ModifyTunnelAttribute",
        404,
        "InvalidTunnelId.NotFound",
        VpnConnectionId=vco,
        TunnelId="tun-other",
        **{f"{TOS}.EnableDpd": "true"},
    )
    api.fails(
        "ModifyTunnelAttribute",
        404,
        "InvalidVpnConnectionInstanceId.NotFound",
        VpnConnectionId="vco-x",
        TunnelId=tid,
        **{f"{TOS}.EnableDpd": "true"},
    )
    assert (
        api.ok("DescribeVpnConnection", VpnConnectionId=vco)["TunnelOptionsSpecification"]["TunnelOptions"]
        == after
    )


def test_modify_vpn_connection_attribute_takes_tunnels_by_id(dual: Dual) -> None:
    api = dual.api
    vco = dual.create()
    first, second = api.ok("DescribeVpnConnection", VpnConnectionId=vco)["TunnelOptionsSpecification"][
        "TunnelOptions"
    ]
    # Swap the roles (both in one request), change a key of each; the top level follows the master.
    got = api.ok(
        "ModifyVpnConnectionAttribute",
        VpnConnectionId=vco,
        LocalSubnet="10.1.1.0/24",
        RemoteSubnet="10.10.2.0/24",
        **{
            f"{TOS}.1.TunnelId": first["TunnelId"],
            f"{TOS}.1.Role": "slave",
            f"{TOS}.2.TunnelId": second["TunnelId"],
            f"{TOS}.2.Role": "master",
            f"{TOS}.2.TunnelIkeConfig.Psk": "now-master",
        },
    )
    assert got["RemoteSubnet"] == "10.10.2.0/24"
    assert [t["Role"] for t in got["TunnelOptionsSpecification"]["TunnelOptions"]] == ["slave", "master"]
    assert got["CustomerGatewayId"] == dual.cgw2 and got["IkeConfig"]["Psk"] == "now-master"
    settled = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    for params, status, code in [
        (
            {f"{TOS}.1.TunnelId": first["TunnelId"], f"{TOS}.1.Role": "master"},
            400,
            "InvalidParameter.TunnelOptionsSpecification.Role",
        ),
        ({f"{TOS}.1.TunnelId": "tun-nope", f"{TOS}.1.EnableDpd": "false"}, 404, "InvalidTunnelId.NotFound"),
        ({f"{TOS}.1.EnableDpd": "false"}, 400, "MissingParameter.TunnelOptionsSpecification.TunnelId"),
        (
            {f"{TOS}.1.TunnelId": first["TunnelId"], f"{TOS}.2.TunnelId": first["TunnelId"]},
            400,
            "InvalidParameter.TunnelOptionsSpecification.TunnelId",
        ),
        (
            {f"{TOS}.1.TunnelId": first["TunnelId"], f"{TOS}.1.TunnelIpsecConfig.IpsecPfs": "group9"},
            400,
            "InvalidParameter.TunnelOptionsSpecification.TunnelIpsecConfig.IpsecPfs",
        ),
        ({"IkeConfig": json.dumps({"IkeVersion": "ikev2"})}, 400, "IncorrectTunnelMode.DualTunnelGateway"),
        ({"EnableDpd": "false"}, 400, "IncorrectTunnelMode.DualTunnelGateway"),
        (
            {
                "Name": "renamed",
                f"{TOS}.1.TunnelId": first["TunnelId"],
                f"{TOS}.1.CustomerGatewayId": "cgw-gone",
            },
            404,
            "InvalidCustomerGatewayInstanceId.NotFound",
        ),
    ]:
        api.fails("ModifyVpnConnectionAttribute", status, code, VpnConnectionId=vco, **params)
    now = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert {k: v for k, v in now.items() if k != "RequestId"} == {
        k: v for k, v in settled.items() if k != "RequestId"
    }
    # Connection-level attributes are still the connection's.
    renamed = api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=vco, Name="renamed", IkeConfig="{}")
    assert renamed["Name"] == "renamed"


def test_status_summary_follows_the_tunnels_and_their_observers(dual: Dual) -> None:
    api = dual.api
    vco = dual.create()
    first, second = api.ok("DescribeVpnConnection", VpnConnectionId=vco)["TunnelOptionsSpecification"][
        "TunnelOptions"
    ]
    now = int(time.time() * 1000)

    def observe(tunnel: dict[str, Any], status: str, node: str) -> None:
        with dual.db.transaction(write=True) as session:
            queries.record_tunnel_observations(
                session,
                [queries.TunnelObservation(tunnel["TunnelId"], status, "", {"BytesIn": 5})],
                now_ms=now,
                observed_by=node,
            )

    observe(first, "ike_sa_established", "node-a")
    got = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert got["Status"] == "ike_sa_established"  # the best of the two (no lease rows: as stored)
    observe(second, "ipsec_sa_established", "node-b")
    got = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert got["Status"] == "ipsec_sa_established"
    with dual.db.transaction(write=False) as session:  # what /metrics reports, the same summary
        assert [row[2] for row in queries.connection_metric_rows(session)] == ["ipsec_sa_established"]
    assert got["TrafficStatistics"]["BytesIn"] == 10
    # Tunnel 2's address is held by node-b, which stopped confirming it: tunnel 2 reads down.
    with dual.db.transaction(write=True) as session:
        session.add(
            GatewayLease(
                vpn_gateway_id=dual.gateway_id + ".dr",
                internet_ip=dual.second_ip,
                holder="node-b",
                expires_ms=now + 60_000,
                epoch=1,
                observed_by="node-b",
                observed_until_ms=now - 1,
                pass_error="",
            )
        )
        session.add(
            GatewayLease(
                vpn_gateway_id=dual.gateway_id,
                internet_ip=dual.internet_ip,
                holder="node-a",
                expires_ms=now + 60_000,
                epoch=1,
                observed_by="node-a",
                observed_until_ms=now + 60_000,
                pass_error="",
            )
        )
    got = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    options = got["TunnelOptionsSpecification"]["TunnelOptions"]
    assert [t["Status"] for t in options] == ["ike_sa_established", "ike_sa_not_established"]
    assert [t["ZoneNo"] for t in options] == ["node-a", "node-b"]
    assert "node-b" in options[1]["Diagnosis"] and got["Status"] == "ike_sa_established"
    with dual.db.transaction(write=False) as session:
        assert [row[2] for row in queries.connection_metric_rows(session)] == ["ike_sa_established"]
    diagnosed = api.ok("DiagnoseVpnConnections", VpnGatewayId=dual.gateway_id)["VpnConnections"]
    assert [(d["TunnelId"], d["FailedReasonCode"]) for d in diagnosed] == [
        (first["TunnelId"], ""),
        (second["TunnelId"], "GatewayNotRunning"),
    ]


def test_logs_download_diagnosis_and_delete_by_tunnel(dual: Dual) -> None:
    api = dual.api
    vco = dual.create(**{f"{TOS}.2.TunnelIkeConfig.Psk": "tunnel2-psk"})
    first, second = api.ok("DescribeVpnConnection", VpnConnectionId=vco)["TunnelOptionsSpecification"][
        "TunnelOptions"
    ]
    now = int(time.time() * 1000)
    with dual.db.transaction(write=True) as session:
        stored = queries.add_connection_logs(
            session,
            [
                (first["TunnelId"], now - 3000, "[IKE] one"),
                (second["TunnelId"], now - 2000, "[IKE] two tunnel2-psk"),
                (second["TunnelId"], now - 1000, "[IKE] giving up after 5 retransmits"),
                ("tun-unknown", now, "dropped"),
            ],
        )
        queries.record_tunnel_observations(
            session,
            [
                queries.TunnelObservation(
                    second["TunnelId"],
                    "ike_sa_not_established",
                    "Peer not responding: 198.19.0.11 did not answer after 5 retransmits.",
                    None,
                )
            ],
            now_ms=now,
            observed_by=None,
        )
    assert stored == 3
    both = api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco)["Data"]["Logs"]
    assert [line.split("] ")[-1] for line in both] == [
        "one",
        "two tunnel2-psk",
        "giving up after 5 retransmits",
    ]
    only = api.ok("DescribeVpnConnectionLogs", VpnConnectionId=vco, TunnelId=second["TunnelId"])
    assert only["Count"] == 2
    api.fails(
        "DescribeVpnConnectionLogs", 404, "InvalidTunnelId.NotFound", VpnConnectionId=vco, TunnelId="tun-x"
    )

    picked = api.ok("DiagnoseVpnConnections", **{"TunnelIds.1": second["TunnelId"]})["VpnConnections"]
    assert len(picked) == 1 and picked[0]["TunnelId"] == second["TunnelId"]
    assert (picked[0]["FailedReasonCode"], picked[0]["FailedTime"]) == ("PeerNotResponding", now)
    assert "tunnel2-psk" not in picked[0]["SourceLog"] and "giving up" in picked[0]["SourceLog"]
    api.fails("DiagnoseVpnConnections", 404, "InvalidTunnelId.NotFound", **{"TunnelIds.1": "tun-none"})

    config = api.ok("DownloadVpnConnectionConfig", VpnConnectionId=vco)["VpnConnectionConfig"]
    tunnels = config["TunnelsConfig"]["TunnelConfig"]
    assert [(t["TunnelId"], t["Local"], t["Remote"], t["Role"]) for t in tunnels] == [
        (first["TunnelId"], dual.cgw1_ip, dual.internet_ip, "master"),
        (second["TunnelId"], dual.cgw2_ip, dual.second_ip, "slave"),
    ]
    # The customer's side: identities swapped, each tunnel its own Psk.
    assert tunnels[1]["IkeConfig"]["Psk"] == "tunnel2-psk"
    assert (tunnels[1]["IkeConfig"]["LocalId"], tunnels[1]["IkeConfig"]["RemoteId"]) == (
        dual.cgw2_ip,
        dual.second_ip,
    )
    assert (config["Local"], config["Remote"]) == (dual.cgw1_ip, dual.internet_ip)
    assert (config["LocalSubnet"], config["RemoteSubnet"]) == ("10.10.1.0/24", "10.1.1.0/24")

    # A customer gateway a tunnel uses cannot go; deleting the connection takes its tunnels and lines.
    api.fails("DeleteCustomerGateway", 400, "DependencyViolation.VpnConnection", CustomerGatewayId=dual.cgw2)
    api.ok("DeleteVpnConnection", VpnConnectionId=vco)
    assert dual.rows()["vpn_connection_tunnels"] == 0
    with dual.db.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM vpn_connection_logs")).scalar_one() == 0
    api.ok("DeleteCustomerGateway", CustomerGatewayId=dual.cgw2)


def test_the_data_plane_skips_dual_tunnel_connections(dual: Dual) -> None:
    from tests.conftest import make_sealer
    from vpngw.dataplane.spec.from_store import load_desired

    vco = dual.create()
    desired = load_desired(dual.db, make_sealer())
    state = desired[dual.gateway_id]
    assert state.internet_ip == dual.internet_ip
    assert vco not in [c.name for c in state.connections] and state.rejected == ()


def test_the_json_dialect_carries_tunnels_as_json(dual: Dual) -> None:
    from tests.support.api import REGION

    answer = dual.api.apsara(
        "CreateVpnConnection",
        json={
            "RegionId": REGION,
            "VpnGatewayId": dual.gateway_id,
            "LocalSubnet": "10.1.1.0/24",
            "RemoteSubnet": "10.10.1.0/24",
            TOS: [
                {"CustomerGatewayId": dual.cgw1, "Role": "master", "TunnelIkeConfig": {"Psk": "json-1"}},
                {"CustomerGatewayId": dual.cgw2, "Role": "slave", "EnableDpd": False},
            ],
        },
    )
    assert answer.status_code == 200, answer.text
    vco = answer.json()["VpnConnectionId"]
    options = dual.api.ok("DescribeVpnConnection", VpnConnectionId=vco)[TOS]["TunnelOptions"]
    assert options[0]["TunnelIkeConfig"]["Psk"] == "json-1" and options[1]["EnableDpd"] == "false"
    changed = dual.api.apsara(
        "ModifyTunnelAttribute",
        json={
            "RegionId": REGION,
            "VpnConnectionId": vco,
            "TunnelId": options[1]["TunnelId"],
            TOS: {"TunnelIpsecConfig": {"IpsecLifetime": 600}},
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["TunnelIpsecConfig"]["IpsecLifetime"] == 600


def test_request_logs_mask_every_tunnel_psk() -> None:
    from vpngw.auth.signatures import MASK, mask_secrets

    masked = dict(
        mask_secrets(
            [
                (f"{TOS}.1.TunnelIkeConfig.Psk", "one"),
                (f"{TOS}.TunnelIkeConfig.Psk", "two"),
                (TOS, '[{"TunnelIkeConfig":{"Psk":"three"}}]'),
            ]
        )
    )
    assert masked[f"{TOS}.1.TunnelIkeConfig.Psk"] == masked[f"{TOS}.TunnelIkeConfig.Psk"] == MASK
    assert "three" not in masked[TOS]
