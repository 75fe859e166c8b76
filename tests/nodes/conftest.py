"""Fixtures for the node tests: an API, a lab WAN with peers, and node namespaces.

Each test has a lab of its own (``vt-<hex>``); node namespaces and the gateways'
namespaces carry its name, so the leak checks look at this session's names only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.dataplane.world import charon_processes_under, wait_gone
from tests.support.api import Api
from tests.support.postgres import PostgresServer
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.system import netns

from .fleet import Fleet

SESSION_PREFIXES: set[str] = set()
LOCAL_SUBNETS = ("10.1.1.0/24",)


def _claim(lab: str) -> None:
    SESSION_PREFIXES.update({f"{lab}-", f"vpngw-{lab}-"})


@pytest.fixture(params=["sqlite", "postgresql"])
def node_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vpngw.db'}"
        return
    yield from _postgres_url(request)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _postgres_url(request)


def _postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = "t_" + uuid.uuid4().hex[:12]
    with DatabaseJanitor(user="postgres", host="127.0.0.1", port=server.port, dbname=name, password=None):
        yield f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{name}"


def make_fleet(db_url: str, tmp_path: Path) -> Iterator[tuple[Fleet, Api]]:
    reason = charon_daemon.missing_prerequisites()
    if reason:
        pytest.skip(reason)
    settings = Settings(db_url=db_url)
    db, authenticator = prepared(settings)
    lab_name = f"vt-{netns.unique_suffix()}"
    _claim(lab_name)
    state = Path(f"/tmp/vl{netns.unique_suffix()}")
    fleet = Fleet(LabNetwork(lab_name, state / lab_name), db_url, LOCAL_SUBNETS)
    try:
        with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
            yield fleet, Api(client)
    finally:
        fleet.teardown()
        db.dispose()
        leftovers = {ns for ns in netns.namespaces() if ns.startswith((f"{lab_name}-", f"vpngw-{lab_name}-"))}
        charons = [pid for site in fleet.nodes for pid in charon_processes_under(site.state_dir)]
        charons += charon_processes_under(state)
        assert not leftovers, f"namespaces left behind: {leftovers}"
        assert wait_gone(charons), f"charons left behind: {charons}"


@pytest.fixture
def fleet_on(node_db_url: str, tmp_path: Path) -> Iterator[tuple[Fleet, Api]]:
    """Nodes (added by the test) on SQLite and on PostgreSQL."""
    yield from make_fleet(node_db_url, tmp_path)


@pytest.fixture
def sqlite_fleet(tmp_path: Path) -> Iterator[tuple[Fleet, Api]]:
    yield from make_fleet(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)


@pytest.fixture
def pg_fleet(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Fleet, Api]]:
    yield from make_fleet(postgres_url, tmp_path)


@pytest.fixture(scope="session", autouse=True)
def no_node_namespace_outlives_the_tests() -> Iterator[None]:
    yield
    if not SESSION_PREFIXES:
        return
    time.sleep(0.5)
    leaked = {ns for ns in netns.namespaces() if ns.startswith(tuple(SESSION_PREFIXES))}
    for namespace in leaked:
        netns.kill_namespace_processes(namespace)
        netns.delete_namespace(namespace)
    assert not leaked, f"the node tests left namespaces behind: {sorted(leaked)}"
