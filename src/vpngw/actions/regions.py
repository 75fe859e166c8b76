"""DescribeRegions: the regions this service is configured with."""

from __future__ import annotations

from typing import Annotated

from sqlalchemy.orm import Session

from vpngw.actions.framework import Context, Params, Response, choice


class DescribeRegionsParams(Params):
    NO_OP = {"ProductType": "vpngw serves the VPC product only: VPC (the default) is accepted."}

    accept_language: str | None = None
    product_type: Annotated[str, choice("VPC", "vpc")] = "VPC"


class RegionItem(Response):
    region_id: str
    local_name: str
    region_endpoint: str


class RegionList(Response):
    region: list[RegionItem]


class DescribeRegionsResponse(Response):
    regions: RegionList


def describe_regions(
    ctx: Context, _session: Session, _params: DescribeRegionsParams
) -> DescribeRegionsResponse:
    # The endpoint of every region is this service, as the caller reached it.
    items = [
        RegionItem(region_id=r.region_id, local_name=r.local_name, region_endpoint=ctx.host)
        for r in ctx.settings.regions
    ]
    return DescribeRegionsResponse(regions=RegionList(region=items))
