"""Create/Describe/Modify/Delete VPN gateways. A gateway lives in a VPC and gets a
public address (InternetIp) from the configured pool."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator
from sqlalchemy.orm import Session

from vpngw import ids
from vpngw.actions.framework import (
    NO_RESOURCE_GROUPS,
    Bool,
    ClientToken,
    Context,
    Description,
    Name,
    PageParams,
    PageResponse,
    RegionParams,
    Response,
    choice,
    unsupported,
)
from vpngw.actions.quotas import check_room
from vpngw.actions.tagging import TagFilters, TagList, TagsToSet, tag_list
from vpngw.actions.vpcs import get_vpc
from vpngw.errors import BadRequest, NotFound, invalid_parameter, missing_parameter
from vpngw.rules.gateways import parse_bandwidth
from vpngw.rules.values import check_max_length, parse_int
from vpngw.store import leases, queries
from vpngw.store.models import VpnGateway

MS_PER_MONTH = 30 * 24 * 3600 * 1000


def gateway_not_found(vpn_gateway_id: str) -> NotFound:
    return NotFound(
        "InvalidVpnGatewayInstanceId.NotFound",
        f"The specified vpn gateway instance id {vpn_gateway_id} does not exist.",
    )


def get_gateway(
    ctx: Context, session: Session, region_id: str, vpn_gateway_id: str, *, lock: bool = False
) -> VpnGateway:
    gateway = queries.get_owned(session, VpnGateway, ctx.account_id, region_id, vpn_gateway_id, lock=lock)
    if gateway is None:
        raise gateway_not_found(vpn_gateway_id)
    return gateway


def lowest_free_address(pool: str, in_use: set[str]) -> str | None:
    """The lowest address of ``pool`` outside ``in_use``, or None. The pool's first host
    is never handed out: the lab keeps it for the router of the segment (the WAN's for
    InternetIps, the shared VPC segment's for next hops)."""
    hosts = ipaddress.IPv4Network(pool).hosts()
    next(hosts, None)
    return next((str(host) for host in hosts if str(host) not in in_use), None)


def allocate_internet_ip(
    session: Session, pool: str, *, taken: set[str] | frozenset[str] = frozenset()
) -> str:
    """The lowest free address of the pool (not in ``taken`` either: an address this
    transaction allocated already). Allocation is serialised by a pool lock; the unique
    constraints on the addresses are the last line of defence (a violation re-runs the
    action)."""
    queries.lock_internet_ip_pool(session)
    address = lowest_free_address(pool, queries.internet_ips_in_use(session) | set(taken))
    if address is None:
        raise BadRequest(
            "Resource.QuotaFull", "The quota of resource is full: no free InternetIp is left in the pool."
        )
    return address


def allocate_vpc_next_hop(session: Session, pool: str) -> str:
    """The gateway's VPC-side next hop: the lowest free address of ``VPNGW_VPC_NEXT_HOP_POOL``,
    under the same lock and with the same last line of defence as the InternetIp."""
    queries.lock_internet_ip_pool(session)
    address = lowest_free_address(pool, queries.vpc_next_hops_in_use(session))
    if address is None:
        raise BadRequest(
            "Resource.QuotaFull",
            "The quota of resource is full: no free VPC-side next hop is left in the pool "
            "(VPNGW_VPC_NEXT_HOP_POOL).",
        )
    return address


def assign_missing_vpc_next_hops(session: Session, pool: str) -> list[str]:
    """Give a VPC-side next hop to every gateway that has none (created before they
    existed: migration 0013 cannot know the pool), in creation order; an API server does
    it when it starts. Returns the gateways left without one (the pool is full)."""
    queries.lock_internet_ip_pool(session)
    in_use = queries.vpc_next_hops_in_use(session)
    missing = queries.gateways_without_vpc_next_hop(session)
    for index, gateway_id in enumerate(missing):
        address = lowest_free_address(pool, in_use)
        if address is None:
            return missing[index:]
        in_use.add(address)
        queries.set_vpc_next_hop(session, gateway_id, address)
    return []


class CreateVpnGatewayParams(RegionParams):
    NO_OP = {
        "AutoPay": "Billing: nothing is bought in a private cloud (true or false accepted).",
        "SslConnections": "Sizes SSL VPN, which is refused (checked: 5-1000).",
    }
    REFUSED = {
        "EnableSsl": unsupported("EnableSsl", "SSL VPN is not offered (EnableSsl=false is accepted).", True),
        "VpnType": unsupported(
            "VpnType", "NationalStandard (SM) VPN gateways are not supported.", "NationalStandard"
        ),
        **NO_RESOURCE_GROUPS,
    }
    vpc_id: str
    bandwidth: Annotated[int, BeforeValidator(lambda v: parse_bandwidth(str(v)))]
    name: Name | None = None
    description: Description | None = None
    instance_charge_type: Annotated[str, choice("PREPAY", "POSTPAY")] = "POSTPAY"
    period: Annotated[int, BeforeValidator(lambda v: parse_int("Period", v, 1, 36))] = 1
    auto_pay: Bool = False
    enable_ipsec: Bool = True
    enable_ssl: Bool = False
    ssl_connections: Annotated[int, BeforeValidator(lambda v: parse_int("SslConnections", v, 5, 1000))] = 5
    v_switch_id: Annotated[str, AfterValidator(lambda v: check_max_length("VSwitchId", v, 64))] | None = None
    # A second vSwitch makes a dual-tunnel gateway: a second address (docs/api.md).
    disaster_recovery_v_switch_id: (
        Annotated[str, AfterValidator(lambda v: check_max_length("DisasterRecoveryVSwitchId", v, 64))] | None
    ) = None
    vpn_type: Annotated[str, choice("Normal", "NationalStandard")] = "Normal"
    network_type: Annotated[str, choice("public", "private")] = "public"
    # Not in the SDK's CreateVpnGateway (which tags gateways with TagResources): an extension.
    tags: TagsToSet | None = None
    client_token: ClientToken | None = None


class CreateVpnGatewayResponse(Response):
    vpn_gateway_id: str
    name: str
    order_id: int


def create_vpn_gateway(ctx: Context, session: Session, p: CreateVpnGatewayParams) -> CreateVpnGatewayResponse:
    if p.disaster_recovery_v_switch_id is not None:
        if p.v_switch_id is None:
            raise missing_parameter("VSwitchId")
        if p.disaster_recovery_v_switch_id == p.v_switch_id:
            raise invalid_parameter(
                "DisasterRecoveryVSwitchId", "must be another vSwitch than VSwitchId (the second zone's)"
            )
    vpc = get_vpc(ctx, session, p.region_id, p.vpc_id)
    check_room(ctx, session, VpnGateway, p.region_id)  # before the pool: the quota is the first limit
    gateway_id = ids.new_resource_id("vpn")
    prepaid = p.instance_charge_type == "PREPAY"
    internet_ip = allocate_internet_ip(session, ctx.settings.internet_ip_pool)
    # A dual-tunnel gateway's second address: from the same pool, in the same transaction.
    second_ip = (
        allocate_internet_ip(session, ctx.settings.internet_ip_pool, taken={internet_ip})
        if p.disaster_recovery_v_switch_id is not None
        else None
    )
    gateway = VpnGateway(
        id=gateway_id,
        account_id=ctx.account_id,
        region_id=p.region_id,
        vpc_id=vpc.id,
        v_switch_id=p.v_switch_id or "",
        name=p.name or gateway_id,
        description=p.description or "",
        bandwidth=p.bandwidth,
        internet_ip=internet_ip,
        disaster_recovery_internet_ip=second_ip,
        disaster_recovery_v_switch_id=p.disaster_recovery_v_switch_id or "",
        vpc_next_hop=allocate_vpc_next_hop(session, ctx.settings.vpc_next_hop_pool),
        status="active",
        charge_type="Prepay" if prepaid else "PostpayByFlow",
        ipsec_vpn=p.enable_ipsec,
        ssl_vpn=p.enable_ssl,
        # SslConnections means nothing while SSL VPN is off (alicloud provider issue #823).
        ssl_max_connections=p.ssl_connections if p.enable_ssl else 0,
        network_type=p.network_type,
        vpn_type=p.vpn_type,
        auto_propagate=False,
        create_time=ctx.now_ms,
        end_time=ctx.now_ms + p.period * MS_PER_MONTH if prepaid else 0,
    )
    queries.add_owned(session, gateway)
    queries.set_tags(
        session,
        account_id=gateway.account_id,
        region_id=gateway.region_id,
        resource_type="VPNGATEWAY",
        resource_id=gateway.id,
        tags=p.tags or [],
    )
    return CreateVpnGatewayResponse(vpn_gateway_id=gateway_id, name=gateway.name, order_id=gateway.seq)


class VpnGatewayItem(Response):
    vpn_gateway_id: str
    vpc_id: str
    v_switch_id: str
    internet_ip: str
    create_time: int
    end_time: int
    spec: str
    name: str
    description: str
    status: str
    business_status: str
    charge_type: str
    ipsec_vpn: str
    ssl_vpn: str
    ssl_max_connections: int
    tag: str
    enable_bgp: bool
    auto_propagate: bool
    vpn_type: str
    network_type: str
    resource_group_id: str
    tags: TagList
    # A dual-tunnel gateway's second address and vSwitch ('' for a single-tunnel gateway).
    disaster_recovery_internet_ip: str = ""
    disaster_recovery_v_switch_id: str = ""
    # Extension: the data-plane node that runs the gateway now ('' while none does), and
    # the one that holds a dual-tunnel gateway's second address.
    node_name: str = ""
    disaster_recovery_node_name: str = ""
    # Extension: the gateway's VPC-side next hop, where VPC hosts route the remote
    # subnets; it follows the gateway from node to node (docs/hosts.md, section 5).
    vpc_next_hop: str = ""


def gateway_view(
    gateway: VpnGateway,
    node_name: str = "",
    tags: Sequence[tuple[str, str]] = (),
    disaster_recovery_node_name: str = "",
) -> VpnGatewayItem:
    return VpnGatewayItem(
        vpn_gateway_id=gateway.id,
        vpc_id=gateway.vpc_id,
        v_switch_id=gateway.v_switch_id,
        internet_ip=gateway.internet_ip,
        create_time=gateway.create_time,
        end_time=gateway.end_time,
        spec=f"{gateway.bandwidth}M",
        name=gateway.name,
        description=gateway.description,
        status=gateway.status,
        business_status="Normal",
        charge_type=gateway.charge_type,
        ipsec_vpn="enable" if gateway.ipsec_vpn else "disable",
        ssl_vpn="enable" if gateway.ssl_vpn else "disable",
        ssl_max_connections=gateway.ssl_max_connections,
        tag="",
        enable_bgp=False,
        auto_propagate=gateway.auto_propagate,
        vpn_type=gateway.vpn_type,
        network_type=gateway.network_type,
        resource_group_id="",
        tags=tag_list(tags),
        disaster_recovery_internet_ip=gateway.disaster_recovery_internet_ip or "",
        disaster_recovery_v_switch_id=gateway.disaster_recovery_v_switch_id,
        node_name=node_name,
        disaster_recovery_node_name=disaster_recovery_node_name,
        vpc_next_hop=gateway.vpc_next_hop or "",
    )


def nodes_of(ctx: Context, session: Session, gateway_ids: Sequence[str]) -> dict[tuple[str, int], str]:
    """The node holding each address of the gateways now, by (gateway id, tunnel index)."""
    keys = [leases.lease_key(g, index) for g in gateway_ids for index in (1, 2)]
    held = leases.holders(session, keys, now_ms=ctx.now_ms)
    return {leases.lease_unit(key): node for key, node in held.items()}


def view_of(ctx: Context, session: Session, gateway: VpnGateway) -> VpnGatewayItem:
    nodes = nodes_of(ctx, session, [gateway.id])
    return gateway_view(
        gateway,
        nodes.get((gateway.id, 1), ""),
        queries.tags_of(session, [gateway.id])[gateway.id],
        nodes.get((gateway.id, 2), ""),
    )


class DescribeVpnGatewayParams(RegionParams):
    NO_OP = {
        "IncludeReservationData": "vpngw has no pending orders, so no reservation data (checked: a boolean)."
    }

    vpn_gateway_id: str
    include_reservation_data: Bool = False


def describe_vpn_gateway(ctx: Context, session: Session, p: DescribeVpnGatewayParams) -> VpnGatewayItem:
    return view_of(ctx, session, get_gateway(ctx, session, p.region_id, p.vpn_gateway_id))


class DescribeVpnGatewaysParams(PageParams):
    NO_OP = {
        "IncludeReservationData": "vpngw has no pending orders, so no reservation data (checked: a boolean)."
    }
    REFUSED = {
        "GatewayType": unsupported(
            "GatewayType", "vpngw has one kind of gateway; filtering by type is not offered."
        ),
        **NO_RESOURCE_GROUPS,
    }

    vpn_gateway_id: str | None = None
    vpc_id: str | None = None
    status: str | None = None
    # Every vpngw gateway is "Normal" (nothing is billed): FinancialLocked finds none.
    business_status: Annotated[str, choice("Normal", "FinancialLocked")] | None = None
    include_reservation_data: Bool = False
    tag: TagFilters | None = None


class VpnGatewayList(Response):
    vpn_gateway: list[VpnGatewayItem]


class DescribeVpnGatewaysResponse(PageResponse):
    vpn_gateways: VpnGatewayList


def describe_vpn_gateways(
    ctx: Context, session: Session, p: DescribeVpnGatewaysParams
) -> DescribeVpnGatewaysResponse:
    filters = {"id": p.vpn_gateway_id, "vpc_id": p.vpc_id, "status": p.status}
    rows, total = queries.page(
        session, VpnGateway, ctx.account_id, p.region_id, filters, p.page_number, p.page_size, p.tag or ()
    )
    if p.business_status == "FinancialLocked":
        rows, total = [], 0
    nodes = nodes_of(ctx, session, [g.id for g in rows])
    tags = queries.tags_of(session, [g.id for g in rows])
    return DescribeVpnGatewaysResponse(
        total_count=total,
        page_number=p.page_number,
        page_size=p.page_size,
        vpn_gateways=VpnGatewayList(
            vpn_gateway=[
                gateway_view(g, nodes.get((g.id, 1), ""), tags[g.id], nodes.get((g.id, 2), "")) for g in rows
            ]
        ),
    )


class ModifyVpnGatewayAttributeParams(RegionParams):
    vpn_gateway_id: str
    name: Name | None = None
    description: Description | None = None
    auto_propagate: Bool | None = None
    client_token: ClientToken | None = None


def modify_vpn_gateway_attribute(
    ctx: Context, session: Session, p: ModifyVpnGatewayAttributeParams
) -> VpnGatewayItem:
    gateway = get_gateway(ctx, session, p.region_id, p.vpn_gateway_id, lock=True)
    if p.name is not None:
        gateway.name = p.name
    if p.description is not None:
        gateway.description = p.description
    if p.auto_propagate is not None:
        gateway.auto_propagate = p.auto_propagate
    session.flush()
    return view_of(ctx, session, gateway)


class DeleteVpnGatewayParams(RegionParams):
    vpn_gateway_id: str
    client_token: ClientToken | None = None


class EmptyResponse(Response):
    pass


def delete_vpn_gateway(ctx: Context, session: Session, p: DeleteVpnGatewayParams) -> EmptyResponse:
    gateway = get_gateway(ctx, session, p.region_id, p.vpn_gateway_id, lock=True)
    connection = queries.any_connection_uses(session, vpn_gateway_id=gateway.id)
    if connection:
        raise BadRequest(
            "DependencyViolation.VpnConnection",
            f"The VPN gateway {gateway.id} is still used by the IPsec connection {connection}; delete that first.",
        )
    queries.delete_owned(session, gateway)
    return EmptyResponse()
