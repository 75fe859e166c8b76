"""Data-plane nodes and gateway leases: the only coordination between nodes.

Each function takes an open session; the caller owns the transaction. Every change of
holder is one conditional ``UPDATE`` (the row's current holder and expiry are in its
``WHERE``), so two nodes can never both win a lease, on PostgreSQL (the second UPDATE
waits for the first and re-checks the condition) as on SQLite (writers are serialised).
docs/nodes.md describes the protocol and its timings.

The unit of a lease is one gateway *address*: a gateway's InternetIp is leased under the
gateway's id, and a dual-tunnel gateway's second address (its DisasterRecoveryInternetIp,
where tunnel 2 of each of its connections runs) under :func:`lease_key` ``(id, 2)``, the
id with ``.dr`` appended. A single-tunnel gateway has one lease, keyed and behaving as it
always did. Everything downstream of the lease (a node's namespaces, charons, fencing)
works per lease key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from vpngw.store.models import GatewayLease, Node, VpnConnection, VpnConnectionTunnel, VpnGateway

NOT_UP = "ike_sa_not_established"

# The lease key of a dual-tunnel gateway's second address: the gateway's id and this.
# Gateway ids are ``vpn-`` and lowercase alphanumerics, so the key never names a gateway.
SECOND_ADDRESS_SUFFIX = ".dr"


def lease_key(vpn_gateway_id: str, tunnel_index: int = 1) -> str:
    """The lease key of the gateway's address that runs tunnel ``tunnel_index`` (1: the
    InternetIp, the key is the gateway id; 2: the DisasterRecoveryInternetIp)."""
    if tunnel_index not in (1, 2):
        raise ValueError(f"tunnel index {tunnel_index!r}: a gateway has addresses 1 and 2")
    return vpn_gateway_id if tunnel_index == 1 else vpn_gateway_id + SECOND_ADDRESS_SUFFIX


def lease_unit(key: str) -> tuple[str, int]:
    """(gateway id, tunnel index) of a lease key: the inverse of :func:`lease_key`."""
    if key.endswith(SECOND_ADDRESS_SUFFIX):
        return key[: -len(SECOND_ADDRESS_SUFFIX)], 2
    return key, 1


@dataclass(frozen=True)
class NodeRow:
    name: str
    backend: str
    addresses: tuple[str, ...]
    capacity: int
    heartbeat_ms: int
    started_ms: int
    draining: bool


@dataclass(frozen=True)
class LeaseRow:
    # The lease key (:func:`lease_key`): the gateway id, or the id of its second address.
    vpn_gateway_id: str
    holder: str | None
    expires_ms: int
    epoch: int
    pinned_node: str | None
    previous_holder: str | None
    internet_ip: str
    # False once the gateway is deleted (its lease stays until its holder let it go).
    exists: bool = True
    # The gateway's VPC-side next hop (None: it has none), guarded like the InternetIp.
    vpc_next_hop: str | None = None

    @property
    def gateway(self) -> str:
        """The VPN gateway this lease is an address of."""
        return lease_unit(self.vpn_gateway_id)[0]

    @property
    def tunnel_index(self) -> int:
        """1 for the gateway's InternetIp, 2 for a dual-tunnel gateway's second address."""
        return lease_unit(self.vpn_gateway_id)[1]


def _insert(session: Session):  # type: ignore[no-untyped-def]  # the two dialects' insert() differ in type; both have on_conflict_do_update
    return postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


# -- nodes -------------------------------------------------------------------------


def heartbeat(
    session: Session,
    *,
    node: str,
    backend: str,
    addresses: Iterable[str],
    capacity: int,
    now_ms: int,
    starting: bool = False,
) -> None:
    """Register ``node`` or refresh its heartbeat (``draining`` is left as it is)."""
    values = {"backend": backend, "addresses": list(addresses), "capacity": capacity, "heartbeat_ms": now_ms}
    on_conflict = dict(values, started_ms=now_ms) if starting else values
    statement = _insert(session)(Node).values(name=node, started_ms=now_ms, draining=False, **values)
    session.execute(statement.on_conflict_do_update(index_elements=[Node.name], set_=on_conflict))


def nodes(session: Session) -> list[NodeRow]:
    rows = session.scalars(select(Node).order_by(Node.name)).all()
    return [
        NodeRow(r.name, r.backend, tuple(r.addresses), r.capacity, r.heartbeat_ms, r.started_ms, r.draining)
        for r in rows
    ]


def set_draining(session: Session, node: str, draining: bool) -> bool:
    """False if there is no such node."""
    result = session.execute(update(Node).where(Node.name == node).values(draining=draining))
    return bool(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE/DELETE returns a CursorResult, typed Result


def forget_node(session: Session, node: str) -> bool:
    """Remove a node that holds nothing (``vpngw node forget``); False if it holds leases."""
    if session.scalars(
        select(GatewayLease.vpn_gateway_id).where(GatewayLease.holder == node).limit(1)
    ).first():
        return False
    result = session.execute(delete(Node).where(Node.name == node))
    return bool(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE/DELETE returns a CursorResult, typed Result


def database_clock_ms(session: Session) -> int | None:
    """The database server's clock (PostgreSQL ``clock_timestamp()``), None on SQLite (a
    file on this machine: there is no other clock)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    value = session.execute(text("SELECT extract(epoch FROM clock_timestamp()) * 1000")).scalar_one()
    return int(float(value))


