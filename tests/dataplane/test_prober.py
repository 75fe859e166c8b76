"""The health-check prober: its verdict rule, ICMP framing, and real probes between
namespaces the tests create (a veth pair, no IPsec needed)."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpngw.dataplane import lab
from vpngw.dataplane.prober import (
    HealthState,
    Prober,
    ProbeSocketError,
    ProbeTarget,
    checksum,
    echo_request,
    open_icmp_socket,
    parse_echo_reply,
)


def test_failed_after_retry_misses_and_success_at_the_first_reply() -> None:
    state = HealthState(retry=3)
    assert state.status is None
    state = state.record(False).record(False)
    assert state.status is None
    state = state.record(False)
    assert state.status == "failed"
    assert state.record(True).status == "success"
    assert state.record(True).record(False).record(False).status == "success"  # 2 < 3 misses
    assert state.record(True).record(False).record(False).record(False).status == "failed"


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5))
def test_the_verdict_only_depends_on_the_tail(replies: list[bool], retry: int) -> None:
    state = HealthState(retry)
    for reply in replies:
        state = state.record(reply)
    tail_misses = len(replies) - (max((i for i, r in enumerate(replies) if r), default=-1) + 1)
    if tail_misses >= retry:
        assert state.status == "failed"
    elif True in replies:
        assert state.status == "success"
    else:
        assert state.status is None


def test_echo_requests_carry_a_valid_checksum_and_replies_parse() -> None:
    packet = echo_request(0x1234, 7)
    assert checksum(packet) == 0
    ip_header = bytes([0x45]) + bytes(11) + bytes([10, 10, 1, 7]) + bytes([10, 1, 1, 20])
    reply = bytes([0, 0]) + packet[2:]
    assert parse_echo_reply(ip_header + reply) == ("10.10.1.7", 0x1234, 7)
    assert parse_echo_reply(ip_header + packet) is None  # a request, not a reply
    assert parse_echo_reply(b"short") is None


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    a_addr: str
    b_addr: str
    b_if: str


@pytest.fixture
def pair() -> Iterator[Pair]:
    reason = lab.missing_prerequisites()
    if reason:
        pytest.skip(reason)
    suffix = lab.unique_suffix()
    n = random.randrange(256)
    a, b = f"vpngw-t-{suffix}a", f"vpngw-t-{suffix}b"
    with contextlib.ExitStack() as cleanup:
        for namespace in (a, b):
            lab.create_namespace(namespace)
            cleanup.callback(lab.delete_namespace, namespace)
        lab.add_veth_pair(a, f"vp{suffix}a", b, f"vp{suffix}b")
        lab.add_address(a, f"vp{suffix}a", f"198.19.{n}.1/24")
        lab.add_address(b, f"vp{suffix}b", f"198.19.{n}.2/24")
        yield Pair(a, b, f"198.19.{n}.1", f"198.19.{n}.2", f"vp{suffix}b")


class Verdicts:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.changed = threading.Condition()

    def __call__(self, connection_id: str, status: str) -> None:
        with self.changed:
            self.seen.append((connection_id, status))
            self.changed.notify_all()

    def wait(self, connection_id: str, status: str, timeout_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.seen[-1:] == [(connection_id, status)]
                                         if self.seen else False, timeout=timeout_s)


@pytest.mark.dataplane
def test_a_probe_follows_its_peer_down_and_up(pair: Pair) -> None:
    verdicts = Verdicts()
    prober = Prober(verdicts)
    prober.start()
    try:
        prober.set_targets({"vco-1": ProbeTarget("vco-1", pair.a, pair.a_addr, pair.b_addr, 1, 2)})
        assert verdicts.wait("vco-1", "success", 3)
        lab.run("ip", "-n", pair.b, "link", "set", pair.b_if, "down")
        assert verdicts.wait("vco-1", "failed", 1 * 2 + 1 + 0.5)  # interval x retry + one interval
        lab.run("ip", "-n", pair.b, "link", "set", pair.b_if, "up")
        assert verdicts.wait("vco-1", "success", 3)
        assert prober.status("vco-1") == "success"
        assert [s for _c, s in verdicts.seen] == ["success", "failed", "success"]
    finally:
        prober.stop()


@pytest.mark.dataplane
def test_a_missing_namespace_is_a_miss_not_an_error(pair: Pair) -> None:
    verdicts = Verdicts()
    prober = Prober(verdicts)
    prober.start()
    try:
        prober.set_targets({"vco-2": ProbeTarget("vco-2", "vpngw-t-does-not-exist", "10.0.0.1", pair.b_addr, 1, 2)})
        assert verdicts.wait("vco-2", "failed", 3.5)
        with pytest.raises(ProbeSocketError):
            open_icmp_socket("vpngw-t-does-not-exist", "10.0.0.1")
        with pytest.raises(ProbeSocketError):
            open_icmp_socket(pair.a, "10.99.99.99")  # no such address there
    finally:
        prober.stop()


@pytest.mark.dataplane
def test_removed_targets_stop_reporting(pair: Pair) -> None:
    verdicts = Verdicts()
    prober = Prober(verdicts)
    prober.start()
    try:
        prober.set_targets({"vco-3": ProbeTarget("vco-3", pair.a, pair.a_addr, pair.b_addr, 1, 1)})
        assert verdicts.wait("vco-3", "success", 3)
        prober.set_targets({})
        assert prober.status("vco-3") is None
        lab.run("ip", "-n", pair.b, "link", "set", pair.b_if, "down")
        assert not verdicts.wait("vco-3", "failed", 2.5)
    finally:
        prober.stop()
