"""The store functions the data plane writes through: write_observation,
write_health_status, add_connection_logs, prune_connection_logs, and record_gateway_pass
(a gateway's observations and log lines in one transaction with Core statements: it
stores exactly what the one-at-a-time functions store, in a fixed number of statements);
on both databases, alone and racing a DeleteVpnConnection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event, select, text
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import Api, build_world, connection_params
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.store import queries, traffic_history
from vpngw.store.engine import Database
from vpngw.store.models import VpnConnection, VpnConnectionLog, VpnConnectionTrafficPoint
from vpngw.store.observations import ConnectionObservation, record_gateway_pass

TRAFFIC = {"BytesIn": 840, "BytesOut": 420, "PacketsIn": 10, "PacketsOut": 5}


@dataclass
class Store:
    db: Database
    first: str  # two connections, made through the API
    second: str

    def write(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.db.transaction(write=True) as session:
            return work(session, *args, **kwargs)

    def row(self, connection_id: str) -> tuple[Any, ...]:
        with self.db.engine.connect() as connection:
            return tuple(
                connection.execute(
                    text(
                        "SELECT status, diagnosis, traffic IS NULL, observed_time, health_check_status "
                        "FROM vpn_connections WHERE id = :id"
                    ),
                    {"id": connection_id},
                ).one()
            )

    def traffic(self, connection_id: str) -> dict[str, int] | None:
        with self.db.transaction(write=False) as session:
            return session.scalars(
                select(VpnConnection.traffic).where(VpnConnection.id == connection_id)
            ).one()

    def lines(self, connection_id: str) -> list[tuple[int, str]]:
        with self.db.transaction(write=False) as session:
            rows = session.scalars(
                select(VpnConnectionLog)
                .where(VpnConnectionLog.vpn_connection_id == connection_id)
                .order_by(VpnConnectionLog.time_ms, VpnConnectionLog.seq)
            ).all()
            return [(row.time_ms, row.message) for row in rows]

    def delete_connection(self, session: Any, connection_id: str) -> None:
        """What DeleteVpnConnection does to the connection, in the caller's transaction."""
        connection = session.scalars(select(VpnConnection).where(VpnConnection.id == connection_id)).one()
        queries.delete_owned(session, connection)
        queries.delete_connection_logs(session, connection_id)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        api = Api(client)
        world = build_world(api)
        first = api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
        second = api.ok(
            "CreateVpnConnection",
            **connection_params(world, LocalSubnet="10.2.0.0/24", RemoteSubnet="10.20.0.0/24"),
        )["VpnConnectionId"]
        yield Store(db, first, second)
    db.dispose()


def test_write_observation_writes_only_a_difference(store: Store) -> None:
    vco = store.first
    assert store.row(vco) == ("ike_sa_not_established", "", True, None, "success")
    # What is stored already (never observed = no traffic): nothing to write, no observed_time.
    assert not store.write(
        queries.write_observation,
        vco,
        status="ike_sa_not_established",
        diagnosis="",
        traffic=None,
        now_ms=1000,
    )
    assert store.row(vco)[3] is None

    assert store.write(
        queries.write_observation,
        vco,
        status="ipsec_sa_established",
        diagnosis="",
        traffic=TRAFFIC,
        now_ms=2000,
    )
    assert store.row(vco) == ("ipsec_sa_established", "", False, 2000, "success")
    assert store.traffic(vco) == TRAFFIC
    assert not store.write(
        queries.write_observation,
        vco,
        status="ipsec_sa_established",
        diagnosis="",
        traffic=dict(TRAFFIC),
        now_ms=3000,
    )
    assert store.row(vco)[3] == 2000  # unchanged: observed_time keeps the last write

    more = {**TRAFFIC, "BytesIn": 841}
    assert store.write(
        queries.write_observation, vco, status="ipsec_sa_established", diagnosis="", traffic=more, now_ms=4000
    )
    assert (store.traffic(vco), store.row(vco)[3]) == (more, 4000)
    assert store.write(
        queries.write_observation,
        vco,
        status="ike_sa_not_established",
        diagnosis="The peer does not answer.",
        traffic=None,
        now_ms=5000,
    )
    # None goes back to SQL NULL, as before the first observation.
    assert store.row(vco) == ("ike_sa_not_established", "The peer does not answer.", True, 5000, "success")
    assert store.row(store.second) == ("ike_sa_not_established", "", True, None, "success")  # untouched


