"""The health-check prober: its verdict rule and ICMP framing (pure), then real probes
between namespaces the tests create (veth pairs, no IPsec needed).

The namespace tests need root and iproute2; every namespace they make is deleted even
when a test fails, and each test checks ``ip netns list`` afterwards.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.errors import InvalidSpec, TemporaryError
from vpngw.dataplane.observe.prober import (
    EchoReply,
    HealthState,
    Prober,
    ProbeSocketError,
    ProbeTarget,
    checksum,
    echo_request,
    open_icmp_socket,
    parse_echo_reply,
)
from vpngw.dataplane.system import netns

# -- the verdict --------------------------------------------------------------------


def test_failed_after_retry_misses_and_success_at_the_first_reply() -> None:
    state = HealthState(retry=3)
    assert (state.status, state.verdict) == ("failed", None)
    state = state.record(False).record(False)
    assert (state.status, state.verdict) == ("failed", None)  # 2 < 3 misses: no verdict yet
    state = state.record(False)
    assert (state.status, state.verdict) == ("failed", "failed")
    up = state.record(True)
    assert (up.status, up.verdict) == ("success", "success")
    assert up.record(False).record(False).status == "success"  # 2 < 3 misses
    assert up.record(False).record(False).record(False).status == "failed"
    assert up.record(False).record(False).record(True).record(False).record(False).status == "success"


def test_the_initial_status_stands_until_a_verdict() -> None:
    state = HealthState(retry=2, status="success")
    assert (state.record(False).status, state.record(False).verdict) == ("success", None)
    assert state.record(False).record(False).verdict == "failed"
    assert HealthState(retry=1).record(False).verdict == "failed"


@pytest.mark.parametrize("arguments", [{"retry": 0}, {"retry": 2, "status": "up"}])
def test_a_health_state_rejects_nonsense(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        HealthState(**arguments)  # type: ignore[arg-type]


@given(
    st.lists(st.booleans(), max_size=40),
    st.integers(1, 5),
    st.sampled_from(["success", "failed"]),
)
def test_the_verdict_depends_only_on_the_trailing_misses(
    replies: list[bool], retry: int, initial: str
) -> None:
    state = HealthState(retry, status=initial)
    for reply in replies:
        state = state.record(reply)
    last_reply = max((i for i, reply in enumerate(replies) if reply), default=-1)
    trailing_misses = len(replies) - last_reply - 1
    expected: tuple[str, str | None]
    if trailing_misses >= retry:
        expected = ("failed", "failed")
    elif last_reply >= 0:
        expected = ("success", "success")
    else:
        expected = (initial, None)
    assert (state.status, state.verdict) == expected
    assert 0 <= state.misses <= retry


# -- ICMP framing -------------------------------------------------------------------


def ipv4_header(source: str, destination: str, options: bytes = b"") -> bytes:
    """Enough of an IPv4 header for parse_echo_reply (a raw socket hands it over)."""
    version_ihl = 0x40 | (5 + len(options) // 4)
    fixed = struct.pack("!BBHHHBBH", version_ihl, 0, 0, 0, 0, 64, 1, 0)
    return fixed + socket.inet_aton(source) + socket.inet_aton(destination) + options


def as_reply(request: bytes) -> bytes:
    """What a peer sends back: type 0, the checksum adjusted, the rest echoed."""
    unsummed = b"\0\0\0\0" + request[4:]
    return unsummed[:2] + struct.pack("!H", checksum(unsummed)) + unsummed[4:]


def test_checksum_matches_rfc_1071() -> None:
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D  # RFC 1071, section 3
    assert checksum(b"\x01") == checksum(b"\x01\x00")  # an odd byte is padded


def test_an_echo_request_is_framed_as_ping_frames_it() -> None:
    assert echo_request(0x1234, 1, b"") == bytes.fromhex("0800e5ca12340001")
    assert echo_request(0x1234, 1).endswith(b"vpngw-health")


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=64))
def test_requests_carry_a_valid_checksum_and_their_replies_parse(
    identifier: int, sequence: int, payload: bytes
) -> None:
    request = echo_request(identifier, sequence, payload)
    assert checksum(request) == 0
    reply = as_reply(request)
    assert parse_echo_reply(ipv4_header("10.10.1.7", "10.1.1.20") + reply) == EchoReply(
        "10.10.1.7", identifier, sequence
    )
    with_options = ipv4_header("10.10.1.7", "10.1.1.20", options=b"\x01\x01\x01\x00")  # NOPs, EOL
    assert parse_echo_reply(with_options + reply) == EchoReply("10.10.1.7", identifier, sequence)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.data())
def test_a_corrupted_reply_is_ignored(identifier: int, sequence: int, data: st.DataObject) -> None:
    reply = bytearray(as_reply(echo_request(identifier, sequence)))
    bit = data.draw(st.integers(0, len(reply) * 8 - 1))
    reply[bit // 8] ^= 1 << (bit % 8)
    assert parse_echo_reply(ipv4_header("10.10.1.7", "10.1.1.20") + bytes(reply)) is None


def test_anything_but_an_echo_reply_is_ignored() -> None:
    header = ipv4_header("10.10.1.7", "10.1.1.20")
    request = echo_request(7, 9)
    assert parse_echo_reply(header + request) is None  # a request, not a reply
    unreachable = struct.pack("!BBHI", 3, 1, 0, 0) + header
    unreachable = unreachable[:2] + struct.pack("!H", checksum(unreachable)) + unreachable[4:]
    assert parse_echo_reply(header + unreachable) is None
    assert parse_echo_reply(header + as_reply(request)[:7]) is None  # truncated
    assert parse_echo_reply(b"short") is None
    assert parse_echo_reply(bytes([0x60]) + header[1:] + as_reply(request)) is None  # not IPv4


# -- targets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"interval_s": 0},
        {"retry": 0},
        {"retry": True},
        {"interval_s": 1.5},
        {"dip": "peer.example.com"},
        {"sip": "10.0.0.300"},
        {"namespace": "../etc"},
        {"namespace": ""},
    ],
)
def test_a_target_rejects_nonsense(fields: dict[str, object]) -> None:
    good: dict[str, object] = {
        "connection_id": "vco-1",
        "namespace": "ns",
        "sip": "10.0.0.1",
        "dip": "10.0.0.2",
        "interval_s": 3,
        "retry": 3,
    }
    ProbeTarget(**good)  # type: ignore[arg-type]
    with pytest.raises(InvalidSpec):
        ProbeTarget(**{**good, **fields})  # type: ignore[arg-type]


def test_a_socket_is_refused_for_a_malformed_name_before_touching_anything() -> None:
    with pytest.raises(InvalidSpec):
        open_icmp_socket("../../proc/1/ns/net", "10.0.0.1")
    with pytest.raises(InvalidSpec):
        open_icmp_socket("ns", "localhost")
    assert issubclass(ProbeSocketError, TemporaryError)


def test_set_targets_refuses_a_target_filed_under_another_id() -> None:
    prober = Prober(lambda _c, _s: None)
    check = ProbeTarget("vco-1", "ns", "10.0.0.1", "10.0.0.2", 3, 3)
    with pytest.raises(ValueError):
        prober.set_targets({"vco-2": check})
    prober.stop()
    prober.stop()  # idempotent, and fine before start
    with pytest.raises(RuntimeError):
        prober.start()


def test_a_failing_callback_does_not_stop_the_prober(caplog: pytest.LogCaptureFixture) -> None:
    """Runs anywhere: a namespace that does not exist is a miss, no root needed."""
    calls: list[tuple[str, str]] = []

    def on_status(connection_id: str, status: str) -> None:
        calls.append((connection_id, status))
        raise RuntimeError("the store is down")

    prober = Prober(on_status)
    prober.start()
    try:
        absent = f"vpngw-t-{netns.unique_suffix()}-absent"
        first = ProbeTarget("vco-1", absent, "10.0.0.1", "10.0.0.2", 1, 1)
        prober.set_targets({"vco-1": first})
        assert netns.wait_until(lambda: calls == [("vco-1", "failed")], timeout_s=2.0), calls
        second = ProbeTarget("vco-2", absent, "10.0.0.1", "10.0.0.3", 1, 2)
        prober.set_targets({"vco-1": first, "vco-2": second})
        assert netns.wait_until(lambda: calls[1:] == [("vco-2", "failed")], timeout_s=3.0), calls
        assert (prober.status("vco-1"), prober.status("vco-2")) == ("failed", "failed")
    finally:
        prober.stop()
    assert "the health-check callback failed" in caplog.text


# -- the lab ------------------------------------------------------------------------


def namespace_list() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def delete_if_present(namespace: str) -> None:
    """Cleanup that also works when a test deleted the namespace itself."""
    if namespace in namespace_list():
        netns.delete_namespace(namespace)


def link_exists(namespace: str, ifname: str) -> bool:
    done = subprocess.run(
        ["ip", "-n", namespace, "link", "show", "dev", ifname], capture_output=True, check=False
    )
    return done.returncode == 0


@dataclass(frozen=True)
class Link:
    """A veth pair: ``a_addr`` on the first namespace's end, ``b_addr`` on the other."""

    a_if: str
    b_if: str
    a_addr: str
    b_addr: str


