"""Online backup and restore of the embedded SQLite database.

Both use SQLite's backup API (Python's ``sqlite3.Connection.backup``), not a file copy:
the copy is one consistent snapshot taken inside a read transaction, so the server keeps
serving (WAL mode lets writers go on) and nothing half-committed, nor a stale ``-wal``
file, ends up in it. PostgreSQL has its own tools (``pg_dump -Fc`` / ``pg_restore``,
docs/operations.md); these functions refuse other URLs.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from vpngw import files
from vpngw.store.engine import is_sqlite, private_database_file


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why."""


def sqlite_path(url: str) -> Path:
    if not is_sqlite(url):
        raise BackupError(
            "vpngw backup/restore handle SQLite databases; for PostgreSQL use pg_dump -Fc and "
            "pg_restore (docs/operations.md)"
        )
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory database has nothing to back up")
    return Path(database)


def _check(connection: sqlite3.Connection, what: str) -> None:
    verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        raise BackupError(f"{what} fails PRAGMA integrity_check: {verdict}")


def backup(url: str, target: Path) -> None:
    """Write a consistent copy of the database at ``url`` to ``target`` (mode 0600; it
    holds sealed secrets). ``target`` must not exist; it appears only once complete."""
    source_path = sqlite_path(url)
    if not source_path.exists():
        raise BackupError(f"no database at {source_path}")
    if target.exists():
        raise BackupError(f"{target} exists; choose a new file")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(files.create_private_file(partial))
    try:
        with sqlite3.connect(source_path, timeout=30) as source, sqlite3.connect(partial) as copy:
            source.backup(copy)  # all pages in one step: one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            _check(copy, "the copy")
        source.close()
        copy.close()
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def restore(backup_file: Path, url: str) -> None:
    """Replace the database at ``url`` with ``backup_file``'s content (through SQLite,
    so the live file's WAL is dealt with). Stop the server first (docs/operations.md)."""
    target_path = sqlite_path(url)
    if not backup_file.is_file():
        raise BackupError(f"no backup at {backup_file}")
    with sqlite3.connect(backup_file) as source:
        _check(source, str(backup_file))
        private_database_file(target_path)
        with sqlite3.connect(target_path, timeout=30) as target:
            source.backup(target)
            _check(target, "the restored database")
        target.close()
    source.close()
