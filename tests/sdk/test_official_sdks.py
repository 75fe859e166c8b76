"""The official Alibaba Cloud SDKs, unmodified, as clients of a running vpngw server.

The legacy SDK (aliyun-python-sdk-core + aliyun-python-sdk-vpc, RPC signature v1) and
the current one (alibabacloud-vpc20160428: ACS3 signing by default, and v2) each run a
full scenario and an error case, and must raise their own exception types.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from alibabacloud_tea_openapi import models as openapi_models
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_vpc20160428 import models as tea
from alibabacloud_vpc20160428.client import Client as TeaClient
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkvpc.request.v20160428 import (
    CreateCustomerGatewayRequest,
    CreateVpcRequest,
    CreateVpnConnectionRequest,
    CreateVpnGatewayRequest,
    DeleteVpnConnectionRequest,
    DescribeVpnConnectionRequest,
    DescribeVpnConnectionsRequest,
    ModifyVpnConnectionAttributeRequest,
)

from tests.support.api import REGION, TEST_KEY_ID, TEST_KEY_SECRET
from tests.support.sdk import tea_client

ACCESS_KEY_ID = TEST_KEY_ID
ACCESS_KEY_SECRET = TEST_KEY_SECRET


class CoreSdk:
    """The legacy SDK: every request object is pointed at the local server."""

    def __init__(self, server_url: str) -> None:
        self.endpoint = server_url.removeprefix("http://")
        self.client = AcsClient(ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION)

    def call(self, request: Any, **params: Any) -> dict[str, Any]:
        request.set_endpoint(self.endpoint)
        request.set_protocol_type("http")
        for key, value in params.items():
            getattr(request, f"set_{key}")(value)
        result: dict[str, Any] = json.loads(self.client.do_action_with_exception(request))
        return result


def test_legacy_sdk_scenario(server_url: str) -> None:
    sdk = CoreSdk(server_url)
    vpc = sdk.call(CreateVpcRequest.CreateVpcRequest(), CidrBlock="10.0.0.0/8")["VpcId"]
    gateway = sdk.call(CreateVpnGatewayRequest.CreateVpnGatewayRequest(), VpcId=vpc, Bandwidth=10)[
        "VpnGatewayId"
    ]
    cgw = sdk.call(CreateCustomerGatewayRequest.CreateCustomerGatewayRequest(), IpAddress="198.19.0.20")[
        "CustomerGatewayId"
    ]
    params = dict(
        VpnGatewayId=gateway,
        CustomerGatewayId=cgw,
        LocalSubnet="10.1.0.0/24",
        RemoteSubnet="10.20.0.0/24",
        Name="core sdk".replace(" ", "-"),
        EffectImmediately=True,
        ClientToken="core-token-1",
        IkeConfig=json.dumps({"IkeVersion": "ikev2", "Psk": "core*psk/1"}),
    )
    created = sdk.call(CreateVpnConnectionRequest.CreateVpnConnectionRequest(), **params)
    replay = sdk.call(CreateVpnConnectionRequest.CreateVpnConnectionRequest(), **params)
    assert replay["VpnConnectionId"] == created["VpnConnectionId"]
    vco = created["VpnConnectionId"]
    got = sdk.call(DescribeVpnConnectionRequest.DescribeVpnConnectionRequest(), VpnConnectionId=vco)
    assert got["EffectImmediately"] is True and got["IkeConfig"]["Psk"] == "core*psk/1"
    sdk.call(
        ModifyVpnConnectionAttributeRequest.ModifyVpnConnectionAttributeRequest(),
        VpnConnectionId=vco,
        LocalSubnet="10.1.0.0/24",
        RemoteSubnet="10.20.0.0/24",
        Name="renamed",
    )
    listed = sdk.call(DescribeVpnConnectionsRequest.DescribeVpnConnectionsRequest(), VpnGatewayId=gateway)
    assert [c["Name"] for c in listed["VpnConnections"]["VpnConnection"]] == ["renamed"]
    sdk.call(DeleteVpnConnectionRequest.DeleteVpnConnectionRequest(), VpnConnectionId=vco)
    with pytest.raises(ServerException) as raised:
        sdk.call(DescribeVpnConnectionRequest.DescribeVpnConnectionRequest(), VpnConnectionId=vco)
    assert raised.value.get_http_status() == 404
    assert raised.value.get_error_code() == "InvalidVpnConnectionInstanceId.NotFound"
    assert raised.value.get_request_id()


def test_legacy_sdk_error_case(server_url: str) -> None:
    sdk = CoreSdk(server_url)
    with pytest.raises(ServerException) as raised:
        sdk.call(
            CreateVpnConnectionRequest.CreateVpnConnectionRequest(),
            VpnGatewayId="vpn-x",
            CustomerGatewayId="cgw-x",
            LocalSubnet="10.0.0.1/24",
            RemoteSubnet="10.9.0.0/24",
        )
    assert (raised.value.get_http_status(), raised.value.get_error_code()) == (
        400,
        "IllegalParam.LocalSubnet",
    )


@pytest.mark.parametrize("signature", [None, "v2"], ids=["acs3", "v2"])
def test_current_sdk_scenario(server_url: str, signature: str | None) -> None:
    client = tea_client(server_url, signature)
    vpc = client.create_vpc(tea.CreateVpcRequest(region_id=REGION)).body.vpc_id
    gateway = client.create_vpn_gateway(
        tea.CreateVpnGatewayRequest(region_id=REGION, vpc_id=vpc, bandwidth=10)
    ).body
    cgw = client.create_customer_gateway(
        tea.CreateCustomerGatewayRequest(region_id=REGION, ip_address="198.19.0.30")
    ).body
    request = tea.CreateVpnConnectionRequest(
        region_id=REGION,
        vpn_gateway_id=gateway.vpn_gateway_id,
        customer_gateway_id=cgw.customer_gateway_id,
        local_subnet="10.1.0.0/24,10.1.1.0/24",
        remote_subnet="10.20.0.0/24",
        name="tea.sdk_conn",
        auto_config_route=True,
        client_token="tea-token-1",
        health_check_config=json.dumps(
            {"enable": True, "sip": "10.1.0.9", "dip": "10.20.0.9", "interval": 5, "retry": 2}
        ),
    )
    created = client.create_vpn_connection(request).body
    assert (
        created.vpn_connection_id.startswith("vco-")
        and created.name == "tea.sdk_conn"
        and created.create_time > 0
    )
    replay = client.create_vpn_connection(request).body
    assert replay.vpn_connection_id == created.vpn_connection_id
    vco = created.vpn_connection_id
    got = client.describe_vpn_connection(
        tea.DescribeVpnConnectionRequest(region_id=REGION, vpn_connection_id=vco)
    ).body
    assert got is not None, "the SDK could not map the response onto its model"
    assert got.local_subnet == "10.1.0.0/24,10.1.1.0/24" and got.state == "active"
    assert got.ike_config.ike_version == "ikev1" and len(got.ike_config.psk) == 16
    assert (
        got.ike_config.local_id
        == client.describe_vpn_gateway(
            tea.DescribeVpnGatewayRequest(region_id=REGION, vpn_gateway_id=gateway.vpn_gateway_id)
        ).body.internet_ip
    )
    assert got.vco_health_check.enable == "true" and got.vco_health_check.interval == 5
    modified = client.modify_vpn_connection_attribute(
        tea.ModifyVpnConnectionAttributeRequest(
            region_id=REGION,
            vpn_connection_id=vco,
            local_subnet="10.1.0.0/24",
            remote_subnet="10.20.0.0/24",
            ipsec_config=json.dumps({"IpsecPfs": "disabled"}),
        )
    ).body
    assert modified.local_subnet == "10.1.0.0/24" and modified.ipsec_config.ipsec_pfs == "disabled"
    listed = client.describe_vpn_connections(
        tea.DescribeVpnConnectionsRequest(region_id=REGION, page_size=50)
    ).body
    assert listed.total_count == 1 and listed.vpn_connections.vpn_connection[0].vpn_connection_id == vco
    client.delete_vpn_connection(tea.DeleteVpnConnectionRequest(region_id=REGION, vpn_connection_id=vco))
    with pytest.raises(ClientException) as raised:
        client.describe_vpn_connection(
            tea.DescribeVpnConnectionRequest(region_id=REGION, vpn_connection_id=vco)
        )
    assert raised.value.code == "InvalidVpnConnectionInstanceId.NotFound"
    assert raised.value.status_code == 404


@pytest.mark.parametrize("signature", [None, "v2"], ids=["acs3", "v2"])
def test_current_sdk_error_case(server_url: str, signature: str | None) -> None:
    client = tea_client(server_url, signature)
    with pytest.raises(ClientException) as raised:
        client.create_vpn_connection(
            tea.CreateVpnConnectionRequest(
                region_id=REGION,
                vpn_gateway_id="vpn-none",
                customer_gateway_id="cgw-none",
                local_subnet="10.0.0.0/24",
                remote_subnet="10.9.0.0/24",
                ike_config='{"IkeMode":"quick"}',
            )
        )
    assert raised.value.code == "InvalidParameter.IkeConfig.IkeMode" and raised.value.status_code == 400


def test_legacy_sdk_with_a_wrong_secret(server_url: str) -> None:
    """The server's SignatureDoesNotMatch message carries its string to sign; the legacy
    SDK compares it with its own and, finding them equal, reports the wrong secret."""
    sdk = CoreSdk(server_url)
    sdk.client = AcsClient(ACCESS_KEY_ID, "not-the-secret", REGION)
    with pytest.raises(ServerException) as raised:
        sdk.call(DescribeVpnConnectionsRequest.DescribeVpnConnectionsRequest())
    assert raised.value.get_http_status() == 400
    assert raised.value.get_error_code() == "InvalidAccessKeySecret"


@pytest.mark.parametrize("signature", [None, "v2"], ids=["acs3", "v2"])
def test_current_sdk_with_a_wrong_secret(server_url: str, signature: str | None) -> None:
    config = openapi_models.Config(
        access_key_id=ACCESS_KEY_ID,
        access_key_secret="not-the-secret",
        region_id=REGION,
        endpoint=server_url.removeprefix("http://"),
        protocol="http",
    )
    if signature:
        config.signature_algorithm = signature
    with pytest.raises(ClientException) as raised:
        TeaClient(config).describe_vpn_connections(tea.DescribeVpnConnectionsRequest(region_id=REGION))
    assert raised.value.code == "SignatureDoesNotMatch" and raised.value.status_code == 400
