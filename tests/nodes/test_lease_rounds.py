"""The lease keeper's quiet rounds, on SQLite and on a real PostgreSQL: a round that would
decide nothing renews without reading the lease rows, and every change the placement
depends on still reaches the very next round.

The keeper runs here without its threads (``renew_once`` called by the test) and with a
clock of the test's, over a store filled through the API. Its network backend is a fake
(``RecordingBackend``, it only records what it is asked): the lease protocol is what is
under test, not the addresses.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api import Api
from vpngw.config import Settings
from vpngw.dataplane.nodes import placement
from vpngw.dataplane.nodes.placement import LeaseKeeper, LeaseTiming, NodeIdentity
from vpngw.store import leases as lease_store
from vpngw.store.engine import Database

TIMING = LeaseTiming()
LEASE_MS = int(TIMING.lease_s * 1000)


class RecordingBackend:
    """A fake network backend: records the addresses it is asked to hold, holds nothing."""

    kind = "host"
    addresses_expire = True

    def __init__(self) -> None:
        self.held: dict[str, float] = {}
        self.holds = 0
        self.next_hops: dict[str, str] = {}
        self.fenced: list[str] = []

    def hold_internet_ip(self, vpn_gateway_id: str, internet_ip: str, valid_s: float) -> None:
        self.held[vpn_gateway_id] = valid_s
        self.holds += 1

    def hold_vpc_next_hop(self, vpn_gateway_id: str, address: str, valid_s: float) -> None:
        self.next_hops[vpn_gateway_id] = address

    def fence(self, vpn_gateway_id: str) -> None:
        self.fenced.append(vpn_gateway_id)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(settings: Settings, api: Api) -> Iterator[Database]:
    database = Database(settings.db_url)
    yield database
    database.dispose()


def gateways(api: Api, count: int) -> list[str]:
    vpc = api.ok("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
    return [api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=10)["VpnGatewayId"] for _ in range(count)]


def keeper(db: Database, clock: Clock, name: str = "n1") -> LeaseKeeper:
    keeper = LeaseKeeper(db, NodeIdentity(name, "lab"), RecordingBackend(), timing=TIMING, clock=clock)  # type: ignore[arg-type]  # a fake backend
    keeper.renew_once(starting=True)
    keeper.renew_once()  # the first round only registers; the second takes
    return keeper


class FullReads:
    """Counts the full reads of the lease rows (``leases.leases``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = lease_store.leases

        def counted(session: Any) -> list[lease_store.LeaseRow]:
            self.count += 1
            return original(session)

        monkeypatch.setattr(lease_store, "leases", counted)


def test_a_round_with_nothing_to_decide_renews_without_reading_the_leases(
    db: Database, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = gateways(api, 3)
    clock = Clock()
    node = keeper(db, clock)
    assert node.held() == set(ids)
    node.renew_once()  # the round after the takes settles (it decides nothing)
    reads = FullReads(monkeypatch)
    backend = node.backend
    assert isinstance(backend, RecordingBackend)
    holds = backend.holds
    for _ in range(5):
        clock.now += TIMING.renew_s
        node.renew_once()
    assert reads.count == 0
    assert node.quiet_rounds >= 5
    assert node.held() == set(ids) and node.valid_s() > TIMING.lease_s - TIMING.fence_margin_s - 1
    # A quiet round still refreshes the addresses' lifetimes (the host's kernel drops them
    # by itself otherwise: the fence of a node killed with kill -9).
    assert backend.holds == holds + 5 * len(ids)
    assert set(backend.held) == set(ids)
    assert min(backend.held.values()) > TIMING.lease_s - TIMING.fence_margin_s - 1
    # ... and the leases were renewed in the database all the same.
    now_ms = int(clock.now * 1000)
    with db.transaction(write=False) as session:
        assert {row.vpn_gateway_id: row.expires_ms for row in lease_store.leases(session)} == dict.fromkeys(
            ids, now_ms + LEASE_MS
        )
        assert lease_store.holders(session, ids, now_ms=now_ms + LEASE_MS - 1) == dict.fromkeys(ids, "n1")


def test_every_change_the_placement_reads_reaches_the_next_round(db: Database, api: Api) -> None:
    first, second = gateways(api, 2)
    clock = Clock()
    node = keeper(db, clock)
    node.renew_once()

    def round_() -> None:
        clock.now += TIMING.renew_s
        node.renew_once()

    # A new gateway: taken at the next round.
    (third,) = gateways(api, 1)
    round_()
    assert node.held() == {first, second, third}
    round_()
    # Pinned to another node: given away at the next round.
    with db.transaction(write=True) as session:
        assert lease_store.pin(session, second, "n2")
    round_()
    assert node.giving_away() == {second}
    node.released(second)
    round_()
    assert node.held() == {first, third} and node.giving_away() == frozenset()
    # Unpinned (nobody took it: n2 never ran): this node takes it back at the next round.
    with db.transaction(write=True) as session:
        assert lease_store.pin(session, second, None)
    round_()
    assert node.held() == {first, second, third}
    round_()
    # Another node registers and takes a lease this node lost (its row run out, as after
    # a pause of this node): this node no longer counts it as its own.
    with db.transaction(write=True) as session:
        later_ms = int(clock.now * 1000) + LEASE_MS + 1000
        lease_store.heartbeat(session, node="n2", backend="lab", addresses=(), capacity=100, now_ms=later_ms)
        assert lease_store.acquire(session, third, "n2", now_ms=later_ms, lease_ms=LEASE_MS, skew_ms=250)
    round_()
    assert node.held() == {first, second}
    # A deleted gateway: given away at the next round (its charon is torn down first).
    round_()
    api.ok("DeleteVpnGateway", VpnGatewayId=first)
    round_()
    assert node.giving_away() == {first}


def test_a_silent_node_s_gateways_are_taken_when_its_leases_run_out(db: Database, api: Api) -> None:
    (gateway,) = gateways(api, 1)
    clock = Clock()
    other = keeper(db, clock, "n0")  # takes it: it is the only node
    assert other.held() == {gateway}
    node = keeper(db, clock, "n1")
    for _ in range(3):
        clock.now += TIMING.renew_s
        other.renew_once()
        node.renew_once()
    assert node.held() == set() and node.quiet_rounds >= 1
    # n0 stops: n1 reports the gateway lost and takes it once the lease ran out (+ skew).
    for _ in range(int((TIMING.lease_s + TIMING.skew_s) / TIMING.renew_s) + 2):
        clock.now += TIMING.renew_s
        node.renew_once()
    assert node.held() == {gateway}


def test_a_full_round_runs_at_least_every_full_round_period(
    db: Database, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateways(api, 2)
    clock = Clock()
    node = keeper(db, clock)
    node.renew_once()
    monkeypatch.setattr(placement, "FULL_ROUND_EVERY_S", 0.0)
    reads = FullReads(monkeypatch)
    node.renew_once()
    node.renew_once()
    assert reads.count == 2


def test_a_connection_s_change_leaves_the_round_quiet_and_a_next_hop_given_later_is_held(
    db: Database, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import update

    from vpngw.store import queries
    from vpngw.store.models import VpnGateway

    (gateway,) = gateways(api, 1)
    # A gateway created before its API server had a next-hop pool: none yet.
    with db.transaction(write=True) as session:
        session.execute(update(VpnGateway).where(VpnGateway.id == gateway).values(vpc_next_hop=None))
    clock = Clock()
    node = keeper(db, clock)
    node.renew_once()
    customer = api.ok("CreateCustomerGateway", IpAddress="198.19.0.10")["CustomerGatewayId"]
    reads = FullReads(monkeypatch)
    api.ok(
        "CreateVpnConnection",
        VpnGatewayId=gateway,
        CustomerGatewayId=customer,
        LocalSubnet="10.1.1.0/24",
        RemoteSubnet="10.10.1.0/24",
    )
    clock.now += TIMING.renew_s
    node.renew_once()
    assert reads.count == 0  # the write moved nothing the placement reads
    backend = node.backend
    assert isinstance(backend, RecordingBackend)
    assert backend.next_hops == {}
    # An API server with a next-hop pool gives the gateway its next hop: held next round.
    with db.transaction(write=True) as session:
        queries.set_vpc_next_hop(session, gateway, "10.255.0.9")
    clock.now += TIMING.renew_s
    node.renew_once()
    assert backend.next_hops == {gateway: "10.255.0.9"}


def test_the_fencing_watchdog_sleeps_until_the_hold_runs_out_and_fences_then(db: Database, api: Api) -> None:
    """The watchdog wakes when what the node holds would run out, not ten times a second,
    and still fences at that moment when no renewal came (the keeper's own renewal thread
    is not started here: renew_once is called by the test, so it simply stops renewing)."""
    ids = gateways(api, 2)
    clock = Clock()
    node = keeper(db, clock)
    backend = node.backend
    assert isinstance(backend, RecordingBackend)
    watchdog = placement.threading.Thread(target=node._watch, daemon=True)  # noqa: SLF001 - the fencing thread alone
    watchdog.start()
    try:
        for _ in range(8):  # renewals every 0.25 s for 2 s: the hold never runs out
            time.sleep(0.25)
            clock.now += 0.25
            node.renew_once()
        assert backend.fenced == []
        assert node.watch_wakeups <= 4  # it polled every 0.1 s: about 20
        renewed_at = time.monotonic()
        valid_s = node.valid_s()
        deadline = renewed_at + valid_s + 2.0
        while not backend.fenced and time.monotonic() < deadline:
            time.sleep(0.02)
        fenced_after = time.monotonic() - renewed_at
        assert sorted(backend.fenced) == sorted(ids)
        assert valid_s - 0.1 <= fenced_after <= valid_s + 0.3  # at the hold's end, not later
        assert node.held() == set()
    finally:
        node._stopping.set()  # noqa: SLF001
        node._watch_wakeup.set()  # noqa: SLF001
        watchdog.join(timeout=5)
