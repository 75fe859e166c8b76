"""SQLite's busy handler per pooled connection (vpngw.store.engine.set_busy_timeout): off for
the event loop's transactions (a write that would wait raises WouldBlock), on for every other
transaction, whichever path opened it; a connection the loop uses again and again runs no
PRAGMA to switch it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.sqlite_locks import hold_write_lock
from vpngw.cli.database import prepare_database
from vpngw.config import Settings
from vpngw.store.engine import BUSY_TIMEOUT_MS, Database, WouldBlock, without_waiting


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = prepare_database(Settings(db_url=f"sqlite:///{tmp_path / 'vpngw.db'}"))
    database.engine.dispose()  # one pooled connection from here on, used in turn
    yield database
    database.dispose()


def _direct_busy(db: Database, *, loop: bool) -> tuple[int, list[str]]:
    """The busy_timeout inside a direct write transaction, and the statements it ran."""
    ran: list[str] = []
    with without_waiting() if loop else nullcontext():
        with db.direct(write=True) as tx:
            driver = tx.dbapi_connection.driver_connection
            busy = int(driver.execute("PRAGMA busy_timeout").fetchone()[0])
            driver.set_trace_callback(ran.append)
    driver.set_trace_callback(None)
    return busy, ran


def test_the_loop_runs_without_the_busy_handler_and_every_other_path_with_it(db: Database) -> None:
    assert _direct_busy(db, loop=True)[0] == 0
    assert _direct_busy(db, loop=False)[0] == BUSY_TIMEOUT_MS
    assert _direct_busy(db, loop=True)[0] == 0
    with db.transaction(write=True) as session:
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == BUSY_TIMEOUT_MS
    assert _direct_busy(db, loop=True)[0] == 0
    with db.connection(write=False) as connection:
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == BUSY_TIMEOUT_MS


def test_the_loop_s_transactions_in_a_row_run_no_pragma(db: Database) -> None:
    _direct_busy(db, loop=True)
    for _ in range(3):
        busy, ran = _direct_busy(db, loop=True)
        assert busy == 0
        # Traced from inside the transaction: only its COMMIT follows; no PRAGMA anywhere.
        assert not [statement for statement in ran if "PRAGMA" in statement.upper()], ran


def test_a_transaction_that_may_wait_still_waits_after_the_loop_used_its_connection(db: Database) -> None:
    path = str(db.engine.url.database)
    _direct_busy(db, loop=True)  # the pooled connection's handler is off now
    holder = hold_write_lock(path, 0.3)
    with without_waiting(), pytest.raises(WouldBlock), db.direct(write=True):
        pass
    with db.transaction(write=True) as session:  # waits for the other connection's COMMIT
        session.execute(text("CREATE TABLE waited_for (x INTEGER)"))
    holder.join()
    _direct_busy(db, loop=True)
    holder = hold_write_lock(path, 0.3)
    with db.direct(write=True) as tx:  # the cursor path waits too
        tx.run("DROP TABLE waited_for")
    holder.join()
