"""Engines and sessions for SQLite (the embedded default) and PostgreSQL.

SQLite runs in WAL mode. Write transactions start with ``BEGIN IMMEDIATE`` so that two
writers queue on the database lock instead of failing when a read lock is upgraded;
read transactions use a plain deferred ``BEGIN``.

A transaction that fails because the database's storage is full raises
:class:`~vpngw.errors.StorageFull` (a 503 for the API): both databases roll the whole
transaction back in that case, so nothing is half-written, and writes work again as soon
as space returns, without a restart.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from vpngw import files
from vpngw.errors import StorageFull
from vpngw.store.direct import Direct

log = logging.getLogger(__name__)

WRITE_OPTION = "vpngw_write"
# PostgreSQL's SQLSTATE for "disk full" (class 53, insufficient resources).
PG_DISK_FULL = "53100"


def is_storage_full(error: DBAPIError) -> bool:
    """SQLite's SQLITE_FULL (any extended code), or PostgreSQL's disk_full."""
    original = error.orig
    if isinstance(original, sqlite3.Error):
        return getattr(original, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
    return getattr(original, "sqlstate", None) == PG_DISK_FULL


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _prepare_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred only).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def private_database_file(path: Path) -> None:
    """Create the SQLite file 0600 (its directories 0700) before SQLite does, so that it is
    nobody else's to read whatever the umask; SQLite gives ``-wal`` and ``-shm`` the mode of
    the database file. An existing file readable by others is made 0600, its ``-wal`` and
    ``-shm`` too."""
    try:
        os.close(files.create_private_file(path))
    except FileExistsError:
        for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            files.tighten(existing)


def make_engine(url: str) -> Engine:
    """``hide_parameters``: an SQL error's text (which ends up in tracebacks) never holds the
    statement's values, which can be a client's input."""
    parsed = make_url(url)
    if is_sqlite(parsed):
        if parsed.database and parsed.database != ":memory:":
            private_database_file(Path(parsed.database))
        engine = create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": 10}, hide_parameters=True
        )
        _prepare_sqlite(engine)
        return engine
    return create_engine(parsed, pool_size=10, max_overflow=10, pool_pre_ping=True, hide_parameters=True)


class Database:
    """One engine and two session factories: one for reading, one for writing.

    On SQLite, write transactions of this process also queue on a lock of their own:
    SQLite's busy handler makes waiting writers sleep and poll, which under 16
    concurrent clients turned into tail latencies of a second and more (see
    docs/benchmarks.md); a lock hands the database over as soon as it is free.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.reader = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(**{WRITE_OPTION: True})
        self.writer = sessionmaker(self._write_engine, expire_on_commit=False)
        self._sqlite = is_sqlite(url)
        self._write_lock = threading.Lock() if self._sqlite else None

    def session(self, *, write: bool) -> Session:
        return (self.writer if write else self.reader)()

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        try:
            with self._write_lock if (write and self._write_lock) else nullcontext():
                with self.session(write=write) as session, session.begin():
                    yield session
        except DBAPIError as error:
            self._storage_full_or_raise(error)

    @contextmanager
    def connection(self, *, write: bool) -> Iterator[Connection]:
        """A Core connection inside one transaction, for the hot path of every request
        (the AccessKey read, the nonce): the same locks and errors as :meth:`transaction`
        without an ORM session's cost (about a quarter of a millisecond a transaction)."""
        try:
            with self._write_lock if (write and self._write_lock) else nullcontext():
                with (self._write_engine if write else self.engine).begin() as connection:
                    yield connection
        except DBAPIError as error:
            self._storage_full_or_raise(error)

    @contextmanager
    def direct(self, *, write: bool) -> Iterator[Direct]:
        """One transaction on a pooled DBAPI connection, for the statements of the API's hot
        path (vpngw.store.direct): the same locks, ``BEGIN IMMEDIATE`` for a write on SQLite,
        commit on success, rollback on error, and the same exceptions as :meth:`transaction`."""
        try:
            with self._write_lock if (write and self._write_lock) else nullcontext():
                raw = self.engine.raw_connection()
                tx = Direct(raw, self.engine.dialect)
                try:
                    if self._sqlite:
                        tx.run("BEGIN IMMEDIATE" if write else "BEGIN")
                    yield tx
                    tx.commit()
                except BaseException as error:
                    if isinstance(error, DBAPIError) and error.connection_invalidated:
                        raw.invalidate()
                    else:
                        try:
                            raw.rollback()
                        except Exception:  # noqa: BLE001 - the first error is the one to raise
                            raw.invalidate()
                    raise
                finally:
                    tx.close()
                    raw.close()
        except DBAPIError as error:
            self._storage_full_or_raise(error)

    @staticmethod
    def _storage_full_or_raise(error: DBAPIError) -> NoReturn:
        """Called in an ``except DBAPIError`` block: the error again, or StorageFull."""
        if not is_storage_full(error):
            raise error
        # The error's text holds the statement and its parameters: only its kind is logged.
        log.warning(
            "the database's storage is full (%s): writes fail until space is freed",
            getattr(error.orig, "sqlite_errorname", None) or type(error.orig).__name__,
        )
        raise StorageFull() from None

    def dispose(self) -> None:
        self.engine.dispose()
