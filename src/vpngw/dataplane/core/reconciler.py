"""The reconciler: makes the lab's charons match the store, and reports back.

Level-triggered, like a kopf operator or neutron-vpnaas's full-state sync, but a pass
touches only what changed, and healing is spread out:

* the **full pass**, first of all (and after this node's lease renewals failed and
  recovered, or on :meth:`Reconciler.heal`): it reads the whole desired state from the
  store (:func:`~.from_store.load_desired`), makes every gateway this node holds
  (:mod:`.placement`; all of them without leases) match it
  (:class:`~.gateway_agent.GatewayAgent`), removes gateways that no longer exist, and
  writes what charon holds back to the store (``Status``, diagnosis, traffic, log lines).
* the **ordinary pass**, every ``period_s`` and on every wake-up: it reads each gateway's
  change stamp (:mod:`vpngw.store.desired_generation`, one query) and reloads only the
  gateways whose stamp moved; it then looks only at the gateways with something to do:
  a desired state that changed, a lease just taken, an event of their charon since the
  last look (an SA up or down, a log line of a connection, the event stream ending),
  something to watch (an SA up: its traffic every ``TRAFFIC_WRITE_S``; a negotiation in
  progress, a retry pending, a dual-tunnel address: every pass), a backoff that is over.
  An idle gateway costs nothing between heals: no store read, no ``list-sas``, no
  diagnosis.
* the **heal**, spread over the ordinary passes: each heals a slice of the gateways (so
  that every one is healed once per ``HEAL_EVERY_S``): their desired state read afresh and
  a full look, whatever the stamps and events said; the whole-set work (prober targets,
  partner watch, gateways found here that the store no longer holds) every 45-60 s. What
  a lost event or a missed stamp leaves behind heals there, and no pass does a fleet's
  worth of work at once (a change arriving meanwhile would wait behind it).

A wake-up (:meth:`Reconciler.wake`: the API calls it after every write, carrying no
data) runs an ordinary pass at once. Errors are handled kopf's way: a temporary error
(charon unreachable, a command failing) is logged and retried; one gateway's failure
never stops the others.

Errors act as they say (:mod:`vpngw.dataplane.errors`): a ``PermanentError`` of one
connection (a spec that cannot be realised, a connection charon refuses) is written on
that connection (``Status`` not established, ``Diagnosis`` naming the error) and is not
tried again until the connection is modified; the gateway's other connections go on. A
``TemporaryError`` of a gateway (charon unreachable, a failed ``ip`` command) is retried
after its ``delay``, doubling on each failure in a row up to ``BACKOFF_MAX_S``; a change
of the gateway's desired state retries at once.
"""

from __future__ import annotations

import bisect
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from vpngw import metrics
from vpngw.dataplane.backends.base import NetworkBackend
from vpngw.dataplane.core.gateway_agent import AgentObservation, GatewayAgent
from vpngw.dataplane.errors import DataplaneError, PermanentError, TemporaryError
from vpngw.dataplane.nodes.placement import LeaseKeeper
from vpngw.dataplane.observe import liveness_report
from vpngw.dataplane.observe.connection_logs import LogLine
from vpngw.dataplane.observe.diagnosis import diagnose
from vpngw.dataplane.observe.partner_watch import PartnerWatch, WatchedAddress
from vpngw.dataplane.observe.prober import Prober, ProbeTarget
from vpngw.dataplane.observe.status import Observed, Traffic
from vpngw.dataplane.spec.desired import ConnectionSpec
from vpngw.dataplane.spec.from_store import GatewayState, load_desired
from vpngw.dataplane.spec.render import child_names, render_connection
from vpngw.sealing import Sealer
from vpngw.store import desired_generation, freshness, observations, queries
from vpngw.store.engine import Database
from vpngw.store.leases import lease_unit

log = logging.getLogger(__name__)

