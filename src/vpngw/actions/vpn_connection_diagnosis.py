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
PageNumber / PageSize. ``TunnelIds.N`` is refused until dual tunnels exist.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any

from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from vpngw.actions.framework import Context, PageParams, PageResponse, Response, unsupported
from vpngw.actions.vpn_connections import connection_not_found, get_connection
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


class DiagnoseVpnConnectionsParams(PageParams):
    REFUSED = {
        "TunnelIds": unsupported(
            "TunnelIds", "connections have one tunnel (no dual tunnels yet): name them by VpnConnectionIds."
        )
    }

    vpn_gateway_id: str | None = None
    vpn_connection_ids: Annotated[list[str], BeforeValidator(_ids)] | None = None


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


def source_log(ctx: Context, session: Session, connection: VpnConnection, until_ms: int) -> str:
    lines = queries.last_connection_logs(session, connection.id, until_ms=until_ms, limit=4 * SOURCE_LINES)
    since = lines
    for index in range(len(lines) - 1, -1, -1):
        if _ESTABLISHED.search(lines[index].message):
            since = lines[index + 1 :]
            break
    psk = str(opened_ike(ctx.sealer, connection.ike_config).get("Psk", ""))
    text = "\n".join(f"{_utc(line.time_ms)} {line.message}" for line in since[-SOURCE_LINES:])
    return text.replace(psk, "******") if psk else text


def _diagnosis(ctx: Context, session: Session, connection: VpnConnection) -> ConnectionDiagnosis:
    # What DescribeVpnConnection says: a silent or failing holder's connection is down.
    observer = freshness.observers(session, [connection.vpn_gateway_id]).get(connection.vpn_gateway_id)
    _status, diagnosis = freshness.effective(
        connection.status, connection.diagnosis, observer, now_ms=ctx.now_ms
    )
    code = reason_code(diagnosis)
    failed_time = connection.observed_time if code else None
    return ConnectionDiagnosis(
        vpn_connection_id=connection.id,
        tunnel_id="",
        failed_reason_code=code,
        failed_reason=diagnosis,
        failed_time=failed_time,
        source_log=source_log(ctx, session, connection, failed_time or ctx.now_ms) if code else "",
        severity="Critical" if code else "Normal",
        mismatch_local_param="",
        mismatch_remote_param="",
    )


def diagnose_vpn_connections(
    ctx: Context, session: Session, p: DiagnoseVpnConnectionsParams
) -> DiagnoseVpnConnectionsResponse:
    filters: dict[str, Any] = {}
    if p.vpn_gateway_id is not None:
        filters["vpn_gateway_id"] = get_gateway(ctx, session, p.region_id, p.vpn_gateway_id).id
    if p.vpn_connection_ids:
        for vpn_connection_id in p.vpn_connection_ids:
            connection = get_connection(ctx, session, p.region_id, vpn_connection_id)
            if p.vpn_gateway_id is not None and connection.vpn_gateway_id != p.vpn_gateway_id:
                raise connection_not_found(vpn_connection_id)
        filters["id"] = list(p.vpn_connection_ids)
    rows, total = queries.page(
        session, VpnConnection, ctx.account_id, p.region_id, filters, p.page_number, p.page_size
    )
    return DiagnoseVpnConnectionsResponse(
        total_count=total,
        page_number=p.page_number,
        page_size=p.page_size,
        vpn_connections=[_diagnosis(ctx, session, c) for c in rows],
    )
