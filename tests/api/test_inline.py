"""Short SQLite requests run on the event loop itself (vpngw.api.app ``Api._run``): without a
worker thread when nothing is in their way, and in one, waiting as before, when another
process (the data plane, another worker) holds the database's write lock. Nothing is written
twice and nothing fails because of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import vpngw.api.app as app_module
from tests.conftest import prepared
from tests.support.api import REGION, Api, build_world, connection_params, signed_query
from tests.support.sqlite_locks import hold_write_lock
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.store import queries
from vpngw.store.engine import Database, WouldBlock, without_waiting


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return tmp_path / "vpngw.db"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The actions handed to a worker thread."""
    handed: list[str] = []
    original = app_module.run_in_threadpool

    async def counting(function: Any, *args: Any) -> Any:
        handed.append(args[0].action)
        return await original(function, *args)

    monkeypatch.setattr(app_module, "run_in_threadpool", counting)
    return handed


@pytest.fixture
def api(sqlite_file: Path) -> Iterator[Api]:
    settings = Settings(db_url=f"sqlite:///{sqlite_file}")
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        yield Api(client)
    db.dispose()


def test_short_requests_run_without_a_worker_thread(api: Api, counted: list[str]) -> None:
    world = build_world(api)
    counted.clear()
    created = api.ok("CreateVpnConnection", **connection_params(world))
    api.ok("DescribeRegions")
    api.ok("DeleteVpnConnection", VpnConnectionId=created["VpnConnectionId"])
    assert counted == []
    api.ok("DescribeVpnConnections")
    assert counted == []
    api.ok("DescribeVpnGateways")  # not a short action: a worker thread, as before
    assert counted == ["DescribeVpnGateways"]


