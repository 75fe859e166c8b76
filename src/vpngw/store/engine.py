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

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from vpngw import files
from vpngw.errors import StorageFull
from vpngw.store.direct import Direct
from vpngw.store.group_commit import CommitGroup, GroupLost, Joined

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
BUSY_TIMEOUT_KEY = "vpngw_busy_timeout_ms"  # in a pooled connection's info: its busy_timeout now


class WouldBlock(Exception):  # noqa: N818 - a condition, as asyncio's names go
    """A transaction opened under :func:`without_waiting` would have had to wait (for the
    write lock, another process's transaction, a retry): nothing was done; the caller runs
    the whole request again where it may wait (the API: in a worker thread)."""


_without_waiting: ContextVar[bool] = ContextVar("vpngw_without_waiting", default=False)


@contextmanager
def without_waiting() -> Iterator[None]:
    """Run the block's transactions only if none has to wait (the API's event loop runs
    short SQLite requests itself: docs/benchmarks.md); a write that would wait raises
    :class:`WouldBlock` at its ``BEGIN`` instead."""
    token = _without_waiting.set(True)
    try:
        yield
    finally:
        _without_waiting.reset(token)


def waiting_allowed() -> bool:
    return not _without_waiting.get()


_grouping: ContextVar[Joined | None] = ContextVar("vpngw_grouping", default=None)


@contextmanager
def grouping(joined: Joined) -> Iterator[None]:
    """Inside the block (on the event loop, under :func:`without_waiting`), a SQLite write
    of :meth:`Database.direct` joins the loop's open commit group (vpngw.store.group_commit)
    instead of committing alone; ``joined`` collects the groups the caller must await
    (:meth:`Joined.committed`) before it answers."""
    token = _grouping.set(joined)
    try:
        yield
    finally:
        _grouping.reset(token)


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
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred only).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()
        record.info[BUSY_TIMEOUT_KEY] = BUSY_TIMEOUT_MS

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        info = connection.connection.info
        if info.get(BUSY_TIMEOUT_KEY) != BUSY_TIMEOUT_MS:  # left at 0 by the event loop's last use
            # On the driver's connection: plumbing, as pysqlite's own settings, not a statement
            # of the transaction (SQLAlchemy's statement events do not see it).
            connection.connection.driver_connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            info[BUSY_TIMEOUT_KEY] = BUSY_TIMEOUT_MS
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def set_busy_timeout(tx: Direct, ms: int) -> None:
    """SQLite's busy handler for the connection's next transactions: 0 on the event loop (a
    write that would wait raises WouldBlock), BUSY_TIMEOUT_MS elsewhere. Kept as it is
    between uses (the pooled connection's ``info`` says which), so a connection the loop
    uses again and again runs no PRAGMA."""
    info = tx.dbapi_connection.info
    if info.get(BUSY_TIMEOUT_KEY) != ms:
        tx.run(f"PRAGMA busy_timeout={ms}")
        info[BUSY_TIMEOUT_KEY] = ms


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
    engine = create_engine(parsed, pool_size=10, max_overflow=10, hide_parameters=True)
    _ping_idle_connections(engine)
    return engine


