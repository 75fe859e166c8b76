"""Per-account quotas: how many VPCs, VPN gateways and customer gateways an account may hold
in a region (docs/security.md). The per-gateway connection quota lives with the connections.

A create checks its quota inside its own transaction, against the account's counter row
locked for the rest of it (``queries.count_for_update``), so concurrent creates cannot
overshoot, on SQLite or PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from vpngw.actions.framework import Context
from vpngw.errors import BadRequest
from vpngw.store import queries
from vpngw.store.models import CustomerGateway, Vpc, VpnGateway

Quoted = type[Vpc] | type[VpnGateway] | type[CustomerGateway]

#: The quotas, by kind (the resource's table, as in resource_counts), with what they count.
KINDS = {"vpcs": "VPCs", "vpn_gateways": "VPN gateways", "customer_gateways": "customer gateways"}


def quota_of(ctx: Context, session: Session, kind: str) -> int:
    own = queries.account_quotas(session, ctx.account_id)
    return own[kind] if kind in own else ctx.settings.default_quota(kind)


def check_room(ctx: Context, session: Session, model: Quoted, region_id: str) -> None:
    """Refuse (400 ``Resource.QuotaFull``, naming the quota) a create that would take the
    account past its quota of ``model`` in ``region_id``; the counter stays locked until
    the create commits."""
    kind = model.__tablename__
    held = queries.count_for_update(session, kind, ctx.account_id, region_id)
    quota = quota_of(ctx, session, kind)
    if held >= quota:
        raise BadRequest(
            "Resource.QuotaFull",
            f"The quota of resource is full: the quota {kind} allows {quota} {KINDS[kind]} per region "
            f"and the account holds {held} in {region_id}. Delete one, or ask the operator to raise it.",
        )