def test_writes_for_a_connection_that_is_gone_are_refused_quietly(store: Store) -> None:
    for vco in ("vco-neverexisted", ""):
        assert not store.write(
            queries.write_observation,
            vco,
            status="ipsec_sa_established",
            diagnosis="",
            traffic=TRAFFIC,
            now_ms=1,
        )
        assert not store.write(queries.write_health_status, vco, "failed")
    assert store.write(queries.add_connection_logs, [("vco-neverexisted", 1, "[IKE] x")]) == 0
    with store.db.transaction(write=False) as session:
        assert session.scalar(select(VpnConnectionLog.seq).limit(1)) is None


def test_write_health_status_writes_only_a_difference(store: Store) -> None:
    assert not store.write(queries.write_health_status, store.first, "success")
    assert store.write(queries.write_health_status, store.first, "failed")
    assert not store.write(queries.write_health_status, store.first, "failed")
    assert store.row(store.first)[4] == "failed"
    assert store.row(store.first)[3] is None  # health is not an SA observation
    assert store.row(store.second)[4] == "success"


def test_add_connection_logs_keeps_order_and_drops_unknown_connections(store: Store) -> None:
    rows = [
        (store.first, 10, "[IKE] one"),
        ("vco-gone", 10, "[IKE] lost"),
        (store.second, 5, "[CFG] other"),
        (store.first, 10, "[IKE] two"),
        (store.first, 7, "[NET] earlier"),
    ]
    assert store.write(queries.add_connection_logs, rows) == 4
    assert store.write(queries.add_connection_logs, []) == 0
    # Oldest first; lines of the same millisecond in the order they were given.
    assert store.lines(store.first) == [(7, "[NET] earlier"), (10, "[IKE] one"), (10, "[IKE] two")]
    assert store.lines(store.second) == [(5, "[CFG] other")]
    assert store.lines("vco-gone") == []


def test_prune_by_age_and_by_count_per_connection(store: Store) -> None:
    a, b = store.first, store.second
    store.write(
        queries.add_connection_logs,
        [(a, t, f"a{t}") for t in range(100, 110)]
        + [(b, t, f"b{t}") for t in range(100, 104)]
        + [(a, 109, "a109-bis")],
    )
    assert store.write(queries.prune_connection_logs, older_than_ms=0) == 0
    assert store.write(queries.prune_connection_logs, older_than_ms=102) == 4  # a100 a101 b100 b101
    assert [m for _, m in store.lines(b)] == ["b102", "b103"]
    # a keeps its 3 newest lines; ties in time go by the order stored; b is under the limit.
    assert store.write(queries.prune_connection_logs, older_than_ms=0, keep_per_connection=3) == 6
    assert [m for _, m in store.lines(a)] == ["a108", "a109", "a109-bis"]
    assert [m for _, m in store.lines(b)] == ["b102", "b103"]
    # Both rules at once, and the count is the total deleted.
    assert store.write(queries.prune_connection_logs, older_than_ms=103, keep_per_connection=1) == 3
    assert (store.lines(a), store.lines(b)) == ([(109, "a109-bis")], [(103, "b103")])
    assert store.write(queries.prune_connection_logs, older_than_ms=0, keep_per_connection=0) == 2
    with pytest.raises(ValueError):
        store.write(queries.prune_connection_logs, older_than_ms=0, keep_per_connection=-1)


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as error:  # noqa: BLE001 - the test reports it
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