PING_AFTER_IDLE_S = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """SQLAlchemy's ``pool_pre_ping`` with a threshold: a connection that sat in the pool for
    PING_AFTER_IDLE_S or more is pinged before use (a server restarted meanwhile: the pool
    drops it and connects anew, SQLAlchemy's documented ``DisconnectionError`` pattern); one
    checked in a moment ago is not. The ping was a round trip (three waits in psycopg) on
    every transaction: 40 % of a no-op's round trips (docs/benchmarks.md). A connection that
    breaks while in use fails its statement as before (dispatch runs the action again)."""

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["vpngw_checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get("vpngw_checked_in")
        if checked_in is not None and time.monotonic() - checked_in < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError("the pooled connection is gone") from error


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
        self._group: CommitGroup | None = None  # the event loop's open commit group

    def session(self, *, write: bool) -> Session:
        return (self.writer if write else self.reader)()

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error.
        Only :meth:`direct` runs a write under :func:`without_waiting`; here it is WouldBlock."""
        if not waiting_allowed() and (write or not self._sqlite):
            raise WouldBlock()
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
        if not waiting_allowed() and (write or not self._sqlite):
            raise WouldBlock()
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
        commit on success, rollback on error, and the same exceptions as :meth:`transaction`.
        Under :func:`without_waiting` (SQLite only), a write whose lock is taken raises
        :class:`WouldBlock` instead of waiting for it."""
        waiting = waiting_allowed()
        if not waiting and not self._sqlite:
            raise WouldBlock()
        joined = _grouping.get()
        if write and joined is not None and not waiting:
            with self._group_member(joined) as member:
                yield member
            return
        lock = self._write_lock if write else None
        try:
            if lock is not None and not lock.acquire(blocking=waiting):
                raise WouldBlock()
            try:
                raw = self.engine.raw_connection()
                tx = Direct(raw, self.engine.dialect, str(self.engine.url))
                try:
                    if self._sqlite:
                        if write and not waiting:
                            self._begin_without_waiting(tx)
                        else:
                            set_busy_timeout(tx, BUSY_TIMEOUT_MS)
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
            finally:
                if lock is not None:
                    lock.release()
        except DBAPIError as error:
            self._storage_full_or_raise(error)

    @contextmanager
    def _group_member(self, joined: Joined) -> Iterator[Direct]:
        """A write of one request inside the loop's commit group, in a savepoint of its own:
        on error only its own writes are undone (and the error is raised as alone); on
        success ``joined`` notes the group, whose commit the request awaits."""
        try:
            group = self._open_group()
            # The group's first write needs no savepoint: if it fails, the whole transaction
            # (which holds nothing else) is rolled back and the group ends.
            name = group.savepoint() if group.members else None
            if name is not None:
                group.tx.run(f"SAVEPOINT {name}")
            try:
                yield group.tx
                if name is not None:
                    group.tx.run(f"RELEASE {name}")
            except BaseException:
                self._undo_member(group, name)
                raise
        except DBAPIError as error:
            self._storage_full_or_raise(error)
        group.members += 1
        joined.groups.append(group)

    def _open_group(self) -> CommitGroup:
        """The loop's open group, or a new one (its commit scheduled for the loop's next
        turn): WouldBlock if the write lock is taken (a worker thread's transaction, another
        process's), as for a write alone."""
        loop = asyncio.get_running_loop()
        group = self._group
        if group is not None and not group.finished and group.loop is loop:
            return group
        lock = self._write_lock
        assert lock is not None  # SQLite only
        if not lock.acquire(blocking=False):
            raise WouldBlock()
        try:
            raw = self.engine.raw_connection()
            tx = Direct(raw, self.engine.dialect, str(self.engine.url))
            try:
                self._begin_without_waiting(tx)
            except BaseException:
                tx.close()
                raw.close()
                raise
        except BaseException:
            lock.release()
            raise
        group = CommitGroup(raw=raw, tx=tx, loop=loop)
        self._group = group
        loop.call_soon(self._commit_group, group)
        return group

    def _undo_member(self, group: CommitGroup, name: str | None) -> None:
        """Roll one member back to its savepoint; if SQLite dropped the whole transaction
        (a full disk, an I/O error) the group is lost: it ends now, its members run again.
        The first member (no savepoint) rolls the transaction back and ends the group."""
        if name is None:
            self._end_group(group, None, commit=False)
            return
        try:
            if group.raw.driver_connection.in_transaction:
                group.tx.run(f"ROLLBACK TO {name}")
                group.tx.run(f"RELEASE {name}")
                return
        except DBAPIError:
            pass
        self._end_group(group, GroupLost, commit=False)

    def _commit_group(self, group: CommitGroup) -> None:
        self._end_group(group, None, commit=True)

    def _end_group(self, group: CommitGroup, failure: type[Exception] | None, *, commit: bool) -> None:
        """Commit (or roll back) the group's transaction, give its connection and the write
        lock back, and record the outcome its members read (whatever happens here: a member
        never waits for a group that cannot end)."""
        if group.finished:
            return
        if self._group is group:
            self._group = None
        outcome: type[Exception] | None = GroupLost
        try:
            if commit:
                group.tx.commit()
            else:
                group.raw.rollback()
            outcome = failure
        except DBAPIError as error:
            if is_storage_full(error):
                self._storage_full(error)  # logged as any full disk
                outcome = StorageFull
            if error.connection_invalidated:
                group.raw.invalidate()
            else:
                try:
                    group.raw.rollback()
                except Exception:  # noqa: BLE001 - the group is lost either way
                    group.raw.invalidate()
        except Exception:  # noqa: BLE001 - never leave the lock taken
            group.raw.invalidate()
        finally:
            group.tx.close()
            group.raw.close()
            assert self._write_lock is not None
            self._write_lock.release()
            group.finish(outcome)

    @staticmethod
    def _begin_without_waiting(tx: Direct) -> None:
        """``BEGIN IMMEDIATE`` with SQLite's busy handler off: WouldBlock when another
        process (the data plane, another worker) holds the write lock. The handler stays off
        until a transaction that may wait uses the connection (:func:`set_busy_timeout`)."""
        set_busy_timeout(tx, 0)
        try:
            tx.run("BEGIN IMMEDIATE")
        except DBAPIError as error:
            code = getattr(error.orig, "sqlite_errorcode", 0) & 0xFF
            if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise WouldBlock() from None
            raise

    @staticmethod
    def _storage_full_or_raise(error: DBAPIError) -> NoReturn:
        """Called in an ``except DBAPIError`` block: the error again, or StorageFull."""
        if not is_storage_full(error):
            raise error
        raise Database._storage_full(error) from None

    @staticmethod
    def _storage_full(error: DBAPIError) -> StorageFull:
        # The error's text holds the statement and its parameters: only its kind is logged.
        log.warning(
            "the database's storage is full (%s): writes fail until space is freed",
            getattr(error.orig, "sqlite_errorname", None) or type(error.orig).__name__,
        )
        return StorageFull()

    def dispose(self) -> None:
        self.engine.dispose()
