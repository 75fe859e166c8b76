"""Create/Describe/Modify/Delete customer gateways: the customer's IPsec peer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator
from sqlalchemy.orm import Session

from vpngw import ids
from vpngw.actions.framework import (
    NO_RESOURCE_GROUPS,
    ClientToken,
    Context,
    Description,
    Name,
    PageParams,
    PageResponse,
    RegionParams,
    Response,
)
from vpngw.actions.quotas import check_room
from vpngw.actions.tagging import TagFilters, TagList, TagsToSet, tag_list
from vpngw.actions.vpn_gateways import EmptyResponse
from vpngw.errors import BadRequest, NotFound
from vpngw.rules.gateways import check_auth_key, check_customer_gateway_ip, parse_asn
from vpngw.store import queries
from vpngw.store.models import CustomerGateway

AUTH_KEY_PURPOSE = "customer_gateways.auth_key"


def customer_gateway_not_found(customer_gateway_id: str) -> NotFound:
    return NotFound(
        "InvalidCustomerGatewayInstanceId.NotFound",
        f"The specified customer gateway instance id {customer_gateway_id} does not exist.",
    )


def get_customer_gateway(
    ctx: Context, session: Session, region_id: str, customer_gateway_id: str, *, lock: bool = False
) -> CustomerGateway:
    gateway = queries.get_owned(
        session, CustomerGateway, ctx.account_id, region_id, customer_gateway_id, lock=lock
    )
    if gateway is None:
        raise customer_gateway_not_found(customer_gateway_id)
    return gateway


class CreateCustomerGatewayParams(RegionParams):
    REFUSED = NO_RESOURCE_GROUPS

    ip_address: Annotated[str, AfterValidator(check_customer_gateway_ip)]
    name: Name | None = None
    description: Description | None = None
    asn: Annotated[int, BeforeValidator(lambda v: parse_asn(str(v)))] | None = None
    auth_key: Annotated[str, AfterValidator(check_auth_key)] | None = None
    tags: TagsToSet | None = None
    client_token: ClientToken | None = None


class CustomerGatewayItem(Response):
    customer_gateway_id: str
    ip_address: str
    name: str
    description: str
    create_time: int
    asn: int | None
    auth_key: str
    resource_group_id: str
    tags: TagList


def customer_gateway_view(
    ctx: Context, gateway: CustomerGateway, tags: Sequence[tuple[str, str]] = ()
) -> CustomerGatewayItem:
    return CustomerGatewayItem(
        customer_gateway_id=gateway.id,
        ip_address=gateway.ip_address,
        name=gateway.name,
        description=gateway.description,
        create_time=gateway.create_time,
        asn=gateway.asn,
        auth_key=ctx.sealer.open(gateway.auth_key, AUTH_KEY_PURPOSE) if gateway.auth_key else "",
        resource_group_id="",
        tags=tag_list(tags),
    )


def create_customer_gateway(
    ctx: Context, session: Session, p: CreateCustomerGatewayParams
) -> CustomerGatewayItem:
    existing = queries.customer_gateway_with_ip(session, ctx.account_id, p.region_id, p.ip_address)
    if existing:
        raise BadRequest(
            "InvalidIpAddress.AlreadyExist",
            f"Specified IpAddress {p.ip_address} is already used by the customer gateway {existing}.",
        )
    check_room(ctx, session, CustomerGateway, p.region_id)
    gateway_id = ids.new_resource_id("cgw")
    gateway = CustomerGateway(
        id=gateway_id,
        account_id=ctx.account_id,
        region_id=p.region_id,
        ip_address=p.ip_address,
        name=p.name or gateway_id,
        description=p.description or "",
        asn=p.asn,
        auth_key=ctx.sealer.seal(p.auth_key, AUTH_KEY_PURPOSE) if p.auth_key else "",
        create_time=ctx.now_ms,
    )
    queries.add_owned(session, gateway)
    queries.set_tags(
        session,
        account_id=gateway.account_id,
        region_id=gateway.region_id,
        resource_type="CUSTOMERGATEWAY",
        resource_id=gateway.id,
        tags=p.tags or [],
    )
    return customer_gateway_view(ctx, gateway, p.tags or [])


class DescribeCustomerGatewayParams(RegionParams):
    customer_gateway_id: str


def describe_customer_gateway(
    ctx: Context, session: Session, p: DescribeCustomerGatewayParams
) -> CustomerGatewayItem:
    gateway = get_customer_gateway(ctx, session, p.region_id, p.customer_gateway_id)
    return customer_gateway_view(ctx, gateway, queries.tags_of(session, [gateway.id])[gateway.id])


class DescribeCustomerGatewaysParams(PageParams):
    REFUSED = NO_RESOURCE_GROUPS

    customer_gateway_id: str | None = None
    tag: TagFilters | None = None


class CustomerGatewayList(Response):
    customer_gateway: list[CustomerGatewayItem]


class DescribeCustomerGatewaysResponse(PageResponse):
    customer_gateways: CustomerGatewayList


def describe_customer_gateways(
    ctx: Context, session: Session, p: DescribeCustomerGatewaysParams
) -> DescribeCustomerGatewaysResponse:
    rows, total = queries.page(
        session,
        CustomerGateway,
        ctx.account_id,
        p.region_id,
        {"id": p.customer_gateway_id},
        p.page_number,
        p.page_size,
        p.tag or (),
    )
    tags = queries.tags_of(session, [g.id for g in rows])
    return DescribeCustomerGatewaysResponse(
        total_count=total,
        page_number=p.page_number,
        page_size=p.page_size,
        customer_gateways=CustomerGatewayList(
            customer_gateway=[customer_gateway_view(ctx, g, tags[g.id]) for g in rows]
        ),
    )


class ModifyCustomerGatewayAttributeParams(RegionParams):
    customer_gateway_id: str
    name: Name | None = None
    description: Description | None = None
    auth_key: Annotated[str, AfterValidator(check_auth_key)] | None = None
    client_token: ClientToken | None = None


def modify_customer_gateway_attribute(
    ctx: Context, session: Session, p: ModifyCustomerGatewayAttributeParams
) -> CustomerGatewayItem:
    gateway = get_customer_gateway(ctx, session, p.region_id, p.customer_gateway_id, lock=True)
    if p.name is not None:
        gateway.name = p.name
    if p.description is not None:
        gateway.description = p.description
    if p.auth_key is not None:
        gateway.auth_key = ctx.sealer.seal(p.auth_key, AUTH_KEY_PURPOSE)
    session.flush()
    return customer_gateway_view(ctx, gateway, queries.tags_of(session, [gateway.id])[gateway.id])


class DeleteCustomerGatewayParams(RegionParams):
    customer_gateway_id: str
    client_token: ClientToken | None = None


def delete_customer_gateway(ctx: Context, session: Session, p: DeleteCustomerGatewayParams) -> EmptyResponse:
    gateway = get_customer_gateway(ctx, session, p.region_id, p.customer_gateway_id, lock=True)
    connection = queries.any_connection_uses(session, customer_gateway_id=gateway.id)
    if connection:
        raise BadRequest(
            "DependencyViolation.VpnConnection",
            f"The customer gateway {gateway.id} is still used by the IPsec connection {connection}; delete that first.",
        )
    queries.delete_owned(session, gateway)
    return EmptyResponse()