RACING_WRITES: dict[str, Callable[[Any, str], Any]] = {
    "observation": lambda session, vco: queries.write_observation(
        session, vco, status="ipsec_sa_established", diagnosis="", traffic=TRAFFIC, now_ms=1
    ),
    "health": lambda session, vco: queries.write_health_status(session, vco, "failed"),
    "logs": lambda session, vco: queries.add_connection_logs(session, [(vco, 1, "[IKE] late")]),
}


@pytest.mark.parametrize("write", sorted(RACING_WRITES))
def test_a_write_racing_a_delete_waits_for_it_and_finds_nothing(store: Store, write: str) -> None:
    """The data plane looked at a connection that DeleteVpnConnection is deleting: its
    write waits for the delete's commit, then finds no row (no error, nothing left)."""
    vco = store.first
    with store.db.transaction(write=True) as session:
        store.delete_connection(session, vco)
        thread, outcome = _in_thread(lambda: store.write(RACING_WRITES[write], vco))
        time.sleep(0.3)
        assert thread.is_alive()  # waiting for the delete
    thread.join(10)
    assert outcome.get("error") is None and not outcome["result"], outcome
    assert store.lines(vco) == []
    with store.db.transaction(write=False) as session:
        assert session.scalars(select(VpnConnection.id)).all() == [store.second]


def test_a_delete_racing_added_lines_removes_them_too(store: Store) -> None:
    """Lines added (not yet committed) when DeleteVpnConnection starts are deleted with it."""
    vco = store.first
    with store.db.transaction(write=True) as session:
        assert queries.add_connection_logs(session, [(vco, 1, "[IKE] in flight")]) == 1
        thread, outcome = _in_thread(lambda: store.write(store.delete_connection, vco))
        time.sleep(0.3)
        assert thread.is_alive()  # waiting for the lines' transaction
    thread.join(10)
    assert outcome == {"result": None}, outcome
    assert store.lines(vco) == []
    assert store.row(store.second)[0] == "ike_sa_not_established"


# -- record_gateway_pass ---------------------------------------------------------

# (status, diagnosis, traffic, now_ms) in turn: unchanged, new, the same again, counters
# moving within a bucket and into the next, back to nothing observed.
STEPS: list[tuple[str, str, dict[str, int] | None, int]] = [
    ("ike_sa_not_established", "", None, 1_000),
    ("ike_sa_not_established", "The peer does not answer.", None, 2_000),
    ("ipsec_sa_established", "", TRAFFIC, 3_000),
    ("ipsec_sa_established", "", dict(TRAFFIC), 4_000),
    ("ipsec_sa_established", "", {**TRAFFIC, "BytesIn": 900}, 5_000),
    ("ipsec_sa_established", "", {**TRAFFIC, "BytesIn": 950}, 12_000),
    ("ike_sa_not_established", "", None, 13_000),
]


def _row(store: Store, connection_id: str) -> tuple[Any, ...]:
    with store.db.engine.connect() as connection:
        return tuple(
            connection.execute(
                text(
                    "SELECT status, diagnosis, observed_time, observed_by FROM vpn_connections WHERE id = :id"
                ),
                {"id": connection_id},
            ).one()
        ) + (store.traffic(connection_id),)


def _points(store: Store, connection_id: str) -> list[tuple[int, ...]]:
    with store.db.transaction(write=False) as session:
        return [
            (p.bucket_ms, p.time_ms, p.bytes_in, p.bytes_out, p.packets_in, p.packets_out)
            for p in session.scalars(
                select(VpnConnectionTrafficPoint)
                .where(VpnConnectionTrafficPoint.vpn_connection_id == connection_id)
                .order_by(VpnConnectionTrafficPoint.bucket_ms)
            )
        ]


