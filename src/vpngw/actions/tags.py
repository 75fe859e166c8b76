"""TagResources, UnTagResources, ListTagResources on VPCs, VPN gateways, customer gateways
and IPsec connections (ResourceType ``VPC``, ``VPNGATEWAY``, ``CUSTOMERGATEWAY``,
``VPNCONNECTION``, any case). A resource of another account, or of another region, is the
same NotFound its Describe gives. At most 50 resources per call, 20 tags per resource."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from vpngw.actions.customer_gateways import customer_gateway_not_found
from vpngw.actions.framework import Bool, Context, RegionParams, Response, int_in
from vpngw.actions.tagging import TagFilters, TagsToSet
from vpngw.actions.vpcs import vpc_not_found
from vpngw.actions.vpn_connections import connection_not_found
from vpngw.actions.vpn_gateways import EmptyResponse, gateway_not_found
from vpngw.errors import BadRequest, NotFound, invalid_parameter
from vpngw.rules import tags as rules
from vpngw.store import queries
from vpngw.store.models import CustomerGateway, Vpc, VpnConnection, VpnGateway

TAGGABLE: dict[str, tuple[Any, Callable[[str], NotFound]]] = {
    "VPC": (Vpc, vpc_not_found),
    "VPNGATEWAY": (VpnGateway, gateway_not_found),
    "CUSTOMERGATEWAY": (CustomerGateway, customer_gateway_not_found),
    "VPNCONNECTION": (VpnConnection, connection_not_found),
}
MAX_RESOURCES = 50


def _resource_type(value: Any) -> str:
    kind = str(value).upper()
    if kind not in TAGGABLE:
        raise BadRequest(
            "InvalidResourceType.NotSupported",
            f"ResourceType {str(value)[:64]!r} is not one vpngw keeps tags for: {', '.join(TAGGABLE)}.",
        )
    return kind


def _resource_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid_parameter("ResourceId", "give it as ResourceId.N")
    if len(value) > MAX_RESOURCES:
        raise invalid_parameter("ResourceId", f"at most {MAX_RESOURCES} resources")
    return value


def _keys(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid_parameter("TagKey", "give it as TagKey.N")
    if len(value) > rules.MAX_TAGS_PER_RESOURCE:
        raise invalid_parameter("TagKey", f"at most {rules.MAX_TAGS_PER_RESOURCE} keys")
    return [rules.check_key("TagKey", key) for key in value]


ResourceType = Annotated[str, BeforeValidator(_resource_type)]
ResourceIds = Annotated[list[str], BeforeValidator(_resource_ids)]
TagKeys = Annotated[list[str], BeforeValidator(_keys)]


def _owned(
    ctx: Context, session: Session, region_id: str, kind: str, resource_id: str, *, lock: bool = True
) -> Any:
    """The resource, locked (a writer's tag count holds until commit), or its NotFound."""
    model, not_found = TAGGABLE[kind]
    row = queries.get_owned(session, model, ctx.account_id, region_id, resource_id, lock=lock)
    if row is None:
        raise not_found(resource_id)
    return row


class TagResourcesParams(RegionParams):
    resource_type: ResourceType
    resource_id: ResourceIds
    tag: TagsToSet


def tag_resources(ctx: Context, session: Session, p: TagResourcesParams) -> EmptyResponse:
    for resource_id in p.resource_id:
        row = _owned(ctx, session, p.region_id, p.resource_type, resource_id)
        keys = {key for key, _ in queries.tags_of(session, [row.id])[row.id]} | {key for key, _ in p.tag}
        rules.check_room(row.id, len(keys))
        queries.set_tags(
            session,
            account_id=row.account_id,
            region_id=row.region_id,
            resource_type=p.resource_type,
            resource_id=row.id,
            tags=p.tag,
        )
    return EmptyResponse()


class UnTagResourcesParams(RegionParams):
    resource_type: ResourceType
    resource_id: ResourceIds
    tag_key: TagKeys | None = None
    all: Bool = False


def untag_resources(ctx: Context, session: Session, p: UnTagResourcesParams) -> EmptyResponse:
    if not p.tag_key and not p.all:
        raise BadRequest(
            "MissingParameter.TagKey", 'Give "TagKey.N", or "All=true" to remove every tag of the resources.'
        )
    for resource_id in p.resource_id:
        row = _owned(ctx, session, p.region_id, p.resource_type, resource_id)
        queries.remove_tags(session, row.id, None if p.all and not p.tag_key else p.tag_key)
    return EmptyResponse()


class ListTagResourcesParams(RegionParams):
    resource_type: ResourceType
    resource_id: ResourceIds | None = None
    tag: TagFilters | None = None
    next_token: str | None = None
    max_results: Annotated[int, int_in(1, 50)] = 50


class TagResource(Response):
    resource_id: str
    resource_type: str
    tag_key: str
    tag_value: str


class TagResourceList(Response):
    tag_resource: list[TagResource]


class ListTagResourcesResponse(Response):
    next_token: str
    tag_resources: TagResourceList


def list_tag_resources(ctx: Context, session: Session, p: ListTagResourcesParams) -> ListTagResourcesResponse:
    """Paged by an opaque NextToken (the offset of the next row); '' on the last page."""
    if not p.resource_id and not p.tag:
        raise BadRequest("MissingParameter.ResourceIdOrTag", 'Give "ResourceId.N" or "Tag.N.Key" (or both).')
    token = p.next_token or "0"
    if not token.isdigit() or len(token) > 9:
        raise invalid_parameter("NextToken", "not a token this service gave")
    offset = int(token)
    for resource_id in p.resource_id or []:
        _owned(ctx, session, p.region_id, p.resource_type, resource_id, lock=False)
    rows = queries.tag_rows(
        session,
        ctx.account_id,
        p.region_id,
        p.resource_type,
        p.resource_id or [],
        p.tag or [],
        offset,
        p.max_results + 1,
    )
    more = len(rows) > p.max_results
    return ListTagResourcesResponse(
        next_token=str(offset + p.max_results) if more else "",
        tag_resources=TagResourceList(
            tag_resource=[
                TagResource(
                    resource_id=row.resource_id,
                    resource_type=row.resource_type,
                    tag_key=row.tag_key,
                    tag_value=row.tag_value,
                )
                for row in rows[: p.max_results]
            ]
        ),
    )
