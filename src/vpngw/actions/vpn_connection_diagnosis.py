"""DiagnoseVpnConnections: why each connection of a gateway fails, from the store only.

The data plane stores, per connection, its diagnosis (``diagnosis``, with ``observed_time``
when it was written) and charon's log lines. For each connection the answer gives the
public API's fields: ``FailedReasonCode`` (``rules.diagnosis_codes``), ``FailedReason`` (the
diagnosis itself), ``FailedTime`` (ms), ``SourceLog`` (the log lines the diagnosis comes
from: the newest lines up to ``FailedTime`` after the last established SA, at most
``SOURCE_LINES``, the connection's Psk masked should it ever appear) and ``Severity``; a
healthy connection has them empty (Severity ``Normal``).

Which connections: those of ``VpnGatewayId``, or those named by ``VpnConnectionIds.N``
(on that gateway when both are given), or every connection of the region; paged by
PageNumber / PageSize. A dual-tunnel connection answers one entry per tunnel (``TunnelId`` set, from the
tunnel's own diagnosis and log lines); ``TunnelIds.N`` picks tunnels (and their connections).
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any

from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from vpngw.actions.framework import Context, PageParams, PageResponse, Response
from vpngw.actions.tunnels import tunnel_not_found
from vpngw.actions.vpn_connections import Views, connection_not_found, get_connection
from vpngw.actions.vpn_gateways import get_gateway
from vpngw.errors import invalid_parameter
from vpngw.ike_config import opened_ike
from vpngw.rules.diagnosis_codes import reason_code
from vpngw.store import freshness, queries
from vpngw.store.models import VpnConnection

SOURCE_LINES = 20
MAX_IDS = 50
# charon's own words for an SA that came up: lines before the last one are history.
_ESTABLISHED = re.compile(r"(?:^|\] )(?:IKE_SA|CHILD_SA) \S+ established\b")


def _ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid_parameter("VpnConnectionIds", "give it as VpnConnectionIds.N")
    if len(value) > MAX_IDS:
        raise invalid_parameter("VpnConnectionIds", f"at most {MAX_IDS} connections")
    return value


def _tunnel_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid_parameter("TunnelIds", "give it as TunnelIds.N")
    if len(value) > MAX_IDS:
        raise invalid_parameter("TunnelIds", f"at most {MAX_IDS} tunnels")
    return value


class DiagnoseVpnConnectionsParams(PageParams):
    vpn_gateway_id: str | None = None
    vpn_connection_ids: Annotated[list[str], BeforeValidator(_ids)] | None = None
    tunnel_ids: Annotated[list[str], BeforeValidator(_tunnel_ids)] | None = None


class ConnectionDiagnosis(Response):
    vpn_connection_id: str
    tunnel_id: str
    failed_reason_code: str
    failed_reason: str
    failed_time: int | None
    source_log: str
    severity: str
    mismatch_local_param: str
    mismatch_remote_param: str


class DiagnoseVpnConnectionsResponse(PageResponse):
    # A bare list, as the public API answers (not wrapped like DescribeVpnConnections').
    vpn_connections: list[ConnectionDiagnosis]


def _utc(time_ms: int) -> str:
    return datetime.datetime.fromtimestamp(time_ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def source_log(
    ctx: Context, session: Session, log_key: str, stored_ike: dict[str, Any], until_ms: int
) -> str:
    """The log lines a diagnosis comes from (``log_key``: a connection's id, or a tunnel's),
    the Psk of ``stored_ike`` masked should it ever appear."""
    lines = queries.last_connection_logs(session, log_key, until_ms=until_ms, limit=4 * SOURCE_LINES)
    since = lines
    for index in range(len(lines) - 1, -1, -1):
        if _ESTABLISHED.search(lines[index].message):
            since = lines[index + 1 :]
            break
    psk = str(opened_ike(ctx.sealer, stored_ike).get("Psk", ""))
    text = "\n".join(f"{_utc(line.time_ms)} {line.message}" for line in since[-SOURCE_LINES:])
    return text.replace(psk, "******") if psk else text


def _entry(
    ctx: Context,
    session: Session,
    *,
    connection_id: str,
    tunnel_id: str,
    diagnosis: str,
    observed_time: int | None,
    stored_ike: dict[str, Any],
) -> ConnectionDiagnosis:
    code = reason_code(diagnosis)
    # When the data plane stored the diagnosis; a gateway no node runs has no such time.
    failed_time = (observed_time or ctx.now_ms) if code else None
    log_key = tunnel_id or connection_id
    return ConnectionDiagnosis(
        vpn_connection_id=connection_id,
        tunnel_id=tunnel_id,
        failed_reason_code=code,
        failed_reason=diagnosis,
        failed_time=failed_time,
        source_log=source_log(ctx, session, log_key, stored_ike, failed_time or ctx.now_ms) if code else "",
        severity="Critical" if code else "Normal",
        mismatch_local_param="",
        mismatch_remote_param="",
    )


def _diagnoses(
    ctx: Context, session: Session, views: Views, connection: VpnConnection, picked: set[str] | None
) -> list[ConnectionDiagnosis]:
    """One entry for a single-tunnel connection, one per tunnel (of ``picked``, when given)
    for a dual-tunnel one; each reads as DescribeVpnConnection does (a silent or failing
    holder's tunnel is down)."""
    readings = views.readings(connection)
    if readings:
        return [
            _entry(
                ctx,
                session,
                connection_id=connection.id,
                tunnel_id=r.row.id,
                diagnosis=r.diagnosis,
                observed_time=r.row.observed_time,
                stored_ike=r.row.ike_config,
            )
            for r in readings
            if picked is None or r.row.id in picked
        ]
    observer = views.seen_by.get(connection.vpn_gateway_id)
    _status, diagnosis = freshness.effective(
        connection.status, connection.diagnosis, observer, now_ms=ctx.now_ms
    )
    return [
        _entry(
            ctx,
            session,
            connection_id=connection.id,
            tunnel_id="",
            diagnosis=diagnosis,
            observed_time=connection.observed_time,
            stored_ike=connection.ike_config,
        )
    ]


def diagnose_vpn_connections(
    ctx: Context, session: Session, p: DiagnoseVpnConnectionsParams
) -> DiagnoseVpnConnectionsResponse:
    filters: dict[str, Any] = {}
    if p.vpn_gateway_id is not None:
        filters["vpn_gateway_id"] = get_gateway(ctx, session, p.region_id, p.vpn_gateway_id).id
    named = list(p.vpn_connection_ids or [])
    picked: set[str] | None = None
    if p.tunnel_ids:
        found = queries.tunnels_by_id(session, p.tunnel_ids)
        for tunnel_id in p.tunnel_ids:
            row = found.get(tunnel_id)
            # Another account's tunnel is as unknown as a missing one.
            if (
                row is None
                or queries.get_owned(
                    session, VpnConnection, ctx.account_id, p.region_id, row.vpn_connection_id
                )
                is None
            ):
                raise tunnel_not_found(tunnel_id)
        picked = set(p.tunnel_ids)
        of_tunnels = sorted({found[t].vpn_connection_id for t in p.tunnel_ids})
        if named and not set(of_tunnels) <= set(named):
            outside = next(t for t in p.tunnel_ids if found[t].vpn_connection_id not in named)
            raise tunnel_not_found(outside)
        named = named or of_tunnels
    if named:
        for vpn_connection_id in named:
            connection = get_connection(ctx, session, p.region_id, vpn_connection_id)
            if p.vpn_gateway_id is not None and connection.vpn_gateway_id != p.vpn_gateway_id:
                raise connection_not_found(vpn_connection_id)
        filters["id"] = named
    rows, total = queries.page(
        session, VpnConnection, ctx.account_id, p.region_id, filters, p.page_number, p.page_size
    )
    views = Views(ctx, session, rows)
    return DiagnoseVpnConnectionsResponse(
        total_count=total,
        page_number=p.page_number,
        page_size=p.page_size,
        vpn_connections=[entry for c in rows for entry in _diagnoses(ctx, session, views, c, picked)],
    )
