"""CreateVpnConnection and the connection actions over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import time

from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import Api, World, build_world, connection_params
from vpngw.api.app import build_app
from vpngw.config import Settings


def _count(api: Api) -> int:
    return int(api.ok("DescribeVpnConnections")["TotalCount"])


def test_create_fills_every_default(api: Api) -> None:
    world = build_world(api)
    created = api.ok(
        "CreateVpnConnection", **connection_params(world, LocalSubnet="10.1.1.0/24, 10.1.2.0/24")
    )
    vco = created["VpnConnectionId"]
    assert vco.startswith("vco-") and len(vco) == 25 and vco[4:].isalnum() and vco[4:].islower()
    assert created["Name"] == vco
    assert isinstance(created["CreateTime"], int) and created["CreateTime"] > 1_600_000_000_000
    assert "Psk" not in json.dumps(created)

    got = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert got["LocalSubnet"] == "10.1.1.0/24,10.1.2.0/24"
    assert got["RemoteSubnet"] == "10.10.1.0/24"
    assert (got["VpnGatewayId"], got["CustomerGatewayId"]) == (
        world.vpn_gateway_id,
        world.customer_gateway_id,
    )
    assert got["Status"] == "ike_sa_not_established" and got["State"] == "active"
    assert got["EffectImmediately"] is False and got["AutoConfigRoute"] is False
    assert got["EnableDpd"] is True and got["EnableNatTraversal"] is True
    ike = got["IkeConfig"]
    psk = ike.pop("Psk")
    assert len(psk) == 16 and psk.isalnum()
    assert ike == {
        "IkeVersion": "ikev1",
        "IkeMode": "main",
        "IkeEncAlg": "aes",
        "IkeAuthAlg": "md5",
        "IkePfs": "group2",
        "IkeLifetime": 86400,
        "LocalId": world.internet_ip,
        "RemoteId": world.customer_ip,
    }
    assert got["IpsecConfig"] == {
        "IpsecEncAlg": "aes",
        "IpsecAuthAlg": "md5",
        "IpsecPfs": "group2",
        "IpsecLifetime": 86400,
    }
    assert got["VcoHealthCheck"] == {
        "Enable": "false",
        "Sip": "",
        "Dip": "",
        "Interval": 3,
        "Retry": 3,
        "Status": "success",
        "Policy": "revoke_route",
    }


def test_generated_psks_differ(api: Api) -> None:
    world = build_world(api)
    first = api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    second = api.ok("CreateVpnConnection", **connection_params(world, LocalSubnet="10.2.0.0/24"))[
        "VpnConnectionId"
    ]
    psks = {api.ok("DescribeVpnConnection", VpnConnectionId=v)["IkeConfig"]["Psk"] for v in (first, second)}
    assert len(psks) == 2


def test_every_parameter_is_honoured(api: Api) -> None:
    world = build_world(api)
    ike = {
        "psk": "s3cr#t!",
        "ikeversion": "ikev2",
        "IkeMode": "aggressive",
        "IkeEncAlg": "AES256",
        "IkeAuthAlg": "sha256",
        "IkePfs": "group14",
        "IkeLifetime": "3600",
        "LocalId": "gw.example",
        "RemoteId": "",
    }
    ipsec = {"IpsecEncAlg": "3des", "IpsecAuthAlg": "sha512", "IpsecPfs": "disabled", "IpsecLifetime": 0}
    check = {"enable": True, "sip": "10.1.1.5", "dip": "10.10.1.5", "interval": "10", "retry": 5}
    vco = api.ok(
        "CreateVpnConnection",
        **connection_params(
            world,
            Name="my-conn.1_中文",
            EffectImmediately="True",
            AutoConfigRoute="true",
            EnableDpd="false",
            EnableNatTraversal="False",
            IkeConfig=json.dumps(ike),
            IpsecConfig=json.dumps(ipsec),
            HealthCheckConfig=json.dumps(check),
        ),
    )["VpnConnectionId"]
    got = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert got["Name"] == "my-conn.1_中文"
    assert (
        got["EffectImmediately"],
        got["AutoConfigRoute"],
        got["EnableDpd"],
        got["EnableNatTraversal"],
    ) == (
        True,
        True,
        False,
        False,
    )
    assert got["IkeConfig"] == {
        "Psk": "s3cr#t!",
        "IkeVersion": "ikev2",
        "IkeMode": "aggressive",
        "IkeEncAlg": "aes256",
        "IkeAuthAlg": "sha256",
        "IkePfs": "group14",
        "IkeLifetime": 3600,
        "LocalId": "gw.example",
        "RemoteId": world.customer_ip,
    }
    assert got["IpsecConfig"] == {
        "IpsecEncAlg": "3des",
        "IpsecAuthAlg": "sha512",
        "IpsecPfs": "disabled",
        "IpsecLifetime": 0,
    }
    assert got["VcoHealthCheck"]["Enable"] == "true"
    assert (got["VcoHealthCheck"]["Sip"], got["VcoHealthCheck"]["Dip"]) == ("10.1.1.5", "10.10.1.5")
    assert (got["VcoHealthCheck"]["Interval"], got["VcoHealthCheck"]["Retry"]) == (10, 5)


def _world_and_count(api: Api) -> tuple[World, int]:
    world = build_world(api)
    api.ok("CreateVpnConnection", **connection_params(world))
    return world, _count(api)


def test_bad_inputs_get_specific_errors_and_change_nothing(api: Api) -> None:
    world, before = _world_and_count(api)
    cases = [
        ({"LocalSubnet": None}, 400, "MissingParameter.LocalSubnet"),
        ({"RemoteSubnet": ""}, 400, "MissingParameter.RemoteSubnet"),
        ({"VpnGatewayId": None}, 400, "MissingParameter.VpnGatewayId"),
        ({"LocalSubnet": "10.0.0.1/24"}, 400, "IllegalParam.LocalSubnet"),
        ({"RemoteSubnet": "10.20.0.0/24,10.20.0.0/24"}, 400, "IllegalParam.RemoteSubnet"),
        ({"LocalSubnet": "10.0.0.0/8", "RemoteSubnet": "10.20.0.0/16"}, 400, "IllegalParam.RemoteSubnet"),
        (
            {"LocalSubnet": "0.0.0.0/0", "RemoteSubnet": "0.0.0.0/0"},
            400,
            "OperationUnsupported.DestinationRouting",
        ),
        ({"LocalSubnet": "10.1.1.0/24", "RemoteSubnet": "10.10.0.0/16"}, 400, "VpnConnection.SubnetConflict"),
        ({"Name": "1abc"}, 400, "InvalidName"),
        ({"Name": "http://x"}, 400, "InvalidName"),
        ({"EffectImmediately": "yes"}, 400, "InvalidParameter.EffectImmediately"),
        ({"AutoConfigRoute": "1"}, 400, "InvalidParameter.AutoConfigRoute"),
        ({"IkeConfig": "not json"}, 400, "InvalidParameter.IkeConfig"),
        ({"IkeConfig": '{"IkeEncAlg":"blowfish"}'}, 400, "InvalidParameter.IkeConfig.IkeEncAlg"),
        ({"IkeConfig": '{"IkePfs":"disabled"}'}, 400, "InvalidParameter.IkeConfig.IkePfs"),
        ({"IkeConfig": '{"IkeLifetime":86401}'}, 400, "InvalidParameter.IkeConfig.IkeLifetime"),
        ({"IkeConfig": '{"Psk":"has space"}'}, 400, "InvalidParameter.IkeConfig.Psk"),
        ({"IkeConfig": '{"Bogus":"x"}'}, 400, "InvalidParameter.IkeConfig"),
        ({"IpsecConfig": '{"IpsecAuthAlg":"sha386"}'}, 400, "InvalidParameter.IpsecConfig.IpsecAuthAlg"),
        (
            {"HealthCheckConfig": '{"enable":"true","sip":"10.9.9.9","dip":"10.10.1.2"}'},
            400,
            "InvalidParameter.HealthCheckConfig.Sip",
        ),
        (
            {"HealthCheckConfig": '{"enable":true,"sip":"10.1.1.2"}'},
            400,
            "InvalidParameter.HealthCheckConfig.Dip",
        ),
        (
            {"HealthCheckConfig": '{"enable":true,"sip":"10.1.1.2","dip":"10.10.1.2","interval":61}'},
            400,
            "InvalidParameter.HealthCheckConfig.Interval",
        ),
        ({"BgpConfig": '{"EnableBgp":"true"}'}, 400, "OperationUnsupported.Bgp"),
        ({"ClientToken": "x" * 65}, 400, "InvalidParameter.ClientToken"),
        ({"VpnGatewayId": "vpn-doesnotexist"}, 404, "InvalidVpnGatewayInstanceId.NotFound"),
        ({"CustomerGatewayId": "cgw-doesnotexist"}, 404, "InvalidCustomerGatewayInstanceId.NotFound"),
        ({"RegionId": "mars-1"}, 404, "InvalidRegionId.NotFound"),
    ]
    for change, status, code in cases:
        params = connection_params(world, LocalSubnet="10.1.1.0/24", RemoteSubnet="10.30.0.0/24")
        for key, value in change.items():
            if value is None:
                params.pop(key)
            else:
                params[key] = value
        body = api.fails("CreateVpnConnection", status, code, **params)
        assert "has space" not in body["Message"]
    assert _count(api) == before


def test_client_token_replays_the_first_result(api: Api) -> None:
    world = build_world(api)
    params = connection_params(world, ClientToken="02fb3da4-130e-11e9-8e44-001")
    first = api.ok("CreateVpnConnection", **params)
    again = api.ok("CreateVpnConnection", **params)
    assert again["VpnConnectionId"] == first["VpnConnectionId"]
    assert again["CreateTime"] == first["CreateTime"] and again["RequestId"] != first["RequestId"]
    assert _count(api) == 1
    # Booleans spelled differently are the same parameters.
    api.ok("CreateVpnConnection", **params, EffectImmediately="false")
    assert _count(api) == 1
    api.fails(
        "CreateVpnConnection", 400, "IdempotentParameterMismatch", **{**params, "LocalSubnet": "10.5.0.0/24"}
    )
    assert _count(api) == 1


def test_client_token_on_delete_replays_success(api: Api) -> None:
    world = build_world(api)
    vco = api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    api.ok("DeleteVpnConnection", VpnConnectionId=vco, ClientToken="del-1")
    api.ok("DeleteVpnConnection", VpnConnectionId=vco, ClientToken="del-1")
    api.fails("DeleteVpnConnection", 404, "InvalidVpnConnectionInstanceId.NotFound", VpnConnectionId=vco)


def test_quota_per_gateway(api: Api) -> None:
    world = build_world(api)
    for n in range(10):
        api.ok("CreateVpnConnection", **connection_params(world, LocalSubnet=f"10.1.{n}.0/24"))
    api.fails(
        "CreateVpnConnection",
        400,
        "Resource.QuotaFull",
        **connection_params(world, LocalSubnet="10.1.99.0/24"),
    )
    assert _count(api) == 10


def test_subnet_conflict_needs_both_sides(api: Api) -> None:
    world = build_world(api)
    api.ok(
        "CreateVpnConnection",
        **connection_params(world, LocalSubnet="10.1.0.0/16", RemoteSubnet="10.10.0.0/16"),
    )
    # Same local, other remote: different packets, allowed.
    api.ok(
        "CreateVpnConnection",
        **connection_params(world, LocalSubnet="10.1.0.0/16", RemoteSubnet="10.11.0.0/16"),
    )
    api.fails(
        "CreateVpnConnection",
        400,
        "VpnConnection.SubnetConflict",
        **connection_params(world, LocalSubnet="10.1.5.0/24", RemoteSubnet="10.10.5.0/24"),
    )
    # Another gateway has its own selectors.
    other = api.ok("CreateVpnGateway", VpcId=world.vpc_id, Bandwidth=5)["VpnGatewayId"]
    api.ok(
        "CreateVpnConnection",
        **connection_params(
            world, VpnGatewayId=other, LocalSubnet="10.1.5.0/24", RemoteSubnet="10.10.5.0/24"
        ),
    )


def test_modify_merges_and_validates_the_whole(api: Api) -> None:
    world = build_world(api)
    vco = api.ok("CreateVpnConnection", **connection_params(world, IkeConfig='{"Psk":"first-key"}'))[
        "VpnConnectionId"
    ]
    # Terraform's pattern: LocalSubnet and RemoteSubnet are re-sent with every change.
    changed = api.ok(
        "ModifyVpnConnectionAttribute",
        VpnConnectionId=vco,
        LocalSubnet="10.1.1.0/24",
        RemoteSubnet="10.10.1.0/24,10.10.2.0/24",
        Name="renamed",
        IkeConfig='{"IkeEncAlg":"des","IkeVersion":"ikev2","LocalId":"","Psk":""}',
        IpsecConfig='{"IpsecLifetime":"8640","IpsecPfs":"group5"}',
        HealthCheckConfig='{"Enable":true,"Sip":"10.1.1.2","Dip":"10.10.2.2"}',
    )
    assert changed["Name"] == "renamed" and changed["VpnConnectionId"] == vco
    got = api.ok("DescribeVpnConnection", VpnConnectionId=vco)
    assert got["RemoteSubnet"] == "10.10.1.0/24,10.10.2.0/24"
    assert got["IkeConfig"]["IkeEncAlg"] == "des" and got["IkeConfig"]["IkeVersion"] == "ikev2"
    assert got["IkeConfig"]["Psk"] == "first-key" and got["IkeConfig"]["LocalId"] == world.internet_ip
    assert got["IkeConfig"]["IkeAuthAlg"] == "md5"
    assert got["IpsecConfig"] == {
        "IpsecEncAlg": "aes",
        "IpsecAuthAlg": "md5",
        "IpsecPfs": "group5",
        "IpsecLifetime": 8640,
    }
    assert got["VcoHealthCheck"]["Enable"] == "true"
    # A subnet change that strands the health check's dip is refused as a whole.
    api.fails(
        "ModifyVpnConnectionAttribute",
        400,
        "InvalidParameter.HealthCheckConfig.Dip",
        VpnConnectionId=vco,
        LocalSubnet="10.1.1.0/24",
        RemoteSubnet="10.10.1.0/24",
    )
    assert api.ok("DescribeVpnConnection", VpnConnectionId=vco)["RemoteSubnet"] == "10.10.1.0/24,10.10.2.0/24"
    # EffectImmediately given alone changes only that.
    api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=vco, EffectImmediately="true")
    assert api.ok("DescribeVpnConnection", VpnConnectionId=vco)["EffectImmediately"] is True


def test_modify_checks_conflicts_with_other_connections(api: Api) -> None:
    world = build_world(api)
    api.ok(
        "CreateVpnConnection",
        **connection_params(world, LocalSubnet="10.1.0.0/24", RemoteSubnet="10.10.0.0/24"),
    )
    second = api.ok(
        "CreateVpnConnection",
        **connection_params(world, LocalSubnet="10.2.0.0/24", RemoteSubnet="10.10.0.0/24"),
    )
    # Modifying a connection to its own subnets is no conflict with itself.
    api.ok(
        "ModifyVpnConnectionAttribute", VpnConnectionId=second["VpnConnectionId"], LocalSubnet="10.2.0.0/24"
    )
    api.fails(
        "ModifyVpnConnectionAttribute",
        400,
        "VpnConnection.SubnetConflict",
        VpnConnectionId=second["VpnConnectionId"],
        LocalSubnet="10.1.0.0/25",
    )


def test_delete_then_not_found_everywhere(api: Api) -> None:
    world = build_world(api)
    vco = api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    api.ok("DeleteVpnConnection", VpnConnectionId=vco)
    for action in (
        "DescribeVpnConnection",
        "DeleteVpnConnection",
        "ModifyVpnConnectionAttribute",
        "DownloadVpnConnectionConfig",
    ):
        api.fails(action, 404, "InvalidVpnConnectionInstanceId.NotFound", VpnConnectionId=vco)
    assert _count(api) == 0


def test_gateways_in_use_cannot_be_deleted(api: Api) -> None:
    world = build_world(api)
    vco = api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    api.fails("DeleteVpnGateway", 400, "DependencyViolation.VpnConnection", VpnGatewayId=world.vpn_gateway_id)
    api.fails(
        "DeleteCustomerGateway",
        400,
        "DependencyViolation.VpnConnection",
        CustomerGatewayId=world.customer_gateway_id,
    )
    api.fails("DeleteVpc", 400, "DependencyViolation.VpnGateway", VpcId=world.vpc_id)
    api.ok("DeleteVpnConnection", VpnConnectionId=vco)
    api.ok("DeleteVpnGateway", VpnGatewayId=world.vpn_gateway_id)
    api.ok("DeleteCustomerGateway", CustomerGatewayId=world.customer_gateway_id)
    api.ok("DeleteVpc", VpcId=world.vpc_id)


def test_download_config_is_from_the_customer_side(api: Api) -> None:
    world = build_world(api)
    vco = api.ok(
        "CreateVpnConnection", **connection_params(world, IkeConfig='{"Psk":"k-1","RemoteId":"idc.example"}')
    )
    config = api.ok("DownloadVpnConnectionConfig", VpnConnectionId=vco["VpnConnectionId"])[
        "VpnConnectionConfig"
    ]
    assert (config["Local"], config["Remote"]) == (world.customer_ip, world.internet_ip)
    assert (config["LocalSubnet"], config["RemoteSubnet"]) == ("10.10.1.0/24", "10.1.1.0/24,10.1.2.0/24")
    assert config["IkeConfig"]["Psk"] == "k-1"
    assert (config["IkeConfig"]["LocalId"], config["IkeConfig"]["RemoteId"]) == (
        "idc.example",
        world.internet_ip,
    )
    assert config["IpsecConfig"]["IpsecPfs"] == "group2"


def test_listing_pages_and_filters(api: Api) -> None:
    world = build_world(api)
    other_cgw = api.ok("CreateCustomerGateway", IpAddress="198.19.0.11")["CustomerGatewayId"]
    ids = [
        api.ok(
            "CreateVpnConnection",
            **connection_params(
                world,
                LocalSubnet=f"10.1.{n}.0/24",
                CustomerGatewayId=other_cgw if n % 2 else world.customer_gateway_id,
            ),
        )["VpnConnectionId"]
        for n in range(7)
    ]
    page1 = api.ok("DescribeVpnConnections", PageSize=3)
    page3 = api.ok("DescribeVpnConnections", PageSize=3, PageNumber=3)
    assert page1["TotalCount"] == 7 and (page1["PageNumber"], page1["PageSize"]) == (1, 3)
    listed = [c["VpnConnectionId"] for c in page1["VpnConnections"]["VpnConnection"]]
    assert listed == ids[:3]
    assert [c["VpnConnectionId"] for c in page3["VpnConnections"]["VpnConnection"]] == ids[6:]
    assert page1["VpnConnections"]["VpnConnection"][0]["IkeConfig"]["IkeVersion"] == "ikev1"
    assert "Tag" in page1["VpnConnections"]["VpnConnection"][0]
    assert api.ok("DescribeVpnConnections")["PageSize"] == 10
    by_cgw = api.ok("DescribeVpnConnections", CustomerGatewayId=other_cgw)
    assert by_cgw["TotalCount"] == 3
    by_id = api.ok("DescribeVpnConnections", VpnConnectionId=ids[4])
    assert [c["VpnConnectionId"] for c in by_id["VpnConnections"]["VpnConnection"]] == [ids[4]]
    assert api.ok("DescribeVpnConnections", VpnGatewayId="vpn-none")["TotalCount"] == 0
    api.fails("DescribeVpnConnections", 400, "InvalidParameter.PageSize", PageSize=51)
    api.fails("DescribeVpnConnections", 400, "InvalidParameter.PageNumber", PageNumber=0)


def test_client_token_expires(settings: Settings) -> None:
    """After its lifetime (VPNGW_CLIENT_TOKEN_TTL_S) a token is a new request."""
    short = dataclasses.replace(settings, client_token_ttl_s=1)
    db, authenticator = prepared(short)
    with TestClient(build_app(db, short, authenticator)) as client:
        api = Api(client)
        world = build_world(api)
        params = connection_params(world, ClientToken="short-lived")
        first = api.ok("CreateVpnConnection", **params)["VpnConnectionId"]
        assert api.ok("CreateVpnConnection", **params)["VpnConnectionId"] == first
        time.sleep(1.1)
        # The same token and parameters now create again (and meet the first one's selectors).
        api.fails("CreateVpnConnection", 400, "VpnConnection.SubnetConflict", **params)
        second = api.ok("CreateVpnConnection", **{**params, "LocalSubnet": "10.9.0.0/24"})["VpnConnectionId"]
        assert second != first
    db.dispose()
