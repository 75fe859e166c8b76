"""Every read and write the actions make. Functions take an open session; the caller
(``Database.transaction`` in ``vpngw.store.engine``) owns the transaction."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Integer, Table, and_, bindparam, exists, func, or_, select, text, update
from sqlalchemy import delete as delete_statement
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from vpngw.store import freshness, leases, traffic_history
from vpngw.store.direct import Direct, Prepared, Where, rows
from vpngw.store.models import (
    AccessKey,
    Account,
    AccountQuota,
    CustomerGateway,
    GatewayLease,
    IdempotencyRecord,
    ResourceCount,
    ResourceTag,
    SignatureNonce,
    Vpc,
    VpnConnection,
    VpnConnectionLog,
    VpnConnectionTrafficPoint,
    VpnConnectionTunnel,
    VpnGateway,
)

Owned = TypeVar("Owned", Vpc, VpnGateway, CustomerGateway, VpnConnection)


def ensure_account(session: Session, account_id: str, name: str, now_ms: int) -> None:
    if session.get(Account, account_id) is None:
        session.add(Account(id=account_id, name=name, create_time=now_ms))


def get_owned(
    session: Session,
    model: type[Owned],
    account_id: str,
    region_id: str,
    resource_id: str,
    *,
    lock: bool = False,
) -> Owned | None:
    """The row with this public id, if it belongs to the account and region.

    ``lock`` takes a row lock (``SELECT ... FOR UPDATE`` on PostgreSQL) so that checks
    made under it (quota, subnet conflicts) hold until the transaction ends. SQLite
    needs none: its write transactions are serialised by ``BEGIN IMMEDIATE``.
    """
    query = select(model).where(
        model.id == resource_id, model.account_id == account_id, model.region_id == region_id
    )
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def page(
    session: Session,
    model: type[Owned],
    account_id: str,
    region_id: str,
    filters: Mapping[str, Any],
    page_number: int,
    page_size: int,
    tagged: Sequence[tuple[str, str | None]] = (),
    where: Sequence[ColumnElement[bool]] = (),
) -> tuple[Sequence[Owned], int]:
    """One page in creation order and the total count, both served from indexes.

    ``where``: further conditions, for a filter that is not one column's value.

    The page's keys are found on the index alone (a deferred join), so rows skipped by
    the offset are never loaded; an unfiltered total comes from ``resource_counts``. On
    SQLite an unfiltered deep page seeks from a cached page boundary (``_page_boundaries``),
    a filtered one in the second half is read from the end of the index.
    """
    conditions = [model.account_id == account_id, model.region_id == region_id]
    conditions += [
        getattr(model, column).in_(value) if isinstance(value, list) else getattr(model, column) == value
        for column, value in filters.items()
        if value is not None
    ]
    conditions += [model.id.in_(_tagged_ids(account_id, key, value)) for key, value in tagged]
    conditions += where
    sqlite = session.get_bind().dialect.name == "sqlite"
    offset = (page_number - 1) * page_size
    changes = -1
    if len(conditions) == 2:
        total, changes = _counter(session, model, account_id, region_id)
    else:
        total = session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0
    keys: Sequence[int]
    if offset >= total and sqlite:
        keys = []  # past the end (the total and the rows are one snapshot)
    elif offset >= PAGE_BOUNDARY_EVERY and changes >= 0 and sqlite:
        # Seek from the nearest cached boundary: at most PAGE_BOUNDARY_EVERY entries walked.
        boundaries = _page_boundaries(session, model, account_id, region_id, total, changes)
        start = boundaries[offset // PAGE_BOUNDARY_EVERY]
        keys = session.scalars(
            select(model.seq)
            .where(*conditions, model.seq >= start)
            .order_by(model.seq)
            .offset(offset % PAGE_BOUNDARY_EVERY)
            .limit(page_size)
        ).all()
    elif offset > total // 2 and sqlite:
        # A page in the second half is read from the end of the index: the walk over skipped
        # entries is at most half of them (the deepest page is the cheapest). Only where the
        # total and the keys come from one snapshot (SQLite's read transaction): a total
        # that moved in between would shift the page.
        size = min(page_size, total - offset)
        keys = list(
            reversed(
                session.scalars(
                    select(model.seq)
                    .where(*conditions)
                    .order_by(model.seq.desc())
                    .offset(total - offset - size)
                    .limit(size)
                ).all()
            )
        )
    else:
        keys = session.scalars(
            select(model.seq).where(*conditions).order_by(model.seq).offset(offset).limit(page_size)
        ).all()
    if not keys:
        return [], total
    rows = session.scalars(select(model).where(model.seq.in_(keys)).order_by(model.seq)).all()
    return rows, total


# -- DescribeVpnConnections on the DBAPI cursor --------------------------------------------
#
# The same page as page() (the same total, the same keys from the same index walk, the same
# boundary cache), read as tuples on a Direct transaction in one statement: the page's rows
# with their gateways' lease rows (freshness.Observer) and whether they have tunnel rows. An
# ORM page cost about ten times the walk itself (docs/benchmarks.md).

#: The filters connection_page() takes (a DescribeVpnConnections request's), by column.
CONNECTION_FILTERS = ("id", "vpn_gateway_id", "customer_gateway_id")

_LISTED: Table = VpnConnection.__table__  # type: ignore[assignment]
_TUNNELS: Table = VpnConnectionTunnel.__table__  # type: ignore[assignment]
_LEASES: Table = GatewayLease.__table__  # type: ignore[assignment]
_TAGS: Table = ResourceTag.__table__  # type: ignore[assignment]
_CONNECTION_COLUMNS = (
    "id",
    "vpn_gateway_id",
    "customer_gateway_id",
    "name",
    "local_subnet",
    "remote_subnet",
    "create_time",
    "effect_immediately",
    "auto_config_route",
    "enable_dpd",
    "enable_nat_traversal",
    "ike_config",
    "ipsec_config",
    "health_check",
    "status",
    "health_check_status",
    "diagnosis",
    "traffic",
    "state",
)


class ConnectionRow(NamedTuple):
    """A connection's columns as a listing shows them (the attribute names of VpnConnection),
    its gateway's lease row (None: no lease row) and whether it has tunnel rows."""

    id: str
    vpn_gateway_id: str
    customer_gateway_id: str
    name: str
    local_subnet: str
    remote_subnet: str
    create_time: int
    effect_immediately: bool
    auto_config_route: bool
    enable_dpd: bool
    enable_nat_traversal: bool
    ike_config: dict[str, Any]
    ipsec_config: dict[str, Any]
    health_check: dict[str, Any]
    status: str
    health_check_status: str
    diagnosis: str
    traffic: dict[str, int] | None
    state: str
    observer: freshness.Observer | None
    dual: bool


class PageNeedsWalk(Exception):  # noqa: N818 - a condition
    """connection_page(walk=False) met a deep page whose cached boundaries are stale: the
    rebuild walks the listing's whole index (tens of ms at 100,000 rows)."""


_LISTING_STATEMENTS: dict[tuple[Any, ...], Prepared] = {}


def _listing_statement(key: tuple[Any, ...], build: Any) -> Prepared:
    found = _LISTING_STATEMENTS.get(key)
    if found is None:
        found = _LISTING_STATEMENTS[key] = Prepared(build())
    return found


