"""The health-check prober: ICMP echo from ``sip`` to ``dip`` through the tunnel.

A connection's HealthCheckConfig asks for one echo request from ``sip`` (an address of
the gateway, inside its local subnets) to ``dip`` (a host behind the peer) every
``interval`` seconds; the check turns ``failed`` after ``retry`` consecutive misses and
``success`` again at the next reply (:class:`HealthState`, a pure state machine).

Why a raw socket created inside the namespace: every gateway's charon lives in its own
network namespace, and vpngw does not. A socket belongs to the namespace it was created
in, for its whole life, so a short-lived helper thread ``setns``-es into
``/run/netns/<name>``, creates a raw ICMP socket, binds it to ``sip`` and exits; the
caller's thread never changes namespace. A probe then costs about half a millisecond,
against 6-8 ms for spawning ``ip netns exec ... ping`` (measured on the development VM),
and needs neither a child process nor a thread per check.

Why one thread: :class:`Prober` owns every check and waits on all their sockets with
one ``selectors`` loop (epoll), so a hundred checks cost a hundred timers, not a hundred
threads. Checks that share a namespace and ``sip`` share one socket; replies are told
apart by ICMP identifier, sequence and source.

Why level-triggered: :meth:`Prober.set_targets` receives the whole set of checks on every
reconciler pass, like everything else in the data plane. Unchanged checks keep their
state and rhythm, changed ones start afresh, vanished ones stop at once. Whatever goes
wrong on the way (no namespace yet, no ``sip`` yet, no route: ``ENETUNREACH``) is a
miss and is retried at the next interval, never an exception on the prober's thread.
A namespace deleted and created again under the same name is noticed (its inode
changes) and gets a new socket.
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
import itertools
import logging
import os
import secrets
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from vpngw.dataplane.errors import InvalidSpec, TemporaryError

log = logging.getLogger(__name__)

SUCCESS = "success"
FAILED = "failed"
STATUSES = (SUCCESS, FAILED)

MAX_WAIT_S = 2.0  # a reply later than this (or than the interval) is a miss
NETNS_DIR = "/run/netns"

CLONE_NEWNET = 0x40000000
SOL_RAW = 255  # linux/socket.h; not exported by the socket module
ICMP_FILTER = 1  # linux/icmp.h: a bit mask of ICMP types the socket does NOT receive
ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
PAYLOAD = b"vpngw-health"
_RECEIVE_BURST = 64  # datagrams read from one socket per wake-up
_IDLE_WAIT_S = 1.0  # the longest the loop sleeps with nothing due (wake-ups cut it short)

StatusCallback = Callable[[str, str], None]
NamespaceId = tuple[int, int]  # (st_dev, st_ino) of /run/netns/<name>: the namespace itself


class ProbeSocketError(TemporaryError):
    """A probe socket cannot be made yet: no such namespace, or ``sip`` is not there."""

    def __init__(self, message: str) -> None:
        super().__init__(message, delay=1.0)


# -- ICMP ---------------------------------------------------------------------------


class EchoReply(NamedTuple):
    source: str
    identifier: int
    sequence: int


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``; 0 over a packet that carries it."""
    if len(data) % 2:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(identifier: int, sequence: int, payload: bytes = PAYLOAD) -> bytes:
    """An ICMP echo request (no IP header: the kernel adds it to a raw ICMP socket)."""
    unsummed = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, identifier, sequence) + payload
    return unsummed[:2] + struct.pack("!H", checksum(unsummed)) + unsummed[4:]


