"""PostgreSQL: a pooled connection idle for PING_AFTER_IDLE_S is pinged before use, so a
connection the server dropped meanwhile (a restart, an idle timeout) is replaced instead of
failing the request; one checked in a moment ago is used without the round trip."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import Api
from vpngw.api.app import build_app
from vpngw.cli.database import prepare_database
from vpngw.config import Settings
from vpngw.store import engine as engine_module
from vpngw.store.direct import Prepared, rows
from vpngw.store.engine import Database

BACKEND_PID = Prepared(select(func.pg_backend_pid()))


def _kill_pooled_backend(settings: Settings) -> tuple[Database, int]:
    db = prepare_database(settings)
    db.engine.dispose()
    with db.direct(write=False) as tx:  # the pool's one connection now
        pid = rows(tx, BACKEND_PID, {})[0][0]
    killer = prepare_database(settings)
    with killer.engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    killer.dispose()
    return db, pid


def test_an_idle_connection_the_server_dropped_is_replaced(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not settings.db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's pool only")
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.0)
    db, pid = _kill_pooled_backend(settings)
    with db.direct(write=False) as tx:
        assert rows(tx, BACKEND_PID, {})[0][0] != pid
    db.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not settings.db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's pool only")
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 3600.0)
    db, _pid = _kill_pooled_backend(settings)
    with pytest.raises(OperationalError):  # no ping: the dead connection is found by its use
        with db.direct(write=False) as tx:
            rows(tx, BACKEND_PID, {})
    with db.direct(write=False) as tx:
        assert rows(tx, BACKEND_PID, {})  # and dropped: the next transaction connects anew
    db.dispose()


def test_a_signed_read_survives_a_dropped_connection_within_the_ping_interval(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read's nonce transaction meets the dead connection first (no ping within the
    interval): it runs once more on a new connection, and the request succeeds."""
    if not settings.db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's pool only")
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 3600.0)
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        api = Api(client)
        assert api.ok("DescribeRegions")["Regions"]
        killer = prepare_database(settings)
        with killer.engine.connect() as connection:
            killed = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        killer.dispose()
        assert killed >= 1  # the pool's connections are gone
        for _ in range(3):
            assert api.ok("DescribeRegions")["Regions"]
    db.dispose()
