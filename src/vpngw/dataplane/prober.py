"""The health-check prober: ICMP from ``sip`` to ``dip`` through the tunnel.

A connection's HealthCheckConfig asks for one echo request from ``sip`` (an address of
the gateway inside its local subnets) to ``dip`` (a host behind the peer) every
``interval`` seconds; the check is ``failed`` after ``retry`` consecutive misses and
``success`` again at the next reply.

How: one raw ICMP socket per check, created *inside* the gateway's network namespace
(a helper thread ``setns``-es into it, creates the socket and exits; a socket stays in
the namespace it was born in) and bound to ``sip``. One thread drives every check with
``select``; a probe costs about half a millisecond, against 6-8 ms for spawning
``ip netns exec ... ping`` (../shared/reference/dataplane.md, section 5).

Level-triggered like the reconciler: :meth:`Prober.set_targets` takes the whole set of
checks each pass; unchanged checks keep their state and rhythm, changed ones start
afresh, vanished ones stop. Anything that goes wrong on the way (no namespace yet, no
address, no route: ``ENETUNREACH``) is a miss, never an exception.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from vpngw.dataplane.errors import TemporaryError

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
MAX_WAIT_S = 2.0  # a reply later than this (or than the interval) is a miss
SUCCESS = "success"
FAILED = "failed"

StatusCallback = Callable[[str, str], None]


class ProbeSocketError(TemporaryError):
    """The probe's socket cannot be made (no such namespace or address yet)."""


# -- ICMP ---------------------------------------------------------------------------


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(identifier: int, sequence: int, payload: bytes = b"vpngw-health") -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, identifier, sequence)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(header + payload), identifier, sequence) + payload


def parse_echo_reply(packet: bytes) -> tuple[str, int, int] | None:
    """(source address, identifier, sequence) of an IPv4 echo reply, else None."""
    if len(packet) < 20:
        return None
    header_length = (packet[0] & 0x0F) * 4
    icmp = packet[header_length:header_length + 8]
    if len(icmp) < 8:
        return None
    kind, _code, _sum, identifier, sequence = struct.unpack("!BBHHH", icmp)
    if kind != ICMP_ECHO_REPLY:
        return None
    return socket.inet_ntoa(packet[12:16]), identifier, sequence


def open_icmp_socket(namespace: str, source: str) -> socket.socket:
    """A non-blocking raw ICMP socket inside network namespace ``namespace``, bound to
    ``source``. The calling thread's namespace never changes."""
    result: dict[str, object] = {}

    def create() -> None:
        try:
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
        except OSError as exc:
            result["error"] = ProbeSocketError(f"namespace {namespace}: {exc.strerror}")
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                result["error"] = ProbeSocketError(f"setns {namespace}: {os.strerror(code)}")
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            try:
                sock.bind((source, 0))
            except OSError as exc:
                sock.close()
                result["error"] = ProbeSocketError(f"{source} in {namespace}: {exc.strerror}")
                return
            sock.setblocking(False)
            result["socket"] = sock
        finally:
            os.close(fd)

    # This thread ends in the other namespace; it is never reused.
    worker = threading.Thread(target=create, name="netns-socket", daemon=True)
    worker.start()
    worker.join()
    error = result.get("error")
    if isinstance(error, ProbeSocketError):
        raise error
    sock = result["socket"]
    assert isinstance(sock, socket.socket)
    return sock


# -- the verdict --------------------------------------------------------------------


@dataclass(frozen=True)
class HealthState:
    """One check's verdict so far. ``status`` is None until the first verdict."""

    retry: int
    status: str | None = None
    misses: int = 0

    def record(self, reply: bool) -> HealthState:
        if reply:
            return HealthState(self.retry, SUCCESS, 0)
        misses = self.misses + 1
        return HealthState(self.retry, FAILED if misses >= self.retry else self.status, misses)


# -- the prober ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeTarget:
    connection_id: str
    namespace: str
    sip: str
    dip: str
    interval_s: int
    retry: int


