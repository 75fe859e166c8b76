"""The start-up check that skips Alembic for a database already at the shipped head."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.script import ScriptDirectory

from vpngw.store import migrate


def test_the_heads_read_from_the_scripts_are_alembics() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert migrate.shipped_heads() == set(scripts.get_heads())
    assert len(migrate.shipped_heads()) == 1


def test_only_a_database_at_the_head_skips_the_migrations(tmp_path: Path) -> None:
    path = tmp_path / "vpngw.db"
    url = f"sqlite:///{path}"
    assert not migrate.at_head(url)
    assert not path.exists()  # the check never creates a database
    migrate.upgrade(url)
    assert migrate.at_head(url)
    head = next(iter(migrate.shipped_heads()))
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    assert not migrate.at_head(url)  # behind: Alembic runs
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE alembic_version")
    assert not migrate.at_head(url)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES (?)", (head,))
    assert migrate.at_head(url)
