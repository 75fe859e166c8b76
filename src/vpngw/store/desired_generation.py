"""The change stamp of each gateway's desired state (``vpn_gateways.desired_generation``).

Database triggers (migration 0015) bump a gateway's stamp in every transaction that
changes what the data plane realises for it; writers call nothing. The data plane asks for their
count and sum at each pass (:func:`total`), reads every stamp (:func:`of_gateways`) only
when that moved (or after a wake-up, and at least every few seconds), and reloads only
the gateways whose stamp moved (docs/dataplane.md, "Change stamps and the heal pass").
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from vpngw.store.models import VpnGateway

_STAMPS = select(VpnGateway.id, VpnGateway.desired_generation)
_TOTAL = select(func.count(), func.coalesce(func.sum(VpnGateway.desired_generation), 0))


def of_gateways(session: Session | Connection) -> dict[str, int]:
    """Every VPN gateway's id and stamp (a gateway absent here no longer exists)."""
    return {row[0]: row[1] for row in session.execute(_STAMPS)}


def total(session: Session | Connection) -> tuple[int, int]:
    """(how many gateways, the sum of their stamps): a bump (+1) or a gateway created or
    deleted moves it. Computed in the database (0.44 ms at 1,000 gateways on SQLite
    against 1.9 ms for every stamp handed to Python and compared): the data plane asks
    this first and reads the stamps only when it moved (docs/dataplane.md)."""
    count, stamps = session.execute(_TOTAL).one()
    return int(count), int(stamps)


def total_of(stamps: dict[str, int]) -> tuple[int, int]:
    """:func:`total` of stamps already read (:func:`of_gateways`), from the same snapshot."""
    return len(stamps), sum(stamps.values())