DEFAULT_PERIOD_S = 1.0
GATEWAYS_IN_PARALLEL = 4
# Negotiation log lines are kept this long (DescribeVpnConnectionLogs), pruned once a minute.
LOG_RETENTION_MS = 7 * 24 * 3600 * 1000
PRUNE_EVERY_S = 60.0
# Traffic counters change with every packet: stored at most this often per connection.
TRAFFIC_WRITE_S = 2.0
# A gateway whose pass fails with a TemporaryError waits its delay, doubled on every
# failure in a row, at most this long.
BACKOFF_MAX_S = 30.0
# A dual-tunnel gateway's VPC-side next hop without leases (one data plane per database)
# is held this long at a time, renewed by the partner watch.
UNLEASED_NEXT_HOP_S = 30.0
# Every gateway is healed (its desired state read afresh, charon listed, everything
# compared, whatever the change stamps and charon's events said: what they missed heals
# there) once in this long, a slice of the gateways on each ordinary pass (no pass does it
# all at once but the first: a change arriving meanwhile would wait behind it); the
# whole-set part (prober targets, stray gateways) every 45-60 s.
HEAL_EVERY_S = 60.0
# ... but no faster than this many gateways a second: a heal costs a ``list-sas`` and a
# comparison (about 2 ms of CPU), so a large fleet is healed less often (1,000 gateways
# every 125 s) rather than a heal that costs more with every gateway (issue 18: an idle
# fleet's cost must stay flat).
HEAL_GATEWAYS_PER_S = 8.0
# This node's confirmation of the gateways it runs (store/freshness.py) is rewritten at
# least this often while nothing about it changes (it stands lease_s + 3 renewals).
CONFIRM_EVERY_S = 2.0
# Every stamp is read (not only their count and sum) at least this often, and after each
# wake-up from a write: a sum can stay equal across changes that cancel out (a gateway
# deleted and another created with bumps in between, all within one pass), which this
# bounds to a few seconds (the API of this serve wakes the pass at every write anyway).
STAMPS_READ_EVERY_S = 10.0
# Diagnoses that mean the IKE_SA may be up while a CHILD_SA failed.
CHILD_FAILURES = frozenset({"no_proposal_chosen", "traffic_selectors_unacceptable"})


@dataclass(frozen=True)
class _Backoff:
    """A gateway whose last pass failed with a temporary error: not tried before
    ``next_at`` (monotonic) unless its desired state changes."""

    state: GatewayState
    delay: float
    next_at: float


@dataclass
class _Written:
    status: str
    diagnosis: str
    traffic: dict[str, int]
    at: float


@dataclass(frozen=True)
class _Observation:
    """A connection's observation waiting for its gateway's transaction."""

    name: str
    written: _Written