def parse_echo_reply(packet: bytes) -> EchoReply | None:
    """The echo reply in an IPv4 datagram as a raw socket reads it, or None if it is
    anything else (another ICMP type, truncated, a bad checksum)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header_length = (packet[0] & 0x0F) * 4
    icmp = packet[header_length:]
    if header_length < 20 or len(icmp) < 8 or checksum(icmp) != 0:
        return None
    kind, code, _sum, identifier, sequence = struct.unpack("!BBHHH", icmp[:8])
    if kind != ICMP_ECHO_REPLY or code != 0:
        return None
    return EchoReply(socket.inet_ntoa(packet[12:16]), identifier, sequence)


# -- sockets inside a namespace -------------------------------------------------------


def check_namespace_name(namespace: str) -> None:
    """Raise InvalidSpec unless ``namespace`` names a file directly in /run/netns."""
    if not namespace or "/" in namespace or namespace in (".", "..") or "\0" in namespace:
        raise InvalidSpec("namespace", namespace, "is not a network namespace name")


def check_ipv4(name: str, address: str) -> None:
    """Raise InvalidSpec unless ``address`` is a dotted IPv4 address (never a host name:
    resolving one would block the prober's thread)."""
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise InvalidSpec(name, address, "is not an IPv4 address") from None


def namespace_id(namespace: str) -> NamespaceId:
    """What identifies the namespace ``/run/netns/<namespace>`` is now; a namespace
    deleted and added again under the same name has another id."""
    try:
        status = os.stat(os.path.join(NETNS_DIR, namespace))
    except OSError as error:
        raise ProbeSocketError(f"network namespace {namespace}: {error.strerror}") from None
    return status.st_dev, status.st_ino


def open_icmp_socket(namespace: str, source: str) -> socket.socket:
    """A non-blocking raw ICMP socket inside network namespace ``namespace`` (a name in
    /run/netns), bound to ``source``, that receives echo replies only.

    The socket is made on a short-lived helper thread that enters the namespace; the
    calling thread's namespace never changes. Raises ProbeSocketError if the namespace
    does not exist or ``source`` is not one of its addresses, InvalidSpec if a name or
    address is malformed.
    """
    sock, _namespace = _open_in_namespace(namespace, source)
    return sock


def _open_in_namespace(namespace: str, source: str) -> tuple[socket.socket, NamespaceId]:
    check_namespace_name(namespace)
    check_ipv4("sip", source)
    outcome: list[tuple[socket.socket, NamespaceId] | ProbeSocketError] = []

    def work() -> None:
        try:
            outcome.append(_enter_and_open(namespace, source))
        except ProbeSocketError as error:  # handed to the caller's thread
            outcome.append(error)

    # The helper ends its life inside the other namespace; it is never reused.
    helper = threading.Thread(target=work, name=f"vpngw-netns-{namespace}", daemon=True)
    helper.start()
    helper.join()
    if not outcome:  # a bug; threading.excepthook has reported it
        raise ProbeSocketError(f"no socket in {namespace}: the helper thread failed")
    result = outcome[0]
    if isinstance(result, ProbeSocketError):
        raise result
    return result


def _enter_and_open(namespace: str, source: str) -> tuple[socket.socket, NamespaceId]:
    """Runs on the helper thread: enter the namespace, make the socket."""
    try:
        fd = os.open(os.path.join(NETNS_DIR, namespace), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise ProbeSocketError(f"network namespace {namespace}: {error.strerror}") from None
    try:
        status = os.fstat(fd)
        _setns(fd, namespace)
    finally:
        os.close(fd)
    return _bound_icmp_socket(namespace, source), (status.st_dev, status.st_ino)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, namespace: str) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        reason = os.strerror(ctypes.get_errno())
        raise ProbeSocketError(f"cannot enter network namespace {namespace}: {reason}")


def _bound_icmp_socket(namespace: str, source: str) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError as error:
        raise ProbeSocketError(f"raw ICMP socket in {namespace}: {error.strerror}") from None
    try:
        only_echo_replies = ~(1 << ICMP_ECHO_REPLY) & 0xFFFFFFFF
        sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", only_echo_replies))
        sock.bind((source, 0))
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise ProbeSocketError(f"cannot bind to {source} in {namespace}: {error.strerror}") from None
    return sock


# -- the verdict ----------------------------------------------------------------------


@dataclass(frozen=True)
class HealthState:
    """One check's status after the replies and misses seen so far.

    ``status`` starts as given (``failed`` for a new check, the API's initial value);
    ``retry`` consecutive misses make it ``failed``, one reply ``success``. ``decided``
    tells whether either has happened yet: the first verdict is worth reporting even
    when it equals the initial status.
    """

    retry: int
    status: str = FAILED
    misses: int = 0
    decided: bool = False

    def __post_init__(self) -> None:
        if self.retry < 1:
            raise ValueError(f"retry must be at least 1, not {self.retry}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    @property
    def verdict(self) -> str | None:
        """The status once decided, else None."""
        return self.status if self.decided else None

    def record(self, reply: bool) -> HealthState:
        """The state after one more probe, answered or not."""
        if reply:
            return replace(self, status=SUCCESS, misses=0, decided=True)
        misses = min(self.misses + 1, self.retry)
        if misses >= self.retry:
            return replace(self, status=FAILED, misses=misses, decided=True)
        return replace(self, misses=misses)


# -- targets ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeTarget:
    """One enabled HealthCheckConfig: ICMP from ``sip`` to ``dip`` inside ``namespace``."""

    connection_id: str
    namespace: str
    sip: str
    dip: str
    interval_s: int
    retry: int

    def __post_init__(self) -> None:
        check_namespace_name(self.namespace)
        check_ipv4("sip", self.sip)
        check_ipv4("dip", self.dip)
        for name, value in (("interval_s", self.interval_s), ("retry", self.retry)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidSpec(name, value, "must be an integer of at least 1")

    @property
    def wait_s(self) -> float:
        """How long a reply may take."""
        return min(float(self.interval_s), MAX_WAIT_S)

    @property
    def channel(self) -> tuple[str, str]:
        """Targets with the same (namespace, sip) share one socket."""
        return self.namespace, self.sip


# A random start keeps two probers (two processes, or a test next to a reconciler) from
# using the same identifiers between the same addresses.
_identifiers = itertools.count(secrets.randbelow(0x10000))


def _next_identifier() -> int:
    return next(_identifiers) & 0xFFFF


@dataclass(eq=False)
class _Probe:
    """One running check. ``state`` is shared with other threads (under the prober's
    lock); the rest belongs to the prober's thread."""

    target: ProbeTarget
    state: HealthState
    identifier: int = field(default_factory=_next_identifier)
    next_send: float = field(default_factory=time.monotonic)  # a new check probes at once
    sequence: int = 0
    outstanding: int | None = None  # the sequence number awaiting its reply
    deadline: float = 0.0

    def sent(self, now: float) -> None:
        self.outstanding = self.sequence
        self.deadline = now + self.target.wait_s

    def schedule_next(self, now: float) -> None:
        """Keep the rhythm; after a stall, start it again rather than catch up."""
        self.next_send += self.target.interval_s
        if self.next_send <= now:
            self.next_send = now + self.target.interval_s

    def matches(self, channel: tuple[str, str], reply: EchoReply) -> bool:
        target = self.target
        return (channel, reply.source, reply.sequence) == (target.channel, target.dip, self.outstanding)


@dataclass(eq=False)
class _Channel:
    """A socket shared by the checks with one (namespace, sip)."""

    key: tuple[str, str]
    sock: socket.socket
    namespace: NamespaceId


# -- the prober -----------------------------------------------------------------------


class Prober:
    """Runs every health check on one daemon thread.

    ``on_status(connection_id, status)`` is called on that thread whenever a check's
    status changes, the first verdict included (the first reply, or ``retry`` misses).
    It runs with the prober's (reentrant) lock held, so once :meth:`set_targets` has
    returned, a removed check is never reported again; it may call :meth:`status` but
    should be quick. A Prober runs once: start, then stop.
    """

    def __init__(self, on_status: StatusCallback) -> None:
        self._on_status = on_status
        self._lock = threading.RLock()
        self._probes: dict[str, _Probe] = {}
        self._stopping = threading.Event()
        self._channels: dict[tuple[str, str], _Channel] = {}  # the thread's own
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        for end in (self._wake_reader, self._wake_writer):
            end.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="vpngw-prober", daemon=True)

    # -- the API --------------------------------------------------------------------

    def start(self) -> None:
        if self._stopping.is_set():
            raise RuntimeError("a stopped Prober cannot start again")
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop probing, join the thread and close every socket. Idempotent."""
        self._stopping.set()
        self._wake()
        if threading.current_thread() is self._thread:
            return  # called from on_status: the loop ends after it returns
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("the prober's thread did not stop within %.0f s", timeout_s)
                return  # it closes its sockets itself when it ends
        self._close_all()

    def set_targets(self, targets: Mapping[str, ProbeTarget]) -> None:
        """Make ``targets`` (connection id -> target) the whole set of checks."""
        for connection_id, target in targets.items():
            if connection_id != target.connection_id:
                raise ValueError(f"target {target.connection_id} filed under {connection_id}")
        with self._lock:
            self._probes = {
                connection_id: self._keep_or_start(connection_id, target)
                for connection_id, target in targets.items()
            }
        self._wake()

    def status(self, connection_id: str) -> str | None:
        """A check's status (``failed`` until its first reply), None if not checked."""
        with self._lock:
            probe = self._probes.get(connection_id)
            return probe.state.status if probe else None

    def verdict(self, connection_id: str) -> str | None:
        """Like :meth:`status`, but None until the check's first verdict."""
        with self._lock:
            probe = self._probes.get(connection_id)
            return probe.state.verdict if probe else None

    def _keep_or_start(self, connection_id: str, target: ProbeTarget) -> _Probe:
        probe = self._probes.get(connection_id)
        if probe is not None and probe.target == target:
            return probe
        return _Probe(target, HealthState(target.retry))

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed (stopped)
            pass

    # -- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._step()
                except Exception:  # a bug: keep the other checks alive, do not spin
                    log.exception("the health-check prober's loop failed")
                    self._stopping.wait(1.0)
        finally:
            self._close_all()

    def _step(self) -> None:
        with self._lock:
            probes = list(self._probes.values())
        self._close_unused_channels(probes)
        now = time.monotonic()
        for probe in probes:
            if probe.outstanding is not None and now >= min(probe.deadline, probe.next_send):
                probe.outstanding = None  # too late, or its successor is due: a miss
                self._record(probe, reply=False)
            if now >= probe.next_send:
                probe.schedule_next(now)
                self._send(probe, now)
        self._wait(probes, self._timeout(probes))

    def _timeout(self, probes: list[_Probe]) -> float:
        due = [probe.next_send for probe in probes]
        due += [probe.deadline for probe in probes if probe.outstanding is not None]
        return max(0.0, min([*due, time.monotonic() + _IDLE_WAIT_S]) - time.monotonic())

    def _send(self, probe: _Probe, now: float) -> None:
        target = probe.target
        probe.sequence = (probe.sequence + 1) & 0xFFFF
        try:
            channel = self._channel(target)
            channel.sock.sendto(echo_request(probe.identifier, probe.sequence), (target.dip, 0))
        except (ProbeSocketError, OSError) as error:  # no namespace; ENETUNREACH, EPERM...
            log.debug("health check %s: a miss: %s", target.connection_id, error)
            self._record(probe, reply=False)
            return
        probe.sent(now)

    def _wait(self, probes: list[_Probe], timeout_s: float) -> None:
        """Wait for replies (or a wake-up) and hand them to their probes."""
        waiting = {probe.identifier: probe for probe in probes if probe.outstanding is not None}
        for key, _events in self._selector.select(timeout_s):
            if key.fileobj is self._wake_reader:
                self._drain_wake_ups()
            else:
                self._dispatch(key.data, waiting)

    def _dispatch(self, channel: _Channel, waiting: dict[int, _Probe]) -> None:
        for _ in range(_RECEIVE_BURST):
            try:
                packet = channel.sock.recv(2048)
            except BlockingIOError:
                return
            except OSError:  # an error queued by an earlier send; reading clears it
                continue
            reply = parse_echo_reply(packet)
            probe = waiting.get(reply.identifier) if reply else None
            if reply and probe and probe.outstanding is not None and probe.matches(channel.key, reply):
                probe.outstanding = None
                self._record(probe, reply=True)

    def _drain_wake_ups(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except OSError:
            pass

    def _record(self, probe: _Probe, *, reply: bool) -> None:
        with self._lock:
            if self._probes.get(probe.target.connection_id) is not probe:
                return  # removed or replaced meanwhile
            before = probe.state.verdict
            probe.state = probe.state.record(reply)
            verdict = probe.state.verdict
            if verdict is not None and verdict != before:
                self._report(probe.target.connection_id, verdict)

    def _report(self, connection_id: str, status: str) -> None:
        try:
            self._on_status(connection_id, status)
        except Exception:
            log.exception("the health-check callback failed for %s", connection_id)

    # -- sockets --------------------------------------------------------------------

    def _channel(self, target: ProbeTarget) -> _Channel:
        """The socket for ``target``, (re)made if missing or in a namespace since gone.

        A socket left in a deleted namespace would keep it, and its interfaces, alive.
        """
        channel = self._channels.get(target.channel)
        try:
            current = namespace_id(target.namespace)
        except ProbeSocketError:
            if channel is not None:
                self._close_channel(channel)
            raise
        if channel is not None and channel.namespace == current:
            return channel
        if channel is not None:
            self._close_channel(channel)
        sock, made_in = _open_in_namespace(target.namespace, target.sip)
        channel = _Channel(target.channel, sock, made_in)
        self._channels[channel.key] = channel
        self._selector.register(sock, selectors.EVENT_READ, channel)
        return channel

    def _close_unused_channels(self, probes: list[_Probe]) -> None:
        used = {probe.target.channel for probe in probes}
        for channel in [c for key, c in self._channels.items() if key not in used]:
            self._close_channel(channel)

    def _close_channel(self, channel: _Channel) -> None:
        self._selector.unregister(channel.sock)
        channel.sock.close()
        del self._channels[channel.key]

    def _close_all(self) -> None:
        for channel in list(self._channels.values()):
            self._close_channel(channel)
        with self._lock:
            self._probes = {}
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()
