"""One VPN gateway's data plane: its namespaces, its charon and their contents.

:meth:`GatewayAgent.sync` is one level-triggered step: given the gateway's desired state
(read fresh from the store), it makes the namespaces, addresses, routes, charon,
connections and shared keys match, whatever happened before (a first start, a killed
charon, a restart of vpngw that finds charon still running, a hand-deleted route).
:meth:`GatewayAgent.observe` then reads what charon holds.

Between passes, a listener thread follows charon's VICI events: it files log lines by
connection (:mod:`.connection_logs`), emulates the acquire strongSwan 5.9.8's
kernel-libipsec never raises (:mod:`.acquire`), and tells the reconciler that the gateway
needs a look: at once when an SA goes up or down or charon's event stream ends (so that
``Status`` follows quickly and a dead charon is restarted), on the next pass for a log
line of one of its connections (a negotiation to diagnose).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vpngw import metrics
from vpngw.dataplane.backends.base import GatewayHost, NetworkBackend
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.charon.acquire import AcquireEmulator
from vpngw.dataplane.charon.vici_client import IkeSa, ViciClient, ViciCommandError
from vpngw.dataplane.charon.vici_events import EventListener
from vpngw.dataplane.core.applied import AppliedRecord
from vpngw.dataplane.errors import PermanentError
from vpngw.dataplane.observe.connection_logs import ConnectionLogs
from vpngw.dataplane.observe.status import Observed, observe
from vpngw.dataplane.spec.desired import ConnectionSpec
from vpngw.dataplane.spec.from_store import GatewayState
from vpngw.dataplane.spec.render import (
    child_names,
    child_reqids,
    render_connection,
    render_shared_key,
    shared_key_id,
)

log = logging.getLogger(__name__)

# How often an always-up connection (EffectImmediately=true) that is down is retried:
# charon tries once (keyingtries=1); long-term retries are ours, with backoff.
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 30.0
# Even when nothing changed, the network (addresses, routes) is re-checked about this
# often, so that a hand-made change heals. Each re-check runs a handful of `ip` commands
# per gateway: every 10 s that was most of an idle fleet's CPU (0.19 cores per 100 gateways
# in `ip` processes alone), every 300 s it was still about 0.006 per 100 and 0.06 at 1,000
# gateways, more than all the rest of an idle data plane (docs/benchmarks.md, "Item 3");
# a change of the gateway's desired state syncs at once whatever this says.
# Each gateway's next re-check falls at a random point of the last quarter, so that a
# fleet started together does not re-check in one pass.
NETWORK_RECHECK_S = 1800.0
VICI_TIMEOUT_S = 10.0


@dataclass
class _Retry:
    next_at: float
    delay: float


@dataclass
class _Network:
    """What the last network sync realised, to skip it while nothing changes."""

    fingerprint: tuple[object, ...] = ()
    recheck_at: float = float("-inf")  # monotonic


@dataclass
class AgentObservation:
    """One pass's view of every connection of the gateway."""

    by_connection: dict[str, Observed] = field(default_factory=dict)


