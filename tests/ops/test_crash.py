"""kill -9 of a real ``vpngw serve`` in the middle of 16 concurrent creates, three times,
on SQLite and on PostgreSQL.

Each kill lands on requests in flight (some inside their transaction) and, through a
relay that holds answers back (tests/ops/proxy.py), on creates that were committed but
whose answer never reached the client.

The clients retry every unanswered request with its ClientToken. Afterwards every
acknowledged create exists exactly once, with the id that was acknowledged; no retry
made a second connection; the store's own bookkeeping (resource_counts) agrees with its
rows; SQLite's file passes ``PRAGMA integrity_check`` after every kill; and the server
starts again each time with the same command, no manual step.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.ops.load import CreatingClients, create_params
from tests.ops.proxy import HoldingRelay
from tests.ops.server_process import ServerProcess
from tests.support.api import Api, build_world, signed_query
from vpngw.store.engine import is_sqlite

ROUNDS = 3
ACKS_PER_ROUND = 15
# Answers held back by the relay at each kill: creates committed whose client never hears.
HELD_ANSWERS = 4


def sqlite_integrity(db_url: str) -> None:
    """What a crash left on disk is a valid database (the WAL is replayed on open)."""
    with sqlite3.connect(make_url(db_url).database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    connection.close()


def stored_connections(db_url: str) -> tuple[dict[str, list[str]], int]:
    """Connection ids by name, and what resource_counts says there are, read directly."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            by_name: dict[str, list[str]] = {}
            for name, connection_id in connection.execute(text("SELECT name, id FROM vpn_connections")):
                by_name.setdefault(name, []).append(connection_id)
            counted = connection.execute(
                text("SELECT COALESCE(SUM(count), 0) FROM resource_counts WHERE kind = 'vpn_connections'")
            ).scalar_one()
    finally:
        engine.dispose()
    return by_name, int(counted)


def check_store(db_url: str, clients: CreatingClients) -> None:
    if is_sqlite(db_url):
        sqlite_integrity(db_url)
    by_name, counted = stored_connections(db_url)
    duplicates = {name: ids for name, ids in by_name.items() if len(ids) > 1}
    assert not duplicates, f"created twice: {duplicates}"
    for index, connection_id in dict(clients.acked).items():
        assert by_name.get(f"c{index}") == [connection_id], (
            f"acknowledged c{index} ({connection_id}) is not stored"
        )
    assert counted == sum(len(ids) for ids in by_name.values())


def test_kill_9_during_concurrent_creates_loses_and_duplicates_nothing(db_url: str, tmp_path: Path) -> None:
    server = ServerProcess(db_url, tmp_path, extra_env={"VPNGW_MAX_CONNECTIONS_PER_GATEWAY": "100000"})
    relay = HoldingRelay(server.port)
    try:
        server.start()
        with httpx.Client(base_url=server.url) as client:
            world = build_world(Api(client))
        clients = CreatingClients(f"http://127.0.0.1:{relay.port}", world)
        clients.start()
        for round_number in range(1, ROUNDS + 1):
            clients.wait_for_acks(round_number * ACKS_PER_ROUND)
            relay.hold()  # answers the server sends from now on are kept from the clients
            relay.wait_held(HELD_ANSWERS)
            server.kill()
            relay.drop()
            check_store(db_url, clients)  # nothing half-written, nothing acknowledged lost
            committed = set(stored_connections(db_url)[0]) - {f"c{index}" for index in clients.acked}
            assert committed, "no create was committed without its answer reaching the client"
            server.start()  # the same command; migrations and recovery are automatic
        clients.finish(timeout_s=120)
        assert not clients.unexpected, clients.unexpected
        check_store(db_url, clients)

        by_name, _counted = stored_connections(db_url)
        assert set(by_name) == {f"c{index}" for index in clients.acked}  # nothing unacknowledged is left over
        # Every token replays its first answer: no retry, however late, makes another.
        with httpx.Client(base_url=server.url, timeout=15) as client:
            for index, connection_id in sorted(clients.acked.items()):
                response = client.post("/", params=signed_query("POST", create_params(world, index)))
                assert response.status_code == 200 and response.json()["VpnConnectionId"] == connection_id
        assert stored_connections(db_url)[0] == by_name
    finally:
        relay.close()
        server.stop()
