"""DescribeVpnConnectionLogs: a connection's real negotiation log, as charon wrote it.

The data plane stores every log line charon emits about the connection (see
``vpngw.dataplane.observe.connection_logs``). The window follows the public API: ``From`` and
``To`` are unix seconds; one of them with ``MinutePeriod`` (1-10 minutes) spans that
many minutes from ``From`` or up to ``To``; ``MinutePeriod`` alone (or nothing, with 10)
means the last minutes. ``TunnelId`` picks one tunnel of a dual-tunnel connection. Both ends are inclusive, at second precision. ``Count`` is the
number of lines in the window, ``IsCompleted`` whether this page reaches its last line.
"""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import Field
from sqlalchemy.orm import Session

from vpngw.actions.framework import (
    Context,
    PageNumber,
    PageSize,
    RegionParams,
    Response,
    int_in,
)
from vpngw.actions.tunnels import tunnel_not_found
from vpngw.actions.vpn_connections import get_connection
from vpngw.errors import BadRequest
from vpngw.store import queries

DEFAULT_MINUTES = 10
Seconds = Annotated[int, int_in(0, 2**40)]
Minutes = Annotated[int, int_in(1, 10)]


class DescribeVpnConnectionLogsParams(RegionParams):
    vpn_connection_id: str
    from_: Seconds | None = Field(default=None, alias="From")
    to: Seconds | None = None
    minute_period: Minutes | None = None
    tunnel_id: str | None = None
    page_number: PageNumber = 1
    page_size: PageSize = 10


class LogList(Response):
    logs: list[str]


class DescribeVpnConnectionLogsResponse(Response):
    count: int
    page_number: int
    page_size: int
    is_completed: bool
    data: LogList


def time_window(p: DescribeVpnConnectionLogsParams, now_s: int) -> tuple[int, int]:
    """[first, last] second of the requested window (inclusive), or a 400."""
    if p.from_ is not None and p.to is not None:
        first, last = p.from_, p.to
    elif p.from_ is not None:
        if p.minute_period is None:
            raise BadRequest(
                "MissingParameter.ToOrMinutePeriod", 'With "From", give "To" or "MinutePeriod" as well.'
            )
        first, last = p.from_, p.from_ + p.minute_period * 60
    elif p.to is not None:
        if p.minute_period is None:
            raise BadRequest(
                "MissingParameter.FromOrMinutePeriod", 'With "To", give "From" or "MinutePeriod" as well.'
            )
        first, last = p.to - p.minute_period * 60, p.to
    else:
        first, last = now_s - (p.minute_period or DEFAULT_MINUTES) * 60, now_s
    if first > last:
        raise BadRequest("IllegalParam.TimeRange", f'"From" ({first}) must not be later than "To" ({last}).')
    return first, last


def describe_vpn_connection_logs(
    ctx: Context, session: Session, p: DescribeVpnConnectionLogsParams
) -> DescribeVpnConnectionLogsResponse:
    connection = get_connection(ctx, session, p.region_id, p.vpn_connection_id)
    first, last = time_window(p, ctx.now_ms // 1000)
    # A dual-tunnel connection's tunnels keep their own lines: TunnelId picks one tunnel's,
    # without it the lines of both tunnels (and the connection's own) come interleaved by time.
    tunnel_ids = [row.id for row in queries.tunnels_of(session, [connection.id])[connection.id]]
    if p.tunnel_id is not None:
        if p.tunnel_id not in tunnel_ids:
            raise tunnel_not_found(p.tunnel_id)
        keys = [p.tunnel_id]
    else:
        keys = [connection.id, *tunnel_ids]
    offset = (p.page_number - 1) * p.page_size
    total, lines = queries.connection_log_page(
        session,
        keys,
        from_ms=first * 1000,
        to_ms=(last + 1) * 1000,
        offset=offset,
        limit=p.page_size,
    )
    return DescribeVpnConnectionLogsResponse(
        count=total,
        page_number=p.page_number,
        page_size=p.page_size,
        is_completed=offset + len(lines) >= total,
        data=LogList(logs=[f"{_utc(line.time_ms)} {line.message}" for line in lines]),
    )


def _utc(time_ms: int) -> str:
    return datetime.datetime.fromtimestamp(time_ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
