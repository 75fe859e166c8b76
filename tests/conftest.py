"""Fixtures shared by the whole suite.

Every storage and API test runs twice: on the embedded SQLite default and on a real
PostgreSQL server that this suite starts itself (tests/support/postgres.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from starlette.testclient import TestClient

from tests.support.api import TEST_KEY_ID, TEST_KEY_SECRET, Api
from tests.support.postgres import PostgresServer, start_postgres
from tests.support.servers import live_server
from vpngw import accounts
from vpngw.api.app import build_app
from vpngw.auth.authenticator import Authenticator
from vpngw.cli.main import prepare_database
from vpngw.config import Settings
from vpngw.sealing import Sealer, parse_keyring
from vpngw.store.engine import Database

TEST_MASTER_KEY = "test:" + "A" * 43 + "="


def make_sealer() -> Sealer:
    return Sealer(parse_keyring(TEST_MASTER_KEY))


def prepared(settings: Settings) -> tuple[Database, Authenticator]:
    """A migrated database whose default account holds the test key pair."""
    db = prepare_database(settings)
    sealer = make_sealer()
    accounts.ensure_key(db, sealer, settings.default_account_id, TEST_KEY_ID, TEST_KEY_SECRET)
    return db, Authenticator(db, sealer)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vpngw.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = "t_" + uuid.uuid4().hex[:12]
    with DatabaseJanitor(user="postgres", host="127.0.0.1", port=server.port, dbname=name, password=None):
        yield f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{name}"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(db_url=db_url)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    """The API in process, over HTTP semantics (Starlette's TestClient)."""
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        yield Api(client)
    db.dispose()


@pytest.fixture
def server_url(settings: Settings) -> Iterator[str]:
    """A real server on a loopback port, for the SDKs and concurrent clients."""
    db, authenticator = prepared(settings)
    with live_server(db, settings, authenticator) as url:
        yield url