class Reconciler:
    """Runs passes on its own thread until :meth:`stop`."""

    def __init__(
        self,
        db: Database,
        sealer: Sealer,
        network: NetworkBackend,
        *,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.time,
        leases: LeaseKeeper | None = None,
    ) -> None:
        """``leases``: run only the gateways this node holds (several nodes, docs/nodes.md);
        None: run every gateway of the store (one data plane per database)."""
        self.db = db
        self.leases = leases
        self.sealer = sealer
        self.network = network
        self.period_s = period_s
        self._clock = clock
        self._agents: dict[str, GatewayAgent] = {}
        self._written: dict[str, _Written] = {}
        self._tunnels: frozenset[str] = frozenset()
        # The VPC-side next hop of each dual-tunnel address this node runs.
        self._next_hops: dict[str, str] = {}
        self._continuity = 0
        self._specs: dict[str, ConnectionSpec] = {}
        self._backoff: dict[str, _Backoff] = {}
        # The error of each gateway's last pass while it fails (confirmed on its lease).
        self._backoff_errors: dict[str, str] = {}
        # The desired state of every gateway address (all of the store's; with leases, those
        # this node holds), as last loaded, and the change stamps (gateway id -> desired_generation) it was loaded at.
        self._desired: dict[str, GatewayState] = {}
        self._stamps: dict[str, int] = {}
        # Every gateway's stamp at the last read (all of them, held or not), their count and
        # sum then, and when the stamps must be read again whatever the sum says.
        self._all_stamps: dict[str, int] = {}
        self._stamps_total: tuple[int, int] | None = None
        self._stamps_due = float("-inf")
        self._store_changed = True
        self.stamp_reads = 0  # how many passes read every stamp (tests, benchmarks)
        # The lease keys this node held at the last pass, and their gateway ids.
        self._held_keys: set[str] | None = None
        self._held_ids: set[str] = set()
        # What the last pass ran (after leases), and when the next heal pass is due.
        self._running: frozenset[str] = frozenset()
        self._full_due = True  # the first pass is a full pass
        # The heal, spread over the ordinary passes: gateways owed a heal look (a fraction
        # of a gateway per pass: len(running) * elapsed / HEAL_EVERY_S), the last one
        # healed (round robin in key order), and when the whole-set work is next due.
        self._heal_credit = 0.0
        self._heal_last = time.monotonic()
        self._heal_cursor = ""
        self._rearrange_at = float("-inf")
        # Gateways charon's events asked to look at (listener threads add, passes take).
        self._noticed: set[str] = set()
        self._noticed_lock = threading.Lock()
        # Gateway -> when (monotonic) to look at it again without an event.
        self._watch: dict[str, float] = {}
        self._confirmed: tuple[dict[str, str], float] = ({}, float("-inf"))
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._passes = 0
        self._pruned_at = float("-inf")
        self._lock: IO[bytes] | None = None
        self._pass_done = threading.Condition()
        self.prober = Prober(self._health_changed)
        # Dual-tunnel addresses: the liveness exchange with the other address's node.
        self.partners = PartnerWatch(on_next_hop=self._next_hop)
        self._pool = ThreadPoolExecutor(max_workers=GATEWAYS_IN_PARALLEL, thread_name_prefix="vpngw-gateway")

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start passes. Raises BackendBusy if another process drives these gateways."""
        self._lock = self.network.lock()
        try:
            self.network.prepare()
            if self.leases is not None:
                self.leases.start()
        except BaseException:
            self._lock.close()
            self._lock = None
            raise
        self.prober.start()
        self._thread = threading.Thread(target=self._run, name="vpngw-reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reconciling. charons keep running; the next start adopts them."""
        self._stopping.set()
        self._wakeup.set()
        if self.leases is not None:
            self.leases.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.prober.stop()
        self.partners.stop()
        self._pool.shutdown(wait=True)
        for agent in self._agents.values():
            agent.stop()
        if self._lock is not None:
            self._lock.close()  # releases the lab
            self._lock = None

    def wake(self) -> None:
        """Something changed in the store: run a pass soon. Carries no data."""
        self._store_changed = True
        if self.leases is not None:
            self.leases.wake()  # a new gateway needs a lease before a pass can run it
        self._wakeup.set()

    def wake_pass(self) -> None:
        """Run a pass soon (the lease keeper's call when what this node holds changed)."""
        self._wakeup.set()

    def heal(self) -> None:
        """Make the next pass a full pass (every gateway healed at once), and run it soon
        (tests, operators)."""
        self._full_due = True
        self._wakeup.set()

    def wait_for_pass(self, timeout_s: float = 10.0) -> bool:
        """Wait until a pass that started after this call has finished (tests, CLI)."""
        with self._pass_done:
            target = self._passes + 2
            self.wake()
            return self._pass_done.wait_for(lambda: self._passes >= target, timeout=timeout_s)

    def agent(self, vpn_gateway_id: str) -> GatewayAgent | None:
        return self._agents.get(vpn_gateway_id)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.wait(self.period_s)
            self._wakeup.clear()
            if self._stopping.is_set():
                break
            try:
                self.run_once()
            except Exception as error:
                log.exception("reconcile pass failed; retrying on the next pass")
                self._confirm_failed_pass(error)
            with self._pass_done:
                self._passes += 1
                self._pass_done.notify_all()

    # -- one pass -----------------------------------------------------------------

    @metrics.RECONCILE_PASS_SECONDS.time()
    def run_once(self) -> None:
        """One pass: the heal pass (every gateway, everything read afresh) when it is due,
        else only the gateways with something to do (see the module's docstring)."""
        now = time.monotonic()
        full, self._full_due = self._full_due, False
        if self.leases is not None and self.leases.continuity != self._continuity:
            self._continuity = self.leases.continuity
            self._written.clear()  # another node may have reported our gateways lost meanwhile
            full = True
        healing = set() if full else self._heal_slice(now)
        changed = self._refresh_desired(full=full, also={lease_unit(key)[0] for key in healing})
        desired = self._desired
        giving_away: frozenset[str] = frozenset()
        if self.leases is not None:
            # Only what this node holds; the rest is removed below, before anything else
            # of it runs here (a node that comes back never fights the new holder).
            giving_away = self.leases.giving_away()
            held = self.leases.held()
            desired = {gateway_id: state for gateway_id, state in desired.items() if gateway_id in held}
        running = frozenset(desired)
        # What this node runs changed (a write, a lease taken or given away): the pass
        # re-derives everything that depends on the whole set, as every pass used to.
        layout_changed = (
            full
            or bool(changed)
            or running != self._running
            or bool(giving_away)
            or now >= self._rearrange_at  # the whole-set part of the heal, every HEAL_EVERY_S
        )
        if layout_changed:
            # Tunnels of dual-tunnel connections: their observations go to the tunnel rows.
            self._tunnels = frozenset(name for state in desired.values() for name in state.tunnels)
            for gateway_id in desired:
                if gateway_id not in self._agents:
                    self._agents[gateway_id] = self._new_agent(gateway_id)
        to_look = self._to_look(desired, changed | healing | (running - self._running), full=full, now=now)
        self._running = running
        # Gateways are independent, and their steps mostly wait (on ip, on charon):
        # a few at a time make a cold start of many gateways several times faster.
        due = {
            gateway_id: desired[gateway_id]
            for gateway_id in to_look
            if (backoff := self._backoff.get(gateway_id)) is None
            or backoff.state != desired[gateway_id]
            or now >= backoff.next_at
        }
        if due:
            failures = dict(
                zip(
                    due,
                    self._pool.map(
                        lambda item: self._reconcile_gateway(self._agents[item[0]], item[1]), due.items()
                    ),
                    strict=True,
                )
            )
            for gateway_id, error in failures.items():
                self._note_outcome(gateway_id, due[gateway_id], error)
        if layout_changed:
            self._rearrange(desired)
            self._rearrange_at = time.monotonic() + HEAL_EVERY_S * random.uniform(0.75, 1.0)
        if self.leases is not None and giving_away:
            still_here = set(self._agents) | self.network.gateway_ids()
            for gateway_id in giving_away - still_here:
                self.leases.released(gateway_id)
        if self.leases is not None:
            outcomes = {gateway_id: "" for gateway_id in desired}
            for gateway_id, backoff_error in self._backoff_errors.items():
                if gateway_id in outcomes:
                    outcomes[gateway_id] = backoff_error
            self._confirm(outcomes)
        if full:
            self._heal_credit, self._heal_last = 0.0, time.monotonic()  # all healed just now
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
            with self.db.transaction(write=True) as session:
                queries.prune_connection_logs(session, older_than_ms=self._now_ms() - LOG_RETENTION_MS)
            self._pruned_at = time.monotonic()

    def _heal_slice(self, now: float) -> set[str]:
        """The gateways (lease keys) this ordinary pass heals: as many as make every gateway
        this node ran last pass healed once per :func:`heal_period_s`, round robin in key
        order."""
        keys = sorted(self._running)
        elapsed, self._heal_last = now - self._heal_last, now
        if not keys:
            self._heal_credit = 0.0
            return set()
        # At most two periods' worth a pass: a long pass (a cold start, a slow machine) makes
        # the heal late, never a bigger pass (which would make the next pass longer still:
        # at 1,000 gateways that snowballed into a core spent healing).
        every_s = heal_period_s(len(keys))
        cap = max(1.0, len(keys) * 2 * self.period_s / every_s)
        self._heal_credit = min(self._heal_credit + len(keys) * elapsed / every_s, cap)
        take = int(self._heal_credit)
        if take == 0:
            return set()
        self._heal_credit -= take
        start = bisect.bisect_right(keys, self._heal_cursor)
        chosen = [keys[(start + i) % len(keys)] for i in range(take)]
        self._heal_cursor = chosen[-1]
        return set(chosen)

    def _refresh_desired(self, *, full: bool, also: set[str]) -> set[str]:
        """Bring :attr:`_desired` up to date: every gateway on a full pass, else those whose
        change stamp moved (one query reads the stamps) and those of ``also`` (gateway ids
        being healed: read afresh whatever their stamps say). The lease keys whose state
        changed (added, removed, or different)."""
        fresh, all_stamps = self._read_stamps(full=full)
        held_moved = False
        if self.leases is not None:
            keys = self.leases.held()
            if keys != self._held_keys:
                self._held_keys, self._held_ids = keys, {lease_unit(key)[0] for key in keys}
                held_moved = True
        if fresh or held_moved:
            # Several nodes: only the gateways this node holds are read (a node running a
            # third of them read every one's specs and keys on its first pass). A gateway it
            # takes later has no stamp here yet, so it counts as moved and is read then; one
            # it gives away or loses counts as gone.
            stamps = (
                all_stamps
                if self.leases is None
                else {
                    gateway_id: stamp
                    for gateway_id, stamp in all_stamps.items()
                    if gateway_id in self._held_ids
                }
            )
        else:
            stamps = self._stamps  # the store's stamps and the held set are those of the last pass
        # Read after the stamps: what is loaded is at least as new as the stamps say.
        if full:
            moved = set(stamps)
        elif stamps is self._stamps:
            moved = {gateway_id for gateway_id in also if gateway_id in stamps}
        else:
            moved = {g for g, stamp in stamps.items() if self._stamps.get(g) != stamp} | (also & set(stamps))
        gone = set() if stamps is self._stamps else set(self._stamps) - set(stamps)
        if not moved and not gone:
            return set()
        loaded = (
            load_desired(self.db, self.sealer, None if full and self.leases is None else moved)
            if moved
            else {}
        )
        if full:
            desired = loaded
        else:
            desired = {
                key: state for key, state in self._desired.items() if lease_unit(key)[0] not in moved | gone
            }
            desired.update(loaded)
        changed = {
            key for key in set(desired) | set(self._desired) if desired.get(key) != self._desired.get(key)
        }
        self._desired = desired
        self._stamps = stamps
        return changed

    def _read_stamps(self, *, full: bool) -> tuple[bool, dict[str, int]]:
        """(read afresh?, every gateway's change stamp): read on a full pass, after a
        wake-up from a write, every STAMPS_READ_EVERY_S, or when their count and sum moved;
        otherwise (most idle passes) those of the last read, which the count and sum, read
        now, say are still the store's."""
        now = time.monotonic()
        woken, self._store_changed = self._store_changed, False
        with self.db.transaction(write=False) as session:
            if not (full or woken or now >= self._stamps_due or self._stamps_total is None):
                if desired_generation.total(session) == self._stamps_total:
                    return False, self._all_stamps
            stamps = desired_generation.of_gateways(session)
        self.stamp_reads += 1
        self._all_stamps, self._stamps_total = stamps, desired_generation.total_of(stamps)
        self._stamps_due = now + STAMPS_READ_EVERY_S
        return True, stamps

    def _to_look(
        self, desired: dict[str, GatewayState], changed: set[str], *, full: bool, now: float
    ) -> list[str]:
        """The gateways this pass looks at, in the desired state's order: all on a full
        pass; else those whose desired state changed or that this node just took, those
        charon's events (or a listener that ended) marked, those with something to watch
        (an SA up: its traffic every TRAFFIC_WRITE_S; a negotiation in progress, a retry
        pending, a dual-tunnel address: every pass) and those whose backoff is over."""
        with self._noticed_lock:
            noticed, self._noticed = self._noticed, set()
        if full:
            return list(desired)
        watched = {key for key, at in self._watch.items() if now >= at}
        backed_off = {key for key, backoff in self._backoff.items() if now >= backoff.next_at}
        wanted = changed | noticed | watched | backed_off
        if wanted and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "pass looks at %d gateways: changed %s, events %s, watched %s, backoff over %s",
                len(wanted),
                sorted(changed),
                sorted(noticed),
                sorted(watched),
                sorted(backed_off),
            )
        return [key for key in desired if key in wanted]

    def _rearrange(self, desired: dict[str, GatewayState]) -> None:
        """What depends on the whole set this node runs: the prober's targets, the partner
        watch's addresses, gateways to remove, caches to trim, health verdicts to store."""
        for gateway_id in set(self._backoff) - set(desired):
            del self._backoff[gateway_id]
        for gateway_id in set(self._backoff_errors) - set(desired):
            del self._backoff_errors[gateway_id]
        for gateway_id in set(self._watch) - set(desired):
            del self._watch[gateway_id]
        targets: dict[str, ProbeTarget] = {}
        for gateway_id, state in desired.items():
            agent = self._agents[gateway_id]
            for check in state.health_checks:
                targets[check.connection_id] = ProbeTarget(
                    check.connection_id,
                    agent.host.namespace,
                    check.sip,
                    check.dip,
                    check.interval_s,
                    check.retry,
                )
        self.prober.set_targets(targets)
        self._next_hops = {
            gateway_id: state.vpc_next_hop
            for gateway_id, state in desired.items()
            if state.partner_ip is not None and state.vpc_next_hop is not None
        }
        self.partners.set_addresses(
            {
                gateway_id: WatchedAddress(
                    gateway_id,
                    self._agents[gateway_id].host.namespace,
                    state.internet_ip,
                    state.partner_ip,
                    state.preferred,
                    self._agents[gateway_id].host.vici_path,
                    tuple(child for spec in state.connections for child in child_names(spec)),
                    self.sealer.derived_keys(liveness_report.key_purpose(lease_unit(gateway_id)[0])),
                )
                for gateway_id, state in desired.items()
                if state.partner_ip is not None and gateway_id in self._agents
            }
        )
        local = set(self._agents) | self.network.gateway_ids()
        for gateway_id in local - set(desired):
            self._remove_gateway(gateway_id)
        wanted = {spec.name for state in desired.values() for spec in state.connections}
        wanted |= {rejected.name for state in desired.values() for rejected in state.rejected}
        for name in set(self._written) - wanted:
            del self._written[name]
        for name in set(self._specs) - wanted:
            del self._specs[name]
        self._store_health(targets)

    def _new_agent(self, gateway_id: str) -> GatewayAgent:
        return GatewayAgent(
            self.network,
            gateway_id,
            lambda: self._notice(gateway_id, wake=True),
            noticed=lambda: self._notice(gateway_id, wake=False),
        )

    def _notice(self, gateway_id: str, *, wake: bool) -> None:
        """charon's events (the agent's listener thread): look at this gateway on the next
        pass, and run that pass now when ``wake`` (an SA went up or down, charon is gone)."""
        with self._noticed_lock:
            self._noticed.add(gateway_id)
        if wake:
            self._wakeup.set()

    def _watch_after(self, agent: GatewayAgent, state: GatewayState, seen: AgentObservation) -> None:
        """When this gateway must be looked at again without an event (see _to_look)."""
        key = state.vpn_gateway_id
        observed = seen.by_connection.values()
        if (
            state.partner_ip is not None
            or agent.retrying
            or any(o.in_progress or o.status == "ike_sa_established" for o in observed)
        ):
            self._watch[key] = 0.0  # every pass
        elif any(o.status != _NOT_UP.status for o in observed):
            self._watch[key] = time.monotonic() + TRAFFIC_WRITE_S
        else:
            self._watch.pop(key, None)  # nothing up, nothing on its way: events or the heal pass

    def _reconcile_gateway(self, agent: GatewayAgent, state: GatewayState) -> TemporaryError | None:
        """One gateway's step; the temporary error that stopped it, or None. What it
        observed (only what changed: _store_observation) and the log lines charon wrote
        since the last look are written in one transaction."""
        pending: list[_Observation] = []
        try:
            return self._gateway_step(agent, state, pending)
        finally:
            self._write_pass(pending, agent.logs.drain())

    def _gateway_step(
        self, agent: GatewayAgent, state: GatewayState, pending: list[_Observation]
    ) -> TemporaryError | None:
        try:
            agent.sync(state)
            rejected = agent.rejected()
            diagnoses = {
                spec.name: self._diagnosis(agent, spec)
                for spec in state.connections
                if spec.name not in rejected
            }
            seen = agent.observe(state, lambda name: diagnoses[name][0] in CHILD_FAILURES)
        except (DataplaneError, OSError) as error:
            self._watch.pop(state.vpn_gateway_id, None)  # its backoff says when to look again
            if isinstance(error, PermanentError):
                # Nothing of this gateway can run as it is stored: say so on every
                # connection, and wait for the desired state to change.
                log.warning("gateway %s: %s (until its settings change)", state.vpn_gateway_id, error)
                for spec in state.connections:
                    self._store_observation(pending, spec.name, _NOT_UP, _cannot_run(error))
                self._store_rejected(pending, state)
                # Not a hot loop: tried again when the state changes, or after the longest backoff.
                return TemporaryError(str(error), delay=BACKOFF_MAX_S)
            temporary = error if isinstance(error, TemporaryError) else TemporaryError(str(error), delay=1.0)
            log.warning("gateway %s: %s (retrying)", state.vpn_gateway_id, error)
            # Honest meanwhile: nothing is known to be up while the gateway cannot be read.
            for spec in state.connections:
                self._store_observation(
                    pending,
                    spec.name,
                    _NOT_UP,
                    f"The gateway's IPsec daemon is not reachable ({error}); vpngw is restarting it.",
                )
            self._store_rejected(pending, state)
            return temporary
        self._watch_after(agent, state, seen)
        if state.partner_ip is not None:
            self.partners.set_tunnels_up(
                state.vpn_gateway_id,
                bool(state.connections)
                and all(
                    name in seen.by_connection and seen.by_connection[name].status == "ipsec_sa_established"
                    for name in (spec.name for spec in state.connections)
                ),
            )
        for spec in state.connections:
            if self._specs.get(spec.name) != spec:
                # A Modify resets the stored Status/Diagnosis: what was written before no
                # longer says what the store holds.
                self._written.pop(spec.name, None)
                self._specs[spec.name] = spec
            if spec.name in rejected:
                self._store_observation(pending, spec.name, _NOT_UP, _cannot_run(rejected[spec.name]))
                continue
            kind_message = diagnoses[spec.name]
            self._store_observation(pending, spec.name, seen.by_connection[spec.name], kind_message[1])
        self._store_rejected(pending, state)
        return None

    def _store_rejected(self, pending: list[_Observation], state: GatewayState) -> None:
        """Connections the store holds but no spec could be built from (load_desired)."""
        for rejected in state.rejected:
            self._store_observation(pending, rejected.name, _NOT_UP, _cannot_run(rejected.reason))

    def _note_outcome(self, gateway_id: str, state: GatewayState, error: TemporaryError | None) -> None:
        """Back off a gateway that failed with a temporary error; forget it once it passes."""
        if error is None:
            self._backoff.pop(gateway_id, None)
            self._backoff_errors.pop(gateway_id, None)
            return
        if error.delay < BACKOFF_MAX_S:  # a permanent error is said on its connections already
            self._backoff_errors[gateway_id] = str(error)
        before = self._backoff.get(gateway_id)
        delay = error.delay if before is None else min(max(before.delay * 2, error.delay), BACKOFF_MAX_S)
        self._backoff[gateway_id] = _Backoff(state, delay, time.monotonic() + delay)

    @staticmethod
    def _diagnosis(agent: GatewayAgent, spec: ConnectionSpec) -> tuple[str, str]:
        """(kind, message) of the connection's latest failure, ('', '') if none."""
        lines = agent.logs.recent(spec.name)
        if not lines:
            return ("", "")  # nothing negotiated since charon started: nothing to diagnose (or render)
        conn = render_connection(spec)[spec.name]
        child_proposals = sorted({p for child in conn["children"].values() for p in child["esp_proposals"]})
        found = diagnose(
            lines,
            ike_proposals=conn["proposals"],
            esp_proposals=child_proposals,
            local_id=conn["local"]["id"],
            remote_id=conn["remote"]["id"],
        )
        return (found.kind, found.message) if found else ("", "")

    def _remove_gateway(self, gateway_id: str) -> None:
        agent = self._agents.pop(gateway_id, None)
        try:
            if agent is not None:
                agent.remove()
            else:
                self.network.remove_gateway(gateway_id)
            log.info("gateway %s removed from the lab", gateway_id)
        except (DataplaneError, OSError) as error:
            log.warning("removing gateway %s: %s (retrying on the next pass)", gateway_id, error)

    # -- writing back -------------------------------------------------------------

    def _store_observation(
        self, pending: list[_Observation], name: str, seen: Observed, diagnosis: str
    ) -> None:
        """Queue the observation for :meth:`_write_pass` unless the store already
        holds it (traffic counters: at most every TRAFFIC_WRITE_S)."""
        if seen.status == "ipsec_sa_established":
            diagnosis = ""
        traffic = seen.traffic.as_api()
        now = time.monotonic()
        last = self._written.get(name)
        unchanged = last is not None and (last.status, last.diagnosis) == (seen.status, diagnosis)
        if unchanged and last is not None and (last.traffic == traffic or now - last.at < TRAFFIC_WRITE_S):
            return
        pending.append(_Observation(name, _Written(seen.status, diagnosis, traffic, now)))

    def _write_pass(self, pending: list[_Observation], lines: list[LogLine]) -> None:
        """One gateway's changed observations and new log lines in one transaction
        (:func:`vpngw.store.observations.record_gateway_pass`: a few Core statements
        whatever the number of connections, rows locked in id order)."""
        if not pending and not lines:
            return
        observed_by = self.leases.identity.name if self.leases is not None else None
        latest = {item.name: item.written for item in pending}  # the last word on each
        with self.db.transaction(write=True) as session:
            now_ms = self._now_ms()
            written = observations.record_gateway_pass(
                session,
                [
                    observations.ConnectionObservation(name, item.status, item.diagnosis, item.traffic)
                    for name, item in latest.items()
                    if name not in self._tunnels  # a tunnel of a dual-tunnel connection: its row, below
                ],
                [(line.connection, line.time_ms, line.text) for line in lines],
                now_ms=now_ms,
                observed_by=observed_by,
            )
            tunnels = [
                queries.TunnelObservation(name, item.status, item.diagnosis, item.traffic)
                for name, item in sorted(latest.items())
                if name in self._tunnels
            ]
            tunnels += [queries.TunnelObservation(*seen) for seen in written.other_observations]
            queries.record_tunnel_observations(session, tunnels, now_ms=now_ms, observed_by=observed_by)
            if written.other_lines:  # a tunnel's lines (under its TunnelId), or a connection gone
                queries.add_connection_logs(session, written.other_lines)
        self._written.update(latest)

    def _confirm(self, outcomes: dict[str, str]) -> None:
        """Tell readers this node ran these gateways just now (gateway -> the error of its
        pass, "" if none): their stored observations stand a few renewals more
        (store/freshness.py)."""
        if self.leases is None or not outcomes:
            return
        last, at = self._confirmed
        if outcomes == last and time.monotonic() - at < CONFIRM_EVERY_S:
            return  # confirmed lately and nothing to add: stands until_ms below
        timing = self.leases.timing
        # A lease time and a few renewals (or passes) more: a slow pass (many charons
        # starting) is not taken for a silent node.
        until_ms = self._now_ms() + int((timing.lease_s + 3 * max(timing.renew_s, self.period_s)) * 1000)
        try:
            with self.db.transaction(write=True) as session:
                freshness.confirm(session, self.leases.identity.name, outcomes, until_ms=until_ms)
            self._confirmed = (dict(outcomes), time.monotonic())
        except Exception:
            log.exception("confirming this node's gateways failed (they read as silent until it works)")

    def _confirm_failed_pass(self, error: Exception) -> None:
        """A whole pass failed: every gateway this node holds says so on its connections."""
        if self.leases is None:
            return
        reason = f"its last pass failed ({type(error).__name__}: {error}); see the node's log"
        self._confirm(dict.fromkeys(self.leases.held(), reason))

    def _next_hop(self, key: str, hold: bool) -> None:
        """The partner watch's verdict for the dual-tunnel address ``key``: answer for the
        gateway's VPC-side next hop (in that address's namespace, announced by gratuitous
        ARP when new) or stop. Held no longer than this node's leases are valid."""
        next_hop = self._next_hops.get(key)
        if next_hop is None:
            return  # the gateway has no VPC-side next hop (or this node no longer runs the address)
        if not hold:
            self.network.drop_vpc_next_hop(key)
            return
        valid_s = self.leases.valid_s() if self.leases is not None else UNLEASED_NEXT_HOP_S
        if valid_s > 0:
            self.network.hold_vpc_next_hop(key, next_hop, valid_s)

    def _health_changed(self, connection_id: str, status: str) -> None:
        """The prober's callback (its thread): store a new verdict at once."""
        try:
            with self.db.transaction(write=True) as session:
                queries.write_health_status(session, connection_id, status)
        except Exception:
            log.exception("storing the health of %s failed", connection_id)

    def _store_health(self, targets: dict[str, ProbeTarget]) -> None:
        """Level-triggered too: a Modify resets the stored verdict, the prober's stands."""
        verdicts = {cid: status for cid in targets if (status := self.prober.verdict(cid)) is not None}
        if verdicts:
            with self.db.transaction(write=True) as session:
                for connection_id, status in sorted(verdicts.items()):  # id order, as the log writer locks
                    queries.write_health_status(session, connection_id, status)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def heal_period_s(gateways: int) -> float:
    """How long until every one of ``gateways`` has been healed once: HEAL_EVERY_S, or
    longer when healing them all that often would exceed HEAL_GATEWAYS_PER_S."""
    return max(HEAL_EVERY_S, gateways / HEAL_GATEWAYS_PER_S)


_NOT_UP = Observed("ike_sa_not_established", Traffic(), frozenset(), False)


def _cannot_run(error: object) -> str:
    """The Diagnosis of a connection that cannot run as stored (a permanent error)."""
    return (
        f"vpngw cannot set up this connection as it is stored: {error}. "
        "It stays down until its settings are modified."
    )