# -- leases ------------------------------------------------------------------------


_GATEWAY_ADDRESSES = select(
    VpnGateway.id, VpnGateway.internet_ip, VpnGateway.disaster_recovery_internet_ip, VpnGateway.vpc_next_hop
)


def _addresses_and_next_hops(session: Session) -> tuple[dict[str, str], dict[str, str]]:
    """:func:`lease_addresses` and :func:`gateway_next_hops` from one read of the gateways
    (each lease round needs both: at 1,000 gateways every read counts, docs/benchmarks.md)."""
    found: dict[str, str] = {}
    next_hops: dict[str, str] = {}
    for gateway_id, internet_ip, second_ip, next_hop in session.connection().execute(_GATEWAY_ADDRESSES):
        found[gateway_id] = internet_ip
        if second_ip:
            found[lease_key(gateway_id, 2)] = second_ip
        if next_hop is not None:
            next_hops[gateway_id] = next_hop
    return found, next_hops


def lease_addresses(session: Session) -> dict[str, str]:
    """Every lease key the gateways of the store need, with its address: the InternetIp of
    every gateway, and the second address of every dual-tunnel gateway."""
    return _addresses_and_next_hops(session)[0]


def gateway_next_hops(session: Session) -> dict[str, str]:
    """The VPC-side next hop of every gateway that has one, by the lease key of its first
    address (the gateway id): the holder of that lease answers for it (docs/nodes.md)."""
    return _addresses_and_next_hops(session)[1]


def sync_lease_rows(session: Session, *, now_ms: int) -> None:
    """A lease row for every gateway address (nobody holds a new one); the row of a
    deleted gateway (or address) goes once nobody holds it (its holder released it after
    tearing it down, or the lease ran out): until then it keeps guarding the address
    (and the gateway's VPC-side next hop, on its first address's row)."""
    addresses, next_hops = _addresses_and_next_hops(session)
    leased = set(session.scalars(select(GatewayLease.vpn_gateway_id)))
    missing = sorted(set(addresses) - leased)
    if missing:
        rows = [
            {
                "vpn_gateway_id": key,
                "internet_ip": addresses[key],
                "vpc_next_hop": next_hops.get(key),
                "holder": None,
                "expires_ms": 0,
                "epoch": 0,
            }
            for key in missing
        ]
        session.execute(_insert(session)(GatewayLease).values(rows).on_conflict_do_nothing())
    gone = sorted(leased - set(addresses))
    if gone:
        session.execute(
            delete(GatewayLease).where(
                GatewayLease.vpn_gateway_id.in_(gone),
                or_(GatewayLease.holder.is_(None), GatewayLease.expires_ms < now_ms),
            )
        )


_LEASES = select(
    GatewayLease.vpn_gateway_id,
    GatewayLease.holder,
    GatewayLease.expires_ms,
    GatewayLease.epoch,
    GatewayLease.pinned_node,
    GatewayLease.previous_holder,
    GatewayLease.internet_ip,
    GatewayLease.vpc_next_hop,
).order_by(GatewayLease.vpn_gateway_id)


def leases(session: Session) -> list[LeaseRow]:
    """Every lease row (columns, not ORM objects: a node reads them all every renewal)."""
    addresses, next_hops = _addresses_and_next_hops(session)
    return [
        LeaseRow(
            key,
            holder,
            expires_ms,
            epoch,
            pinned_node,
            previous_holder,
            internet_ip,
            key in addresses,
            # The lease's copy guards a deleted gateway's; the gateway's own is the truth
            # while it exists (given at an API server's start, it may be newer).
            next_hops.get(key) or vpc_next_hop,
        )
        for key, holder, expires_ms, epoch, pinned_node, previous_holder, internet_ip, vpc_next_hop in (
            session.connection().execute(_LEASES)
        )
    ]