def _connection_conditions(filters: tuple[str, ...]) -> list[ColumnElement[bool]]:
    c = _LISTED.c
    conditions = [c.account_id == bindparam("a"), c.region_id == bindparam("r")]
    for name in filters:
        if name == "customer_gateway_id":  # uses_customer_gateway's condition
            conditions.append(
                or_(
                    c.customer_gateway_id == bindparam("f_customer_gateway_id"),
                    c.id.in_(
                        select(_TUNNELS.c.vpn_connection_id).where(
                            _TUNNELS.c.customer_gateway_id == bindparam("f_customer_gateway_id")
                        )
                    ),
                )
            )
        else:
            conditions.append(c[name] == bindparam(f"f_{name}"))
    return conditions


def _connection_count(filters: tuple[str, ...]) -> Any:
    return select(func.count()).select_from(_LISTED).where(*_connection_conditions(filters))


def _connection_rows(filters: tuple[str, ...], walk: str) -> Any:
    """The page's rows: the keys walked on the index (``forward`` from the start, ``seek``
    from a boundary, ``reverse`` from the end), then each key's row and lease row."""
    c = _LISTED.c
    keys = select(c.seq).where(*_connection_conditions(filters))
    if walk == "seek":
        keys = keys.where(c.seq >= bindparam("start", type_=Integer))
    page = (
        keys.order_by(c.seq.desc() if walk == "reverse" else c.seq)
        .offset(bindparam("o", type_=Integer))
        .limit(bindparam("l", type_=Integer))
        .subquery("page_keys")
    )
    row = _LISTED.alias("c")
    lease = _LEASES.alias("l")
    dual = exists(select(_TUNNELS.c.id).where(_TUNNELS.c.vpn_connection_id == row.c.id))
    return (
        select(
            *(row.c[name] for name in _CONNECTION_COLUMNS),
            lease.c.vpn_gateway_id,
            lease.c.holder,
            lease.c.expires_ms,
            lease.c.observed_by,
            lease.c.observed_until_ms,
            lease.c.pass_error,
            dual.label("dual"),
        )
        .select_from(
            page.join(row, row.c.seq == page.c.seq).outerjoin(
                lease, lease.c.vpn_gateway_id == row.c.vpn_gateway_id
            )
        )
        .order_by(row.c.seq)
    )


