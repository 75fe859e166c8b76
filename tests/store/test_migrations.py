"""Migrations: from nothing to head on both databases, and the data steps of each."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from vpngw.store.engine import Database
from vpngw.store.migrate import alembic_config, upgrade


def test_resource_counts_are_backfilled(db_url: str) -> None:
    command.upgrade(alembic_config(db_url), "0002")
    db = Database(db_url)
    with db.engine.begin() as connection:
        connection.execute(text("INSERT INTO accounts (id, name, create_time) VALUES ('a1', 'one', 0), ('a2', 'two', 0)"))
        for n, (account, region) in enumerate([("a1", "r1"), ("a1", "r1"), ("a1", "r2"), ("a2", "r1")]):
            connection.execute(
                text("INSERT INTO vpcs (id, account_id, region_id, name, description, cidr_block, create_time) "
                     "VALUES (:id, :a, :r, '', '', '10.0.0.0/8', 0)"),
                {"id": f"vpc-{n}", "a": account, "r": region},
            )
    upgrade(db_url)
    with db.engine.connect() as connection:
        counts = set(connection.execute(text("SELECT account_id, region_id, kind, count FROM resource_counts")).all())
    assert counts == {("a1", "r1", "vpcs", 2), ("a1", "r2", "vpcs", 1), ("a2", "r1", "vpcs", 1)}
    db.dispose()
