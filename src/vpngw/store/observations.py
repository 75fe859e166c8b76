"""One gateway's pass written back in one transaction, with Core statements.

The data plane's reconciler writes, after each look at a gateway, the observations of its
connections that changed (``Status``, ``Diagnosis``, traffic counters) and the log lines
charon wrote about them since the last look. :func:`record_gateway_pass` does both in the
caller's transaction with a fixed number of statements whatever the number of
connections: one ``SELECT ... FOR UPDATE`` of every connection row involved (in id
order, as every writer of several connection rows locks them), one ``UPDATE``
executemany, one ``INSERT`` executemany of log lines, one upsert executemany of traffic
points and one retention ``DELETE`` (:func:`vpngw.store.traffic_history.record_many`).

It stores exactly what :func:`vpngw.store.queries.write_observation` and
:func:`~vpngw.store.queries.add_connection_logs` store, one connection or line at a time
(tests/store/test_gateway_pass.py compares the two): only differences are written,
``observed_time`` and ``observed_by`` move only with them, each written traffic becomes a
point of the connection's history, and nothing is written for a connection that no longer
exists. The ORM version cost about five statements and a flush per connection: during a
cold start of many gateways that, and PostgreSQL's share of it, was most of what the
data plane spent (docs/benchmarks.md, "Spread").

Ids that are not connections are handed back to the caller: a tunnel of a dual-tunnel
connection keeps its own row and lines (``record_tunnel_observations``,
``add_connection_logs``), and an id that is neither was deleted meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from vpngw.store import traffic_history
from vpngw.store.models import VpnConnection, VpnConnectionLog

_CONNECTIONS: Table = VpnConnection.__table__  # type: ignore[assignment]
_LOGS: Table = VpnConnectionLog.__table__  # type: ignore[assignment]

_LOCK = (
    select(_CONNECTIONS.c.id, _CONNECTIONS.c.status, _CONNECTIONS.c.diagnosis, _CONNECTIONS.c.traffic)
    .where(_CONNECTIONS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_CONNECTIONS.c.id)
    .with_for_update()
)
_UPDATE = (
    update(_CONNECTIONS)
    .where(_CONNECTIONS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        diagnosis=bindparam("b_diagnosis"),
        traffic=bindparam("b_traffic"),
        observed_time=bindparam("b_observed_time"),
        observed_by=bindparam("b_observed_by"),
    )
)
_INSERT_LOGS = insert(_LOGS)


class ConnectionObservation(NamedTuple):
    """What the data plane sees of one connection (``traffic``: the counters of its
    current CHILD_SAs, None when nothing was observed)."""

    connection_id: str
    status: str
    diagnosis: str
    traffic: dict[str, int] | None


@dataclass
class PassWritten:
    """What :func:`record_gateway_pass` did."""

    # Connections whose observation changed (and was written), in id order.
    changed: list[str] = field(default_factory=list)
    lines: int = 0  # log lines stored
    # Observations and log lines of ids that are not connections, for the caller.
    other_observations: list[ConnectionObservation] = field(default_factory=list)
    other_lines: list[tuple[str, int, str]] = field(default_factory=list)


def record_gateway_pass(
    session: Session,
    observations: Sequence[ConnectionObservation],
    lines: Sequence[tuple[str, int, str]],
    *,
    now_ms: int,
    observed_by: str | None,
) -> PassWritten:
    """Store ``observations`` (only those that differ from the stored row) and ``lines``
    (``(connection id, time in ms, message)``, in the order given) of one gateway.

    The connection rows involved stay locked until the transaction ends: a concurrent
    DeleteVpnConnection (which deletes the connection, then its lines and history) either
    finished first (its rows and lines are skipped here) or waits for this write.
    """
    latest = {observation.connection_id: observation for observation in observations}  # the last word
    ids = set(latest) | {connection_id for connection_id, _time, _message in lines}
    written = PassWritten()
    if not ids:
        return written
    stored = {row.id: row for row in session.execute(_LOCK, {"ids": sorted(ids)})}
    changes: list[dict[str, Any]] = []
    points: list[tuple[str, dict[str, int]]] = []
    for connection_id, seen in sorted(latest.items()):
        row = stored.get(connection_id)
        if row is None:
            written.other_observations.append(seen)
            continue
        if (row.status, row.diagnosis, row.traffic) == (seen.status, seen.diagnosis, seen.traffic):
            continue
        traffic = None if seen.traffic is None else dict(seen.traffic)
        changes.append(
            {
                "b_id": connection_id,
                "b_status": seen.status,
                "b_diagnosis": seen.diagnosis,
                "b_traffic": traffic,
                "b_observed_time": now_ms,
                "b_observed_by": observed_by,
            }
        )
        if traffic is not None:
            points.append((connection_id, traffic))
        written.changed.append(connection_id)
    if changes:
        session.execute(_UPDATE, changes)
    if points:
        traffic_history.record_many(session, points, now_ms)
    kept = []
    for connection_id, time_ms, message in lines:
        if connection_id in stored:
            kept.append({"vpn_connection_id": connection_id, "time_ms": time_ms, "message": message})
        else:
            written.other_lines.append((connection_id, time_ms, message))
    if kept:
        session.execute(_INSERT_LOGS, kept)
    written.lines = len(kept)
    return written
