"""Group commit (vpngw.store.group_commit): the SQLite writes of the requests the event loop
runs in one iteration share one transaction and one commit, each request in a savepoint of
its own. A request that fails changes nothing and gets its own error; the others are stored
and answered only after their commit; ClientToken and SignatureNonce hold inside a group."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import REGION, Api, World, build_world, signed_query
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.store import direct as direct_module


class Server:
    def __init__(self, app: Any, db_path: Path, world: World) -> None:
        self.app = app
        self.db_path = db_path
        self.world = world

    def stored(self) -> list[tuple[str, str]]:
        with sqlite3.connect(self.db_path) as db:
            return sorted(db.execute("SELECT id, remote_subnet FROM vpn_connections").fetchall())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    path = tmp_path / "vpngw.db"
    settings = Settings(db_url=f"sqlite:///{path}")
    db, authenticator = prepared(settings)
    app = build_app(db, settings, authenticator)
    with TestClient(app, raise_server_exceptions=False) as client:
        world = build_world(Api(client))
    yield Server(app, path, world)
    db.dispose()


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per COMMIT on the DBAPI cursor path (a group's or a transaction's alone)."""
    counted: list[int] = []
    original = direct_module.Direct.commit

    def counting(self: direct_module.Direct) -> None:
        counted.append(1)
        original(self)

    monkeypatch.setattr(direct_module.Direct, "commit", counting)
    return counted


def signed(action: str, **params: str) -> dict[str, str]:
    return signed_query("POST", {"Action": action, "Version": "2016-04-28", "RegionId": REGION, **params})


async def call(app: Any, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """One request straight into the ASGI application (several run on one event loop)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": urlencode(query).encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-length", b"0")],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 80),
    }
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def together(app: Any, queries: list[dict[str, str]]) -> list[tuple[int, dict[str, Any]]]:
    """The requests started in one loop iteration (as a loaded server reads them)."""

    async def run() -> list[tuple[int, dict[str, Any]]]:
        return list(await asyncio.gather(*(call(app, query) for query in queries)))

    return asyncio.run(run())


def create(world: World, remote: str, **extra: str) -> dict[str, str]:
    params = {
        "VpnGatewayId": world.vpn_gateway_id,
        "CustomerGatewayId": world.customer_gateway_id,
        "LocalSubnet": "10.1.1.0/24",
        "RemoteSubnet": remote,
        **extra,
    }
    return signed("CreateVpnConnection", **params)


def test_concurrent_creates_share_one_commit_and_a_failing_one_changes_nothing(
    server: Server, commits: list[int]
) -> None:
    world = server.world
    queries = [
        create(world, "10.20.1.0/24"),
        create(world, "10.20.2.0/24", CustomerGatewayId="cgw-doesnotexist000000"),
        create(world, "10.20.3.0/24"),
        create(world, "10.20.1.0/24"),  # the first one's selectors: a conflict
        create(world, "10.20.4.0/24", LocalSubnet="10.1.1.0/33"),  # refused before the store
        create(world, "10.20.5.0/24"),
    ]
    answers = together(server.app, queries)
    statuses = [status for status, _ in answers]
    codes = [body.get("Code") for _, body in answers]
    assert statuses == [200, 404, 200, 400, 400, 200], answers
    assert codes[1] == "InvalidCustomerGatewayInstanceId.NotFound"
    assert codes[3] == "VpnConnection.SubnetConflict"
    assert codes[4] == "IllegalParam.LocalSubnet"  # a parameter error: before the store
    remotes = {0: "10.20.1.0/24", 2: "10.20.3.0/24", 5: "10.20.5.0/24"}
    created = sorted((answers[i][1]["VpnConnectionId"], remote) for i, remote in remotes.items())
    assert server.stored() == created
    # Six requests, each with a write (a create, or a failed one's nonce): far fewer commits.
    assert 1 <= len(commits) <= 2, commits


def test_a_client_token_and_a_nonce_hold_inside_one_group(server: Server, commits: list[int]) -> None:
    world = server.world
    first = create(world, "10.30.1.0/24", ClientToken="token-in-one-group")
    again = create(world, "10.30.1.0/24", ClientToken="token-in-one-group")  # a retry: same answer
    other = create(world, "10.30.2.0/24", ClientToken="token-in-one-group")  # other parameters
    replayed = dict(create(world, "10.30.3.0/24"))
    answers = together(server.app, [first, again, other, replayed, dict(replayed)])
    assert answers[0][0] == 200 and answers[1][0] == 200
    assert answers[0][1]["VpnConnectionId"] == answers[1][1]["VpnConnectionId"]
    assert answers[2][0] == 400 and answers[2][1]["Code"] == "IdempotentParameterMismatch"
    assert answers[3][0] == 200
    assert answers[4][0] == 400 and answers[4][1]["Code"] == "SignatureNonceUsed"
    assert sorted(row[1] for row in server.stored()) == ["10.30.1.0/24", "10.30.3.0/24"]
    assert len(commits) <= 2, commits


def _failing_commit(monkeypatch: pytest.MonkeyPatch, error: sqlite3.Error) -> None:
    """The next COMMIT fails with ``error`` (SQLite rolls the transaction back), then all work."""
    original = direct_module.Direct.commit
    failed: list[int] = []

    def commit(self: direct_module.Direct) -> None:
        if not failed:
            failed.append(1)
            self.dbapi_connection.rollback()
            raise self.wrapped(error, "COMMIT")
        original(self)

    monkeypatch.setattr(direct_module.Direct, "commit", commit)


def test_a_lost_group_runs_its_requests_again_and_stores_each_once(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_commit(monkeypatch, sqlite3.OperationalError("disk I/O error"))
    world = server.world
    answers = together(server.app, [create(world, f"10.40.{i}.0/24") for i in range(1, 5)])
    assert [status for status, _ in answers] == [200] * 4, answers
    stored = server.stored()
    assert sorted(body["VpnConnectionId"] for _, body in answers) == [row[0] for row in stored]
    assert len(stored) == 4


def test_a_full_disk_at_the_group_commit_answers_every_member_503_and_stores_nothing(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    _failing_commit(monkeypatch, full)
    world = server.world
    answers = together(server.app, [create(world, f"10.50.{i}.0/24") for i in range(1, 4)])
    assert [(status, body["Code"]) for status, body in answers] == [
        (503, "ServiceUnavailable.StorageFull")
    ] * 3, answers
    assert server.stored() == []


def test_operational_error_is_sqlalchemys() -> None:
    """The wrapped commit error above is the one dispatch and the store catch."""
    error = direct_module.DBAPIError.instance(
        "COMMIT", None, sqlite3.OperationalError("x"), sqlite3.Error, hide_parameters=True
    )
    assert isinstance(error, OperationalError)


def test_a_server_of_several_workers_commits_each_request_alone(tmp_path: Path, commits: list[int]) -> None:
    """``vpngw serve --workers N`` builds its application without group commit: a group holds
    SQLite's write lock for a turn of the loop, which the other workers' writes would wait for."""
    path = tmp_path / "vpngw.db"
    settings = Settings(db_url=f"sqlite:///{path}")
    db, authenticator = prepared(settings)
    app = build_app(db, settings, authenticator, group_commits=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        world = build_world(Api(client))
    commits.clear()
    answers = together(app, [create(world, f"10.60.{i}.0/24") for i in range(1, 5)])
    db.dispose()
    assert [status for status, _ in answers] == [200] * 4, answers
    assert len(commits) == 4, commits
