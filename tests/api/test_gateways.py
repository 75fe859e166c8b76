"""Regions, VPCs, VPN gateways and customer gateways over HTTP."""

from __future__ import annotations

from tests.support.api import REGION, Api


def test_describe_regions_needs_no_region(api: Api) -> None:
    response = api.rpc("DescribeRegions")
    assert response.status_code == 200
    regions = {r["RegionId"]: r for r in response.json()["Regions"]["Region"]}
    assert REGION in regions and "cn-hangzhou" in regions
    assert regions[REGION]["RegionEndpoint"]


def test_vpc_lifecycle(api: Api) -> None:
    vpc = api.ok("CreateVpc", CidrBlock="192.168.0.0/16", VpcName="lab")
    assert vpc["VpcId"].startswith("vpc-")
    listed = api.ok("DescribeVpcs", VpcId=vpc["VpcId"])["Vpcs"]["Vpc"]
    assert [(v["VpcId"], v["CidrBlock"], v["VpcName"]) for v in listed] == [
        (vpc["VpcId"], "192.168.0.0/16", "lab")
    ]
    assert api.ok("CreateVpc")["VpcId"] != vpc["VpcId"]
    api.fails("CreateVpc", 400, "InvalidCidrBlock.Malformed", CidrBlock="8.8.8.0/24")
    api.fails("CreateVpc", 400, "InvalidName", VpcName="-bad")
    api.ok("DeleteVpc", VpcId=vpc["VpcId"])
    api.fails("DeleteVpc", 404, "InvalidVpcId.NotFound", VpcId=vpc["VpcId"])


def test_vpn_gateway_lifecycle(api: Api) -> None:
    vpc = api.ok("CreateVpc")["VpcId"]
    created = api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=20, Name="gw-1")
    gateway = created["VpnGatewayId"]
    assert gateway.startswith("vpn-") and created["Name"] == "gw-1" and isinstance(created["OrderId"], int)
    got = api.ok("DescribeVpnGateway", VpnGatewayId=gateway)
    assert got["Status"] == "active" and got["Spec"] == "20M" and got["VpcId"] == vpc
    assert got["IpsecVpn"] == "enable" and got["SslVpn"] == "disable" and got["ChargeType"] == "PostpayByFlow"
    assert got["InternetIp"] == "198.18.0.2"
    second = api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=5)["VpnGatewayId"]
    assert api.ok("DescribeVpnGateway", VpnGatewayId=second)["InternetIp"] == "198.18.0.3"
    assert api.ok("DescribeVpnGateway", VpnGatewayId=second)["Name"] == second
    modified = api.ok(
        "ModifyVpnGatewayAttribute", VpnGatewayId=gateway, Name="renamed", Description="for the lab"
    )
    assert (modified["Name"], modified["Description"]) == ("renamed", "for the lab")
    page = api.ok("DescribeVpnGateways", VpcId=vpc, PageSize=1)
    assert page["TotalCount"] == 2 and len(page["VpnGateways"]["VpnGateway"]) == 1
    api.fails("CreateVpnGateway", 400, "InvalidParameter.Bandwidth", VpcId=vpc, Bandwidth=7)
    api.fails("CreateVpnGateway", 400, "MissingParameter.Bandwidth", VpcId=vpc)
    api.fails("CreateVpnGateway", 404, "InvalidVpcId.NotFound", VpcId="vpc-nope", Bandwidth=5)
    api.fails(
        "CreateVpnGateway",
        400,
        "InvalidParameter.InstanceChargeType",
        VpcId=vpc,
        Bandwidth=5,
        InstanceChargeType="FREE",
    )
    api.ok("DeleteVpnGateway", VpnGatewayId=gateway)
    api.fails("DescribeVpnGateway", 404, "InvalidVpnGatewayInstanceId.NotFound", VpnGatewayId=gateway)
    # The freed address is handed out again.
    third = api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=5)["VpnGatewayId"]
    assert api.ok("DescribeVpnGateway", VpnGatewayId=third)["InternetIp"] == "198.18.0.2"


def test_customer_gateway_lifecycle(api: Api) -> None:
    created = api.ok("CreateCustomerGateway", IpAddress="198.19.1.1", Name="idc", Asn="1.10", AuthKey="k!y")
    cgw = created["CustomerGatewayId"]
    assert cgw.startswith("cgw-") and created["IpAddress"] == "198.19.1.1" and created["Name"] == "idc"
    got = api.ok("DescribeCustomerGateway", CustomerGatewayId=cgw)
    assert got["Asn"] == 65546 and isinstance(got["CreateTime"], int)
    api.fails("CreateCustomerGateway", 400, "InvalidIpAddress.AlreadyExist", IpAddress="198.19.1.1")
    api.fails("CreateCustomerGateway", 400, "InvalidIpAddress.WrongFormat", IpAddress="127.0.0.1")
    api.fails("CreateCustomerGateway", 400, "InvalidIpAddress.WrongFormat", IpAddress="300.1.1.1")
    api.fails("CreateCustomerGateway", 400, "InvalidParameter.Asn", IpAddress="198.19.1.2", Asn="45104")
    body = api.fails(
        "CreateCustomerGateway", 400, "InvalidParameter.AuthKey", IpAddress="198.19.1.2", AuthKey="why?secret"
    )
    assert "why?secret" not in body["Message"]
    assert (
        api.ok("ModifyCustomerGatewayAttribute", CustomerGatewayId=cgw, Description="main site")[
            "Description"
        ]
        == "main site"
    )
    assert api.ok("DescribeCustomerGateways")["TotalCount"] == 1
    api.ok("DeleteCustomerGateway", CustomerGatewayId=cgw)
    api.fails(
        "DescribeCustomerGateway", 404, "InvalidCustomerGatewayInstanceId.NotFound", CustomerGatewayId=cgw
    )