class GatewayAgent:
    """The data plane of one VPN gateway (one namespace pair, one charon)."""

    def __init__(
        self,
        network: NetworkBackend,
        vpn_gateway_id: str,
        wake: Callable[[], None],
        *,
        noticed: Callable[[], None] = lambda: None,
    ) -> None:
        """``wake``: called (on the listener's thread) when an SA goes up or down or the
        event stream ends (charon is gone): the gateway needs a look now. ``noticed``:
        called for a log line of one of its connections (a negotiation: lines to store, a
        diagnosis to make): the gateway needs a look on the next pass. Lines of no
        connection (interfaces, plugins) ask for nothing."""
        self.network = network
        self.host: GatewayHost = network.gateway(vpn_gateway_id)
        self.logs = ConnectionLogs()
        self._wake = wake
        self._noticed = noticed
        self._pid: int | None = None
        self._client: ViciClient | None = None
        self._listener: EventListener | None = None
        self._acquire = AcquireEmulator(self.host.vici_path)
        self._applied: dict[str, ConnectionSpec] = {}
        # What an adopted charon was loaded with, by a previous vpngw (name -> fingerprint).
        self._record = AppliedRecord(self.host.state_dir)
        self._adopted: dict[str, str] = {}
        self._retries: dict[str, _Retry] = {}
        self._network = _Network()
        # Connections whose spec cannot be realised (a PermanentError), with the spec that
        # failed: not tried again until the spec changes.
        self._rejected: dict[str, tuple[ConnectionSpec, PermanentError]] = {}

    # -- the level-triggered step -------------------------------------------------

    def sync(self, state: GatewayState) -> None:
        """Make this gateway's namespaces and charon match ``state``."""
        self.logs.set_connections({spec.name: spec.remote_addr for spec in state.connections})
        self._sync_network(state)
        self._ensure_charon()
        self._ensure_listener()
        client = self._vici()
        self._sync_connections(client, state)

    def rejected(self) -> dict[str, PermanentError]:
        """The connections charon does not run because their spec cannot be realised."""
        return {name: error for name, (_spec, error) in self._rejected.items()}

    def observe(self, state: GatewayState, failed_children: Callable[[str], bool]) -> AgentObservation:
        """Every connection's SAs as charon reports them now; retries those that are down.
        Rejected connections are not observed (charon does not hold them)."""
        client = self._vici()
        sas = client.list_sas()
        result = AgentObservation()
        for spec in state.connections:
            if spec.name in self._rejected:
                continue
            seen = observe(sas, spec.name, child_names(spec), child_failed=failed_children(spec.name))
            result.by_connection[spec.name] = seen
            if spec.effect_immediately:
                self._retry_if_down(client, spec, seen, sas)
        return result

    @property
    def retrying(self) -> bool:
        """Whether an always-up connection that is down waits for its next initiate."""
        return bool(self._retries)

    def stop(self) -> None:
        """Stop following charon (charon itself keeps running: vpngw adopts it later)."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self._close_client()

    def remove(self) -> None:
        """Everything of this gateway goes: charon, namespaces, state."""
        self.stop()
        self.network.remove_gateway(self.host.vpn_gateway_id)

    # -- network ------------------------------------------------------------------

    def _sync_network(self, state: GatewayState) -> None:
        fingerprint = network_fingerprint(state)
        now = time.monotonic()
        if fingerprint == self._network.fingerprint and now < self._network.recheck_at:
            return
        self.network.sync_gateway(state)
        self._network = _Network(fingerprint, now + NETWORK_RECHECK_S * random.uniform(0.75, 1.0))

    # -- charon -------------------------------------------------------------------

    def _ensure_charon(self) -> None:
        if self._pid is not None and charon_daemon.alive(self._pid):
            return
        if self._pid is not None:
            log.warning("charon of %s (pid %d) is gone: restarting it", self.host.vpn_gateway_id, self._pid)
            metrics.CHARON_RESTARTS.labels(self.host.vpn_gateway_id).inc()
            charon_daemon.stop_pid(self._pid)  # reaps it if it was our child
        self._close_client()
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self._applied.clear()
        self._retries.clear()
        adopting = self._pid is None and charon_daemon.running_pid(self.host) is not None
        self._pid = charon_daemon.start_gateway_charon(self.host)
        self._adopted = self._record.load() if adopting else {}
        if not adopting:
            self._record.clear()

    def _ensure_listener(self) -> None:
        if self._listener is not None and self._listener.alive:
            return
        self._listener = EventListener(
            self.host.vici_path,
            self._on_event,
            name=f"vici-{self.host.vpn_gateway_id}",
            on_end=self._stream_ended,
        )
        self._listener.start()

    def _stream_ended(self, registered: bool) -> None:
        """charon's event stream ended: charon is gone (look now), or the listener never
        reached it (look on the next pass, not in a loop of immediate passes)."""
        (self._wake if registered else self._noticed)()

    def _on_event(self, kind: str, event: dict[str, object]) -> None:
        if kind == "log":
            self._acquire.on_log(event)
            if self.logs.add(event):
                self._noticed()  # a line of a connection's negotiation: to store, to diagnose
        else:
            self._wake()

    def _vici(self) -> ViciClient:
        if self._client is None:
            self._client = ViciClient.connect(self.host.vici_path, VICI_TIMEOUT_S)
        return self._client

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- connections --------------------------------------------------------------

    def _sync_connections(self, client: ViciClient, state: GatewayState) -> None:
        """Load what is wanted, unload what is not. A connection whose spec cannot be
        realised (a PermanentError: it does not render, or charon refuses it) is recorded
        and left out, and its old settings are unloaded; the others go on."""
        for name in set(self._rejected) - {spec.name for spec in state.connections}:
            del self._rejected[name]
        wanted = {spec.name: spec for spec in state.connections if not self._still_rejected(spec)}
        if not self._applied:
            # A fresh or adopted charon: what it holds that we do not want must go.
            for name in client.list_conns() - set(wanted):
                self._unload(client, name)
        before = dict(self._applied)
        for name in set(self._applied) - set(wanted):
            self._unload(client, name)
        for spec in wanted.values():
            if self._applied.get(spec.name) != spec:
                try:
                    self._load(client, spec, changed=self._is_change(spec))
                except PermanentError as error:
                    self._reject(client, spec, error)
        if self._applied != before:
            self._record.save(self._applied)
        reqids: dict[int, tuple[str, tuple[str, ...]]] = {}
        for spec in state.connections:
            if not spec.effect_immediately and spec.name in self._applied:
                reqids.update({reqid: (spec.name, child_names(spec)) for reqid in child_reqids(spec)})
        self._acquire.set_targets(reqids)

    def _still_rejected(self, spec: ConnectionSpec) -> bool:
        """Whether ``spec`` failed before, unchanged (a changed spec is tried afresh)."""
        rejected = self._rejected.get(spec.name)
        if rejected is not None and rejected[0] != spec:
            del self._rejected[spec.name]
            return False
        return rejected is not None

    def _reject(self, client: ViciClient, spec: ConnectionSpec, error: PermanentError) -> None:
        log.warning("%s: connection %s cannot be set up: %s", self.host.vpn_gateway_id, spec.name, error)
        self._rejected[spec.name] = (spec, error)
        if spec.name in self._applied or spec.name in client.list_conns():
            self._unload(client, spec.name)  # its old settings no longer say what the store holds

    def _is_change(self, spec: ConnectionSpec) -> bool:
        """Whether loading ``spec`` replaces different settings in charon: ones this agent
        loaded, or (adopted charon) ones a previous vpngw recorded."""
        if spec.name in self._applied:
            return True
        recorded = self._adopted.pop(spec.name, None)
        return recorded is not None and recorded != self._record.fingerprint(spec)

    def _load(self, client: ViciClient, spec: ConnectionSpec, *, changed: bool) -> None:
        """Load (or replace) one connection. A change tears down its SAs, which were
        negotiated with the old settings; an always-up connection negotiates again.

        charon already restarts an always-up connection whose ``load-conn`` differs, but
        not one whose only change is its key (``load-shared``), and it never touches the
        SAs of a trapped one: hence the explicit terminate."""
        shared_key, connection = render_shared_key(spec), render_connection(spec)  # InvalidSpec
        try:
            client.load_shared(shared_key)
            client.load_conn(connection)
        except ViciCommandError as error:
            raise ConnectionRefused(error) from None
        self._applied[spec.name] = spec
        if changed:
            _terminate(client, spec.name)
            self._retries.pop(spec.name, None)
            if spec.effect_immediately:
                _initiate_all(client, spec)
        log.info(
            "%s: connection %s loaded%s", self.host.vpn_gateway_id, spec.name, " (changed)" if changed else ""
        )

    def _unload(self, client: ViciClient, name: str) -> None:
        _terminate(client, name)
        for command, argument in ((client.unload_conn, name), (client.unload_shared, shared_key_id(name))):
            try:
                command(argument)
            except ViciCommandError as error:
                log.debug("%s: %s", name, error)
        self._applied.pop(name, None)
        self._retries.pop(name, None)
        log.info("%s: connection %s unloaded", self.host.vpn_gateway_id, name)

    def _retry_if_down(
        self, client: ViciClient, spec: ConnectionSpec, seen: Observed, sas: list[IkeSa]
    ) -> None:
        """An always-up connection that is down and not negotiating is initiated again,
        with backoff (RETRY_FIRST_S doubling to RETRY_MAX_S)."""
        now = time.monotonic()
        if seen.status == "ipsec_sa_established" or seen.in_progress:
            if seen.status == "ipsec_sa_established":
                self._retries.pop(spec.name, None)
            return
        retry = self._retries.get(spec.name)
        if retry is None:
            self._retries[spec.name] = _Retry(now + RETRY_FIRST_S, RETRY_FIRST_S)
            return
        if now < retry.next_at:
            return
        missing = [child for child in child_names(spec) if child not in seen.installed_children]
        for child in missing:
            _initiate_async(client, spec.name, child)
        delay = min(retry.delay * 2, RETRY_MAX_S)
        self._retries[spec.name] = _Retry(now + delay, delay)


class ConnectionRefused(PermanentError):
    """charon refused to load a connection (``load-conn``/``load-shared``): the same spec
    would be refused again."""

    def __init__(self, error: ViciCommandError) -> None:
        super().__init__(f"strongSwan refused the connection ({error})")


def network_fingerprint(state: GatewayState) -> tuple[object, ...]:
    """What a gateway's network depends on: while it is unchanged, the backend's sync is
    skipped (but for a periodic re-check that heals hand-made changes)."""
    return (
        state.internet_ip,
        state.partner_ip,
        tuple(sorted(state.auto_routes)),
        tuple(sorted((s.remote_addr, s.local_subnets) for s in state.connections)),
        tuple(sorted((c.sip, c.dip) for c in state.health_checks)),
    )


def _terminate(client: ViciClient, name: str) -> None:
    try:
        client.terminate(name, timeout_ms=2000, force=True)
    except ViciCommandError:
        pass  # no SA to terminate


def _initiate_all(client: ViciClient, spec: ConnectionSpec) -> None:
    for child in child_names(spec):
        _initiate_async(client, spec.name, child)


def _initiate_async(client: ViciClient, ike: str, child: str) -> None:
    """Start negotiating ``child``; the outcome arrives as events and in list-sas."""
    try:
        client.initiate(child, ike, timeout_ms=-1)
    except ViciCommandError as error:
        log.info("initiate %s/%s: %s", ike, child, error)
