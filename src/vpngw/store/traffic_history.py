"""A bounded history of each connection's traffic counters, for plots.

The data plane already stores a connection's current counters (``TrafficStatistics``)
through ``queries.write_observation``, at most every 2 seconds while traffic flows; that
function also records them here, so the history needs nothing of the data plane. One
point per connection per :data:`BUCKET_MS` (the last counters read in the bucket), kept
:data:`RETENTION_MS`: at most 8,640 points per connection. A bucket without a point had
no change of counters (or no SAs to read).

The counters are those of the connection's current CHILD_SAs: they restart from 0 when
an SA is rekeyed or renegotiated, so a reader takes a drop as a restart, not as traffic
going backwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from vpngw.store.models import VpnConnectionTrafficPoint

BUCKET_MS = 10_000
RETENTION_MS = 24 * 3600 * 1000
_POINTS: Table = VpnConnectionTrafficPoint.__table__  # type: ignore[assignment]
_COUNTERS = ("bytes_in", "bytes_out", "packets_in", "packets_out")
_API_NAMES = ("BytesIn", "BytesOut", "PacketsIn", "PacketsOut")


def record(session: Session, connection_id: str, traffic: Mapping[str, int], now_ms: int) -> None:
    """Store ``traffic`` as the point of its bucket (replacing an earlier one of the
    same bucket) and forget every point older than the retention.

    The caller holds the connection's row lock (``write_observation``), so two writers of
    one connection never race for a bucket. The prune is an indexed range delete that
    almost always finds nothing.
    """
    bucket = now_ms - now_ms % BUCKET_MS
    point = session.get(VpnConnectionTrafficPoint, (connection_id, bucket))
    if point is None:
        point = VpnConnectionTrafficPoint(vpn_connection_id=connection_id, bucket_ms=bucket)
        session.add(point)
    point.time_ms = now_ms
    point.bytes_in = int(traffic.get("BytesIn", 0))
    point.bytes_out = int(traffic.get("BytesOut", 0))
    point.packets_in = int(traffic.get("PacketsIn", 0))
    point.packets_out = int(traffic.get("PacketsOut", 0))
    session.execute(
        delete(VpnConnectionTrafficPoint).where(VpnConnectionTrafficPoint.time_ms < now_ms - RETENTION_MS)
    )
    session.flush()


def record_many(session: Session, points: Sequence[tuple[str, Mapping[str, int]]], now_ms: int) -> None:
    """:func:`record` of several connections at once (one upsert executemany and one
    retention delete): each ``(connection id, traffic)`` becomes the point of its bucket.
    The caller holds the connections' row locks (``observations.record_gateway_pass``)."""
    if not points:
        return
    bucket = now_ms - now_ms % BUCKET_MS
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(_POINTS)
    statement = statement.on_conflict_do_update(
        index_elements=[_POINTS.c.vpn_connection_id, _POINTS.c.bucket_ms],
        set_={name: statement.excluded[name] for name in _COUNTERS + ("time_ms",)},
    )
    session.execute(
        statement,
        [
            {
                "vpn_connection_id": connection_id,
                "bucket_ms": bucket,
                "time_ms": now_ms,
                **{name: int(traffic.get(key, 0)) for name, key in zip(_COUNTERS, _API_NAMES, strict=True)},
            }
            for connection_id, traffic in points
        ],
    )
    session.execute(delete(_POINTS).where(_POINTS.c.time_ms < now_ms - RETENTION_MS))


def points(
    session: Session, connection_id: str, *, from_ms: int, to_ms: int
) -> Sequence[VpnConnectionTrafficPoint]:
    """The connection's points read in ``[from_ms, to_ms]``, oldest first."""
    return session.scalars(
        select(VpnConnectionTrafficPoint)
        .where(
            VpnConnectionTrafficPoint.vpn_connection_id == connection_id,
            VpnConnectionTrafficPoint.time_ms >= from_ms,
            VpnConnectionTrafficPoint.time_ms <= to_ms,
        )
        .order_by(VpnConnectionTrafficPoint.bucket_ms)
    ).all()


def forget(session: Session, connection_id: str) -> None:
    """Delete a connection's history (DeleteVpnConnection, in its transaction)."""
    session.execute(
        delete(VpnConnectionTrafficPoint).where(VpnConnectionTrafficPoint.vpn_connection_id == connection_id)
    )
