"""The database every command opens: migrated, with the default account (serve, agent, node)."""

from __future__ import annotations

import time

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
