"""Fast detection between the two addresses of a dual-tunnel gateway (docs/nodes.md).

The two nodes holding a dual-tunnel gateway's two addresses tell each other, every
:data:`INTERVAL_S` (100 ms), that they are alive and whether their tunnels are up: a small
UDP datagram from each address to the other, on :data:`PORT`, sent and read from inside
the addresses' namespaces, over the same uplink the customer's traffic uses. Each datagram
is authenticated and fresh (:mod:`.liveness_report`): anyone else on the uplink can neither
forge nor replay a partner's word. A partner not heard for :data:`LOST_AFTER_S`, or
reporting its tunnels down for as long, is *lost*.

What a loss does, at once and without the database:

* the survivor rekeys its CHILD_SAs: kernel-libipsec on the customer's side sends on its
  newest SA, so the customer's traffic follows the survivor within a round trip instead of
  waiting for the customer's DPD (dualtunnel.md: about 105 ms after the rekey);
* the survivor takes the VPC-side direction (the gateway's VPC-side next hop, where the
  backend has one): the preferred address's node holds it while its tunnels are up, the
  other node whenever the preferred one is lost. A moment where both hold it is harmless
  (both tunnels are up; asymmetric paths work); a moment where neither does is the outage,
  so the survivor takes it before anything else.

It lives with the observers (it watches the partner as the prober watches a health
check's target); the reconciler feeds it the addresses it runs and their tunnels' state.
This never decides who holds a lease: the database does (placement). A node that is only
cut off from its partner (not dead) merely draws the customer's traffic to itself, which
its tunnel carries.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vpngw.dataplane.charon.vici_client import ViciClient, ViciCommandError
from vpngw.dataplane.errors import DataplaneError
from vpngw.dataplane.observe import liveness_report
from vpngw.dataplane.observe.liveness_report import Report
from vpngw.dataplane.system import netns

log = logging.getLogger(__name__)

PORT = 4510
INTERVAL_S = 0.1
# Five intervals without a word: a datagram or two may be lost, or a loaded node late.
LOST_AFTER_S = 0.5
VICI_TIMEOUT_S = 2.0
# While an address holds the VPC-side direction, it is confirmed this often (a lifetime).
NEXT_HOP_REFRESH_S = 1.0


@dataclass(frozen=True)
class WatchedAddress:
    """One dual-tunnel gateway address this node holds, and its partner's address."""

    key: str  # the lease key
    namespace: str
    local_ip: str
    partner_ip: str
    preferred: bool  # this address's tunnels carry the VPC-side direction while up
    vici_path: str
    children: tuple[str, ...]  # the CHILD_SA config names of its tunnels
    # The gateway's report keys (liveness_report.key_purpose; the first signs). Never logged.
    keys: tuple[bytes, ...] = field(repr=False)


@dataclass
class _State:
    address: WatchedAddress
    sock: socket.socket
    heard_at: float = float("-inf")  # monotonic
    up_at: float = float("-inf")  # monotonic: when it last reported its tunnels up
    partner_up: bool = False
    partner_was_ok: bool = False
    holds_next_hop: bool | None = None
    next_hop_at: float = float("-inf")  # monotonic: when on_next_hop was last called
    rekeys: int = 0
    last_sent_ns: int = 0  # the partner's clock in the last report taken (replays are older)
    skew_logged: bool = False


@dataclass(frozen=True)
class Verdict:
    """What one address should do now (pure: :func:`decide`)."""

    partner_ok: bool
    hold_next_hop: bool
    rekey: bool


def decide(*, preferred: bool, my_tunnels_up: bool, partner_ok: bool, partner_was_ok: bool) -> Verdict:
    """The rule, pure: hold the VPC-side direction while my tunnels are up and I am
    preferred or my partner is not OK; rekey (draw the customer's traffic) when my partner
    just went from OK to not OK and my tunnels are up."""
    return Verdict(
        partner_ok,
        my_tunnels_up and (preferred or not partner_ok),
        my_tunnels_up and partner_was_ok and not partner_ok,
    )