@contextmanager
def counted(store: Store) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(store.db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(store.db.engine, "before_cursor_execute", count)


def test_stores_what_the_one_at_a_time_functions_store(store: Store) -> None:
    one_at_a_time, batched = store.first, store.second
    for step, (status, diagnosis, traffic, now_ms) in enumerate(STEPS):
        lines = [(now_ms, f"[IKE] step {step}"), (now_ms, f"[CFG] step {step} again")]
        with store.db.transaction(write=True) as session:
            before = queries.write_observation(
                session,
                one_at_a_time,
                status=status,
                diagnosis=diagnosis,
                traffic=traffic,
                now_ms=now_ms,
                observed_by="n1",
            )
            queries.add_connection_logs(session, [(one_at_a_time, t, m) for t, m in lines])
        with store.db.transaction(write=True) as session:
            written = record_gateway_pass(
                session,
                [ConnectionObservation(batched, status, diagnosis, traffic)],
                [(batched, t, m) for t, m in lines],
                now_ms=now_ms,
                observed_by="n1",
            )
        assert written.changed == ([batched] if before else []), step
        assert written.lines == 2
        assert (written.other_observations, written.other_lines) == ([], [])
        assert _row(store, batched) == _row(store, one_at_a_time), step
        assert _points(store, batched) == _points(store, one_at_a_time), step
        assert [m for _t, m in store.lines(batched)] == [m for _t, m in store.lines(one_at_a_time)]
    assert _row(store, batched) == ("ike_sa_not_established", "", 13_000, "n1", None)
    # Two buckets of history: the last counters of each.
    assert [p[:3] for p in _points(store, batched)] == [(0, 5_000, 900), (10_000, 12_000, 950)]


def test_several_connections_in_a_fixed_number_of_statements(store: Store) -> None:
    a, b = store.first, store.second
    observations = [
        ConnectionObservation(b, "ipsec_sa_established", "", TRAFFIC),
        ConnectionObservation(a, "ipsec_sa_established", "", {**TRAFFIC, "BytesIn": 1}),
        ConnectionObservation("vco-gone", "ipsec_sa_established", "", TRAFFIC),
        ConnectionObservation(a, "ike_sa_established", "", None),  # the last word on a wins
    ]
    lines = [
        (a, 5, "[IKE] one"),
        ("tun-other", 5, "[IKE] a tunnel's"),
        (b, 5, "[IKE] two"),
        (a, 6, "[IKE] three"),
    ]
    with counted(store) as statements, store.db.transaction(write=True) as session:
        written = record_gateway_pass(session, observations, lines, now_ms=7_000, observed_by="n2")
    # lock, update, history upsert, retention delete, log insert (and BEGIN/COMMIT on SQLite)
    assert len([s for s in statements if s.split()[0].upper() not in ("BEGIN", "COMMIT")]) == 5
    assert written.changed == sorted([a, b])  # in id order
    assert written.lines == 3
    assert written.other_observations == [observations[2]]
    assert written.other_lines == [("tun-other", 5, "[IKE] a tunnel's")]
    assert _row(store, a) == ("ike_sa_established", "", 7_000, "n2", None)
    assert _row(store, b) == ("ipsec_sa_established", "", 7_000, "n2", TRAFFIC)
    assert _points(store, a) == [] and len(_points(store, b)) == 1
    assert store.lines(a) == [(5, "[IKE] one"), (6, "[IKE] three")]
    assert store.lines(b) == [(5, "[IKE] two")]
    with store.db.transaction(write=True) as session:
        assert record_gateway_pass(session, [], [], now_ms=8_000, observed_by="n2").changed == []


def test_history_older_than_the_retention_goes(store: Store) -> None:
    a = store.first
    with store.db.transaction(write=True) as session:
        traffic_history.record_many(session, [(a, TRAFFIC)], 1_000)
    later = 1_000 + traffic_history.RETENTION_MS + traffic_history.BUCKET_MS
    with store.db.transaction(write=True) as session:
        record_gateway_pass(
            session,
            [ConnectionObservation(a, "ipsec_sa_established", "", TRAFFIC)],
            [],
            now_ms=later,
            observed_by=None,
        )
    assert [p[1] for p in _points(store, a)] == [later]
