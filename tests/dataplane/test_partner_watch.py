"""The liveness exchange between a dual-tunnel gateway's two addresses: the pure rule,
two real watches in two namespaces that lose each other when their link goes, and a
survivor that no forged, replayed or reflected datagram keeps from taking over."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from vpngw.dataplane.observe.liveness_report import Report, key_purpose, seal
from vpngw.dataplane.observe.partner_watch import PORT, PartnerWatch, WatchedAddress, decide
from vpngw.dataplane.system import netns
from vpngw.sealing import Sealer, new_master_key_line, parse_keyring

KEYS = Sealer(parse_keyring(new_master_key_line("k1"))).derived_keys(key_purpose("vpn-x"))


def test_the_preferred_address_holds_the_vpc_side_while_up_and_the_other_takes_it_when_it_is_lost() -> None:
    # Preferred and up: holds, whatever its partner.
    assert decide(preferred=True, my_tunnels_up=True, partner_ok=True, partner_was_ok=True).hold_next_hop
    # The other address leaves it to an OK preferred partner...
    assert not decide(preferred=False, my_tunnels_up=True, partner_ok=True, partner_was_ok=True).hold_next_hop
    # ...and takes it, and rekeys, the moment that partner is lost.
    lost = decide(preferred=False, my_tunnels_up=True, partner_ok=False, partner_was_ok=True)
    assert lost.hold_next_hop and lost.rekey
    # Rekeyed once per loss, not at every round while the partner stays lost.
    assert not decide(preferred=False, my_tunnels_up=True, partner_ok=False, partner_was_ok=False).rekey
    # Never a partner at all (start-up): hold, both may hold for a moment (harmless), no rekey.
    alone = decide(preferred=False, my_tunnels_up=True, partner_ok=False, partner_was_ok=False)
    assert alone.hold_next_hop and not alone.rekey
    # Tunnels down: nothing to offer, whoever is preferred.
    down = decide(preferred=True, my_tunnels_up=False, partner_ok=False, partner_was_ok=True)
    assert not down.hold_next_hop and not down.rekey


@pytest.fixture
def two_sides() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    suffix = netns.unique_suffix()
    a, b = f"vpngw-pw-{suffix}-a", f"vpngw-pw-{suffix}-b"
    for namespace in (a, b):
        netns.ensure_namespace(namespace)
    try:
        netns.add_veth_pair(a, "wan0", b, "wan0")
        netns.add_address(a, "wan0", "198.18.7.1/24")
        netns.add_address(b, "wan0", "198.18.7.2/24")
        yield a, b
    finally:
        for namespace in (a, b):
            netns.delete_namespace(namespace)


def watch_pair(
    a: str, b: str, calls: list[tuple[str, bool, float]]
) -> tuple[list[PartnerWatch], WatchedAddress, WatchedAddress]:
    """Two watches (not started) that note every next-hop call in ``calls``, and the two
    addresses of gateway vpn-x: the preferred one in namespace ``a``, the other in ``b``."""
    watches = [
        PartnerWatch(on_next_hop=lambda key, hold: calls.append((key, hold, time.monotonic()))) for _ in "ab"
    ]
    first = WatchedAddress(
        "vpn-x", a, "198.18.7.1", "198.18.7.2", True, "/nonexistent/charon.vici", ("tun-1",), KEYS
    )
    second = WatchedAddress(
        "vpn-x.dr", b, "198.18.7.2", "198.18.7.1", False, "/nonexistent/charon.vici", ("tun-2",), KEYS
    )
    return watches, first, second


def test_two_watches_see_each_other_and_the_survivor_takes_over_within_a_second(
    two_sides: tuple[str, str],
) -> None:
    a, b = two_sides
    calls: list[tuple[str, bool, float]] = []
    watches, first, second = watch_pair(a, b, calls)
    try:
        watches[0].set_addresses({"vpn-x": first})
        watches[1].set_addresses({"vpn-x.dr": second})
        watches[0].set_tunnels_up("vpn-x", True)
        watches[1].set_tunnels_up("vpn-x.dr", True)
        assert netns.wait_until(
            lambda: watches[0].partner_ok("vpn-x") and watches[1].partner_ok("vpn-x.dr"), timeout_s=3
        )
        time.sleep(0.3)
        # Settled: the preferred address holds the VPC side, the other does not.
        assert [hold for key, hold, _ in calls if key == "vpn-x"][-1] is True
        assert [hold for key, hold, _ in calls if key == "vpn-x.dr"][-1] is False
        # The preferred side drops off the network: the other takes over, and rekeys once.
        lost_at = time.monotonic()
        netns.run("ip", "-n", a, "link", "set", "wan0", "down")

        def taken_at() -> list[float]:
            return [t for key, hold, t in calls if key == "vpn-x.dr" and hold and t > lost_at]

        assert netns.wait_until(lambda: bool(taken_at()), timeout_s=2, interval_s=0.01)
        took = taken_at()[0]
        assert took - lost_at < 0.8  # 100 ms datagrams, lost after 500 ms
        assert watches[1].rekeys("vpn-x.dr") == 1  # one rekey per loss (the charon is absent here)
        # The link returns: the preferred address's partner is OK again, and it gives way.
        netns.run("ip", "-n", a, "link", "set", "wan0", "up")
        assert netns.wait_until(lambda: watches[1].partner_ok("vpn-x.dr"), timeout_s=3)
        time.sleep(0.3)
        assert [hold for key, hold, _ in calls if key == "vpn-x.dr"][-1] is False
        assert watches[1].rekeys("vpn-x.dr") == 1
    finally:
        for watch in watches:
            watch.stop()


def test_no_forged_replayed_or_reflected_datagram_keeps_a_lost_partner_alive(
    two_sides: tuple[str, str],
) -> None:
    """The preferred side dies; from its address, someone without the gateway's key keeps
    sending what would have kept it "alive" without authentication: forged reports, a
    genuine report captured earlier (replayed), and the survivor's own fresh reports sent
    back to it (reflected). The survivor still takes over in time, and stays in charge."""
    a, b = two_sides
    calls: list[tuple[str, bool, float]] = []
    watches, first, second = watch_pair(a, b, calls)
    wrong_keys = Sealer(parse_keyring(new_master_key_line("k9"))).derived_keys(key_purpose("vpn-x"))
    captured = seal(KEYS, Report("vpn-x", True, time.time_ns()))  # genuine, and soon old
    stop = threading.Event()

    def attack() -> None:
        sock = netns.in_namespace(a, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        sock.bind(("198.18.7.1", 0))
        try:
            while not stop.is_set():
                now = time.time_ns()
                for datagram in (
                    seal(wrong_keys, Report("vpn-x", True, now)),  # forged
                    b"vpngw-live1 vpn-x 1",  # the unauthenticated format of before
                    captured,  # replayed
                    seal(KEYS, Report("vpn-x.dr", True, now)),  # reflected
                ):
                    sock.sendto(datagram, ("198.18.7.2", PORT))
                time.sleep(0.02)
        finally:
            sock.close()

    attacker = threading.Thread(target=attack, daemon=True)
    try:
        watches[0].set_addresses({"vpn-x": first})
        watches[1].set_addresses({"vpn-x.dr": second})
        watches[0].set_tunnels_up("vpn-x", True)
        watches[1].set_tunnels_up("vpn-x.dr", True)
        assert netns.wait_until(lambda: watches[1].partner_ok("vpn-x.dr"), timeout_s=3)
        time.sleep(0.3)
        assert [hold for key, hold, _ in calls if key == "vpn-x.dr"][-1] is False
        # The preferred side dies (its watch stops), and the attack starts from its address.
        lost_at = time.monotonic()
        watches[0].stop()
        attacker.start()

        def taken_at() -> list[float]:
            return [t for key, hold, t in calls if key == "vpn-x.dr" and hold and t > lost_at]

        assert netns.wait_until(lambda: bool(taken_at()), timeout_s=2, interval_s=0.01)
        assert taken_at()[0] - lost_at < 0.8
        time.sleep(1.0)  # a second more of the attack: nothing brings the dead partner back
        assert not watches[1].partner_ok("vpn-x.dr")
        assert [hold for key, hold, _ in calls if key == "vpn-x.dr"][-1] is True
        assert watches[1].rekeys("vpn-x.dr") == 1
    finally:
        stop.set()
        if attacker.is_alive():
            attacker.join(timeout=2)
        for watch in watches:
            watch.stop()