@dataclass
class PartnerWatch:
    """The liveness exchange of every dual-tunnel address of this node, on one thread.

    ``on_next_hop(key, hold)`` is called when an address should start (True) or stop
    (False) holding the gateway's VPC-side direction, and again every
    :data:`NEXT_HOP_REFRESH_S` while it holds it (to refresh a lifetime).
    """

    on_next_hop: Callable[[str, bool], None] = lambda _key, _hold: None
    interval_s: float = INTERVAL_S
    lost_after_s: float = LOST_AFTER_S
    _states: dict[str, _State] = field(default_factory=dict)
    _tunnels_up: dict[str, bool] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- what the reconciler tells it ------------------------------------------------

    def set_addresses(self, addresses: dict[str, WatchedAddress]) -> None:
        """The dual-tunnel addresses this node runs now (after a pass)."""
        with self._lock:
            for key in set(self._states) - set(addresses):
                self._drop(key)
            for key, address in addresses.items():
                current = self._states.get(key)
                if current is not None and current.address == address:
                    continue
                if current is not None:
                    self._drop(key)
                try:
                    sock = netns.udp_socket_in(address.namespace, address.local_ip, PORT)
                except DataplaneError as error:
                    log.warning("%s: cannot watch its partner yet: %s", key, error)
                    continue
                sock.setblocking(False)
                self._states[key] = _State(address, sock)
        if addresses and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vpngw-partner-watch", daemon=True)
            self._thread.start()

    def set_tunnels_up(self, key: str, up: bool) -> None:
        """Whether every tunnel of the address ``key`` has its CHILD_SAs installed (the
        reconciler's latest observation)."""
        self._tunnels_up[key] = up

    def partner_ok(self, key: str) -> bool:
        with self._lock:
            state = self._states.get(key)
            return state is not None and self._partner_ok(state, time.monotonic())

    def rekeys(self, key: str) -> int:
        with self._lock:
            state = self._states.get(key)
            return 0 if state is None else state.rekeys

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for key in list(self._states):
                self._drop(key)

    # -- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        next_send = time.monotonic()
        while not self._stopping.is_set():
            with self._lock:
                socks = {state.sock: state for state in self._states.values()}
            now = time.monotonic()
            if now >= next_send:
                for state in socks.values():
                    self._send(state)
                next_send = now + self.interval_s
            try:
                readable, _, _ = select.select(list(socks), [], [], max(0.0, min(next_send - now, 0.05)))
            except (OSError, ValueError):
                readable = []  # a socket closed meanwhile
            for sock in readable:
                self._receive(socks[sock])
            self._judge()

    def _send(self, state: _State) -> None:
        up = self._tunnels_up.get(state.address.key, False)
        message = liveness_report.seal(state.address.keys, Report(state.address.key, up, time.time_ns()))
        try:
            state.sock.sendto(message, (state.address.partner_ip, PORT))
        except OSError:
            pass  # unreachable now: the partner will not hear us, which is the point

    def _receive(self, state: _State) -> None:
        while True:
            try:
                data, (source, _port) = state.sock.recvfrom(512)
            except (BlockingIOError, OSError):
                return
            if source != state.address.partner_ip:
                continue
            report = liveness_report.open_report(state.address.keys, data)
            if report is None:
                continue  # forged or damaged: not logged, or a flood of them would fill the log
            now_ns = time.time_ns()
            if not liveness_report.acceptable(
                report, receiver=state.address.key, last_sent_ns=state.last_sent_ns, now_ns=now_ns
            ):
                if liveness_report.off_clock(report, now_ns) and not state.skew_logged:
                    state.skew_logged = True  # authentic, and logged once: the clocks disagree
                    log.warning(
                        "%s: its partner's reports are %.1f s off this node's clock: are both nodes on NTP?",
                        state.address.key,
                        (report.sent_ns - now_ns) / 1e9,
                    )
                continue
            state.last_sent_ns = report.sent_ns
            state.heard_at = time.monotonic()
            state.partner_up = report.tunnels_up
            if state.partner_up:
                state.up_at = state.heard_at

    def _partner_ok(self, state: _State, now: float) -> bool:
        """Heard lately, and its tunnels up lately: a report of tunnels down counts only
        once it lasts as long as a silence would (a CHILD_SA being rekeyed, a pass that
        saw one in between, is not a loss)."""
        return now - state.heard_at <= self.lost_after_s and now - state.up_at <= self.lost_after_s

    def _judge(self) -> None:
        now = time.monotonic()
        with self._lock:
            states = list(self._states.values())
        for state in states:
            key = state.address.key
            verdict = decide(
                preferred=state.address.preferred,
                my_tunnels_up=self._tunnels_up.get(key, False),
                partner_ok=self._partner_ok(state, now),
                partner_was_ok=state.partner_was_ok,
            )
            if verdict.rekey:
                log.warning(
                    "%s: its partner %s is lost: rekeying to draw the traffic", key, state.address.partner_ip
                )
                # The VPC-side direction first: it is what the VPC's traffic waits for.
                self._next_hop(state, True)
                state.rekeys += 1
                threading.Thread(
                    target=_rekey, args=(state.address,), name=f"rekey-{key}", daemon=True
                ).start()
            self._next_hop(state, verdict.hold_next_hop)
            state.partner_was_ok = verdict.partner_ok

    def _next_hop(self, state: _State, hold: bool) -> None:
        now = time.monotonic()
        if hold == state.holds_next_hop and (not hold or now - state.next_hop_at < NEXT_HOP_REFRESH_S):
            return
        state.holds_next_hop, state.next_hop_at = hold, now
        try:
            self.on_next_hop(state.address.key, hold)
        except Exception as error:
            log.warning("%s: VPC-side next hop (%s): %s", state.address.key, hold, error)

    def _drop(self, key: str) -> None:
        state = self._states.pop(key)
        self._tunnels_up.pop(key, None)
        state.sock.close()


def _rekey(address: WatchedAddress) -> None:
    try:
        with ViciClient.connect(address.vici_path, VICI_TIMEOUT_S) as client:
            for child in address.children:
                try:
                    client.rekey(child)
                except ViciCommandError as error:
                    log.info("%s: rekey %s: %s", address.key, child, error)
    except DataplaneError as error:
        log.warning("%s: rekey after its partner was lost: %s", address.key, error)
