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

from tests.support.api import Api
from tests.support.postgres import PostgresServer, start_postgres
from tests.support.servers import live_server
from vpngw.api.app import build_app
from vpngw.cli.main import prepare_database
from vpngw.config import Settings


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
    db = prepare_database(settings)
    with TestClient(build_app(db, settings), raise_server_exceptions=False) as client:
        yield Api(client)
    db.dispose()


@pytest.fixture
def server_url(settings: Settings) -> Iterator[str]:
    """A real server on a loopback port, for the SDKs and concurrent clients."""
    with live_server(settings) as url:
        yield url
