"""DescribeVpnConnectionTraffic (vpngw extension): a connection's traffic history.

The points come from ``store.traffic_history``: the counters of the connection's
current CHILD_SAs as the data plane stored them, one point per 10 seconds at most, kept
24 hours. ``From`` and ``To`` are unix seconds (both ends inclusive); without ``To`` the
window ends now, without ``From`` it starts an hour before ``To``. A window longer than
24 hours, or reversed, is refused.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from sqlalchemy.orm import Session

from vpngw.actions.framework import Context, RegionParams, Response, int_in
from vpngw.actions.vpn_connections import get_connection
from vpngw.errors import BadRequest
from vpngw.store import traffic_history

DEFAULT_WINDOW_S = 3600
MAX_WINDOW_S = traffic_history.RETENTION_MS // 1000
Seconds = Annotated[int, int_in(0, 2**40)]


class DescribeVpnConnectionTrafficParams(RegionParams):
    vpn_connection_id: str
    from_: Seconds | None = Field(default=None, alias="From")
    to: Seconds | None = None


class TrafficPoint(Response):
    time: int  # unix milliseconds: when the counters were read
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int


class TrafficPointList(Response):
    traffic_point: list[TrafficPoint]


class DescribeVpnConnectionTrafficResponse(Response):
    vpn_connection_id: str
    # The window actually served, in unix seconds, and the spacing of the points.
    from_: int = Field(alias="From")
    to: int
    interval: int
    count: int
    traffic_points: TrafficPointList


def window(p: DescribeVpnConnectionTrafficParams, now_s: int) -> tuple[int, int]:
    """[first, last] second of the requested window, or a 400."""
    last = p.to if p.to is not None else now_s
    first = p.from_ if p.from_ is not None else last - DEFAULT_WINDOW_S
    if first > last:
        raise BadRequest("IllegalParam.TimeRange", f'"From" ({first}) must not be later than "To" ({last}).')
    if last - first > MAX_WINDOW_S:
        raise BadRequest(
            "IllegalParam.TimeRange",
            f"The window from {first} to {last} is longer than {MAX_WINDOW_S} seconds (the history's 24 hours).",
        )
    return first, last


def describe_vpn_connection_traffic(
    ctx: Context, session: Session, p: DescribeVpnConnectionTrafficParams
) -> DescribeVpnConnectionTrafficResponse:
    connection = get_connection(ctx, session, p.region_id, p.vpn_connection_id)
    first, last = window(p, ctx.now_ms // 1000)
    rows = traffic_history.points(session, connection.id, from_ms=first * 1000, to_ms=last * 1000 + 999)
    points = [
        TrafficPoint(
            time=row.time_ms,
            bytes_in=row.bytes_in,
            bytes_out=row.bytes_out,
            packets_in=row.packets_in,
            packets_out=row.packets_out,
        )
        for row in rows
    ]
    return DescribeVpnConnectionTrafficResponse.model_validate(
        {
            "VpnConnectionId": connection.id,
            "From": first,
            "To": last,
            "Interval": traffic_history.BUCKET_MS // 1000,
            "Count": len(points),
            "TrafficPoints": TrafficPointList(traffic_point=points),
        }
    )
