"""Dual tunnels (issue #20) through the official SDKs, unmodified, against a running server:
the Tea SDK (ACS3 and v2 signing) drives a dual-tunnel gateway and connection through every
action that has tunnels (its models must read our answers: per-tunnel State and Status,
the tunnels of DownloadVpnConnectionConfig, ModifyTunnelAttribute's answer), and the legacy
SDK creates one with its own flattening of TunnelOptionsSpecification."""

from __future__ import annotations

import json

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_vpc20160428 import models as tea
from alibabacloud_vpc20160428.client import Client as TeaClient
from aliyunsdkcore.client import AcsClient
from aliyunsdkvpc.request.v20160428 import CreateVpnConnectionRequest, DescribeVpnConnectionRequest

from tests.support.api import REGION, TEST_KEY_ID, TEST_KEY_SECRET
from tests.support.sdk import tea_client

Tunnel = tea.CreateVpnConnectionRequestTunnelOptionsSpecification
TunnelIke = tea.CreateVpnConnectionRequestTunnelOptionsSpecificationTunnelIkeConfig
TunnelIpsec = tea.CreateVpnConnectionRequestTunnelOptionsSpecificationTunnelIpsecConfig


def _dual_gateway(client: TeaClient) -> tuple[str, str, str]:
    vpc = client.create_vpc(tea.CreateVpcRequest(region_id=REGION, cidr_block="10.0.0.0/8")).body.vpc_id
    gateway = client.create_vpn_gateway(
        tea.CreateVpnGatewayRequest(
            region_id=REGION,
            vpc_id=vpc,
            bandwidth=10,
            v_switch_id="vsw-zone-a",
            disaster_recovery_vswitch_id="vsw-zone-b",
        )
    ).body.vpn_gateway_id
    got = client.describe_vpn_gateway(
        tea.DescribeVpnGatewayRequest(region_id=REGION, vpn_gateway_id=gateway)
    ).body
    assert got.disaster_recovery_vswitch_id == "vsw-zone-b" and got.v_switch_id == "vsw-zone-a"
    assert got.internet_ip and got.disaster_recovery_internet_ip
    assert got.internet_ip != got.disaster_recovery_internet_ip
    listed = client.describe_vpn_gateways(tea.DescribeVpnGatewaysRequest(region_id=REGION)).body
    assert (
        listed.vpn_gateways.vpn_gateway[0].disaster_recovery_internet_ip == got.disaster_recovery_internet_ip
    )
    return gateway, got.internet_ip, got.disaster_recovery_internet_ip


