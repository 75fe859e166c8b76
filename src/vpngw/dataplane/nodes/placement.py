"""Which node runs which VPN gateway: leases in the database, kept by every node.

A node (``vpngw agent --node NAME``, or ``vpngw serve``'s own data plane) runs a
:class:`LeaseKeeper`. Every ``renew_s`` it, in one transaction: refreshes its heartbeat,
renews every lease it holds, gives a lease row to every new gateway, and takes the free
gateways that the placement rule (:func:`plan`) gives it. The reconciler then realises
exactly the gateways the keeper holds, and removes every other gateway it finds locally,
before anything else on a (re)start: a node that comes back never fights the new holder.

Fencing: a node answers for a gateway only while its lease is valid *by its own clock*:
``valid_until`` is the start of the last successful renewal plus the lease time minus a
margin. A watchdog thread (no database needed) fences every gateway once that passes,
and the host backend gives the InternetIp a kernel lifetime of what is left, so even a
node killed with ``kill -9`` stops answering before another node may take its leases
(which needs the expiry *plus* ``skew_s`` by the taker's clock). docs/nodes.md has the
timings.

A round that would decide nothing is cheap (:class:`LeaseKeeper`, "quiet rounds"): it
renews and compares a few counts the database computes (:func:`vpngw.store.leases.summary`)
with those of the last full round; only when they differ, or every ``FULL_ROUND_EVERY_S``,
does it read every lease row and run the placement.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vpngw.dataplane.backends.base import NetworkBackend
from vpngw.store import leases as lease_store
from vpngw.store.engine import Database
from vpngw.store.leases import LeaseRow, NodeRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# A quiet round (nothing to decide) is trusted for at most this long: then a full round
# reads every lease and runs the placement anyway, whatever the counts say (a heal, in case
# a change ever slipped past them; 1-2 ms a second at 1,000 gateways, docs/benchmarks.md).
FULL_ROUND_EVERY_S = 10.0
# The fencing watchdog's longest sleep while this node holds nothing (a new hold wakes it).
FENCE_IDLE_WAIT_S = 1.0


@dataclass(frozen=True)
class LeaseTiming:
    """The lease protocol's clock (seconds)."""

    lease_s: float = 5.0
    renew_s: float = 1.0
    # A lease is taken over only this long after it ran out by the taker's clock.
    skew_s: float = 0.25
    # A holder stops answering this long before its lease runs out by its own clock.
    fence_margin_s: float = 0.5
    # A node's first round only registers it; its second comes this long after (not a
    # whole renewal): nodes started together have registered by then and share the free
    # gateways out, and a cold fleet does not wait a renewal for its first leases.
    settle_s: float = 0.4

    def __post_init__(self) -> None:
        if not (0 < self.renew_s and self.renew_s * 2 + self.fence_margin_s < self.lease_s):
            raise ValueError("lease time must exceed two renewals plus the fencing margin")


@dataclass(frozen=True)
class NodeIdentity:
    name: str
    backend: str
    addresses: tuple[str, ...] = ()
    capacity: int = 100


@dataclass(frozen=True)
class Plan:
    """What one node does with the leases after a renewal."""

    take: tuple[str, ...] = ()
    give_away: tuple[str, ...] = ()
    # Gateways whose holder stopped heartbeating, which this node reports as lost.
    lost: tuple[tuple[str, str], ...] = ()
    # When (ms) the first lease of a node that stopped heartbeating may be taken: the
    # keeper runs its next round then rather than at its usual period.
    next_takeover_ms: int | None = None


def live_nodes(nodes: Iterable[NodeRow], *, now_ms: int, lease_ms: int) -> dict[str, NodeRow]:
    return {n.name: n for n in nodes if n.heartbeat_ms >= now_ms - lease_ms}


