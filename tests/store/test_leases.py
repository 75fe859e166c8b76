"""Node and lease rows on SQLite and on a real PostgreSQL: one holder, whatever races."""

from __future__ import annotations

import threading

from tests.conftest import prepared
from tests.support.api import Api, build_world
from vpngw.config import Settings
from vpngw.store import leases
from vpngw.store.engine import Database

LEASE_MS = 5000


def test_concurrent_takers_of_one_lease_get_exactly_one_winner(settings: Settings, api: Api) -> None:
    gateway_id = build_world(api).vpn_gateway_id
    db = Database(settings.db_url)
    with db.transaction(write=True) as session:
        leases.sync_lease_rows(session, now_ms=1000)
    barrier = threading.Barrier(8)
    winners: list[str] = []

    def take(node: str) -> None:
        barrier.wait()
        with db.transaction(write=True) as session:
            if leases.acquire(session, gateway_id, node, now_ms=1000, lease_ms=LEASE_MS, skew_ms=500):
                winners.append(node)

    threads = [threading.Thread(target=take, args=(f"n{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    with db.transaction(write=True) as session:
        (row,) = [r for r in leases.leases(session) if r.vpn_gateway_id == gateway_id]
        assert (row.holder, row.epoch) == (winners[0], 1)
        # Nobody takes a lease that has not run out, nor one that ran out within the skew.
        assert not leases.acquire(session, gateway_id, "other", now_ms=5900, lease_ms=LEASE_MS, skew_ms=500)
        assert not leases.acquire(session, gateway_id, "other", now_ms=6400, lease_ms=LEASE_MS, skew_ms=500)
        assert leases.acquire(session, gateway_id, "other", now_ms=6600, lease_ms=LEASE_MS, skew_ms=500)
        assert leases.renew(session, winners[0], now_ms=6600, lease_ms=LEASE_MS) == set()
        assert leases.renew(session, "other", now_ms=7000, lease_ms=LEASE_MS) == {gateway_id}
        (row,) = [r for r in leases.leases(session) if r.vpn_gateway_id == gateway_id]
        assert (row.holder, row.previous_holder, row.epoch, row.expires_ms) == ("other", winners[0], 2, 12000)
    db.dispose()


def test_a_deleted_gateway_s_lease_stays_until_released_and_pins_hold(settings: Settings, api: Api) -> None:
    world = build_world(api)
    db = Database(settings.db_url)
    with db.transaction(write=True) as session:
        leases.sync_lease_rows(session, now_ms=1000)
        assert leases.acquire(session, world.vpn_gateway_id, "a", now_ms=1000, lease_ms=LEASE_MS, skew_ms=500)
    api.ok("DeleteVpnGateway", VpnGatewayId=world.vpn_gateway_id)
    with db.transaction(write=True) as session:
        leases.sync_lease_rows(session, now_ms=2000)
        (row,) = leases.leases(session)
        assert (row.holder, row.exists, row.internet_ip) == ("a", False, world.internet_ip)
        assert row.vpc_next_hop == "100.64.0.2"  # kept with the lease, guarding it too
        assert leases.release(session, world.vpn_gateway_id, "a")
        leases.sync_lease_rows(session, now_ms=2000)
        assert leases.leases(session) == []

    other = build_world(api, customer_ip="198.19.0.11").vpn_gateway_id
    with db.transaction(write=True) as session:
        assert leases.pin(session, other, "b")
        assert not leases.pin(session, "vpn-nosuchgateway", "b")
        assert not leases.acquire(session, other, "a", now_ms=3000, lease_ms=LEASE_MS, skew_ms=500)
        assert leases.acquire(session, other, "b", now_ms=3000, lease_ms=LEASE_MS, skew_ms=500)
        assert leases.holders(session, [other], now_ms=3000) == {other: "b"}
        assert leases.holders(session, [other], now_ms=9000) == {}
    db.dispose()


def test_heartbeats_keep_a_node_s_draining_flag(settings: Settings) -> None:
    db, _ = prepared(settings)
    with db.transaction(write=True) as session:
        leases.heartbeat(
            session, node="a", backend="host", addresses=["192.0.2.1"], capacity=10, now_ms=1, starting=True
        )
        assert leases.set_draining(session, "a", True)
        assert not leases.set_draining(session, "nobody", True)
        leases.heartbeat(session, node="a", backend="host", addresses=["192.0.2.1"], capacity=10, now_ms=2)
        (node,) = leases.nodes(session)
        assert (node.heartbeat_ms, node.started_ms, node.draining, node.capacity) == (2, 1, True, 10)
        assert leases.forget_node(session, "a")
        assert leases.nodes(session) == []
    db.dispose()


def test_a_lost_gateway_s_connections_read_not_established_with_the_node_named(
    settings: Settings, api: Api
) -> None:
    from tests.support.api import connection_params

    world = build_world(api)
    connection_id = api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    db = Database(settings.db_url)
    with db.transaction(write=True) as session:
        from vpngw.store import queries

        queries.write_observation(
            session,
            connection_id,
            status="ipsec_sa_established",
            diagnosis="",
            traffic={"BytesIn": 1, "BytesOut": 1, "PacketsIn": 1, "PacketsOut": 1},
            now_ms=5,
        )
    with db.transaction(write=True) as session:
        assert (
            leases.mark_gateway_lost(session, world.vpn_gateway_id, "node n1 stopped answering", now_ms=9)
            == 1
        )
        assert (
            leases.mark_gateway_lost(session, world.vpn_gateway_id, "node n1 stopped answering", now_ms=9)
            == 0
        )
    described = api.ok("DescribeVpnConnection", VpnConnectionId=connection_id)
    assert (described["Status"], described["Diagnosis"]) == (
        "ike_sa_not_established",
        "node n1 stopped answering",
    )
    db.dispose()


def test_a_dual_tunnel_gateway_has_a_lease_per_address_and_a_lost_one_marks_its_tunnels(
    settings: Settings, api: Api
) -> None:
    from tests.nodes.dual import make_dual_connection
    from vpngw.store import queries

    dual = make_dual_connection(api, settings.db_url)
    gateway_id, second = dual.vpn_gateway_id, leases.lease_key(dual.vpn_gateway_id, 2)
    db = Database(settings.db_url)
    with db.transaction(write=True) as session:
        leases.sync_lease_rows(session, now_ms=1000)
        rows = {row.vpn_gateway_id: row for row in leases.leases(session)}
        assert set(rows) == {gateway_id, second}
        assert (rows[second].internet_ip, rows[second].exists, rows[second].gateway) == (
            dual.addresses[1],
            True,
            gateway_id,
        )
        assert leases.acquire(session, gateway_id, "a", now_ms=1000, lease_ms=LEASE_MS, skew_ms=500)
        assert leases.acquire(session, second, "b", now_ms=1000, lease_ms=LEASE_MS, skew_ms=500)
        assert leases.address_holders(session, [gateway_id], now_ms=2000) == {
            (gateway_id, 1): "a",
            (gateway_id, 2): "b",
        }
        queries.record_tunnel_observations(
            session,
            [queries.TunnelObservation(t, "ipsec_sa_established", "", None) for t in dual.tunnel_ids],
            now_ms=1500,
            observed_by="a",
        )
    with db.transaction(write=True) as session:
        # Node b is lost: only tunnel 2 (on b's address) reads down; the connection row is untouched.
        assert leases.mark_gateway_lost(session, second, "node b stopped answering", now_ms=2000) == 1
        assert leases.mark_gateway_lost(session, second, "node b stopped answering", now_ms=2000) == 0
        (tunnels,) = queries.tunnels_of(session, [dual.connection_id]).values()
        assert [(t.tunnel_index, t.status, t.diagnosis) for t in tunnels] == [
            (1, "ipsec_sa_established", ""),
            (2, "ike_sa_not_established", "node b stopped answering"),
        ]
        # A tunnel's log lines are kept under its TunnelId; unknown ids are dropped.
        assert (
            queries.add_connection_logs(session, [(dual.tunnel_ids[1], 5, "up"), ("tun-nosuch", 5, "x")]) == 1
        )
        # The second address pins on its own.
        assert leases.pin(session, second, "c")
        assert not leases.pin(session, leases.lease_key("vpn-nosuchgateway", 2), "c")
        assert {r.vpn_gateway_id: r.pinned_node for r in leases.leases(session)} == {
            gateway_id: None,
            second: "c",
        }
    db.dispose()
