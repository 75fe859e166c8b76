"""The database every command opens: migrated, with the default account (serve, agent, node)."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy.engine import make_url

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


def database_identity(url: str) -> str:
    """The database a URL names, as a lab records its owner: the URL without password, a
    SQLite file by its absolute path (``sqlite:///./vpngw.db`` differs from folder to
    folder)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        parsed = parsed.set(database=str(Path(parsed.database).resolve()))
    return parsed.render_as_string(hide_password=True)
