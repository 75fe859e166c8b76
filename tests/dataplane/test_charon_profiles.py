"""Each backend brings its charon profile: golden files of both, and what sets them apart.

The lab's test tuning (no DoS cookies, 3 fast retransmits, a log file) must never reach a
host's gateways, which face the Internet: DoS protection and cookie thresholds on,
strongSwan's standard retransmission, logging to syslog for journald.
Regenerate the golden files with VPNGW_UPDATE_GOLDEN=1 when a change is intended.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vpngw.dataplane.backends.base import CharonProfile
from vpngw.dataplane.backends.host import charon_profile as host_profile
from vpngw.dataplane.backends.host.network import HostConfig, HostNetwork
from vpngw.dataplane.backends.lab import charon_profile as lab_profile
from vpngw.dataplane.backends.lab.network import LabNetwork

GOLDEN = Path(__file__).parent / "golden"
VICI = "/var/lib/vpngw/vpngw/g-vpn-x/charon.vici"
LOG = Path("/var/lib/vpngw/vpngw/g-vpn-x/charon.log")
PROFILES: dict[str, CharonProfile] = {
    "lab": lab_profile.strongswan_conf,
    "host": host_profile.strongswan_conf,
}


def settings(text: str) -> dict[str, str]:
    """The top-level ``charon { key = value }`` settings of a rendered strongswan.conf."""
    found = {}
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and " = " in line:
            key, _, value = line.strip().partition(" = ")
            found[key] = value
    return found


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_golden(name: str) -> None:
    path = GOLDEN / f"strongswan.{name}.conf"
    text = PROFILES[name](VICI, LOG)
    if os.environ.get("VPNGW_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path.name} is missing; run with VPNGW_UPDATE_GOLDEN=1"
    assert path.read_text() == text, f"{path.name} differs; if intended, run with VPNGW_UPDATE_GOLDEN=1"


def test_the_host_profile_is_production_and_the_lab_profile_is_not() -> None:
    host = settings(host_profile.strongswan_conf(VICI, LOG))
    lab = settings(lab_profile.strongswan_conf(VICI, LOG))
    assert host["dos_protection"] == "yes" and lab["dos_protection"] == "no"
    assert (host["cookie_threshold"], host["cookie_threshold_ip"], host["block_threshold"]) == (
        "30",
        "3",
        "5",
    )
    assert int(host["init_limit_half_open"]) > 0
    assert (host["retransmit_timeout"], host["retransmit_base"], host["retransmit_tries"]) == (
        "4.0",
        "1.8",
        "5",
    )
    assert lab["retransmit_tries"] == "3"


def test_host_charons_log_to_syslog_and_write_no_file() -> None:
    host = host_profile.strongswan_conf(VICI, LOG)
    assert "filelog" not in host and str(LOG) not in host
    assert f"identifier = {host_profile.SYSLOG_IDENTIFIER}" in host
    assert "daemon {\n      default = 1" in host
    lab = lab_profile.strongswan_conf(VICI, LOG)
    assert f"path = {LOG}" in lab and "daemon { default = -1 }" in lab


def test_both_profiles_load_the_same_plugins_and_their_own_vici_socket() -> None:
    for profile in PROFILES.values():
        text = profile(VICI, LOG)
        assert f"vici {{ socket = unix://{VICI} }}" in text
        assert "kernel-libipsec { load = yes }" in text and "stroke { load = no }" in text


def test_each_backend_brings_its_own_profile(tmp_path: Path) -> None:
    lab = LabNetwork("vpngw-p", tmp_path / "lab")
    host = HostNetwork(HostConfig("n1", "eth0", "br-vpc", tmp_path / "host"))
    assert lab.gateway("vpn-x").profile is lab_profile.strongswan_conf
    assert host.gateway("vpn-x").profile is host_profile.strongswan_conf
