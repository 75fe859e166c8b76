"""Tags: Tags.N on the creates, TagResources / UnTagResources / ListTagResources, tags in
Describe* and Tag.N filters, the public API's limits, tenancy (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import make_sealer, prepared
from tests.support.api import REGION, Api, build_world, connection_params, signed_query
from vpngw import accounts
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.store.engine import Database


@pytest.fixture
def stack(settings: Settings) -> Iterator[tuple[Api, Database]]:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        yield Api(client), db
    db.dispose()


def _tags(view: dict[str, Any], field: str = "Tags") -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in view[field]["Tag"]}


def _listed(api: Api, kind: str, **params: Any) -> list[tuple[str, str, str]]:
    body = api.ok("ListTagResources", ResourceType=kind, **params)
    return [(t["ResourceId"], t["TagKey"], t["TagValue"]) for t in body["TagResources"]["TagResource"]]


def test_tags_on_create_show_in_describe_and_filter_listings(api: Api) -> None:
    vpc = api.ok("CreateVpc", **{"Tag.1.Key": "env", "Tag.1.Value": "prod"})["VpcId"]
    gateway = api.ok(
        "CreateVpnGateway", VpcId=vpc, Bandwidth=10, **{"Tags.1.Key": "env", "Tags.1.Value": "prod"}
    )["VpnGatewayId"]
    cgw = api.ok(
        "CreateCustomerGateway", IpAddress="198.19.0.10", **{"Tags.1.Key": "site", "Tags.1.Value": "hq"}
    )
    assert _tags(cgw) == {"site": "hq"}
    world = build_world(api, customer_ip="198.19.0.11")
    tagged = {"Tags.1.Key": "env", "Tags.1.Value": "prod", "Tags.2.Key": "team", "Tags.2.Value": ""}
    vco = api.ok("CreateVpnConnection", **connection_params(world, **tagged))["VpnConnectionId"]
    api.ok(
        "CreateVpnConnection",
        **connection_params(world, LocalSubnet="10.5.0.0/24", RemoteSubnet="10.50.0.0/24"),
    )

    assert _tags(api.ok("DescribeVpnConnection", VpnConnectionId=vco)) == {"env": "prod", "team": ""}
    assert _tags(api.ok("DescribeVpnGateway", VpnGatewayId=gateway)) == {"env": "prod"}
    assert _tags(api.ok("DescribeCustomerGateway", CustomerGatewayId=cgw["CustomerGatewayId"])) == {
        "site": "hq"
    }
    listed = api.ok("DescribeVpnConnections", **{"Tag.1.Key": "env", "Tag.1.Value": "prod"})
    assert listed["TotalCount"] == 1
    item = listed["VpnConnections"]["VpnConnection"][0]
    assert item["VpnConnectionId"] == vco and _tags(item, "Tag") == {"env": "prod", "team": ""}
    # A key alone matches any value; every filter must match.
    assert api.ok("DescribeVpnConnections", **{"Tag.1.Key": "team"})["TotalCount"] == 1
    both = {"Tag.1.Key": "env", "Tag.1.Value": "prod", "Tag.2.Key": "team", "Tag.2.Value": "x"}
    assert api.ok("DescribeVpnConnections", **both)["TotalCount"] == 0
    assert api.ok("DescribeVpnConnections")["TotalCount"] == 2
    vpcs = api.ok("DescribeVpcs", **{"Tag.1.Key": "env"})
    assert [v["VpcId"] for v in vpcs["Vpcs"]["Vpc"]] == [vpc] and _tags(vpcs["Vpcs"]["Vpc"][0]) == {
        "env": "prod"
    }
    gateways = api.ok("DescribeVpnGateways", **{"Tag.1.Key": "env", "Tag.1.Value": "prod"})["VpnGateways"]
    assert [g["VpnGatewayId"] for g in gateways["VpnGateway"]] == [gateway]
    assert api.ok("DescribeCustomerGateways", **{"Tag.1.Key": "site"})["TotalCount"] == 1


def test_tag_untag_list_and_delete(api: Api) -> None:
    world = build_world(api)
    vco = api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    ids = {"ResourceId.1": vco, "ResourceId.2": world.vpn_gateway_id}
    api.fails(
        "TagResources",
        404,
        "InvalidVpnConnectionInstanceId.NotFound",
        ResourceType="VPNCONNECTION",
        **ids,
        **{"Tag.1.Key": "a"},
    )
    api.ok(
        "TagResources",
        ResourceType="vpnconnection",
        **{"ResourceId.1": vco, "Tag.1.Key": "a", "Tag.1.Value": "1", "Tag.2.Key": "b"},
    )
    api.ok(
        "TagResources",
        ResourceType="VPNCONNECTION",
        **{"ResourceId.1": vco, "Tag.1.Key": "a", "Tag.1.Value": "2"},
    )
    assert _listed(api, "VPNCONNECTION", **{"ResourceId.1": vco}) == [(vco, "a", "2"), (vco, "b", "")]
    # Paging: one row a page, NextToken until the last.
    first = api.ok("ListTagResources", ResourceType="VPNCONNECTION", MaxResults=1, **{"ResourceId.1": vco})
    assert len(first["TagResources"]["TagResource"]) == 1 and first["NextToken"]
    second = api.ok(
        "ListTagResources",
        ResourceType="VPNCONNECTION",
        MaxResults=1,
        NextToken=first["NextToken"],
        **{"ResourceId.1": vco},
    )
    assert second["TagResources"]["TagResource"][0]["TagKey"] == "b" and second["NextToken"] == ""
    assert _listed(api, "VPNCONNECTION", **{"Tag.1.Key": "a", "Tag.1.Value": "2"}) == [
        (vco, "a", "2"),
        (vco, "b", ""),
    ]
    assert _listed(api, "VPNGATEWAY", **{"Tag.1.Key": "a"}) == []
    api.fails("ListTagResources", 400, "MissingParameter.ResourceIdOrTag", ResourceType="VPNCONNECTION")
    api.fails(
        "ListTagResources",
        400,
        "InvalidParameter.NextToken",
        ResourceType="VPNCONNECTION",
        NextToken="zz",
        **{"ResourceId.1": vco},
    )

    api.fails(
        "UnTagResources",
        400,
        "MissingParameter.TagKey",
        ResourceType="VPNCONNECTION",
        **{"ResourceId.1": vco},
    )
    api.ok("UnTagResources", ResourceType="VPNCONNECTION", **{"ResourceId.1": vco, "TagKey.1": "a"})
    assert _tags(api.ok("DescribeVpnConnection", VpnConnectionId=vco)) == {"b": ""}
    api.ok("UnTagResources", ResourceType="VPNCONNECTION", All="true", **{"ResourceId.1": vco})
    assert _tags(api.ok("DescribeVpnConnection", VpnConnectionId=vco)) == {}
    # A deleted resource's tags go with it.
    api.ok("TagResources", ResourceType="VPNCONNECTION", **{"ResourceId.1": vco, "Tag.1.Key": "gone"})
    api.ok("DeleteVpnConnection", VpnConnectionId=vco)
    assert _listed(api, "VPNCONNECTION", **{"Tag.1.Key": "gone"}) == []


def test_the_public_limits(api: Api) -> None:
    world = build_world(api)
    target = {"ResourceType": "VPNGATEWAY", "ResourceId.1": world.vpn_gateway_id}
    bad_keys = ["aliyun-x", "ACS:x", "a http://b", "https://b", "k" * 129]
    for key in bad_keys:
        api.fails("TagResources", 400, "InvalidTagKey.Malformed", **target, **{"Tag.1.Key": key})
    api.fails("TagResources", 400, "InvalidTagKey.Malformed", **target, **{"Tag.1.Value": "v"})
    for value in ["aliyunv", "acs:v", "see http://x", "v" * 129]:
        api.fails(
            "TagResources",
            400,
            "InvalidTagValue.Malformed",
            **target,
            **{"Tag.1.Key": "k", "Tag.1.Value": value},
        )
    api.fails(
        "TagResources", 400, "InvalidTagKey.Duplicated", **target, **{"Tag.1.Key": "k", "Tag.2.Key": "k"}
    )
    api.fails(
        "TagResources",
        400,
        "InvalidResourceType.NotSupported",
        ResourceType="EIP",
        **{"ResourceId.1": "x", "Tag.1.Key": "k"},
    )
    api.fails("TagResources", 400, "MissingParameter.Tag", **target)
    api.fails("TagResources", 400, "InvalidParameter.Tag", **target, **{"Tag.1.Colour": "red"})
    api.fails("TagResources", 400, "InvalidParameter.Tag", **target, **{"Tag.0.Key": "k"})
    # Exactly 20 fit (128-character keys and values too); the 21st is refused and changes nothing.
    twenty = {f"Tag.{n}.Key": f"k{n:02d}" + "x" * 125 for n in range(1, 21)}
    twenty |= {f"Tag.{n}.Value": "v" * 128 for n in range(1, 21)}
    api.ok("TagResources", **target, **twenty)
    api.fails("TagResources", 400, "QuotaExceeded.TagsPerResource", **target, **{"Tag.1.Key": "one-more"})
    api.fails(
        "CreateVpnConnection",
        400,
        "InvalidParameter.Tags",
        **connection_params(world, **{f"Tags.{n}.Key": f"k{n}" for n in range(1, 22)}),
    )
    assert len(_tags(api.ok("DescribeVpnGateway", VpnGatewayId=world.vpn_gateway_id))) == 20
    # Re-tagging an existing key does not count twice.
    api.ok("TagResources", **target, **{"Tag.1.Key": "k01" + "x" * 125, "Tag.1.Value": "new"})
    assert api.ok("DescribeVpnConnections")["TotalCount"] == 0


def test_another_accounts_resources_are_not_found(stack: tuple[Api, Database]) -> None:
    api, db = stack
    world = build_world(api)
    api.ok(
        "TagResources",
        ResourceType="VPNGATEWAY",
        **{"ResourceId.1": world.vpn_gateway_id, "Tag.1.Key": "mine"},
    )
    other = accounts.create_account(db, make_sealer(), "tenant-b")

    def as_other(action: str, **params: str) -> dict[str, Any]:
        query = {"Action": action, "RegionId": REGION, **params}
        response = api.client.post(
            "/",
            params=signed_query("POST", query, key_id=other.access_key_id, secret=other.access_key_secret),
        )
        body: dict[str, Any] = response.json()
        body["status"] = response.status_code
        return body

    target = {"ResourceType": "VPNGATEWAY", "ResourceId.1": world.vpn_gateway_id}
    for action, extra in (
        ("TagResources", {"Tag.1.Key": "theirs"}),
        ("UnTagResources", {"All": "true"}),
        ("ListTagResources", {}),
    ):
        body = as_other(action, **target, **extra)
        assert (body["status"], body["Code"]) == (404, "InvalidVpnGatewayInstanceId.NotFound"), body
    assert as_other("ListTagResources", ResourceType="VPNGATEWAY", **{"Tag.1.Key": "mine"})[
        "TagResources"
    ] == {"TagResource": []}
    assert as_other("DescribeVpnGateways", **{"Tag.1.Key": "mine"})["TotalCount"] == 0
    assert _tags(api.ok("DescribeVpnGateway", VpnGatewayId=world.vpn_gateway_id)) == {"mine": ""}


def test_a_json_body_may_give_tags_as_an_array(api: Api) -> None:
    world = build_world(api)
    body = {
        "RegionId": REGION,
        **connection_params(world),
        "Tags": [{"Key": "env", "Value": "prod"}, {"Key": "solo"}],
    }
    response = api.apsara("CreateVpnConnection", json=body)
    assert response.status_code == 200, response.text
    vco = response.json()["VpnConnectionId"]
    assert _tags(api.ok("DescribeVpnConnection", VpnConnectionId=vco)) == {"env": "prod", "solo": ""}
    bad = api.apsara("CreateVpnConnection", json={**body, "Tags": [{"Key": 1}]})
    assert (bad.status_code, bad.json()["Code"]) == (400, "InvalidParameter.Tags")
