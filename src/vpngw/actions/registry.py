"""The one list of actions: everything the API serves is here, and nothing else."""

from __future__ import annotations

from typing import Any

from vpngw.actions import customer_gateways as cgw
from vpngw.actions import nodes, regions, tags, vpcs
from vpngw.actions import vpn_connection_diagnosis as vco_diagnosis
from vpngw.actions import vpn_connection_logs as vco_logs
from vpngw.actions import vpn_connection_traffic as vco_traffic
from vpngw.actions import vpn_connections as vco
from vpngw.actions import vpn_gateways as vpn
from vpngw.actions import vpn_route_entries as routes
from vpngw.actions import vpn_tunnels as tunnels
from vpngw.actions.framework import Action

_ALL: tuple[Action[Any], ...] = (
    Action(
        "DescribeRegions", regions.DescribeRegionsParams, regions.describe_regions, writes=False, inline=True
    ),
    Action("CreateVpc", vpcs.CreateVpcParams, vpcs.create_vpc, writes=True),
    Action("DescribeVpcs", vpcs.DescribeVpcsParams, vpcs.describe_vpcs, writes=False),
    Action("DeleteVpc", vpcs.DeleteVpcParams, vpcs.delete_vpc, writes=True),
    Action("CreateVpnGateway", vpn.CreateVpnGatewayParams, vpn.create_vpn_gateway, writes=True),
    Action("DescribeVpnGateway", vpn.DescribeVpnGatewayParams, vpn.describe_vpn_gateway, writes=False),
    Action("DescribeVpnGateways", vpn.DescribeVpnGatewaysParams, vpn.describe_vpn_gateways, writes=False),
    Action(
        "ModifyVpnGatewayAttribute",
        vpn.ModifyVpnGatewayAttributeParams,
        vpn.modify_vpn_gateway_attribute,
        writes=True,
    ),
    Action("DeleteVpnGateway", vpn.DeleteVpnGatewayParams, vpn.delete_vpn_gateway, writes=True),
    Action(
        "CreateCustomerGateway", cgw.CreateCustomerGatewayParams, cgw.create_customer_gateway, writes=True
    ),
    Action(
        "DescribeCustomerGateway",
        cgw.DescribeCustomerGatewayParams,
        cgw.describe_customer_gateway,
        writes=False,
    ),
    Action(
        "DescribeCustomerGateways",
        cgw.DescribeCustomerGatewaysParams,
        cgw.describe_customer_gateways,
        writes=False,
    ),
    Action(
        "ModifyCustomerGatewayAttribute",
        cgw.ModifyCustomerGatewayAttributeParams,
        cgw.modify_customer_gateway_attribute,
        writes=True,
    ),
    Action(
        "DeleteCustomerGateway", cgw.DeleteCustomerGatewayParams, cgw.delete_customer_gateway, writes=True
    ),
    Action(
        "CreateVpnConnection",
        vco.CreateVpnConnectionParams,
        vco.create_vpn_connection,
        writes=True,
        direct=vco.create_vpn_connection,
        inline=True,
    ),
    Action(
        "DescribeVpnConnection", vco.DescribeVpnConnectionParams, vco.describe_vpn_connection, writes=False
    ),
    Action(
        "DescribeVpnConnections",
        vco.DescribeVpnConnectionsParams,
        vco.describe_vpn_connections,
        writes=False,
        direct=vco.describe_vpn_connections_listed,
        inline=True,
    ),
    Action(
        "ModifyVpnConnectionAttribute",
        vco.ModifyVpnConnectionAttributeParams,
        vco.modify_vpn_connection_attribute,
        writes=True,
    ),
    Action(
        "DeleteVpnConnection",
        vco.DeleteVpnConnectionParams,
        vco.delete_vpn_connection,
        writes=True,
        direct=vco.delete_vpn_connection,
        inline=True,
    ),
    Action(
        "ModifyTunnelAttribute",
        tunnels.ModifyTunnelAttributeParams,
        tunnels.modify_tunnel_attribute,
        writes=True,
    ),
    Action(
        "DownloadVpnConnectionConfig",
        vco.DownloadVpnConnectionConfigParams,
        vco.download_vpn_connection_config,
        writes=False,
    ),
    Action(
        "DescribeVpnConnectionLogs",
        vco_logs.DescribeVpnConnectionLogsParams,
        vco_logs.describe_vpn_connection_logs,
        writes=False,
    ),
    Action(
        "DescribeVpnConnectionTraffic",
        vco_traffic.DescribeVpnConnectionTrafficParams,
        vco_traffic.describe_vpn_connection_traffic,
        writes=False,
    ),
    Action("DescribeNodes", nodes.DescribeNodesParams, nodes.describe_nodes, writes=False),
    Action(
        "DiagnoseVpnConnections",
        vco_diagnosis.DiagnoseVpnConnectionsParams,
        vco_diagnosis.diagnose_vpn_connections,
        writes=False,
    ),
    Action("TagResources", tags.TagResourcesParams, tags.tag_resources, writes=True),
    Action("UnTagResources", tags.UnTagResourcesParams, tags.untag_resources, writes=True),
    Action("ListTagResources", tags.ListTagResourcesParams, tags.list_tag_resources, writes=False),
    Action(
        "DescribeVpnRouteEntries",
        routes.DescribeVpnRouteEntriesParams,
        routes.describe_vpn_route_entries,
        writes=False,
    ),
)

ACTIONS: dict[str, Action[Any]] = {action.name: action for action in _ALL}
