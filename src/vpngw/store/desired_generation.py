"""The change stamp of each gateway's desired state (``vpn_gateways.desired_generation``).

Database triggers (migration 0015) bump a gateway's stamp in every transaction that
changes what the data plane realises for it; writers call nothing. The data plane reads
every stamp in one query per pass (:func:`of_gateways`) and reloads only the gateways
whose stamp moved (docs/dataplane.md, "Change stamps and the heal pass").
"""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from vpngw.store.models import VpnGateway

_STAMPS = select(VpnGateway.id, VpnGateway.desired_generation)


def of_gateways(session: Session | Connection) -> dict[str, int]:
    """Every VPN gateway's id and stamp (a gateway absent here no longer exists)."""
    return {row[0]: row[1] for row in session.execute(_STAMPS)}