class Netlab:
    """Namespaces and veth pairs with random names and 198.19.x.0/24 subnets; each
    namespace's deletion is registered as soon as it exists."""

    def __init__(self, cleanup: contextlib.ExitStack) -> None:
        self.suffix = netns.unique_suffix()
        self.created: set[str] = set()
        self._cleanup = cleanup
        self._subnets = iter(random.sample(range(256), 256))
        self._links = 0

    def name(self, tag: str) -> str:
        return f"vpngw-t-{self.suffix}{tag}"

    def namespace(self, tag: str) -> str:
        name = self.name(tag)
        netns.create_namespace(name)
        self.created.add(name)
        self._cleanup.callback(delete_if_present, name)
        return name

    def subnet(self) -> int:
        return next(self._subnets)

    def link(self, a: str, b: str, subnet: int | None = None) -> Link:
        x = self.subnet() if subnet is None else subnet
        self._links += 1
        a_if, b_if = f"vp{self.suffix}{self._links}a", f"vp{self.suffix}{self._links}b"
        netns.add_veth_pair(a, a_if, b, b_if)
        netns.add_address(a, a_if, f"198.19.{x}.1/24")
        netns.add_address(b, b_if, f"198.19.{x}.2/24")
        return Link(a_if, b_if, f"198.19.{x}.1", f"198.19.{x}.2")


