"""Observations expire with their observer.

A connection's stored ``Status`` and ``Diagnosis`` are what the node running its gateway
last wrote. They stand only while that node keeps confirming them: after every pass the
holder of a gateway's lease writes on the lease row that it ran the gateway
(``observed_by``), until when that confirmation stands (``observed_until_ms``, a few
renewals ahead) and the error of the pass, if it failed (``pass_error``; see
:func:`confirm`). Readers (the API, ``/metrics``) pass the stored values through
:func:`effective`: a connection whose gateway's holder is silent or failing reads
``ike_sa_not_established`` with a Diagnosis that says why, whatever was written before.

A gateway without a lease row (no data-plane node has ever run on this database) keeps
its stored values: nothing has observed it, and nothing claims it is up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vpngw.store.models import GatewayLease

NOT_UP = "ike_sa_not_established"
#: Status from worst to best: IKE down; IKE up and a CHILD_SA refused; IKE up and the
#: CHILD_SAs on their way; traffic flows.
STATUS_ORDER = (
    "ike_sa_not_established",
    "ipsec_sa_not_established",
    "ike_sa_established",
    "ipsec_sa_established",
)
# A pass error is stored at most this long (the Diagnosis quotes it).
ERROR_CHARS = 500


@dataclass(frozen=True)
class Observer:
    """What a gateway's lease row says of who runs it and whether they confirm it."""

    holder: str | None
    expires_ms: int
    observed_by: str | None
    observed_until_ms: int
    pass_error: str


def observers(session: Session, gateway_ids: Iterable[str]) -> dict[str, Observer]:
    """The lease rows of ``gateway_ids`` (gateways without one are absent)."""
    ids = sorted(set(gateway_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(
            GatewayLease.vpn_gateway_id,
            GatewayLease.holder,
            GatewayLease.expires_ms,
            GatewayLease.observed_by,
            GatewayLease.observed_until_ms,
            GatewayLease.pass_error,
        ).where(GatewayLease.vpn_gateway_id.in_(ids))
    ).all()
    return {row[0]: Observer(row[1], row[2], row[3], row[4] or 0, row[5] or "") for row in rows}


def effective(status: str, diagnosis: str, observer: Observer | None, *, now_ms: int) -> tuple[str, str]:
    """(Status, Diagnosis) to report for a connection whose stored values are ``status``
    and ``diagnosis`` and whose gateway's lease row is ``observer``."""
    if observer is None:
        return status, diagnosis
    holder = observer.holder if observer.holder and observer.expires_ms >= now_ms else None
    if holder is None:
        if status == NOT_UP:
            return status, diagnosis
        return NOT_UP, (
            "No data-plane node runs this gateway now (its lease is free or ran out); "
            "nothing is known to be up until a node takes it."
        )
    if observer.observed_by != holder or observer.observed_until_ms < now_ms:
        return NOT_UP, (
            f"Node {holder} holds this gateway but has not confirmed its state lately "
            "(the node is silent: its passes do not finish); nothing is known to be up."
        )
    if observer.pass_error:
        return NOT_UP, f"Node {holder} fails to run this gateway: {observer.pass_error}"
    return status, diagnosis


def confirm(session: Session, node: str, outcomes: Mapping[str, str], *, until_ms: int) -> None:
    """``node`` ran the gateways of ``outcomes`` (gateway id -> the pass's error, "" if
    none); only the leases it still holds are written."""
    by_error: dict[str, list[str]] = {}
    for gateway_id, error in outcomes.items():
        by_error.setdefault(error[:ERROR_CHARS], []).append(gateway_id)
    for error, ids in sorted(by_error.items()):
        session.execute(
            update(GatewayLease)
            .where(GatewayLease.vpn_gateway_id.in_(sorted(ids)), GatewayLease.holder == node)
            .values(observed_by=node, observed_until_ms=until_ms, pass_error=error)
        )


def summary(statuses: Iterable[str]) -> str:
    """A dual-tunnel connection's Status from its tunnels' (each already :func:`effective`):
    ``ipsec_sa_established`` when any tunnel is (traffic flows), else the best of them (an
    unknown value ranks lowest)."""

    def rank(status: str) -> int:
        return STATUS_ORDER.index(status) if status in STATUS_ORDER else -1

    return max(statuses, key=rank, default=NOT_UP)
