"""The official Tea SDK, unmodified, on the actions and parameters of issue 21: a
Terraform-like sequence (create with tags, read back, untag, list, dry-run a create and see
nothing made), a refused parameter and DiagnoseVpnConnections."""

from __future__ import annotations

import json
import time

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_vpc20160428 import models as tea
from alibabacloud_vpc20160428.client import Client as TeaClient

from tests.support.api import REGION
from tests.support.sdk import tea_client
from vpngw.cli.main import prepare_database
from vpngw.config import Settings
from vpngw.store import queries


def _count(client: TeaClient) -> int:
    body = client.describe_vpn_connections(
        tea.DescribeVpnConnectionsRequest(region_id=REGION, page_size=50)
    ).body
    return int(body.total_count)


@pytest.mark.parametrize("signature", [None, "v2"], ids=["acs3", "v2"])
def test_a_terraform_like_sequence(server_url: str, signature: str | None) -> None:
    client = tea_client(server_url, signature)
    vpc = client.create_vpc(tea.CreateVpcRequest(region_id=REGION, cidr_block="10.0.0.0/8")).body.vpc_id
    gateway = client.create_vpn_gateway(
        tea.CreateVpnGatewayRequest(
            region_id=REGION,
            vpc_id=vpc,
            bandwidth=10,
            instance_charge_type="POSTPAY",
            auto_pay=False,
            enable_ssl=False,
        )
    ).body.vpn_gateway_id
    cgw = client.create_customer_gateway(
        tea.CreateCustomerGatewayRequest(
            region_id=REGION,
            ip_address="198.19.0.40",
            tags=[tea.CreateCustomerGatewayRequestTags(key="site", value="hq")],
        )
    ).body.customer_gateway_id
    create = tea.CreateVpnConnectionRequest(
        region_id=REGION,
        vpn_gateway_id=gateway,
        customer_gateway_id=cgw,
        local_subnet="10.1.0.0/24",
        remote_subnet="10.20.0.0/24",
        enable_tunnels_bgp=False,
        ike_config=json.dumps({"IkeVersion": "ikev2"}),
        tags=[
            tea.CreateVpnConnectionRequestTags(key="env", value="prod"),
            tea.CreateVpnConnectionRequestTags(key="owner", value="net team"),
        ],
    )
    # A dry run of the create: the SDK raises the public API's DryRunOperation, nothing is made.
    create.dry_run = True
    with pytest.raises(ClientException) as raised:
        client.create_vpn_connection(create)
    assert (raised.value.status_code, raised.value.code) == (400, "DryRunOperation")
    assert _count(client) == 0
    create.dry_run = False
    vco = client.create_vpn_connection(create).body.vpn_connection_id

    read = client.describe_vpn_connection(
        tea.DescribeVpnConnectionRequest(region_id=REGION, vpn_connection_id=vco)
    ).body
    assert {(t.key, t.value) for t in read.tags.tag} == {("env", "prod"), ("owner", "net team")}
    listed = client.describe_vpn_connections(
        tea.DescribeVpnConnectionsRequest(
            region_id=REGION, tag=[tea.DescribeVpnConnectionsRequestTag(key="env", value="prod")]
        )
    ).body
    assert [c.vpn_connection_id for c in listed.vpn_connections.vpn_connection] == [vco]
    assert {t.key for t in listed.vpn_connections.vpn_connection[0].tag.tag} == {"env", "owner"}
    customer = client.describe_customer_gateway(
        tea.DescribeCustomerGatewayRequest(region_id=REGION, customer_gateway_id=cgw)
    ).body
    assert [(t.key, t.value) for t in customer.tags.tag] == [("site", "hq")]

    # Terraform's tag update: TagResources the new, UnTagResources the removed, then read.
    client.tag_resources(
        tea.TagResourcesRequest(
            region_id=REGION,
            resource_type="VPNCONNECTION",
            resource_id=[vco],
            tag=[tea.TagResourcesRequestTag(key="stage", value="2")],
        )
    )
    client.un_tag_resources(
        tea.UnTagResourcesRequest(
            region_id=REGION, resource_type="VPNCONNECTION", resource_id=[vco], tag_key=["owner"]
        )
    )
    tags = client.list_tag_resources(
        tea.ListTagResourcesRequest(
            region_id=REGION, resource_type="VPNCONNECTION", resource_id=[vco], max_results=50
        )
    ).body
    assert [(t.resource_id, t.tag_key, t.tag_value) for t in tags.tag_resources.tag_resource] == [
        (vco, "env", "prod"),
        (vco, "stage", "2"),
    ]
    assert tags.next_token == ""
    client.un_tag_resources(
        tea.UnTagResourcesRequest(
            region_id=REGION, resource_type="VPNCONNECTION", resource_id=[vco], all=True
        )
    )
    read = client.describe_vpn_connection(
        tea.DescribeVpnConnectionRequest(region_id=REGION, vpn_connection_id=vco)
    ).body
    assert read.tags.tag == []
    assert _count(client) == 1