def renew_counted(session: Session, node: str, *, now_ms: int, lease_ms: int) -> int:
    """Extend every lease ``node`` holds, as :func:`renew` does, and say only how many:
    the same conditional UPDATE (row by row, so that a takeover and a renewal of one lease
    are arbitrated by the row's lock), without reading the keys back. A node's held set
    can only grow by its own :func:`acquire`, so an unchanged count is an unchanged set."""
    result = session.execute(
        update(GatewayLease).where(GatewayLease.holder == node).values(expires_ms=now_ms + lease_ms)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE/DELETE returns a CursorResult, typed Result


@dataclass(frozen=True)
class LeaseSummary:
    """What a node's lease round would decide on, reduced to counts the database computes
    without handing every row to Python (:func:`summary`). Two equal summaries, with the
    nodes' liveness unchanged, mean the placement would decide the same: no gateway or
    address came or went (counts, and any lease row missing), no gateway was given its
    VPC-side next hop (a gateway's addresses are set when it is created; its next hop too,
    or once later by an API server that has a pool: ``set_vpc_next_hop``), no lease changed
    hands (rows per holder), none ran out or was freed (free rows, counted at the round's
    own cut-off) and no pin moved toward or away from ``node``. A write that changes none
    of these (a connection's settings) leaves it as it was: the round after it stays quiet.
    Should an address ever change in place, the keeper's full round every
    ``FULL_ROUND_EVERY_S`` still sees it."""

    gateways: int
    next_hops: int
    rows: int
    unleased: bool
    free: int
    free_unpinned: int
    free_pinned_here: int
    pinned_away: int
    held: tuple[tuple[str, int], ...]


# One statement, each table scanned as little as it can be: the gateways' counts from
# their narrow indexes, the anti-joins through the primary keys (the second addresses
# through their own index), and one pass over the lease rows for every lease count
# (docs/benchmarks.md: each extra scan of the rows costs about 0.3 ms at 1,000 gateways).
_FREE = "(holder IS NULL OR expires_ms < :cut)"
_SUMMARY = text(
    "SELECT"
    " (SELECT count(*) FROM vpn_gateways),"
    " (SELECT count(vpc_next_hop) FROM vpn_gateways),"
    " EXISTS (SELECT 1 FROM vpn_gateways g"
    "  WHERE NOT EXISTS (SELECT 1 FROM gateway_leases l WHERE l.vpn_gateway_id = g.id))"
    " OR EXISTS (SELECT 1 FROM vpn_gateways g"
    "  WHERE g.disaster_recovery_internet_ip IS NOT NULL AND g.disaster_recovery_internet_ip <> ''"
    "  AND NOT EXISTS (SELECT 1 FROM gateway_leases l WHERE l.vpn_gateway_id = g.id || :suffix)),"
    " count(*),"
    f" coalesce(sum(CASE WHEN {_FREE} THEN 1 ELSE 0 END), 0),"
    f" coalesce(sum(CASE WHEN {_FREE} AND pinned_node IS NULL THEN 1 ELSE 0 END), 0),"
    f" coalesce(sum(CASE WHEN {_FREE} AND pinned_node = :me THEN 1 ELSE 0 END), 0),"
    " coalesce(sum(CASE WHEN holder = :me AND pinned_node IS NOT NULL AND pinned_node <> :me"
    "  THEN 1 ELSE 0 END), 0)"
    " FROM gateway_leases"
)
_HELD = text(
    "SELECT holder, count(*) FROM gateway_leases WHERE holder IS NOT NULL GROUP BY holder ORDER BY holder"
)


def summary(session: Session, node: str, *, cut_ms: int) -> LeaseSummary:
    """The :class:`LeaseSummary` seen by ``node``, with leases that ran out before
    ``cut_ms`` (now minus the skew) counted free: two statements, whatever the number of
    gateways (the database scans its rows; Python sees a few numbers)."""
    connection = session.connection()
    gateways, next_hops, unleased, rows, free, unpinned, pinned_here, pinned_away = connection.execute(
        _SUMMARY, {"cut": cut_ms, "me": node, "suffix": SECOND_ADDRESS_SUFFIX}
    ).one()
    held = tuple((str(holder), int(count)) for holder, count in connection.execute(_HELD))
    return LeaseSummary(
        int(gateways),
        int(next_hops),
        int(rows),
        bool(unleased),
        int(free),
        int(unpinned),
        int(pinned_here),
        int(pinned_away),
        held,
    )


def renew(session: Session, node: str, *, now_ms: int, lease_ms: int) -> set[str]:
    """Extend every lease ``node`` holds; returns the gateways it still holds."""
    result = session.execute(
        update(GatewayLease)
        .where(GatewayLease.holder == node)
        .values(expires_ms=now_ms + lease_ms)
        .returning(GatewayLease.vpn_gateway_id)
    )
    return set(result.scalars())


def acquire(
    session: Session, vpn_gateway_id: str, node: str, *, now_ms: int, lease_ms: int, skew_ms: int
) -> bool:
    """Take the lease if nobody holds it, or its holder let it run out more than
    ``skew_ms`` ago (clocks of nodes may differ by that much), and no other node is
    pinned. True if ``node`` holds it now."""
    result = session.execute(
        update(GatewayLease)
        .where(
            GatewayLease.vpn_gateway_id == vpn_gateway_id,
            or_(GatewayLease.holder.is_(None), GatewayLease.expires_ms < now_ms - skew_ms),
            or_(GatewayLease.pinned_node.is_(None), GatewayLease.pinned_node == node),
        )
        .values(
            holder=node,
            expires_ms=now_ms + lease_ms,
            epoch=GatewayLease.epoch + 1,
            previous_holder=GatewayLease.holder,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE/DELETE returns a CursorResult, typed Result


def release(session: Session, vpn_gateway_id: str, node: str) -> bool:
    """Give the lease up (after ``node`` tore the gateway down)."""
    result = session.execute(
        update(GatewayLease)
        .where(GatewayLease.vpn_gateway_id == vpn_gateway_id, GatewayLease.holder == node)
        .values(holder=None, expires_ms=0, previous_holder=node)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE/DELETE returns a CursorResult, typed Result


def pin(session: Session, vpn_gateway_id: str, node: str | None) -> bool:
    """Let only ``node`` hold the lease ``vpn_gateway_id`` (a gateway id: its InternetIp;
    ``<id>.dr``: a dual-tunnel gateway's second address), None: any node. False if there
    is no such gateway address. The holder, if another node, gives it away on its next pass."""
    if vpn_gateway_id not in lease_addresses(session):
        return False
    sync_lease_rows(session, now_ms=0)
    session.execute(
        update(GatewayLease).where(GatewayLease.vpn_gateway_id == vpn_gateway_id).values(pinned_node=node)
    )
    return True


def holders(session: Session, gateway_ids: Iterable[str], *, now_ms: int) -> dict[str, str]:
    """The node that runs each of ``gateway_ids`` now (held and not run out)."""
    ids = list(gateway_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(GatewayLease.vpn_gateway_id, GatewayLease.holder).where(
            GatewayLease.vpn_gateway_id.in_(ids),
            GatewayLease.holder.is_not(None),
            GatewayLease.expires_ms >= now_ms,
        )
    ).all()
    return {gateway_id: str(holder) for gateway_id, holder in rows}


def mark_gateway_lost(session: Session, vpn_gateway_id: str, diagnosis: str, *, now_ms: int) -> int:
    """The node of the lease ``vpn_gateway_id`` (a lease key) is lost: nothing it ran is
    known to be up until another node has it. That is every single-tunnel connection of
    the gateway for its InternetIp, and the tunnels of that address's index of its
    dual-tunnel connections. Returns how many connections and tunnels changed."""
    gateway_id, index = lease_unit(vpn_gateway_id)
    dual = select(VpnConnectionTunnel.vpn_connection_id)
    connections = (
        session.scalars(
            select(VpnConnection)
            .where(
                VpnConnection.vpn_gateway_id == gateway_id,
                VpnConnection.id.not_in(dual),
                or_(VpnConnection.status != NOT_UP, VpnConnection.diagnosis != diagnosis),
            )
            .order_by(VpnConnection.id)
            .with_for_update()
        ).all()
        if index == 1
        else []
    )
    for connection in connections:
        connection.status = NOT_UP
        connection.diagnosis = diagnosis
        connection.traffic = None
        connection.observed_time = now_ms
    tunnels = session.scalars(
        select(VpnConnectionTunnel)
        .join(VpnConnection, VpnConnection.id == VpnConnectionTunnel.vpn_connection_id)
        .where(
            VpnConnection.vpn_gateway_id == gateway_id,
            VpnConnectionTunnel.tunnel_index == index,
            or_(VpnConnectionTunnel.status != NOT_UP, VpnConnectionTunnel.diagnosis != diagnosis),
        )
        .order_by(VpnConnectionTunnel.id)
        .with_for_update()
    ).all()
    for tunnel in tunnels:
        tunnel.status = NOT_UP
        tunnel.diagnosis = diagnosis
        tunnel.traffic = None
        tunnel.observed_time = now_ms
    session.flush()
    return len(connections) + len(tunnels)


def address_holders(
    session: Session, gateway_ids: Iterable[str], *, now_ms: int
) -> dict[tuple[str, int], str]:
    """The node that holds each address of ``gateway_ids`` now, by (gateway id, tunnel
    index): index 1 is the InternetIp, 2 a dual-tunnel gateway's second address (its
    ``DisasterRecoveryNodeName``). Addresses nobody holds are absent."""
    ids = list(gateway_ids)
    keys = ids + [lease_key(gateway_id, 2) for gateway_id in ids]
    return {lease_unit(key): node for key, node in holders(session, keys, now_ms=now_ms).items()}