def plan(
    me: str, leases: Iterable[LeaseRow], nodes: Iterable[NodeRow], *, now_ms: int, timing: LeaseTiming
) -> Plan:
    """Pure placement: every node computes the same assignment from the same rows.

    A free gateway address (no holder, or a lease that ran out more than ``skew_s`` ago)
    goes to the live, non-draining node with the lowest load per capacity (ties: the
    name), counting what the plan has handed out so far; a pinned one goes to its pinned
    node only. The two addresses of a dual-tunnel gateway go to two different nodes
    whenever two can take them (anti-affinity: a node that holds, or was just given, one
    of them is passed over for the other while another node can take it). Addresses
    pinned elsewhere, or held by a draining node, are given away by their holder; so is
    a dual-tunnel gateway's second address whose holder also holds the first while
    another node could take it (both ended up on one node while it was the only one
    live). Nothing moves otherwise: a node that joins takes new and orphaned gateways, it
    does not steal held ones.
    """
    lease_ms, skew_ms = int(timing.lease_s * 1000), int(timing.skew_s * 1000)
    rows = list(leases)
    live = live_nodes(nodes, now_ms=now_ms, lease_ms=lease_ms)
    takers = {name: node for name, node in live.items() if not node.draining}
    load = {name: 0 for name in takers}
    free: list[LeaseRow] = []
    # Addresses some node may still answer for (its lease has not run out, skew included).
    guarded: set[str] = set()
    # Gateway -> the nodes that hold (or are planned to take) one of its addresses.
    placed: dict[str, set[str]] = {}
    for lease in rows:
        if lease.holder is not None and lease.expires_ms >= now_ms - skew_ms:
            guarded.add(lease.internet_ip)
            if lease.vpc_next_hop is not None:
                guarded.add(lease.vpc_next_hop)
            placed.setdefault(lease.gateway, set()).add(lease.holder)
            if lease.holder in load:
                load[lease.holder] += 1
        elif lease.exists:
            free.append(lease)
    take: list[str] = []
    for lease in free:
        if lease.internet_ip in guarded or lease.vpc_next_hop in guarded:
            continue  # a deleted gateway with the same address is not torn down yet
        if lease.pinned_node is not None:
            candidates = [lease.pinned_node] if lease.pinned_node in takers else []
        else:
            candidates = sorted(takers)
        apart = [name for name in candidates if name not in placed.get(lease.gateway, set())]
        candidates = apart or candidates
        if not candidates:
            continue
        chosen = min(candidates, key=lambda name: (load[name] / max(takers[name].capacity, 1), name))
        load[chosen] += 1
        placed.setdefault(lease.gateway, set()).add(chosen)
        if chosen == me:
            take.append(lease.vpn_gateway_id)
    draining = me in live and live[me].draining
    mine = {lease.vpn_gateway_id for lease in rows if lease.holder == me and lease.exists}
    others = set(takers) - {me}
    give_away = tuple(
        lease.vpn_gateway_id
        for lease in rows
        if lease.holder == me
        and (
            draining
            or not lease.exists
            or lease.pinned_node not in (None, me)
            or (
                lease.tunnel_index == 2
                and lease.pinned_node is None
                and lease.gateway in mine
                and bool(others)
            )
        )
    )
    # A holder whose heartbeat is two renewals late has lost the database or died: its
    # gateways are reported lost at once (by one node: the first other taker by name),
    # not only when their leases run out. The holder, if it was only slow, rewrites its
    # observations at its next successful round (LeaseKeeper.continuity).
    heard = {n.name for n in nodes if n.heartbeat_ms >= now_ms - 2 * int(timing.renew_s * 1000)}
    lost = tuple(
        (lease.vpn_gateway_id, lease.holder)
        for lease in rows
        if lease.holder is not None
        and lease.holder != me
        and lease.exists
        and lease.holder not in heard
        and (lease.vpn_gateway_id in take or me == min(set(takers) - {lease.holder}, default=None))
    )
    pending = [
        lease.expires_ms + skew_ms
        for lease in rows
        if lease.holder not in heard
        and lease.holder is not None
        and lease.holder != me
        and lease.expires_ms + skew_ms >= now_ms
    ]
    return Plan(tuple(take), give_away, lost, min(pending) + 1 if pending else None)


@dataclass(frozen=True)
class _Quiet:
    """What the last full round saw when it decided nothing: a round whose counts are the
    same renews and keeps this, without reading the lease rows or running :func:`plan`."""

    key: tuple[object, ...]
    held_count: int  # every lease row this node holds (gateways deleted included)
    gateways: dict[str, str]
    next_hops: dict[str, str]
    at: float  # monotonic