@pytest.fixture
def netlab() -> Iterator[Netlab]:
    reason = charon_daemon.missing_prerequisites()
    if reason:
        pytest.skip(reason)
    with contextlib.ExitStack() as cleanup:
        built = Netlab(cleanup)
        yield built
    leftovers = built.created & namespace_list()
    assert not leftovers, f"namespaces left behind: {sorted(leftovers)}"


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    link: Link


@pytest.fixture
def pair(netlab: Netlab) -> Pair:
    a, b = netlab.namespace("a"), netlab.namespace("b")
    return Pair(a, b, netlab.link(a, b))


class Verdicts:
    """The prober's callback: every (connection, status) it reports, with the time."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str]] = []
        self._changed = threading.Condition()

    def __call__(self, connection_id: str, status: str) -> None:
        with self._changed:
            self.seen.append((time.monotonic(), connection_id, status))
            self._changed.notify_all()

    def of(self, connection_id: str) -> list[str]:
        with self._changed:
            return [status for _t, cid, status in self.seen if cid == connection_id]

    def wait(self, connection_id: str, expected: list[str], timeout_s: float) -> float | None:
        """When the reports for ``connection_id`` became exactly ``expected``, or None
        if they did not within ``timeout_s``."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.of(connection_id) == expected, timeout=timeout_s):
                return None
            return [t for t, cid, _s in self.seen if cid == connection_id][-1]


@dataclass(frozen=True)
class Running:
    prober: Prober
    verdicts: Verdicts


@pytest.fixture
def running(netlab: Netlab) -> Iterator[Running]:
    """A started prober, stopped before the namespaces go (it depends on ``netlab``)."""
    verdicts = Verdicts()
    prober = Prober(verdicts)
    prober.start()
    try:
        yield Running(prober, verdicts)
    finally:
        prober.stop()
        assert not any(t.name == "vpngw-prober" and t.is_alive() for t in threading.enumerate())


def target(
    connection_id: str, namespace: str, sip: str, dip: str, *, interval_s: int = 1, retry: int = 2
) -> ProbeTarget:
    return ProbeTarget(connection_id, namespace, sip, dip, interval_s, retry)


# -- sockets inside a namespace ---------------------------------------------------------


@pytest.mark.dataplane
def test_a_socket_made_in_a_namespace_pings_from_there(pair: Pair) -> None:
    own_namespace = os.readlink("/proc/thread-self/ns/net")
    with pytest.raises(OSError):  # the address exists only inside namespace a
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).bind((pair.link.a_addr, 0))
    sock = open_icmp_socket(pair.a, pair.link.a_addr)
    try:
        assert os.readlink("/proc/thread-self/ns/net") == own_namespace
        assert sock.getsockname()[0] == pair.link.a_addr
        sock.sendto(echo_request(0xBEEF, 3), (pair.link.b_addr, 0))
        readable, _w, _x = select.select([sock], [], [], 2.0)
        assert readable, "no echo reply within 2 s"
        assert parse_echo_reply(sock.recv(2048)) == EchoReply(pair.link.b_addr, 0xBEEF, 3)
    finally:
        sock.close()


