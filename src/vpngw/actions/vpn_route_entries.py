"""DescribeVpnRouteEntries: the routes AutoConfigRoute installs, derived from connections.

With ``AutoConfigRoute=true`` the data plane routes each of the connection's
RemoteSubnets from the VPC side toward the VPN gateway (docs/lab.md). These entries are
computed from the connections themselves, never stored apart, so they cannot disagree
with them. CreateVpnRouteEntry and its kin (destination-routing mode) are not offered.
"""

from __future__ import annotations

from typing import Annotated

from sqlalchemy.orm import Session

from vpngw.actions.framework import Context, PageParams, PageResponse, Response, choice
from vpngw.actions.vpn_gateways import get_gateway
from vpngw.store import queries

ROUTE_WEIGHT = 100


class DescribeVpnRouteEntriesParams(PageParams):
    vpn_gateway_id: str
    route_entry_type: Annotated[str, choice("custom", "bgp")] | None = None


class VpnRouteEntry(Response):
    vpn_instance_id: str
    route_dest: str
    next_hop: str
    weight: int
    state: str
    create_time: int
    source: str
    as_path: str
    community: str
    route_entry_type: str
    next_hop_tunnel_id: str
    description: str


class VpnRouteEntryList(Response):
    vpn_route_entry: list[VpnRouteEntry]


class DescribeVpnRouteEntriesResponse(PageResponse):
    vpn_route_entries: VpnRouteEntryList


def describe_vpn_route_entries(
    ctx: Context, session: Session, p: DescribeVpnRouteEntriesParams
) -> DescribeVpnRouteEntriesResponse:
    gateway = get_gateway(ctx, session, p.region_id, p.vpn_gateway_id)
    entries: list[VpnRouteEntry] = []
    if p.route_entry_type != "bgp":  # BGP is not offered: no BGP routes
        for connection in queries.connections_of_gateway(session, gateway.id):
            if not connection.auto_config_route:
                continue
            for subnet in connection.remote_subnet.split(","):
                entries.append(
                    VpnRouteEntry(
                        vpn_instance_id=gateway.id,
                        route_dest=subnet,
                        next_hop=connection.id,
                        weight=ROUTE_WEIGHT,
                        state="published",
                        create_time=connection.create_time,
                        source="",
                        as_path="",
                        community="",
                        route_entry_type="custom",
                        next_hop_tunnel_id="",
                        description=f"auto-configured by {connection.id}",
                    )
                )
    start = (p.page_number - 1) * p.page_size
    return DescribeVpnRouteEntriesResponse(
        total_count=len(entries),
        page_number=p.page_number,
        page_size=p.page_size,
        vpn_route_entries=VpnRouteEntryList(vpn_route_entry=entries[start : start + p.page_size]),
    )