def connection_page(
    tx: Direct,
    account_id: str,
    region_id: str,
    filters: Mapping[str, str | None],
    page_number: int,
    page_size: int,
    *,
    walk: bool = True,
) -> tuple[list[ConnectionRow], int]:
    """queries.page() of VpnConnection (``filters`` by CONNECTION_FILTERS; the customer
    gateway's is :func:`uses_customer_gateway`) on the DBAPI cursor: the rows and the total.
    ``walk=False``: PageNeedsWalk instead of rebuilding a deep page's stale boundaries."""
    given = tuple(name for name in CONNECTION_FILTERS if filters.get(name) is not None)
    values: dict[str, Any] = {"a": account_id, "r": region_id}
    values.update((f"f_{name}", filters[name]) for name in given)
    sqlite = tx.dialect.name == "sqlite"
    offset = (page_number - 1) * page_size
    changes = -1
    if not given:
        total, changes = _counter(tx, VpnConnection, account_id, region_id)
    else:
        total = tx.execute(_listing_statement(("count", given), lambda: _connection_count(given)), values)[0][
            0
        ]
    if offset >= total and sqlite:
        return [], total  # past the end (the total and the rows are one snapshot)
    if offset >= PAGE_BOUNDARY_EVERY and changes >= 0 and sqlite:
        if not walk and not _boundaries_cached(tx, VpnConnection, account_id, region_id, total, changes):
            raise PageNeedsWalk()
        boundaries = _page_boundaries(tx, VpnConnection, account_id, region_id, total, changes)
        how = "seek"
        values.update(
            start=boundaries[offset // PAGE_BOUNDARY_EVERY], o=offset % PAGE_BOUNDARY_EVERY, l=page_size
        )
    elif offset > total // 2 and sqlite:
        size = min(page_size, total - offset)
        how = "reverse"
        values.update(o=total - offset - size, l=size)
    else:
        how = "forward"
        values.update(o=offset, l=page_size)
    found = tx.execute(_listing_statement(("rows", given, how), lambda: _connection_rows(given, how)), values)
    width = len(_CONNECTION_COLUMNS)
    return [
        ConnectionRow._make(
            (
                *row[:width],
                None
                if row[width] is None
                else freshness.Observer(
                    row[width + 1], row[width + 2], row[width + 3], row[width + 4] or 0, row[width + 5] or ""
                ),
                bool(row[width + 6]),
            )
        )
        for row in found
    ], total


def tags_of_page(tx: Direct, resource_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """tags_of() on the DBAPI cursor (one statement per number of ids, prepared once)."""
    found: dict[str, list[tuple[str, str]]] = {resource_id: [] for resource_id in resource_ids}
    if resource_ids:
        count = len(resource_ids)
        statement = _listing_statement(
            ("tags", count),
            lambda: (
                select(_TAGS.c.resource_id, _TAGS.c.tag_key, _TAGS.c.tag_value)
                .where(_TAGS.c.resource_id.in_([bindparam(f"t{n}") for n in range(count)]))
                .order_by(_TAGS.c.resource_id, _TAGS.c.tag_key)
            ),
        )
        for resource_id, key, value in tx.execute(
            statement, {f"t{n}": r for n, r in enumerate(resource_ids)}
        ):
            found[resource_id].append((key, value))
    return found


def _tagged_ids(account_id: str, key: str, value: str | None) -> Any:
    """The ids of the account's resources with tag ``key`` (of ``value``, unless None)."""
    query = select(ResourceTag.resource_id).where(
        ResourceTag.account_id == account_id, ResourceTag.tag_key == key
    )
    return query if value is None else query.where(ResourceTag.tag_value == value)


def tags_of(session: Session, resource_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """Each resource's tags (key, value), by key."""
    found: dict[str, list[tuple[str, str]]] = {resource_id: [] for resource_id in resource_ids}
    if resource_ids:
        rows = session.scalars(
            select(ResourceTag)
            .where(ResourceTag.resource_id.in_(list(resource_ids)))
            .order_by(ResourceTag.resource_id, ResourceTag.tag_key)
        )
        for row in rows:
            found[row.resource_id].append((row.tag_key, row.tag_value))
    return found


def set_tags(
    session: Session,
    *,
    account_id: str,
    region_id: str,
    resource_type: str,
    resource_id: str,
    tags: Sequence[tuple[str, str]],
) -> None:
    """Add tags to a resource; a key it has already takes the new value."""
    for key, value in tags:
        existing = session.get(ResourceTag, (resource_id, key))
        if existing is None:
            session.add(
                ResourceTag(
                    resource_id=resource_id,
                    tag_key=key,
                    tag_value=value,
                    account_id=account_id,
                    region_id=region_id,
                    resource_type=resource_type,
                )
            )
        else:
            existing.tag_value = value
    session.flush()


def remove_tags(session: Session, resource_id: str, keys: Sequence[str] | None) -> None:
    """Remove the resource's tags of these keys (every tag with None)."""
    statement = delete_statement(ResourceTag).where(ResourceTag.resource_id == resource_id)
    if keys is not None:
        statement = statement.where(ResourceTag.tag_key.in_(list(keys)))
    session.execute(statement)


def tag_rows(
    session: Session,
    account_id: str,
    region_id: str,
    resource_type: str,
    resource_ids: Sequence[str],
    tagged: Sequence[tuple[str, str | None]],
    offset: int,
    limit: int,
) -> Sequence[ResourceTag]:
    """ListTagResources: the account's tags of ``resource_type`` in the region, on the given
    resources (all when none are given) that carry every tag of ``tagged``, in (resource, key)
    order."""
    query = select(ResourceTag).where(
        ResourceTag.account_id == account_id,
        ResourceTag.region_id == region_id,
        ResourceTag.resource_type == resource_type,
    )
    if resource_ids:
        query = query.where(ResourceTag.resource_id.in_(list(resource_ids)))
    for key, value in tagged:
        query = query.where(ResourceTag.resource_id.in_(_tagged_ids(account_id, key, value)))
    return session.scalars(
        query.order_by(ResourceTag.resource_id, ResourceTag.tag_key).offset(offset).limit(limit)
    ).all()


def _counter(session: Where, model: type[Owned], account_id: str, region_id: str) -> tuple[int, int]:
    """The listing's ``(count, changes)`` (``(0, -1)`` when it has no counter yet)."""
    found = rows(session, _COUNTER_PREPARED, {"a": account_id, "r": region_id, "k": model.__tablename__})
    return (0, -1) if not found else (found[0][0], found[0][1])


# Page boundaries (SQLite): the seq of every PAGE_BOUNDARY_EVERY-th row of a listing, so that
# a deep page seeks to the boundary before it and walks at most that many index entries
# instead of up to half the listing (docs/benchmarks.md). One cache per process, by database,
# table, account and region; an entry holds while the listing's ``(count, changes)`` is the
# one it was built from: every create and delete bumps ``changes`` (``_count``), so any
# change to the listing's keys makes the next deep page rebuild it (one walk of the index).
PAGE_BOUNDARY_EVERY = 512
PAGE_BOUNDARY_LISTINGS = 256  # listings cached per process (the oldest is dropped)
_page_boundary_cache: dict[tuple[str, str, str, str], tuple[int, int, list[int]]] = {}


def _page_boundaries(
    where: Where, model: type[Owned], account_id: str, region_id: str, total: int, changes: int
) -> list[int]:
    key = (_database_of(where), model.__tablename__, account_id, region_id)
    cached = _page_boundary_cache.get(key)
    if cached is not None and cached[0] == total and cached[1] == changes:
        return cached[2]
    found = rows(
        where,
        _boundaries_statement(model),
        {"a": account_id, "r": region_id, "every": PAGE_BOUNDARY_EVERY},
    )
    boundaries = [row[0] for row in found]
    _page_boundary_cache.pop(key, None)
    while len(_page_boundary_cache) >= PAGE_BOUNDARY_LISTINGS:
        _page_boundary_cache.pop(next(iter(_page_boundary_cache)), None)
    _page_boundary_cache[key] = (total, changes, boundaries)
    return boundaries


def _boundaries_cached(
    where: Where, model: type[Owned], account_id: str, region_id: str, total: int, changes: int
) -> bool:
    """Whether the listing's boundaries are cached for this ``(count, changes)`` (a deep page
    then walks at most PAGE_BOUNDARY_EVERY index entries; else the whole listing's index)."""
    cached = _page_boundary_cache.get((_database_of(where), model.__tablename__, account_id, region_id))
    return cached is not None and cached[0] == total and cached[1] == changes


def _database_of(where: Where) -> str:
    """Which database a transaction is on (the boundary cache is per database)."""
    if isinstance(where, Direct):
        return where.database
    engine = where.get_bind().engine if isinstance(where, Session) else where.engine
    return str(engine.url)


_BOUNDARY_STATEMENTS: dict[str, Prepared] = {}


def _boundaries_statement(model: type[Owned]) -> Prepared:
    found = _BOUNDARY_STATEMENTS.get(model.__tablename__)
    if found is None:
        ranked = (
            select(model.seq, (func.row_number().over(order_by=model.seq) - 1).label("position"))
            .where(model.account_id == bindparam("a"), model.region_id == bindparam("r"))
            .subquery()
        )
        found = _BOUNDARY_STATEMENTS[model.__tablename__] = Prepared(
            select(ranked.c.seq)
            .where(ranked.c.position % bindparam("every", type_=Integer) == 0)
            .order_by(ranked.c.seq)
        )
    return found


_COUNTS: Table = ResourceCount.__table__  # type: ignore[assignment]
# Statements of the hot path (every create, every request's nonce), built once: building
# a statement costs more than SQLAlchemy's cached compilation of it.
_BUMP = (
    _COUNTS.update()
    .where(
        _COUNTS.c.account_id == bindparam("a"),
        _COUNTS.c.region_id == bindparam("r"),
        _COUNTS.c.kind == bindparam("k"),
    )
    .values(count=_COUNTS.c.count + bindparam("d"), changes=_COUNTS.c.changes + 1)
    .returning(_COUNTS.c.count)  # whether a row was there (psycopg's rowcount is not to be trusted)
)


_BUMP_PREPARED = Prepared(_BUMP)
_FIRST_COUNT = Prepared(
    _COUNTS.insert().values(
        account_id=bindparam("a"),
        region_id=bindparam("r"),
        kind=bindparam("k"),
        count=bindparam("d"),
        changes=1,
    )
)


_COUNTER = select(_COUNTS.c.count, _COUNTS.c.changes).where(
    _COUNTS.c.account_id == bindparam("a"),
    _COUNTS.c.region_id == bindparam("r"),
    _COUNTS.c.kind == bindparam("k"),
)
_COUNTER_PREPARED = Prepared(_COUNTER)


def _bump(session: Session, row: Owned, delta: int) -> None:
    session.flush()  # the row itself first, as an ORM update of the counter would have
    _count(session, row.account_id, row.region_id, type(row).__tablename__, delta)


def _count(session: Where, account_id: str, region_id: str, kind: str, delta: int) -> None:
    """One UPDATE (it locks the counter row until commit), an INSERT the first time (a
    concurrent first INSERT makes one of the two fail with IntegrityError: dispatch retries)."""
    values = {"a": account_id, "r": region_id, "k": kind, "d": delta}
    if not rows(session, _BUMP_PREPARED, values):
        rows(session, _FIRST_COUNT, values)
    elif isinstance(session, Session):
        # An ORM copy of the counter in this session (count_for_update's) must not hide the new count.
        counter = session.identity_map.get(session.identity_key(ResourceCount, (account_id, region_id, kind)))
        if counter is not None:
            session.expire(counter)


def _insert(session: Session):  # type: ignore[no-untyped-def]
    return postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def count_for_update(session: Session, kind: str, account_id: str, region_id: str) -> int:
    """How many rows of ``kind`` (a table name) the account holds in the region, with the
    counter row locked until the transaction ends (PostgreSQL ``SELECT ... FOR UPDATE``;
    SQLite serialises writers), so a quota checked against it holds against concurrent
    creates."""
    # The counter row is made first (a no-op when it exists; it waits for a concurrent
    # transaction that is inserting it), so that every create locks the same row: a create
    # that found no row could otherwise count 0 while another one's insert commits.
    values = {"account_id": account_id, "region_id": region_id, "kind": kind, "count": 0}
    session.execute(_insert(session)(ResourceCount).values(**values).on_conflict_do_nothing())
    row = session.get(
        ResourceCount, (account_id, region_id, kind), with_for_update=True, populate_existing=True
    )
    return row.count if row else 0


def account_quotas(session: Session, account_id: str) -> dict[str, int]:
    """The quotas the operator set for the account, by kind (kinds without one are absent)."""
    rows = session.scalars(select(AccountQuota).where(AccountQuota.account_id == account_id))
    return {row.kind: row.quota for row in rows}


def set_account_quota(session: Session, account_id: str, kind: str, quota: int | None) -> None:
    """Set (``None``: remove, back to the default) the account's quota of ``kind``."""
    row = session.get(AccountQuota, (account_id, kind))
    if quota is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(AccountQuota(account_id=account_id, kind=kind, quota=quota))
    else:
        row.quota = quota
    session.flush()


def resource_counts_of(session: Session, account_id: str) -> Sequence[ResourceCount]:
    return session.scalars(
        select(ResourceCount)
        .where(ResourceCount.account_id == account_id, ResourceCount.count > 0)
        .order_by(ResourceCount.kind, ResourceCount.region_id)
    ).all()


def add_owned(session: Session, row: Owned) -> None:
    """Insert a resource row and count it."""
    session.add(row)
    _bump(session, row, +1)
    session.flush()


def insert_connection(session: Where, values: dict[str, Any]) -> None:
    """Insert a VpnConnection row (no ORM object, no unit of work) and count it;
    ``values`` are the columns by name (all of ``CONNECTION_COLUMNS``), ``seq`` left to the
    database."""
    rows(session, _INSERT_CONNECTION, values)
    _count(session, values["account_id"], values["region_id"], VpnConnection.__tablename__, +1)


class Endpoint(NamedTuple):
    """What a create needs of a gateway (VPN or customer): its id and public address (and
    a dual-tunnel VPN gateway's second one, its DisasterRecoveryInternetIp)."""

    id: str
    ip_address: str
    second_ip: str | None = None


def vpn_gateway_endpoint(
    session: Where, account_id: str, region_id: str, vpn_gateway_id: str, *, lock: bool
) -> Endpoint | None:
    """The gateway's id and InternetIp, if the account owns it in the region; ``lock`` as
    in :func:`get_owned`."""
    statement = _VPN_GATEWAY_ENDPOINT_LOCKED if lock else _VPN_GATEWAY_ENDPOINT
    found = rows(session, statement, {"i": vpn_gateway_id, "a": account_id, "r": region_id})
    return Endpoint(found[0][0], found[0][1], found[0][2]) if found else None


def customer_gateway_endpoint(
    session: Where, account_id: str, region_id: str, customer_gateway_id: str
) -> Endpoint | None:
    found = rows(
        session, _CUSTOMER_GATEWAY_ENDPOINT, {"i": customer_gateway_id, "a": account_id, "r": region_id}
    )
    return Endpoint(found[0][0], found[0][1]) if found else None


def _owned_columns(model: type[Owned], *columns: Any) -> Any:
    return select(*columns).where(
        model.id == bindparam("i"), model.account_id == bindparam("a"), model.region_id == bindparam("r")
    )


_CONNECTIONS: Table = VpnConnection.__table__  # type: ignore[assignment]
# The columns a create writes (the rest take their defaults; ``seq`` is the database's).
CONNECTION_COLUMNS = (
    "id",
    "account_id",
    "region_id",
    "vpn_gateway_id",
    "customer_gateway_id",
    "name",
    "local_subnet",
    "remote_subnet",
    "effect_immediately",
    "auto_config_route",
    "enable_dpd",
    "enable_nat_traversal",
    "ike_config",
    "ipsec_config",
    "health_check",
    "status",
    "health_check_status",
    "state",
    "create_time",
)
_INSERT_CONNECTION = Prepared(_CONNECTIONS.insert(), column_keys=CONNECTION_COLUMNS)
_VPN_GATEWAY_ENDPOINT_STATEMENT = _owned_columns(
    VpnGateway, VpnGateway.id, VpnGateway.internet_ip, VpnGateway.disaster_recovery_internet_ip
)
_VPN_GATEWAY_ENDPOINT = Prepared(_VPN_GATEWAY_ENDPOINT_STATEMENT)
_VPN_GATEWAY_ENDPOINT_LOCKED = Prepared(_VPN_GATEWAY_ENDPOINT_STATEMENT.with_for_update())
_CUSTOMER_GATEWAY_ENDPOINT = Prepared(
    _owned_columns(CustomerGateway, CustomerGateway.id, CustomerGateway.ip_address)
)


class ConnectionKey(NamedTuple):
    id: str
    vpn_gateway_id: str


def connection_key(
    session: Where, account_id: str, region_id: str, connection_id: str
) -> ConnectionKey | None:
    """A connection's id and gateway, if the account owns it in the region (no lock: the
    caller locks the gateway first, then deletes the row)."""
    found = rows(session, _CONNECTION_KEY, {"i": connection_id, "a": account_id, "r": region_id})
    return ConnectionKey(found[0][0], found[0][1]) if found else None


def tunnel_ids_of(session: Where, connection_id: str) -> list[str]:
    return [row[0] for row in rows(session, _TUNNEL_IDS, {"c": connection_id})]


def delete_connection(
    session: Where, account_id: str, region_id: str, key: ConnectionKey, tunnel_ids: Sequence[str]
) -> None:
    """DeleteVpnConnection's writes, one statement each: the row (its tunnels go with it,
    ON DELETE CASCADE), its tags, its count, then the log lines of the connection and of its
    tunnels and its traffic history. The row first: a data-plane transaction adding log
    lines (which share-locks the row) then either finished before, and its lines are deleted
    here, or finds no row."""
    rows(session, _DELETE_CONNECTION, {"i": key.id})
    rows(session, _DELETE_TAGS, {"i": key.id})
    _count(session, account_id, region_id, VpnConnection.__tablename__, -1)
    for log_key in (key.id, *tunnel_ids):
        rows(session, _DELETE_LOGS, {"i": log_key})
    rows(session, _DELETE_TRAFFIC, {"i": key.id})


_CONNECTION_KEY = Prepared(_owned_columns(VpnConnection, VpnConnection.id, VpnConnection.vpn_gateway_id))
_TUNNEL_IDS = Prepared(
    select(VpnConnectionTunnel.id)
    .where(VpnConnectionTunnel.vpn_connection_id == bindparam("c"))
    .order_by(VpnConnectionTunnel.tunnel_index)
)
_DELETE_CONNECTION = Prepared(delete_statement(VpnConnection).where(VpnConnection.id == bindparam("i")))
_DELETE_TAGS = Prepared(delete_statement(ResourceTag).where(ResourceTag.resource_id == bindparam("i")))
_DELETE_LOGS = Prepared(
    delete_statement(VpnConnectionLog).where(VpnConnectionLog.vpn_connection_id == bindparam("i"))
)
_DELETE_TRAFFIC = Prepared(
    delete_statement(VpnConnectionTrafficPoint).where(
        VpnConnectionTrafficPoint.vpn_connection_id == bindparam("i")
    )
)


def delete_owned(session: Session, row: Owned) -> None:
    session.delete(row)
    remove_tags(session, row.id, None)
    _bump(session, row, -1)
    session.flush()


def selectors_of_gateway(session: Where, vpn_gateway_id: str) -> list[tuple[str, str, str]]:
    """(id, LocalSubnet, RemoteSubnet) of the gateway's connections, in creation order:
    what a create checks its quota and selectors against, without loading ORM objects."""
    if isinstance(session, Session):
        session.flush()  # this transaction's own pending connections count too
    return [(row[0], row[1], row[2]) for row in rows(session, _SELECTORS_OF_GATEWAY, {"g": vpn_gateway_id})]


_SELECTORS_OF_GATEWAY = Prepared(
    select(VpnConnection.id, VpnConnection.local_subnet, VpnConnection.remote_subnet)
    .where(VpnConnection.vpn_gateway_id == bindparam("g"))
    .order_by(VpnConnection.seq)
)


def connections_of_gateway(session: Session, vpn_gateway_id: str) -> Sequence[VpnConnection]:
    return session.scalars(
        select(VpnConnection)
        .where(VpnConnection.vpn_gateway_id == vpn_gateway_id)
        .order_by(VpnConnection.seq)
    ).all()


def uses_customer_gateway(customer_gateway_id: str) -> ColumnElement[bool]:
    """A connection names the customer gateway: its own, or one of its tunnels' (a
    dual-tunnel connection's tunnels may each name another)."""
    return or_(
        VpnConnection.customer_gateway_id == customer_gateway_id,
        VpnConnection.id.in_(
            select(VpnConnectionTunnel.vpn_connection_id).where(
                VpnConnectionTunnel.customer_gateway_id == customer_gateway_id
            )
        ),
    )


def any_connection_uses(
    session: Session, *, vpn_gateway_id: str | None = None, customer_gateway_id: str | None = None
) -> str | None:
    """The id of one connection that uses the gateway, or None."""
    query = select(VpnConnection.id)
    if vpn_gateway_id is not None:
        query = query.where(VpnConnection.vpn_gateway_id == vpn_gateway_id)
    if customer_gateway_id is not None:
        query = query.where(VpnConnection.customer_gateway_id == customer_gateway_id)
        found = session.scalars(query.limit(1)).first()
        if found is not None:
            return found
        # A tunnel of a dual-tunnel connection may name another customer gateway.
        return session.scalars(
            select(VpnConnectionTunnel.vpn_connection_id)
            .where(VpnConnectionTunnel.customer_gateway_id == customer_gateway_id)
            .limit(1)
        ).first()
    return session.scalars(query.limit(1)).first()


def any_gateway_in_vpc(session: Session, vpc_id: str) -> str | None:
    return session.scalars(select(VpnGateway.id).where(VpnGateway.vpc_id == vpc_id).limit(1)).first()


def internet_ips_in_use(session: Session) -> set[str]:
    """Every gateway's InternetIp and DisasterRecoveryInternetIp."""
    rows = session.execute(select(VpnGateway.internet_ip, VpnGateway.disaster_recovery_internet_ip)).all()
    return {address for row in rows for address in row if address}


# -- the tunnels of dual-tunnel connections ------------------------------------------


def tunnels_of(session: Session, connection_ids: Sequence[str]) -> dict[str, list[VpnConnectionTunnel]]:
    """The tunnel rows of each connection, by tunnel index (a single-tunnel connection
    has none: an empty list)."""
    found: dict[str, list[VpnConnectionTunnel]] = {connection_id: [] for connection_id in connection_ids}
    if connection_ids:
        rows = session.scalars(
            select(VpnConnectionTunnel)
            .where(VpnConnectionTunnel.vpn_connection_id.in_(list(connection_ids)))
            .order_by(VpnConnectionTunnel.vpn_connection_id, VpnConnectionTunnel.tunnel_index)
        )
        for row in rows:
            found.setdefault(row.vpn_connection_id, []).append(row)
    return found


def customer_gateway_addresses(session: Session, customer_gateway_ids: Iterable[str]) -> dict[str, str]:
    """The IpAddress of each of ``customer_gateway_ids`` that exists (all accounts)."""
    ids = sorted(set(customer_gateway_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(CustomerGateway.id, CustomerGateway.ip_address).where(CustomerGateway.id.in_(ids))
    )
    return {gateway_id: address for gateway_id, address in rows}


def gateway_addresses(session: Session, gateway_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """(InternetIp, DisasterRecoveryInternetIp) of each gateway."""
    if not gateway_ids:
        return {}
    rows = session.execute(
        select(VpnGateway.id, VpnGateway.internet_ip, VpnGateway.disaster_recovery_internet_ip).where(
            VpnGateway.id.in_(sorted(set(gateway_ids)))
        )
    ).all()
    return {row[0]: (row[1], row[2]) for row in rows}


def tunnels_by_id(session: Session, tunnel_ids: Sequence[str]) -> dict[str, VpnConnectionTunnel]:
    if not tunnel_ids:
        return {}
    rows = session.scalars(
        select(VpnConnectionTunnel).where(VpnConnectionTunnel.id.in_(sorted(set(tunnel_ids))))
    )
    return {row.id: row for row in rows}


def dual_tunnel_connection_ids(session: Session) -> set[str]:
    """The ids of every connection that has tunnel rows (all accounts)."""
    return set(session.scalars(select(VpnConnectionTunnel.vpn_connection_id).distinct()))


def add_tunnels(session: Session, rows: Sequence[VpnConnectionTunnel]) -> None:
    session.add_all(rows)
    session.flush()


def all_tunnels(session: Session) -> Sequence[VpnConnectionTunnel]:
    return session.scalars(select(VpnConnectionTunnel)).all()


class TunnelObservation(NamedTuple):
    """What the data plane sees of one tunnel (as :func:`write_observation` for a connection)."""

    tunnel_id: str
    status: str
    diagnosis: str
    traffic: dict[str, int] | None


def record_tunnel_observations(
    session: Session, observations: Sequence[TunnelObservation], *, now_ms: int, observed_by: str | None
) -> int:
    """Store what the data plane sees of tunnels; only differences are written (and
    ``observed_time``/``observed_by`` move only with them). Tunnels that no longer exist
    (their connection deleted meanwhile) are skipped. Returns how many rows changed.

    The rows are locked in id order until the transaction ends, so that concurrent
    writers never wait in a circle; a DeleteVpnConnection either finished first (the row
    is gone) or waits for this write.
    """
    by_id = {observation.tunnel_id: observation for observation in observations}
    if not by_id:
        return 0
    rows = session.scalars(
        select(VpnConnectionTunnel)
        .where(VpnConnectionTunnel.id.in_(sorted(by_id)))
        .order_by(VpnConnectionTunnel.id)
        .with_for_update()
    ).all()
    changed = 0
    for row in rows:
        seen = by_id[row.id]
        if (row.status, row.diagnosis, row.traffic) == (seen.status, seen.diagnosis, seen.traffic):
            continue
        row.status = seen.status
        row.diagnosis = seen.diagnosis
        row.traffic = None if seen.traffic is None else dict(seen.traffic)
        row.observed_time = now_ms
        row.observed_by = observed_by
        changed += 1
    session.flush()
    return changed


def vpc_next_hops_in_use(session: Session) -> set[str]:
    return {
        address for address in session.scalars(select(VpnGateway.vpc_next_hop)).all() if address is not None
    }


def gateways_without_vpc_next_hop(session: Session) -> list[str]:
    """Gateways created before VPC-side next hops existed, in creation order."""
    return list(
        session.scalars(
            select(VpnGateway.id).where(VpnGateway.vpc_next_hop.is_(None)).order_by(VpnGateway.seq)
        ).all()
    )


def set_vpc_next_hop(session: Session, vpn_gateway_id: str, address: str) -> None:
    """Give an existing gateway its next hop, on its lease row too (which guards the
    address once the gateway is deleted, as it guards the InternetIp)."""
    session.execute(update(VpnGateway).where(VpnGateway.id == vpn_gateway_id).values(vpc_next_hop=address))
    session.execute(
        update(GatewayLease).where(GatewayLease.vpn_gateway_id == vpn_gateway_id).values(vpc_next_hop=address)
    )


def customer_gateway_with_ip(
    session: Session, account_id: str, region_id: str, ip_address: str
) -> str | None:
    return session.scalars(
        select(CustomerGateway.id).where(
            CustomerGateway.account_id == account_id,
            CustomerGateway.region_id == region_id,
            CustomerGateway.ip_address == ip_address,
        )
    ).first()


def get_idempotency_record(
    session: Session, account_id: str, action: str, client_token: str
) -> IdempotencyRecord | None:
    return session.get(IdempotencyRecord, (account_id, action, client_token))


def add(session: Session, row: Any) -> None:
    session.add(row)
    session.flush()


def delete(session: Session, row: Any) -> None:
    session.delete(row)
    session.flush()


def get_access_key(session: Session, access_key_id: str) -> AccessKey | None:
    return session.get(AccessKey, access_key_id)


def list_accounts(session: Session) -> Sequence[Account]:
    return session.scalars(select(Account).order_by(Account.create_time, Account.id)).all()


def get_account(session: Session, account_id: str) -> Account | None:
    return session.get(Account, account_id)


def account_by_name(session: Session, name: str) -> Account | None:
    return session.scalars(select(Account).where(Account.name == name)).first()


def access_keys_of(session: Session, account_id: str) -> Sequence[AccessKey]:
    return session.scalars(
        select(AccessKey).where(AccessKey.account_id == account_id).order_by(AccessKey.create_time)
    ).all()


def connection_metric_rows(
    session: Session,
) -> list[tuple[str, str, str, object, str, dict[str, int] | None]]:
    """(id, gateway, Status, HealthCheckConfig, health status, traffic) of every connection,
    in creation order: what ``/metrics`` reports per connection. The Status is the one
    the API reports (:func:`vpngw.store.freshness.effective`): an observation whose
    observer went silent or fails counts as down."""
    columns = (
        VpnConnection.id,
        VpnConnection.vpn_gateway_id,
        VpnConnection.status,
        VpnConnection.health_check,
        VpnConnection.health_check_status,
        VpnConnection.traffic,
    )
    rows = session.execute(select(*columns).order_by(VpnConnection.seq)).all()
    seen_by = freshness.observers(session, {row[1] for row in rows})
    now_ms = int(time.time() * 1000)
    # A dual-tunnel connection's Status is its tunnels' summary, each tunnel counted while the
    # holder of its address confirms it (as the API reports it, actions.tunnels).
    tunnels = session.execute(
        select(
            VpnConnectionTunnel.vpn_connection_id,
            VpnConnectionTunnel.tunnel_index,
            VpnConnectionTunnel.status,
            VpnConnection.vpn_gateway_id,
        ).join(VpnConnection, VpnConnection.id == VpnConnectionTunnel.vpn_connection_id)
    ).all()
    if tunnels:
        seen_by.update(
            freshness.observers(session, {leases.lease_key(gid, 2) for _c, _i, _s, gid in tunnels})
        )
    by_connection: dict[str, list[str]] = {}
    for cid, index, status, gid in tunnels:
        key = leases.lease_key(gid, index)
        by_connection.setdefault(cid, []).append(
            freshness.effective(status, "", seen_by.get(key), now_ms=now_ms)[0]
        )
    return [
        (
            cid,
            gid,
            freshness.summary(by_connection[cid])
            if cid in by_connection
            else freshness.effective(status, "", seen_by.get(gid), now_ms=now_ms)[0],
            check,
            verdict,
            traffic,
        )
        for cid, gid, status, check, verdict, traffic in rows
    ]


def first_access_key(session: Session) -> AccessKey | None:
    return session.scalars(select(AccessKey).order_by(AccessKey.create_time).limit(1)).first()


def first_connection(session: Session) -> VpnConnection | None:
    return session.scalars(select(VpnConnection).order_by(VpnConnection.seq).limit(1)).first()


def all_access_keys(session: Session) -> Sequence[AccessKey]:
    return session.scalars(select(AccessKey)).all()


def all_connections(session: Session) -> Sequence[VpnConnection]:
    return session.scalars(select(VpnConnection)).all()


def all_customer_gateways(session: Session) -> Sequence[CustomerGateway]:
    return session.scalars(select(CustomerGateway)).all()


def all_idempotency_records(session: Session) -> Sequence[IdempotencyRecord]:
    return session.scalars(select(IdempotencyRecord)).all()


def forget_idempotency_records_before(session: Where, before_ms: int) -> None:
    rows(session, _IDEMPOTENCY_PRUNE, {"b": before_ms})


_IDEMPOTENCY_PRUNE = Prepared(
    delete_statement(IdempotencyRecord).where(IdempotencyRecord.create_time < bindparam("b"))
)


PRUNE_IDEMPOTENCY_EVERY_MS = 60_000
_idempotency_pruned_at_ms = 0


def prune_idempotency_records(session: Where, before_ms: int, now_ms: int) -> None:
    """Delete expired ClientToken records, at most about once a minute per process (a
    range delete on every create cost a third of a millisecond). An expired record found
    before the next prune counts as absent (dispatch drops it)."""
    global _idempotency_pruned_at_ms
    if now_ms - _idempotency_pruned_at_ms > PRUNE_IDEMPOTENCY_EVERY_MS:
        forget_idempotency_records_before(session, before_ms)
        _idempotency_pruned_at_ms = now_ms


class IdempotencyRow(NamedTuple):
    request_hash: str
    response: dict[str, Any]
    create_time: int


_IDEMPOTENCY: Table = IdempotencyRecord.__table__  # type: ignore[assignment]
_IDEMPOTENCY_KEY = and_(
    _IDEMPOTENCY.c.account_id == bindparam("a"),
    _IDEMPOTENCY.c.action == bindparam("x"),
    _IDEMPOTENCY.c.client_token == bindparam("t"),
)
_IDEMPOTENCY_READ = Prepared(
    select(_IDEMPOTENCY.c.request_hash, _IDEMPOTENCY.c.response, _IDEMPOTENCY.c.create_time).where(
        _IDEMPOTENCY_KEY
    )
)
_IDEMPOTENCY_FORGET = Prepared(delete_statement(_IDEMPOTENCY).where(_IDEMPOTENCY_KEY))
_IDEMPOTENCY_RESPOND = Prepared(
    _IDEMPOTENCY.update().where(_IDEMPOTENCY_KEY).values(response=bindparam("response"))
)


def _key(account_id: str, action: str, client_token: str) -> dict[str, Any]:
    return {"a": account_id, "x": action, "t": client_token}


def idempotency_record(
    session: Where, account_id: str, action: str, client_token: str
) -> IdempotencyRow | None:
    """The ClientToken record, read without an ORM object (this is every create's path)."""
    found = rows(session, _IDEMPOTENCY_READ, _key(account_id, action, client_token))
    return IdempotencyRow(found[0][0], found[0][1], found[0][2]) if found else None


def forget_idempotency_record(session: Where, account_id: str, action: str, client_token: str) -> None:
    rows(session, _IDEMPOTENCY_FORGET, _key(account_id, action, client_token))


_IDEMPOTENCY_ROW: dict[str, Any] = {
    "account_id": bindparam("a"),
    "action": bindparam("x"),
    "client_token": bindparam("t"),
    "request_hash": bindparam("h"),
    "response": bindparam("response"),
    "create_time": bindparam("c"),
}
_TRY_CLAIM_IDEMPOTENCY = {
    "sqlite": Prepared(
        sqlite_insert(_IDEMPOTENCY)
        .values(**_IDEMPOTENCY_ROW)
        .on_conflict_do_nothing()
        .returning(_IDEMPOTENCY.c.create_time)
    ),
    "postgresql": Prepared(
        postgresql_insert(_IDEMPOTENCY)
        .values(**_IDEMPOTENCY_ROW)
        .on_conflict_do_nothing()
        .returning(_IDEMPOTENCY.c.create_time)
    ),
}
_CLAIM_IDEMPOTENCY = Prepared(_IDEMPOTENCY.insert().values(**_IDEMPOTENCY_ROW))


def try_claim_idempotency_record(
    session: Where, account_id: str, action: str, client_token: str, request_hash: str, now_ms: int
) -> bool:
    """Insert the token's record unless it exists (one statement on a create's path
    instead of a read and an insert); False when it exists. A concurrent transaction
    holding the same token uncommitted makes this wait for its end (the primary key): then
    the record is there to read (committed) or this insert goes in (rolled back)."""
    values = {**_key(account_id, action, client_token), "h": request_hash, "response": {}, "c": now_ms}
    return bool(rows(session, _TRY_CLAIM_IDEMPOTENCY[dialect_name(session)], values))


def claim_idempotency_record(
    session: Where, account_id: str, action: str, client_token: str, request_hash: str, now_ms: int
) -> None:
    """Insert the token's record (its response comes with set_idempotency_response): a
    concurrent request with the same token waits on the primary key until this transaction
    ends, then fails with IntegrityError (and dispatch runs it again)."""
    values = {**_key(account_id, action, client_token), "h": request_hash, "response": {}, "c": now_ms}
    rows(session, _CLAIM_IDEMPOTENCY, values)


def set_idempotency_response(
    session: Where, account_id: str, action: str, client_token: str, response: dict[str, Any]
) -> None:
    rows(session, _IDEMPOTENCY_RESPOND, {**_key(account_id, action, client_token), "response": response})


def dialect_name(where: Where) -> str:
    if isinstance(where, Session):
        return where.get_bind().dialect.name
    return where.dialect.name


def forget_expired_nonces(session: Where, now_ms: int) -> None:
    rows(session, _FORGET_EXPIRED_NONCES, {"n": now_ms})


_FORGET_EXPIRED_NONCES = Prepared(
    delete_statement(SignatureNonce).where(SignatureNonce.expire_time < bindparam("n"))
)


def record_nonce(session: Session, access_key_id: str, nonce: str, expire_time: int) -> None:
    """Raises IntegrityError when the nonce was seen before (by any process)."""
    session.add(SignatureNonce(access_key_id=access_key_id, nonce=nonce, expire_time=expire_time))
    session.flush()


_NONCES: Table = SignatureNonce.__table__  # type: ignore[assignment]
_NONCE_ROW: dict[str, Any] = {
    "access_key_id": bindparam("k"),
    "nonce": bindparam("n"),
    "expire_time": bindparam("e"),
}
# RETURNING tells whether the row went in (psycopg reports no rowcount for this insert).
_CLAIM_NONCE = {
    "sqlite": Prepared(
        sqlite_insert(_NONCES).values(**_NONCE_ROW).on_conflict_do_nothing().returning(_NONCES.c.nonce)
    ),
    "postgresql": Prepared(
        postgresql_insert(_NONCES).values(**_NONCE_ROW).on_conflict_do_nothing().returning(_NONCES.c.nonce)
    ),
}
_CLAIMED = (
    postgresql_insert(_NONCES)
    .values(**_NONCE_ROW)
    .on_conflict_do_nothing()
    .returning(_NONCES.c.nonce)
    .cte("claimed")
)
_KEY_ROW = (
    select(AccessKey.account_id, AccessKey.status, AccessKey.secret_sealed)
    .where(AccessKey.id == bindparam("k"))
    .subquery("key_row")
)
_CLAIM_NONCE_READING_KEY = Prepared(
    select(
        select(func.count()).select_from(_CLAIMED).scalar_subquery(),
        _KEY_ROW.c.account_id,
        _KEY_ROW.c.status,
        _KEY_ROW.c.secret_sealed,
    ).select_from(_KEY_ROW)
)
_ACCESS_KEY_READ = Prepared(
    select(AccessKey.account_id, AccessKey.status, AccessKey.secret_sealed).where(
        AccessKey.id == bindparam("k")
    )
)


def claim_nonce(session: Where, access_key_id: str, nonce: str, expire_time: int) -> bool:
    """Record a nonce; False when it was recorded before (by any process of the database).
    A concurrent transaction holding the same nonce uncommitted makes this wait for it
    (the primary key), so a nonce is claimed at most once whatever the interleaving."""
    values = {"k": access_key_id, "n": nonce, "e": expire_time}
    return bool(rows(session, _CLAIM_NONCE[dialect_name(session)], values))


def claim_nonce_reading_key(
    session: Where, access_key_id: str, nonce: str, expire_time: int
) -> tuple[bool, tuple[str, str, str] | None]:
    """:func:`claim_nonce` and :func:`access_key_credentials` together: whether the nonce
    went in, and the key's (account id, status, sealed secret). On PostgreSQL one statement
    (one round trip instead of two: the insert in a ``WITH``, which runs whether or not the
    key is found); on SQLite, where a statement is no round trip, the two statements.
    Without a key the nonce's claim is not reported (False): the caller refuses the request
    on the key, and its transaction rolls the claim back."""
    values = {"k": access_key_id, "n": nonce, "e": expire_time}
    if dialect_name(session) != "postgresql":
        return claim_nonce(session, access_key_id, nonce, expire_time), access_key_credentials(
            session, access_key_id
        )
    found = rows(session, _CLAIM_NONCE_READING_KEY, values)
    if not found:
        return False, None  # no such key: the caller refuses the request (and rolls back)
    claimed, account_id, status, sealed = found[0]
    return bool(claimed), (account_id, status, sealed)


def access_key_credentials(session: Where, access_key_id: str) -> tuple[str, str, str] | None:
    """(account id, status, sealed secret) of an AccessKey: the columns a signature check
    needs, read without building an ORM object."""
    found = rows(session, _ACCESS_KEY_READ, {"k": access_key_id})
    return (found[0][0], found[0][1], found[0][2]) if found else None


_POOL_LOCK_KEY = 0x76706E67  # "vpng": one advisory lock for the InternetIp pool


def lock_internet_ip_pool(session: Session) -> None:
    """Serialise address allocation until the transaction ends. PostgreSQL: an advisory
    transaction lock (otherwise concurrent creates all pick the same lowest free address
    and all but one fail). SQLite serialises write transactions already."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POOL_LOCK_KEY})


def desired_rows(
    session: Session, gateway_ids: Collection[str] | None = None
) -> tuple[Sequence[VpnGateway], Sequence[tuple[VpnConnection, str]]]:
    """Everything the data plane must realise: every VPN gateway (or those of
    ``gateway_ids``), and their connections with their customer gateway's address (all
    accounts: the data plane serves them all)."""
    gateways_query = select(VpnGateway).order_by(VpnGateway.seq)
    connections_query = (
        select(VpnConnection, CustomerGateway.ip_address)
        .join(CustomerGateway, CustomerGateway.id == VpnConnection.customer_gateway_id)
        .order_by(VpnConnection.seq)
    )
    if gateway_ids is not None:
        ids = sorted(gateway_ids)
        gateways_query = gateways_query.where(VpnGateway.id.in_(ids))
        connections_query = connections_query.where(VpnConnection.vpn_gateway_id.in_(ids))
    gateways = session.scalars(gateways_query).all()
    connections = session.execute(connections_query).all()
    return gateways, [(connection, address) for connection, address in connections]


# -- what the data plane observes -------------------------------------------------
#
# The data plane calls these in its own transactions, concurrently with the API. Each
# one locks the connection rows it reads (PostgreSQL ``SELECT ... FOR UPDATE`` / ``FOR
# SHARE``; SQLite serialises writers already), so a DeleteVpnConnection running at the
# same time either finishes first (and the write finds nothing) or waits for the write.


def _connection_for_update(session: Session, connection_id: str) -> VpnConnection | None:
    return session.scalars(
        select(VpnConnection).where(VpnConnection.id == connection_id).with_for_update()
    ).first()


def write_observation(
    session: Session,
    connection_id: str,
    *,
    status: str,
    diagnosis: str,
    traffic: dict[str, int] | None,
    now_ms: int,
    observed_by: str | None = None,
) -> bool:
    """Store what the data plane sees of a connection; only a difference is written.

    ``traffic`` is ``{"BytesIn", "BytesOut", "PacketsIn", "PacketsOut"}`` summed over the
    connection's CHILD_SAs, or None when nothing was observed. ``observed_time`` becomes
    ``now_ms`` when (and only when) something is written, and observed counters become a
    point of the connection's traffic history (``traffic_history``). False when nothing
    changed, or when the connection no longer exists (deleted while the data plane was
    looking).
    """
    connection = _connection_for_update(session, connection_id)
    if connection is None:
        return False
    if (connection.status, connection.diagnosis, connection.traffic) == (status, diagnosis, traffic):
        return False
    connection.status = status
    connection.diagnosis = diagnosis
    connection.traffic = None if traffic is None else dict(traffic)
    connection.observed_time = now_ms
    connection.observed_by = observed_by
    if traffic is not None:
        traffic_history.record(session, connection_id, traffic, now_ms)
    session.flush()
    return True


def write_health_status(session: Session, connection_id: str, status: str) -> bool:
    """Store the health check's verdict (``success``/``failed``); False if unchanged or
    the connection is gone."""
    connection = _connection_for_update(session, connection_id)
    if connection is None or connection.health_check_status == status:
        return False
    connection.health_check_status = status
    session.flush()
    return True


def add_connection_logs(session: Session, rows: Sequence[tuple[str, int, str]]) -> int:
    """Append ``(connection id, time in ms, message)`` log lines (a tunnel of a dual-tunnel
    connection: its TunnelId instead of the connection's id); lines of connections or
    tunnels that do not exist (any more) are dropped. Returns how many were stored.

    The connections are share-locked until the transaction ends, so a concurrent
    DeleteVpnConnection (which deletes the connection, then its lines) cannot leave
    lines behind.
    """
    ids = {connection_id for connection_id, _time, _message in rows}
    if not ids:
        return 0
    existing = set(
        session.scalars(
            # In id order, so that transactions locking several connections never wait in a circle.
            select(VpnConnection.id)
            .where(VpnConnection.id.in_(ids))
            .order_by(VpnConnection.id)
            .with_for_update(read=True)
        )
    )
    if ids - existing:
        # A tunnel of a dual-tunnel connection keeps its own lines, under its TunnelId.
        existing |= set(
            session.scalars(
                select(VpnConnectionTunnel.id)
                .where(VpnConnectionTunnel.id.in_(sorted(ids - existing)))
                .order_by(VpnConnectionTunnel.id)
                .with_for_update(read=True)
            )
        )
    kept = [
        VpnConnectionLog(vpn_connection_id=connection_id, time_ms=time_ms, message=message)
        for connection_id, time_ms, message in rows
        if connection_id in existing
    ]
    session.add_all(kept)
    session.flush()
    return len(kept)


def delete_connection_logs(session: Session, connection_id: str, tunnel_ids: Sequence[str] = ()) -> None:
    """Delete the lines of a connection and of its tunnels."""
    keys = [connection_id, *tunnel_ids]
    session.execute(delete_statement(VpnConnectionLog).where(VpnConnectionLog.vpn_connection_id.in_(keys)))


def _log_keys(keys: str | Sequence[str]) -> list[str]:
    return [keys] if isinstance(keys, str) else list(keys)


def prune_connection_logs(session: Session, *, older_than_ms: int, keep_per_connection: int = 10000) -> int:
    """Delete log lines written before ``older_than_ms``, and all but the newest
    ``keep_per_connection`` lines of each connection; returns how many were deleted.

    Both steps are served by the ``(vpn_connection_id, time_ms, seq)`` index: the counts
    per connection come from it, and each connection over its limit loses the lines at
    or before its cut (the ``keep_per_connection``-th newest line, exclusive).
    """
    if keep_per_connection < 0:
        raise ValueError(f"keep_per_connection must be 0 or more, not {keep_per_connection}")
    deleted = _rowcount(
        session.execute(delete_statement(VpnConnectionLog).where(VpnConnectionLog.time_ms < older_than_ms))
    )
    crowded = session.scalars(
        select(VpnConnectionLog.vpn_connection_id)
        .group_by(VpnConnectionLog.vpn_connection_id)
        .having(func.count() > keep_per_connection)
    ).all()
    for connection_id in crowded:
        of_connection = VpnConnectionLog.vpn_connection_id == connection_id
        cut = session.execute(
            select(VpnConnectionLog.time_ms, VpnConnectionLog.seq)
            .where(of_connection)
            .order_by(VpnConnectionLog.time_ms.desc(), VpnConnectionLog.seq.desc())
            .offset(keep_per_connection)
            .limit(1)
        ).first()
        if cut is None:  # deleted meanwhile by another pruner
            continue
        time_ms, seq = cut
        older = or_(
            VpnConnectionLog.time_ms < time_ms,
            and_(VpnConnectionLog.time_ms == time_ms, VpnConnectionLog.seq <= seq),
        )
        deleted += _rowcount(session.execute(delete_statement(VpnConnectionLog).where(of_connection, older)))
    return deleted


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def last_connection_logs(
    session: Session, connection_id: str | Sequence[str], *, until_ms: int, limit: int
) -> list[VpnConnectionLog]:
    """The newest ``limit`` lines with ``time_ms <= until_ms`` of a connection (or of
    several log keys: a connection's and its tunnels'), oldest first."""
    newest = session.scalars(
        select(VpnConnectionLog)
        .where(
            VpnConnectionLog.vpn_connection_id.in_(_log_keys(connection_id)),
            VpnConnectionLog.time_ms <= until_ms,
        )
        .order_by(VpnConnectionLog.time_ms.desc(), VpnConnectionLog.seq.desc())
        .limit(limit)
    ).all()
    return list(reversed(newest))


def connection_log_page(
    session: Session,
    connection_id: str | Sequence[str],
    *,
    from_ms: int,
    to_ms: int,
    offset: int,
    limit: int,
) -> tuple[int, Sequence[VpnConnectionLog]]:
    """(total, one page) of a connection's lines (or of several log keys) with
    ``from_ms <= time_ms < to_ms``, oldest first (ties in the order they were stored)."""
    keys = _log_keys(connection_id)
    window = (
        VpnConnectionLog.vpn_connection_id.in_(keys)
        if len(keys) > 1
        else VpnConnectionLog.vpn_connection_id == keys[0],
        VpnConnectionLog.time_ms >= from_ms,
        VpnConnectionLog.time_ms < to_ms,
    )
    total = session.scalar(select(func.count()).select_from(VpnConnectionLog).where(*window)) or 0
    lines = session.scalars(
        select(VpnConnectionLog)
        .where(*window)
        .order_by(VpnConnectionLog.time_ms, VpnConnectionLog.seq)
        .offset(offset)
        .limit(limit)
    ).all()
    return int(total), lines