@pytest.mark.dataplane
def test_a_socket_needs_the_namespace_and_the_address(pair: Pair, netlab: Netlab) -> None:
    with pytest.raises(ProbeSocketError, match="does-not-exist"):
        open_icmp_socket(netlab.name("does-not-exist"), "10.0.0.1")
    with pytest.raises(ProbeSocketError, match="198.18.255.254"):
        open_icmp_socket(pair.a, "198.18.255.254")  # no such address there


# -- the prober -----------------------------------------------------------------------


@pytest.mark.dataplane
def test_a_probe_follows_its_peer_down_and_up(pair: Pair, running: Running) -> None:
    prober, verdicts = running.prober, running.verdicts
    link = pair.link
    prober.set_targets({"vco-1": target("vco-1", pair.a, link.a_addr, link.b_addr)})
    assert verdicts.wait("vco-1", ["success"], 2.5), verdicts.seen

    removed_at = time.monotonic()
    netns.run("ip", "-n", pair.b, "addr", "del", f"{link.b_addr}/24", "dev", link.b_if)
    failed_at = verdicts.wait(
        "vco-1", ["success", "failed"], 1 * 2 + 1 + 0.5
    )  # interval x retry + one interval
    assert failed_at, verdicts.seen
    assert failed_at - removed_at >= 1.9, "failed before two misses"  # retry=2: one miss is not enough
    assert prober.status("vco-1") == "failed"

    netns.add_address(pair.b, link.b_if, f"{link.b_addr}/24")
    assert verdicts.wait("vco-1", ["success", "failed", "success"], 2.5), verdicts.seen
    assert prober.status("vco-1") == "success"
    time.sleep(1.5)
    assert verdicts.of("vco-1") == ["success", "failed", "success"]  # no repeats without change


@pytest.mark.dataplane
def test_probes_sharing_a_socket_get_only_their_own_replies(pair: Pair, running: Running) -> None:
    prober, verdicts = running.prober, running.verdicts
    link = pair.link
    nobody = link.b_addr.rsplit(".", 1)[0] + ".3"  # same subnet, no host: no reply
    prober.set_targets(
        {
            "vco-up": target("vco-up", pair.a, link.a_addr, link.b_addr),
            "vco-down": target("vco-down", pair.a, link.a_addr, nobody),
        }
    )
    assert verdicts.wait("vco-up", ["success"], 2.5)
    assert verdicts.wait("vco-down", ["failed"], 3.5)
    time.sleep(1.2)
    assert (verdicts.of("vco-up"), verdicts.of("vco-down")) == (["success"], ["failed"])
    assert (prober.status("vco-up"), prober.status("vco-down")) == ("success", "failed")


def echo_request_in(packet: bytes) -> tuple[int, int] | None:
    """(identifier, sequence) of the echo request in an IPv4 datagram, else None."""
    icmp = packet[(packet[0] & 0x0F) * 4 :]
    kind, _code, _sum, identifier, sequence = struct.unpack("!BBHHH", icmp[:8])
    return (identifier, sequence) if kind == 8 else None


def forged_reply(identifier: int, sequence: int) -> bytes:
    return as_reply(echo_request(identifier, sequence & 0xFFFF))


def next_request(sniffer: socket.socket, timeout_s: float) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sniffer], [], [], left)[0]:
            request = echo_request_in(sniffer.recv(2048))
            if request is not None:
                return request
    raise AssertionError(f"no echo request within {timeout_s} s")


@pytest.mark.dataplane
def test_only_the_reply_to_the_outstanding_request_counts(pair: Pair, running: Running) -> None:
    """B does not answer pings; the test answers in its place, wrongly then rightly."""
    prober, verdicts = running.prober, running.verdicts
    link = pair.link
    netns.run("ip", "netns", "exec", pair.b, "sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1")
    impostor = link.b_addr.rsplit(".", 1)[0] + ".3"
    netns.add_address(pair.b, link.b_if, f"{impostor}/24")
    with contextlib.ExitStack() as sockets:
        sniffer = sockets.enter_context(contextlib.closing(open_icmp_socket(pair.b, link.b_addr)))
        sniffer.setsockopt(255, 1, struct.pack("I", 0))  # ICMP_FILTER: receive every type
        elsewhere = sockets.enter_context(contextlib.closing(open_icmp_socket(pair.b, impostor)))
        prober.set_targets(
            {"vco-5": target("vco-5", pair.a, link.a_addr, link.b_addr, interval_s=2, retry=1)}
        )
        for _ in range(2):
            identifier, sequence = next_request(sniffer, 3.0)
            elsewhere.sendto(forged_reply(identifier, sequence), (link.a_addr, 0))  # wrong source
            sniffer.sendto(forged_reply(identifier, sequence - 1), (link.a_addr, 0))  # stale
            sniffer.sendto(forged_reply(identifier ^ 1, sequence), (link.a_addr, 0))  # another probe's
        assert verdicts.wait("vco-5", ["failed"], 1.0), verdicts.seen
        identifier, sequence = next_request(sniffer, 3.0)
        sniffer.sendto(forged_reply(identifier, sequence), (link.a_addr, 0))
        assert verdicts.wait("vco-5", ["failed", "success"], 1.0), verdicts.seen