_identifiers = itertools.count(1)


@dataclass
class _Probe:
    target: ProbeTarget
    state: HealthState
    identifier: int
    next_send: float
    sock: socket.socket | None = None
    sequence: int = 0
    outstanding: int | None = None
    deadline: float = 0.0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Prober:
    """Runs every health check on one thread; reports changes through ``on_status``."""

    def __init__(self, on_status: StatusCallback) -> None:
        self._on_status = on_status
        self._lock = threading.Lock()
        self._probes: dict[str, _Probe] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vpngw-prober", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            for probe in self._probes.values():
                probe.close()
            self._probes.clear()

    def set_targets(self, targets: Mapping[str, ProbeTarget]) -> None:
        """The whole set of checks (connection id -> target)."""
        now = time.monotonic()
        with self._lock:
            for connection_id in list(self._probes):
                probe = self._probes[connection_id]
                if targets.get(connection_id) != probe.target:
                    probe.close()
                    del self._probes[connection_id]
            for connection_id, target in targets.items():
                if connection_id not in self._probes:
                    identifier = next(_identifiers) & 0xFFFF
                    self._probes[connection_id] = _Probe(target, HealthState(target.retry), identifier, now)

    def status(self, connection_id: str) -> str | None:
        with self._lock:
            probe = self._probes.get(connection_id)
            return probe.state.status if probe else None

    # -- the loop -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                probes = list(self._probes.values())
            now = time.monotonic()
            for probe in probes:
                if probe.outstanding is not None and now >= probe.deadline:
                    probe.outstanding = None
                    self._record(probe, reply=False)
                if now >= probe.next_send:
                    self._send(probe, now)
            self._receive(probes, self._wait_time(probes))

    def _wait_time(self, probes: list[_Probe]) -> float:
        moments = [p.next_send for p in probes] + [p.deadline for p in probes if p.outstanding is not None]
        if not moments:
            return 0.2
        return max(0.0, min(0.2, min(moments) - time.monotonic()))

    def _send(self, probe: _Probe, now: float) -> None:
        target = probe.target
        probe.next_send = now + target.interval_s
        try:
            if probe.sock is None:
                probe.sock = open_icmp_socket(target.namespace, target.sip)
            probe.sequence = (probe.sequence + 1) & 0xFFFF
            probe.sock.sendto(echo_request(probe.identifier, probe.sequence), (target.dip, 0))
        except ProbeSocketError as error:
            log.debug("health check %s: %s", target.connection_id, error)
            self._record(probe, reply=False)
            return
        except OSError as error:
            if error.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EPERM, errno.EACCES):
                probe.close()  # something else: start with a new socket next time
            self._record(probe, reply=False)
            return
        probe.outstanding = probe.sequence
        probe.deadline = now + min(float(target.interval_s), MAX_WAIT_S)

    def _receive(self, probes: list[_Probe], wait_s: float) -> None:
        waiting = {p.sock: p for p in probes if p.sock is not None}
        if not waiting:
            time.sleep(wait_s)
            return
        try:
            readable, _w, _x = select.select(list(waiting), [], [], wait_s)
        except (OSError, ValueError):  # a socket closed by set_targets meanwhile
            return
        for sock in readable:
            probe = waiting[sock]
            while True:
                try:
                    packet = sock.recv(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                reply = parse_echo_reply(packet)
                if reply is None or probe.outstanding is None:
                    continue
                source, identifier, sequence = reply
                if (source, identifier, sequence) == (probe.target.dip, probe.identifier, probe.outstanding):
                    probe.outstanding = None
                    self._record(probe, reply=True)

    def _record(self, probe: _Probe, *, reply: bool) -> None:
        before = probe.state.status
        probe.state = probe.state.record(reply)
        if probe.state.status != before and probe.state.status is not None:
            try:
                self._on_status(probe.target.connection_id, probe.state.status)
            except Exception:
                log.exception("health-check callback failed")