@pytest.mark.parametrize("signature", [None, "v2"], ids=["acs3", "v2"])
def test_a_dual_tunnel_connection_through_the_tea_sdk(server_url: str, signature: str | None) -> None:
    client = tea_client(server_url, signature)
    gateway, first_ip, second_ip = _dual_gateway(client)
    cgws = [
        client.create_customer_gateway(
            tea.CreateCustomerGatewayRequest(region_id=REGION, ip_address=address)
        ).body.customer_gateway_id
        for address in ("198.19.0.50", "198.19.0.51")
    ]
    create = tea.CreateVpnConnectionRequest(
        region_id=REGION,
        vpn_gateway_id=gateway,
        local_subnet="10.1.0.0/24",
        remote_subnet="10.20.0.0/24",
        client_token="dual-sdk-1",
        tunnel_options_specification=[
            Tunnel(
                customer_gateway_id=cgws[0],
                role="master",
                enable_dpd=True,
                enable_nat_traversal=False,
                tunnel_ike_config=TunnelIke(psk="a b*c?/1", ike_version="ikev2", ike_lifetime=3600),
                tunnel_ipsec_config=TunnelIpsec(ipsec_pfs="group14", ipsec_lifetime=1800),
            ),
            Tunnel(customer_gateway_id=cgws[1], role="slave"),
        ],
    )
    # A bad Psk in the first tunnel: refused, through the SDK's own exception, nothing made.
    create.tunnel_options_specification[0].tunnel_ike_config.psk = "has space"
    with pytest.raises(ClientException) as raised:
        client.create_vpn_connection(create)
    assert (raised.value.status_code, raised.value.code) == (
        400,
        "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig.Psk",
    )
    assert "has space" not in raised.value.message
    create.tunnel_options_specification[0].tunnel_ike_config.psk = "first*psk?/1"
    vco = client.create_vpn_connection(create).body.vpn_connection_id
    assert client.create_vpn_connection(create).body.vpn_connection_id == vco  # ClientToken replay

    read = client.describe_vpn_connection(
        tea.DescribeVpnConnectionRequest(region_id=REGION, vpn_connection_id=vco)
    ).body
    options = read.tunnel_options_specification.tunnel_options
    assert [(t.tunnel_index, t.role, t.internet_ip, t.customer_gateway_id) for t in options] == [
        (1, "master", first_ip, cgws[0]),
        (2, "slave", second_ip, cgws[1]),
    ]
    first, second = options
    assert all(t.tunnel_id.startswith("tun-") and t.state == "active" for t in options)
    assert [t.status for t in options] == [
        "ike_sa_not_established"
    ] * 2 and read.status == "ike_sa_not_established"
    assert (first.tunnel_ike_config.psk, first.tunnel_ike_config.ike_version) == ("first*psk?/1", "ikev2")
    assert first.tunnel_ike_config.local_id == first_ip and first.tunnel_ike_config.remote_id == "198.19.0.50"
    assert (first.tunnel_ipsec_config.ipsec_pfs, first.tunnel_ipsec_config.ipsec_lifetime) == (
        "group14",
        1800,
    )
    assert (first.enable_dpd, first.enable_nat_traversal) == ("true", "false")
    assert len(second.tunnel_ike_config.psk) == 16 and second.tunnel_ike_config.local_id == second_ip
    listed = client.describe_vpn_connections(
        tea.DescribeVpnConnectionsRequest(region_id=REGION, vpn_gateway_id=gateway)
    ).body.vpn_connections.vpn_connection
    assert [t.tunnel_id for t in listed[0].tunnel_options_specification.tunnel_options] == [
        first.tunnel_id,
        second.tunnel_id,
    ]

    # One tunnel changed with ModifyTunnelAttribute: only that one.
    changed = client.modify_tunnel_attribute(
        tea.ModifyTunnelAttributeRequest(
            region_id=REGION,
            vpn_connection_id=vco,
            tunnel_id=second.tunnel_id,
            tunnel_options_specification=tea.ModifyTunnelAttributeRequestTunnelOptionsSpecification(
                enable_dpd=False,
                tunnel_ike_config=tea.ModifyTunnelAttributeRequestTunnelOptionsSpecificationTunnelIkeConfig(
                    psk="second-psk", ike_enc_alg="aes256"
                ),
            ),
        )
    ).body
    assert (changed.tunnel_id, changed.role, changed.internet_ip) == (second.tunnel_id, "slave", second_ip)
    assert changed.tunnel_ike_config.psk == "second-psk" and changed.tunnel_ike_config.ike_enc_alg == "aes256"
    after = client.describe_vpn_connection(
        tea.DescribeVpnConnectionRequest(region_id=REGION, vpn_connection_id=vco)
    ).body.tunnel_options_specification.tunnel_options
    assert after[0].to_map() == first.to_map()
    assert after[1].enable_dpd == "false"

    # ModifyVpnConnectionAttribute: the tunnels by id, beside the connection's own attributes.
    modified = client.modify_vpn_connection_attribute(
        tea.ModifyVpnConnectionAttributeRequest(
            region_id=REGION,
            vpn_connection_id=vco,
            local_subnet="10.1.0.0/24",
            remote_subnet="10.20.0.0/24",
            name="dual",
            tunnel_options_specification=[
                tea.ModifyVpnConnectionAttributeRequestTunnelOptionsSpecification(
                    tunnel_id=first.tunnel_id,
                    tunnel_ipsec_config=tea.ModifyVpnConnectionAttributeRequestTunnelOptionsSpecificationTunnelIpsecConfig(
                        ipsec_enc_alg="aes192"
                    ),
                )
            ],
        )
    ).body
    assert modified.name == "dual"
    tunnels = modified.tunnel_options_specification.tunnel_options
    assert tunnels[0].tunnel_ipsec_config.ipsec_enc_alg == "aes192"

    logs = client.describe_vpn_connection_logs(
        tea.DescribeVpnConnectionLogsRequest(
            region_id=REGION, vpn_connection_id=vco, tunnel_id=first.tunnel_id
        )
    ).body
    assert logs.count == 0 and logs.is_completed is True
    config = client.download_vpn_connection_config(
        tea.DownloadVpnConnectionConfigRequest(region_id=REGION, vpn_connection_id=vco)
    ).body.vpn_connection_config
    peer = config.tunnels_config.tunnel_config
    assert [(t.tunnel_id, t.local, t.remote) for t in peer] == [
        (first.tunnel_id, "198.19.0.50", first_ip),
        (second.tunnel_id, "198.19.0.51", second_ip),
    ]
    assert peer[1].ike_config.psk == "second-psk" and peer[1].ike_config.remote_id == second_ip
    diagnosed = client.diagnose_vpn_connections(
        tea.DiagnoseVpnConnectionsRequest(
            region_id=REGION, vpn_gateway_id=gateway, tunnel_ids=[second.tunnel_id]
        )
    ).body.vpn_connections
    assert [(d.vpn_connection_id, d.tunnel_id, d.failed_reason_code) for d in diagnosed] == [
        (vco, second.tunnel_id, "GatewayNotRunning")
    ]

    # Mixing the modes: a single-tunnel setting on a dual-tunnel gateway.
    with pytest.raises(ClientException) as raised:
        client.modify_vpn_connection_attribute(
            tea.ModifyVpnConnectionAttributeRequest(
                region_id=REGION, vpn_connection_id=vco, ike_config=json.dumps({"IkeVersion": "ikev1"})
            )
        )
    assert raised.value.code == "IncorrectTunnelMode.DualTunnelGateway"
    client.delete_vpn_connection(tea.DeleteVpnConnectionRequest(region_id=REGION, vpn_connection_id=vco))