@pytest.mark.dataplane
def test_a_missing_namespace_is_a_miss_until_it_appears(pair: Pair, netlab: Netlab, running: Running) -> None:
    prober, verdicts = running.prober, running.verdicts
    late = netlab.name("late")
    x = netlab.subnet()
    check = target("vco-2", late, f"198.19.{x}.1", f"198.19.{x}.2")
    prober.set_targets({"vco-2": check})
    assert (prober.status("vco-2"), prober.verdict("vco-2")) == ("failed", None)  # before any verdict
    assert prober.status("vco-other") is None
    assert verdicts.wait("vco-2", ["failed"], 1 * 2 + 1)
    time.sleep(1.5)
    assert verdicts.of("vco-2") == ["failed"]

    created = netlab.namespace("late")
    assert created == late
    netlab.link(late, pair.b, subnet=x)
    assert verdicts.wait("vco-2", ["failed", "success"], 2.5), verdicts.seen


@pytest.mark.dataplane
def test_a_namespace_made_again_gets_a_new_socket(pair: Pair, netlab: Netlab, running: Running) -> None:
    prober, verdicts = running.prober, running.verdicts
    link = pair.link
    prober.set_targets({"vco-4": target("vco-4", pair.a, link.a_addr, link.b_addr)})
    assert verdicts.wait("vco-4", ["success"], 2.5)

    netns.delete_namespace(pair.a)
    # The prober's socket would keep the deleted namespace, and the veth with it, alive.
    assert netns.wait_until(lambda: not link_exists(pair.b, link.b_if), timeout_s=2.5), "socket not closed"
    assert verdicts.wait("vco-4", ["success", "failed"], 3.5)

    netlab.namespace("a")
    netlab.link(pair.a, pair.b, subnet=int(link.a_addr.split(".")[2]))
    assert verdicts.wait("vco-4", ["success", "failed", "success"], 2.5), verdicts.seen


@pytest.mark.dataplane
def test_set_targets_keeps_unchanged_checks_restarts_changed_and_stops_removed(
    pair: Pair, running: Running
) -> None:
    prober, verdicts = running.prober, running.verdicts
    link = pair.link
    kept = target("vco-kept", pair.a, link.a_addr, link.b_addr)
    changed = target("vco-changed", pair.a, link.a_addr, link.b_addr)
    removed = target("vco-removed", pair.a, link.a_addr, link.b_addr)
    prober.set_targets({"vco-kept": kept, "vco-changed": changed, "vco-removed": removed})
    for connection_id in ("vco-kept", "vco-changed", "vco-removed"):
        assert verdicts.wait(connection_id, ["success"], 2.5)

    prober.set_targets(
        {"vco-kept": kept, "vco-changed": target("vco-changed", pair.a, link.a_addr, link.b_addr, retry=3)}
    )
    assert prober.status("vco-removed") is None
    assert prober.status("vco-kept") == "success"  # kept its state
    assert verdicts.wait("vco-changed", ["success", "success"], 2.5)  # a new check: a new first verdict

    prober.set_targets({"vco-kept": kept})
    netns.run("ip", "-n", pair.b, "link", "set", link.b_if, "down")
    assert verdicts.wait("vco-kept", ["success", "failed"], 3.5)
    time.sleep(1.0)
    assert verdicts.of("vco-removed") == ["success"]
    assert verdicts.of("vco-changed") == ["success", "success"]
    assert prober.status("vco-changed") is None


@pytest.mark.dataplane
def test_a_hundred_probes_run_on_one_thread(pair: Pair, running: Running) -> None:
    prober, verdicts = running.prober, running.verdicts
    link = pair.link
    threads = threading.active_count()
    targets = {f"vco-{i}": target(f"vco-{i}", pair.a, link.a_addr, link.b_addr) for i in range(100)}
    prober.set_targets(targets)
    for connection_id in targets:
        assert verdicts.wait(connection_id, ["success"], 3.0), connection_id
    assert threading.active_count() == threads
