"""The database every command opens: migrated, with the default account (serve, agent, node)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from vpngw.config import Settings
from vpngw.store import migrate, queries
from vpngw.store.engine import Database


def prepare_database(settings: Settings) -> Database:
    """Apply migrations and make sure the default account exists."""
    migrate.upgrade(settings.db_url)
    db = Database(settings.db_url)
    with db.transaction(write=True) as session:
        queries.ensure_account(session, settings.default_account_id, "default", int(time.time() * 1000))
    return db


def assign_vpc_next_hops(db: Database, settings: Settings) -> None:
    """An API server's start: gateways created before VPC-side next hops existed get one
    from this server's pool (the pool is the API servers' setting, as the InternetIp's)."""
    # Here, not at the top: the actions (and pydantic) are a quarter of a second an agent
    # never needs at its start (docs/benchmarks.md, "Nodes").
    from vpngw.actions.vpn_gateways import assign_missing_vpc_next_hops

    with db.transaction(write=True) as session:
        left = assign_missing_vpc_next_hops(session, settings.vpc_next_hop_pool)
    if left:
        print(
            f"vpngw: WARNING: VPNGW_VPC_NEXT_HOP_POOL ({settings.vpc_next_hop_pool}) is full: "
            f"{len(left)} gateways have no VPC-side next hop ({', '.join(left[:5])}"
            f"{', ...' if len(left) > 5 else ''})",
            file=sys.stderr,
            flush=True,
        )


def database_identity(url: str) -> str:
    """The database a URL names, as a lab records its owner: the URL without password, a
    SQLite file by its absolute path (``sqlite:///./vpngw.db`` differs from folder to
    folder)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        parsed = parsed.set(database=str(Path(parsed.database).resolve()))
    return parsed.render_as_string(hide_password=True)


def admin_db_url(cli_value: str | None, *, create: bool = False) -> str:
    """The database an admin command (``node *``, ``migrate``, ``backup``, ``restore``)
    acts on: named explicitly (``--db`` or ``VPNGW_DB``; never the ``./vpngw.db`` default),
    and, for SQLite, a file that exists unless ``create`` (a mistyped path must not
    quietly become an empty database). ValueError otherwise."""
    url = cli_value or os.environ.get("VPNGW_DB")
    if not url:
        raise ValueError(
            "which database? give --db URL or set VPNGW_DB (admin commands never fall back to ./vpngw.db)"
        )
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() == "sqlite" and path and path != ":memory:" and not create:
        if not Path(path).exists():
            raise ValueError(f"no database at {path} (a mistyped path?); nothing was created")
    return url


def live_node_names(url: str, *, within_ms: int) -> list[str]:
    """Nodes (``vpngw agent``, ``vpngw serve`` with its data plane) whose heartbeat on the
    database at ``url`` is younger than ``within_ms``; [] when it has no nodes table."""
    from vpngw.store import leases as lease_store

    db = Database(url)
    try:
        with db.transaction(write=False) as session:
            now_ms = int(time.time() * 1000)
            return [n.name for n in lease_store.nodes(session) if n.heartbeat_ms >= now_ms - within_ms]
    except SQLAlchemyError:
        return []
    finally:
        db.dispose()