def test_listings_that_may_walk_far_run_in_a_worker_thread(
    api: Api, counted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deep page whose cached boundaries a create made stale rebuilds them in a thread
    (a walk of the whole index; its nonce is claimed once), then pages seek on the loop; a
    customer gateway's or a tag's filter runs in a thread."""
    monkeypatch.setattr(queries, "PAGE_BOUNDARY_EVERY", 4)
    world = build_world(api)
    ids = [
        api.ok("CreateVpnConnection", **connection_params(world, LocalSubnet=f"10.{n}.0.0/24"))[
            "VpnConnectionId"
        ]
        for n in range(9)
    ]
    counted.clear()

    def page(number: int, **given: str) -> list[str]:
        found = api.ok("DescribeVpnConnections", PageSize=1, PageNumber=number, **given)
        return [item["VpnConnectionId"] for item in found["VpnConnections"]["VpnConnection"]]

    assert page(1) == ids[:1] and page(4) == ids[3:4]  # short walks from the start
    assert counted == []
    assert page(6) == ids[5:6]  # past the first boundary: the boundaries are built in a thread
    assert counted == ["DescribeVpnConnections"]
    assert page(7) == ids[6:7] and page(9) == ids[8:9]  # seeking from them, on the loop
    assert counted == ["DescribeVpnConnections"]
    assert page(1, VpnGatewayId=world.vpn_gateway_id) == ids[:1]
    assert counted == ["DescribeVpnConnections"]
    assert page(1, CustomerGatewayId=world.customer_gateway_id) == ids[:1]
    assert page(1, **{"Tag.1.Key": "none"}) == []
    assert counted == ["DescribeVpnConnections"] * 3
    api.ok("DeleteVpnConnection", VpnConnectionId=ids.pop(2))
    assert page(6) == ids[5:6]  # stale again: a thread
    assert counted == ["DescribeVpnConnections"] * 4


def test_a_held_write_lock_sends_the_request_to_a_thread_that_waits(
    api: Api, sqlite_file: Path, counted: list[str]
) -> None:
    world = build_world(api)
    counted.clear()
    holder = hold_write_lock(sqlite_file, 0.5)
    started = time.monotonic()
    created = api.ok("CreateVpnConnection", ClientToken="inline-token", **connection_params(world))
    waited = time.monotonic() - started
    holder.join()
    assert waited >= 0.4  # it waited for the other transaction (SQLite's busy handler, restored)
    assert counted == ["CreateVpnConnection"]
    # Written once: the same token replays the same connection, and only one exists.
    again = api.ok("CreateVpnConnection", ClientToken="inline-token", **connection_params(world))
    assert again["VpnConnectionId"] == created["VpnConnectionId"]
    listed = api.ok("DescribeVpnConnections")
    assert listed["TotalCount"] == 1
    holder = hold_write_lock(sqlite_file, 0.3)
    api.ok("DescribeRegions")  # its nonce is a write too
    holder.join()
    assert counted[-1] == "DescribeRegions"


def test_a_write_that_would_wait_raises_would_block_and_writes_nothing(sqlite_file: Path) -> None:
    settings = Settings(db_url=f"sqlite:///{sqlite_file}")
    db, _authenticator = prepared(settings)
    holder = hold_write_lock(sqlite_file, 0.3)
    ran = False
    with pytest.raises(WouldBlock), without_waiting():
        with db.direct(write=True) as tx:
            ran = True
            queries.claim_nonce(tx, "LTAIkey", "nonce", 1)
    assert not ran  # refused at BEGIN IMMEDIATE, before the block
    holder.join()
    with db.direct(write=True) as tx:  # waiting allowed again: and the nonce is new
        assert queries.claim_nonce(tx, "LTAIkey", "nonce", 1)
    db.dispose()


def _note_refusals(monkeypatch: pytest.MonkeyPatch, refused: threading.Event) -> list[int]:
    """Count the SQLite write transactions refused at BEGIN IMMEDIATE on the event loop (a
    lock held elsewhere); ``refused`` is set at the first."""
    refusals: list[int] = []
    original = Database._begin_without_waiting

    def noting(tx: Any) -> None:
        try:
            original(tx)
        except WouldBlock:
            refusals.append(1)
            refused.set()
            raise

    monkeypatch.setattr(Database, "_begin_without_waiting", staticmethod(noting))
    return refusals


def test_a_read_whose_nonce_claim_meets_a_write_lock_claims_it_on_the_loop_once_it_is_free(
    api: Api, sqlite_file: Path, counted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data plane's writes hold SQLite's lock for a few milliseconds: a read whose
    nonce claim meets one tries the claim again on the loop (no worker thread, no SQLite
    busy handler), and the nonce is claimed all the same (a replay is refused)."""
    monkeypatch.setattr(app_module, "READ_CLAIM_WAIT_S", 30.0)  # the release below decides
    world = build_world(api)
    counted.clear()
    refused, release = threading.Event(), threading.Event()
    refusals = _note_refusals(monkeypatch, refused)
    holder = hold_write_lock(sqlite_file, release=release)
    try:
        query = signed_query(
            "POST",
            {"Action": "DescribeVpnConnections", "Version": "2016-04-28", "RegionId": REGION},
        )
        answer: list[Any] = []
        asking = threading.Thread(target=lambda: answer.append(api.client.post("/", params=query)))
        asking.start()
        assert refused.wait(30)  # the claim met the lock, and was not answered meanwhile
        assert not answer
    finally:
        release.set()
        holder.join()
    asking.join(30)
    assert answer[0].status_code == 200, answer[0].text
    assert answer[0].json()["TotalCount"] == 0
    assert refusals  # it met the lock at least once...
    assert counted == []  # ...and was served on the loop all the same
    replay = api.client.post("/", params=query)
    assert (replay.status_code, replay.json()["Code"]) == (400, "SignatureNonceUsed")
    assert world.vpn_gateway_id  # the world's writes were done before the lock was held


def test_a_read_whose_nonce_claim_waits_too_long_on_the_loop_goes_to_a_thread_that_waits(
    api: Api, sqlite_file: Path, counted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write lock held longer than READ_CLAIM_WAIT_S (the data plane's cold start, a long
    write elsewhere): the read goes to a worker thread, which waits for the lock as before."""
    monkeypatch.setattr(app_module, "READ_CLAIM_WAIT_S", 0.0)
    build_world(api)
    counted.clear()
    refused, release = threading.Event(), threading.Event()
    refusals = _note_refusals(monkeypatch, refused)
    holder = hold_write_lock(sqlite_file, release=release)
    answer: list[Any] = []
    asking = threading.Thread(
        target=lambda: answer.append(api.rpc("DescribeVpnConnections", RegionId=REGION))
    )
    try:
        asking.start()
        assert refused.wait(30)
    finally:
        release.set()
        holder.join()
    asking.join(30)
    assert answer[0].status_code == 200, answer[0].text
    assert len(refusals) == 1  # no second try on the loop
    assert counted == ["DescribeVpnConnections"]


def test_the_first_worker_thread_is_started_before_the_first_request(
    sqlite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process's first hand-off to a worker thread sets anyio's threads up (15-30 ms): the
    application's start-up does it, so no request pays for it."""
    handed: list[str] = []
    original = app_module.run_in_threadpool

    async def noting(function: Any, *args: Any) -> Any:
        handed.append(getattr(function, "__name__", "?"))
        return await original(function, *args)

    monkeypatch.setattr(app_module, "run_in_threadpool", noting)
    settings = Settings(db_url=f"sqlite:///{sqlite_file}")
    db, authenticator = prepared(settings)
    app = build_app(db, settings, authenticator)
    assert handed == []
    with TestClient(app, raise_server_exceptions=False) as client:
        assert len(handed) == 1  # at start-up, before any request
        Api(client).ok("DescribeRegions")
        assert len(handed) == 1  # and a short request runs on the loop, as before
    db.dispose()