def liveness(nodes: Iterable[NodeRow], *, now_ms: int, timing: LeaseTiming) -> tuple[object, ...]:
    """What :func:`plan` reads of the nodes, apart from the leases: who is live, who was
    heard lately, who drains, with which capacity."""
    lease_ms, renew_ms = int(timing.lease_s * 1000), int(timing.renew_s * 1000)
    return tuple(
        (
            node.name,
            node.heartbeat_ms >= now_ms - lease_ms,
            node.heartbeat_ms >= now_ms - 2 * renew_ms,
            node.draining,
            node.capacity,
        )
        for node in sorted(nodes, key=lambda node: node.name)
    )


@dataclass
class _Held:
    gateways: dict[str, str] = field(default_factory=dict)  # id -> InternetIp
    valid_until: float = float("-inf")  # monotonic
    next_hops: dict[str, str] = field(default_factory=dict)  # id -> VPC-side next hop


class LeaseKeeper:
    """Keeps this node's leases, on two threads of its own (renewal, fencing watchdog)."""

    def __init__(
        self,
        db: Database,
        identity: NodeIdentity,
        backend: NetworkBackend,
        *,
        timing: LeaseTiming | None = None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.identity = identity
        self.backend = backend
        self.timing = timing or LeaseTiming()
        self._on_change = on_change
        self._clock = clock
        self._held = _Held()
        self._giving_away: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        # Wakes the fencing watchdog early: when this node comes to hold something while it
        # held nothing (it sleeps up to FENCE_IDLE_WAIT_S then), and to stop.
        self._watch_wakeup = threading.Event()
        self.watch_wakeups = 0  # how many times the watchdog looked (tests, benchmarks)
        self._threads: list[threading.Thread] = []
        self._next_round_s = self.timing.renew_s
        self._round_started = time.monotonic()
        self.fenced = 0  # how many times this node fenced itself
        # Grows at the first successful round after a failed one: what this node wrote
        # before may have been overwritten meanwhile (its gateways reported lost), so the
        # reconciler writes its observations afresh.
        self.continuity = 0
        self._failed = False
        # The last full round, when it decided nothing (None: the next round is full).
        self._quiet: _Quiet | None = None
        self.full_rounds = 0  # how many rounds read every lease (tests, benchmarks)
        self.quiet_rounds = 0

    # -- what the reconciler asks ---------------------------------------------------

    def held(self) -> set[str]:
        with self._lock:
            if time.monotonic() >= self._held.valid_until:
                return set()
            return set(self._held.gateways) - self._giving_away

    def valid_s(self) -> float:
        """How long this node may still answer for what it holds, by its own clock (0 once
        fenced): the bound of any address it holds for a lease (the VPC-side next hop of a
        dual-tunnel gateway too)."""
        with self._lock:
            return max(0.0, self._held.valid_until - time.monotonic())

    def giving_away(self) -> frozenset[str]:
        with self._lock:
            return self._giving_away

    def released(self, vpn_gateway_id: str) -> None:
        """The reconciler tore a given-away gateway down: the lease may go."""
        try:
            with self.db.transaction(write=True) as session:
                lease_store.release(session, vpn_gateway_id, self.identity.name)
        except Exception as error:  # the next renewal sees it still held and asks again
            log.warning("releasing %s: %s", vpn_gateway_id, error)
            return
        with self._lock:
            self._held.gateways.pop(vpn_gateway_id, None)
            self._giving_away = self._giving_away - {vpn_gateway_id}
            self._quiet = None
        log.info("node %s gave gateway %s away", self.identity.name, vpn_gateway_id)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """The first renewal runs here, so the reconciler's first pass knows what is held."""
        self._renew_logged(starting=True)
        for target, name in ((self._run, "vpngw-leases"), (self._watch, "vpngw-fence")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop renewing. The leases run out by themselves (and with them, on the host
        backend, the InternetIps): a restart within the lease time keeps the tunnels."""
        self._stopping.set()
        self._wakeup.set()
        self._watch_wakeup.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def wake(self) -> None:
        self._wakeup.set()

    # -- the renewal --------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            # Due a period after the last round *started*: a slow round (a loaded node)
            # must not stretch the time between renewals toward the fence.
            self._wakeup.wait(max(0.0, self._round_started + self._next_round_s - time.monotonic()))
            self._wakeup.clear()
            if not self._stopping.is_set():
                self._renew_logged()

    def _renew_logged(self, *, starting: bool = False) -> None:
        self._round_started = time.monotonic()
        try:
            self.renew_once(starting=starting)
            if self._failed:
                self._failed = False
                self.continuity += 1
                self._on_change()
        except Exception as error:
            self._failed = True
            self._quiet = None
            log.warning(
                "node %s: renewing leases failed: %s (retrying; fenced if it lasts)",
                self.identity.name,
                error,
            )

    def renew_once(self, *, starting: bool = False) -> None:
        timing = self.timing
        lease_ms = int(timing.lease_s * 1000)
        started = time.monotonic()
        now_ms = int(self._clock() * 1000)
        me = self.identity.name
        with self._lock:
            quiet = self._quiet
        with self.db.transaction(write=True) as session:
            lease_store.heartbeat(
                session,
                node=me,
                backend=self.identity.backend,
                addresses=self.identity.addresses,
                capacity=self.identity.capacity,
                now_ms=now_ms,
                starting=starting,
            )
            node_rows = lease_store.nodes(session)
            key = self._round_key(session, node_rows, now_ms=now_ms)
            if (
                not starting
                and quiet is not None
                and quiet.key == key
                and started - quiet.at < FULL_ROUND_EVERY_S
                and lease_store.renew_counted(session, me, now_ms=now_ms, lease_ms=lease_ms)
                == quiet.held_count
            ):
                # Nothing the placement reads has changed since a full round that decided
                # nothing, and this node still holds every lease it held then (renewed).
                gateways, next_hops = quiet.gateways, quiet.next_hops
                decided = Plan()
                self.quiet_rounds += 1
            else:
                gateways, next_hops, decided, quiet = self._full_round(
                    session, node_rows, now_ms=now_ms, started=started, starting=starting
                )
        with self._lock:
            self._quiet = quiet
        in_database = time.monotonic() - started
        self._next_round_s = (
            min(self.timing.renew_s, self.timing.settle_s) if starting else self.timing.renew_s
        )
        if decided.next_takeover_ms is not None:
            self._next_round_s = max(
                0.01, min(self.timing.renew_s, decided.next_takeover_ms / 1000 - self._clock())
            )
        valid_until = started + timing.lease_s - timing.fence_margin_s
        with self._lock:
            before = (set(self._held.gateways), self._giving_away, self._held.valid_until > time.monotonic())
            newly_holding = bool(gateways) and not self._held.gateways
            self._held = _Held(dict(gateways), valid_until, dict(next_hops))
            self._giving_away = frozenset(decided.give_away) & set(self._held.gateways)
            after = (set(self._held.gateways), self._giving_away, True)
        if newly_holding:
            self._watch_wakeup.set()  # it may sleep past this hold's end otherwise
        for gateway_id, internet_ip in (
            sorted(self._held.gateways.items()) if self.backend.addresses_expire else ()
        ):
            try:
                self.backend.hold_internet_ip(gateway_id, internet_ip, valid_until - time.monotonic())
            except Exception as error:
                log.warning("refreshing the address of %s: %s", gateway_id, error)
        # The VPC-side next hop follows the same lease (a separate operation: a dual-tunnel
        # gateway binds it to its preferred live tunnel instead).
        for gateway_id, next_hop in (
            sorted(self._held.next_hops.items()) if self.backend.addresses_expire else ()
        ):
            try:
                self.backend.hold_vpc_next_hop(gateway_id, next_hop, valid_until - time.monotonic())
            except Exception as error:
                log.warning("refreshing the VPC-side next hop of %s: %s", gateway_id, error)
        took = time.monotonic() - started
        if took > timing.renew_s:
            log.warning(
                "node %s: a lease renewal took %.2f s (%.2f s in the database)",
                me,
                took,
                in_database,
            )
        if before != after:
            self._on_change()

    def _round_key(self, session: Session, node_rows: list[NodeRow], *, now_ms: int) -> tuple[object, ...]:
        """What a quiet round compares with the last full round (see :class:`_Quiet`)."""
        cut_ms = now_ms - int(self.timing.skew_s * 1000)
        return (
            lease_store.summary(session, self.identity.name, cut_ms=cut_ms),
            liveness(node_rows, now_ms=now_ms, timing=self.timing),
        )

    def _full_round(
        self, session: Session, node_rows: list[NodeRow], *, now_ms: int, started: float, starting: bool
    ) -> tuple[dict[str, str], dict[str, str], Plan, _Quiet | None]:
        """Every lease row read, the placement run, its decisions carried out: the held
        gateways (id -> InternetIp), their next hops, the plan, and what a quiet round may
        compare with next (None if this round decided something)."""
        timing = self.timing
        lease_ms, skew_ms = int(timing.lease_s * 1000), int(timing.skew_s * 1000)
        me = self.identity.name
        self.full_rounds += 1
        lease_store.sync_lease_rows(session, now_ms=now_ms)
        held = lease_store.renew(session, me, now_ms=now_ms, lease_ms=lease_ms)
        rows = lease_store.leases(session)
        decided = plan(me, rows, node_rows, now_ms=now_ms, timing=timing)
        for gateway_id, lost_node in () if starting else decided.lost:
            lease_store.mark_gateway_lost(
                session,
                gateway_id,
                f"The node running this gateway ({lost_node}) stopped answering; "
                "another node takes the gateway over when its lease runs out, and negotiates again.",
                now_ms=now_ms,
            )
        # A node that just started takes nothing new in its first round: nodes that
        # start together then see each other before they share the gateways out.
        for gateway_id in () if starting else decided.take:
            if lease_store.acquire(
                session, gateway_id, me, now_ms=now_ms, lease_ms=lease_ms, skew_ms=skew_ms
            ):
                held.add(gateway_id)
                log.info("node %s took gateway %s", me, gateway_id)
        addresses = {row.vpn_gateway_id: row.internet_ip for row in rows}
        # A dual-tunnel gateway's next hop is not bound to a lease: the partner watch gives it
        # to the node of the preferred live tunnel (observe/partner_watch.py).
        dual = {row.gateway for row in rows if row.tunnel_index == 2 and row.exists}
        next_hops = {
            row.vpn_gateway_id: row.vpc_next_hop
            for row in rows
            if row.vpc_next_hop is not None and row.gateway not in dual
        }
        gateways = {g: addresses[g] for g in held if g in addresses}
        held_next_hops = {g: next_hops[g] for g in held if g in next_hops}
        settled = not (
            starting
            or decided.take
            or decided.give_away
            or decided.lost
            or decided.next_takeover_ms is not None
        )
        quiet = (
            _Quiet(
                self._round_key(session, node_rows, now_ms=now_ms),
                len(held),
                gateways,
                held_next_hops,
                started,
            )
            if settled
            else None
        )
        return gateways, held_next_hops, decided, quiet

    # -- fencing --------------------------------------------------------------------------

    def _watch(self) -> None:
        """Fence the moment what this node holds runs out unrenewed. It sleeps until then
        (a renewal only moves that moment later, so waking at the old one and sleeping again
        is exact; a hold that starts while nothing was held wakes it), not in 0.1-s polls:
        ten wake-ups a second were 0.0017 cores of an idle node (docs/benchmarks.md, "Issue
        18, next session")."""
        while not self._stopping.is_set():
            self.watch_wakeups += 1
            with self._lock:
                now = time.monotonic()
                expired = now >= self._held.valid_until and bool(self._held.gateways)
                gateways = sorted(self._held.gateways) if expired else []
                if expired:
                    self._held = _Held()
                    self._giving_away = frozenset()
                    self._quiet = None
                wait_s = self._held.valid_until - now if self._held.gateways else FENCE_IDLE_WAIT_S
            if gateways:
                self.fenced += 1
                log.warning(
                    "node %s could not renew its leases in time: fencing %d gateways",
                    self.identity.name,
                    len(gateways),
                )
                for gateway_id in gateways:
                    try:
                        self.backend.fence(gateway_id)
                    except Exception as error:
                        log.warning("fencing %s: %s", gateway_id, error)
                self._on_change()
            self._watch_wakeup.wait(max(0.0, wait_s))
            self._watch_wakeup.clear()  # what woke it is read afresh at the top
