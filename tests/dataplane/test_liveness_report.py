"""The partner watch's datagram (dataplane/observe/liveness_report.py): only the holder of
the gateway's key can write one, a rotation loses none, and a reflected, replayed or
off-clock report does not count."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from vpngw.dataplane.observe.liveness_report import (
    MAX_CLOCK_SKEW_NS,
    Report,
    acceptable,
    key_purpose,
    open_report,
    seal,
)
from vpngw.sealing import Sealer, new_master_key_line, parse_keyring

OLD, NEW = new_master_key_line("k1"), new_master_key_line("k2")


def keys(*lines: str, gateway: str = "vpn-x") -> tuple[bytes, ...]:
    return Sealer(parse_keyring(",".join(lines))).derived_keys(key_purpose(gateway))


def test_a_sealed_report_opens_with_the_gateways_keys_and_with_no_other() -> None:
    report = Report("vpn-x", True, time.time_ns())
    datagram = seal(keys(OLD), report)
    assert open_report(keys(OLD), datagram) == report
    assert open_report(keys(NEW), datagram) is None  # another fleet's master key
    assert open_report(keys(OLD, gateway="vpn-y"), datagram) is None  # another gateway's key
    assert open_report(keys(OLD), seal(keys(OLD), Report("vpn-x.dr", False, 7))) == Report(
        "vpn-x.dr", False, 7
    )


def test_every_field_is_covered_by_the_mac() -> None:
    datagram = seal(keys(OLD), Report("vpn-x", False, 1_000))
    for old, new in ((b"vpn-x ", b"vpn-y "), (b" 0 ", b" 1 "), (b" 1000 ", b" 1001 ")):
        assert old in datagram
        assert open_report(keys(OLD), datagram.replace(old, new, 1)) is None
    body, _, mac = datagram.rpartition(b" ")
    assert open_report(keys(OLD), body + b" " + mac[:-2]) is None  # a shortened MAC
    assert open_report(keys(OLD), body) is None


def test_a_master_key_rotation_loses_no_report() -> None:
    # Step 2 of docs/security.md's rotation: every node gets "k2,k1" (or still has "k1"
    # with "k2" after it): what either signs, the other opens.
    before, after = keys(OLD, NEW), keys(NEW, OLD)
    report = Report("vpn-x", True, 5)
    assert open_report(after, seal(before, report)) == report
    assert open_report(before, seal(after, report)) == report
    assert open_report(keys(OLD), seal(after, report)) is None  # a node without the new key


def test_the_derived_keys_are_per_purpose_and_not_the_digest_keys() -> None:
    sealer = Sealer(parse_keyring(OLD))
    first = sealer.derived_keys(key_purpose("vpn-x"))
    assert first == sealer.derived_keys(key_purpose("vpn-x")) and len(first[0]) == 32
    assert first != sealer.derived_keys(key_purpose("vpn-y"))
    assert first[0] != sealer._digest_key(sealer.keyring[0], key_purpose("vpn-x"))[1]


@given(st.binary(max_size=200))
def test_any_datagram_is_opened_or_refused_never_an_exception(datagram: bytes) -> None:
    assert open_report(keys(OLD), datagram) is None


def test_a_reflected_a_replayed_or_an_off_clock_report_does_not_count() -> None:
    now = time.time_ns()
    fresh = Report("vpn-x", True, now)
    assert acceptable(fresh, receiver="vpn-x.dr", last_sent_ns=now - 1, now_ns=now)
    # Its own report sent back to it: both addresses share the key, so only this tells.
    assert not acceptable(Report("vpn-x.dr", True, now), receiver="vpn-x.dr", last_sent_ns=0, now_ns=now)
    # Not newer than the last one taken: a replay (or a duplicate).
    assert not acceptable(fresh, receiver="vpn-x.dr", last_sent_ns=now, now_ns=now)
    # Outside the clock window, either way (a receiver that just started has no last one).
    late = Report("vpn-x", True, now - MAX_CLOCK_SKEW_NS - 1)
    early = Report("vpn-x", True, now + MAX_CLOCK_SKEW_NS + 1)
    assert not acceptable(late, receiver="vpn-x.dr", last_sent_ns=0, now_ns=now)
    assert not acceptable(early, receiver="vpn-x.dr", last_sent_ns=0, now_ns=now)
    assert acceptable(
        Report("vpn-x", True, now - MAX_CLOCK_SKEW_NS), receiver="vpn-x.dr", last_sent_ns=0, now_ns=now
    )