def test_a_dual_tunnel_connection_through_the_legacy_sdk(server_url: str) -> None:
    gateway, first_ip, second_ip = _dual_gateway(tea_client(server_url, None))
    tea_sdk = tea_client(server_url, None)
    cgws = [
        tea_sdk.create_customer_gateway(
            tea.CreateCustomerGatewayRequest(region_id=REGION, ip_address=address)
        ).body.customer_gateway_id
        for address in ("198.19.0.60", "198.19.0.61")
    ]
    client = AcsClient(TEST_KEY_ID, TEST_KEY_SECRET, REGION)
    endpoint = server_url.removeprefix("http://")
    create = CreateVpnConnectionRequest.CreateVpnConnectionRequest()
    create.set_endpoint(endpoint)
    create.set_protocol_type("http")
    create.set_VpnGatewayId(gateway)
    create.set_LocalSubnet("10.1.0.0/24")
    create.set_RemoteSubnet("10.20.0.0/24")
    create.set_TunnelOptionsSpecification(
        [
            {"Role": "slave", "CustomerGatewayId": cgws[0], "TunnelIkeConfig": {"Psk": "core-one"}},
            {"Role": "master", "CustomerGatewayId": cgws[1], "TunnelIpsecConfig": {"IpsecPfs": "disabled"}},
        ]
    )
    vco = json.loads(client.do_action_with_exception(create))["VpnConnectionId"]
    describe = DescribeVpnConnectionRequest.DescribeVpnConnectionRequest()
    describe.set_endpoint(endpoint)
    describe.set_protocol_type("http")
    describe.set_VpnConnectionId(vco)
    got = json.loads(client.do_action_with_exception(describe))
    options = got["TunnelOptionsSpecification"]["TunnelOptions"]
    assert [(t["Role"], t["InternetIp"]) for t in options] == [("slave", first_ip), ("master", second_ip)]
    assert options[0]["TunnelIkeConfig"]["Psk"] == "core-one"
    assert options[1]["TunnelIpsecConfig"]["IpsecPfs"] == "disabled"
    assert got["CustomerGatewayId"] == cgws[1]  # the top level is the master's
