"""CreateVpc, DescribeVpcs, DeleteVpc: the minimal VPC that VPN gateways live in."""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import AfterValidator
from sqlalchemy.orm import Session

from vpngw import ids
from vpngw.actions.framework import (
    NO_RESOURCE_GROUPS,
    Bool,
    ClientToken,
    Context,
    Description,
    DryRun,
    Name,
    PageParams,
    PageResponse,
    RegionParams,
    Response,
    unsupported,
)
from vpngw.actions.quotas import check_room
from vpngw.actions.tagging import TagFilters, TagList, TagsToSet, tag_list
from vpngw.errors import BadRequest, NotFound
from vpngw.rules.gateways import check_vpc_cidr
from vpngw.store import queries
from vpngw.store.models import Vpc

DEFAULT_VPC_CIDR = "172.16.0.0/12"


def vpc_not_found(vpc_id: str) -> NotFound:
    return NotFound("InvalidVpcId.NotFound", f"The specified VPC {vpc_id} does not exist.")


def get_vpc(ctx: Context, session: Session, region_id: str, vpc_id: str) -> Vpc:
    vpc = queries.get_owned(session, Vpc, ctx.account_id, region_id, vpc_id)
    if vpc is None:
        raise vpc_not_found(vpc_id)
    return vpc


_IPV6 = "IPv6 is not offered (EnableIpv6=false is accepted)."
_IPAM = "IP address management (IPAM) pools and custom CIDR masks are not offered; give CidrBlock."


class CreateVpcParams(RegionParams):
    REFUSED = {
        "EnableIpv6": unsupported("EnableIpv6", _IPV6, True),
        "EnableDnsHostname": unsupported(
            "EnableDnsHostname", "VPC DNS hostnames are not offered (false is accepted).", True
        ),
        "Ipv6CidrBlock": unsupported("Ipv6CidrBlock", _IPV6),
        "Ipv6CidrMask": unsupported("Ipv6CidrMask", _IPV6),
        "Ipv6Isp": unsupported("Ipv6Isp", _IPV6),
        "Ipv6IpamPoolId": unsupported("Ipv6IpamPoolId", _IPV6),
        "Ipv4IpamPoolId": unsupported("Ipv4IpamPoolId", _IPAM),
        "Ipv4CidrMask": unsupported("Ipv4CidrMask", _IPAM),
        "UserCidr": unsupported(
            "UserCidr", "user CIDR blocks (for classic-network peering) are not offered."
        ),
        **NO_RESOURCE_GROUPS,
    }

    enable_ipv6: Bool = False
    enable_dns_hostname: Bool = False
    dry_run: DryRun = False
    cidr_block: Annotated[str, AfterValidator(check_vpc_cidr)] = DEFAULT_VPC_CIDR
    vpc_name: Name | None = None
    description: Description | None = None
    tag: TagsToSet | None = None
    client_token: ClientToken | None = None


class CreateVpcResponse(Response):
    vpc_id: str
    v_router_id: str
    route_table_id: str
    resource_group_id: str


def create_vpc(ctx: Context, session: Session, p: CreateVpcParams) -> CreateVpcResponse:
    check_room(ctx, session, Vpc, p.region_id)
    vpc_id = ids.new_resource_id("vpc")
    vpc = Vpc(
        id=vpc_id,
        account_id=ctx.account_id,
        region_id=p.region_id,
        name=p.vpc_name or "",
        description=p.description or "",
        cidr_block=p.cidr_block,
        create_time=ctx.now_ms,
    )
    queries.add_owned(session, vpc)
    queries.set_tags(
        session,
        account_id=vpc.account_id,
        region_id=vpc.region_id,
        resource_type="VPC",
        resource_id=vpc.id,
        tags=p.tag or [],
    )
    suffix = vpc_id.removeprefix("vpc-")
    return CreateVpcResponse(
        vpc_id=vpc_id, v_router_id=f"vrt-{suffix}", route_table_id=f"vtb-{suffix}", resource_group_id=""
    )


class DescribeVpcsParams(PageParams):
    REFUSED = {
        "DhcpOptionsSetId": unsupported("DhcpOptionsSetId", "DHCP options sets are not offered."),
        "VpcOwnerId": unsupported("VpcOwnerId", "VPCs are not shared between accounts."),
        **NO_RESOURCE_GROUPS,
    }

    vpc_id: str | None = None
    vpc_name: str | None = None
    # No vpngw VPC is an account's default VPC: IsDefault=true finds none.
    is_default: Bool | None = None
    # No vpngw VPC has IPv6: EnableIpv6=true finds none.
    enable_ipv6: Bool | None = None
    tag: TagFilters | None = None
    dry_run: DryRun = False


class VpcItem(Response):
    vpc_id: str
    region_id: str
    status: str
    vpc_name: str
    description: str
    cidr_block: str
    creation_time: str
    v_router_id: str
    is_default: bool
    tags: TagList


class VpcList(Response):
    vpc: list[VpcItem]


class DescribeVpcsResponse(PageResponse):
    vpcs: VpcList


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_vpcs(ctx: Context, session: Session, p: DescribeVpcsParams) -> DescribeVpcsResponse:
    filters = {"id": p.vpc_id, "name": p.vpc_name}
    rows, total = queries.page(
        session, Vpc, ctx.account_id, p.region_id, filters, p.page_number, p.page_size, p.tag or ()
    )
    if p.is_default or p.enable_ipv6:
        rows, total = [], 0
    tags = queries.tags_of(session, [v.id for v in rows])
    items = [
        VpcItem(
            vpc_id=v.id,
            region_id=v.region_id,
            status="Available",
            vpc_name=v.name,
            description=v.description,
            cidr_block=v.cidr_block,
            creation_time=_iso(v.create_time),
            v_router_id="vrt-" + v.id.removeprefix("vpc-"),
            is_default=False,
            tags=tag_list(tags[v.id]),
        )
        for v in rows
    ]
    return DescribeVpcsResponse(
        total_count=total, page_number=p.page_number, page_size=p.page_size, vpcs=VpcList(vpc=items)
    )


class DeleteVpcParams(RegionParams):
    REFUSED = {
        "ForceDelete": unsupported(
            "ForceDelete",
            "a VPC is deleted only when it holds nothing (ForceDelete=false is accepted).",
            True,
        )
    }

    vpc_id: str
    force_delete: Bool = False
    dry_run: DryRun = False
    client_token: ClientToken | None = None


class DeleteVpcResponse(Response):
    pass


def delete_vpc(ctx: Context, session: Session, p: DeleteVpcParams) -> DeleteVpcResponse:
    vpc = get_vpc(ctx, session, p.region_id, p.vpc_id)
    gateway = queries.any_gateway_in_vpc(session, vpc.id)
    if gateway:
        raise BadRequest(
            "DependencyViolation.VpnGateway",
            f"The VPC {vpc.id} still holds the VPN gateway {gateway}; delete the gateway first.",
        )
    queries.delete_owned(session, vpc)
    return DeleteVpcResponse()