def test_a_refused_parameter_through_the_sdk(server_url: str) -> None:
    client = tea_client(server_url, None)
    vpc = client.create_vpc(tea.CreateVpcRequest(region_id=REGION)).body.vpc_id
    with pytest.raises(ClientException) as raised:
        client.create_vpn_gateway(
            tea.CreateVpnGatewayRequest(
                region_id=REGION, vpc_id=vpc, bandwidth=10, vpn_type="NationalStandard"
            )
        )
    assert (raised.value.status_code, raised.value.code) == (400, "OperationUnsupported.VpnType")
    gateways = client.describe_vpn_gateways(tea.DescribeVpnGatewaysRequest(region_id=REGION)).body
    assert gateways.total_count == 0


def test_diagnose_through_the_sdk(server_url: str, settings: Settings) -> None:
    client = tea_client(server_url, None)
    vpc = client.create_vpc(tea.CreateVpcRequest(region_id=REGION)).body.vpc_id
    gateway = client.create_vpn_gateway(
        tea.CreateVpnGatewayRequest(region_id=REGION, vpc_id=vpc, bandwidth=10)
    ).body.vpn_gateway_id
    cgw = client.create_customer_gateway(
        tea.CreateCustomerGatewayRequest(region_id=REGION, ip_address="198.19.0.41")
    ).body.customer_gateway_id
    vco = client.create_vpn_connection(
        tea.CreateVpnConnectionRequest(
            region_id=REGION,
            vpn_gateway_id=gateway,
            customer_gateway_id=cgw,
            local_subnet="10.1.0.0/24",
            remote_subnet="10.20.0.0/24",
        )
    ).body.vpn_connection_id
    request = tea.DiagnoseVpnConnectionsRequest(
        region_id=REGION, vpn_gateway_id=gateway, vpn_connection_ids=[vco]
    )
    body = client.diagnose_vpn_connections(request).body
    assert body.total_count == 1 and body.vpn_connections[0].vpn_connection_id == vco
    assert body.vpn_connections[0].failed_reason_code == ""
    # What the data plane stores when a peer does not answer (its store function, another process's view).
    db = prepare_database(settings)
    now = int(time.time() * 1000)
    with db.transaction(write=True) as session:
        queries.add_connection_logs(session, [(vco, now - 5, "[IKE] giving up after 5 retransmits")])
        queries.write_observation(
            session,
            vco,
            status="ike_sa_not_established",
            diagnosis="Peer not responding: 198.19.0.41 did not answer after 5 retransmits.",
            traffic=None,
            now_ms=now,
        )
    db.dispose()
    found = client.diagnose_vpn_connections(request).body.vpn_connections[0]
    assert (found.failed_reason_code, found.failed_time, found.severity) == (
        "PeerNotResponding",
        now,
        "Critical",
    )
    assert found.source_log.endswith("[IKE] giving up after 5 retransmits")
    with pytest.raises(ClientException) as raised:
        client.diagnose_vpn_connections(
            tea.DiagnoseVpnConnectionsRequest(region_id=REGION, vpn_gateway_id=gateway, tunnel_ids=["tun-1"])
        )
    assert (raised.value.status_code, raised.value.code) == (404, "InvalidTunnelId.NotFound")
