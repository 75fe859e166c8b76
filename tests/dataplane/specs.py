"""Builders for desired-state specs: a valid default, changed with keyword arguments."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vpngw.dataplane.spec.desired import ConnectionSpec, IkeSettings, IpsecSettings

TEST_PSK = "test-psk-0123456789"


def ike(**changes: Any) -> IkeSettings:
    base = IkeSettings(
        version="ikev2",
        mode="main",
        enc_alg="aes",
        auth_alg="sha1",
        pfs="group2",
        lifetime=86400,
        psk=TEST_PSK,
        local_id="",
        remote_id="",
    )
    return replace(base, **changes)


def ipsec(**changes: Any) -> IpsecSettings:
    base = IpsecSettings(enc_alg="aes", auth_alg="sha1", pfs="group2", lifetime=86400)
    return replace(base, **changes)


def connection(**changes: Any) -> ConnectionSpec:
    base = ConnectionSpec(
        name="vco-bp1abc2def3ghi4jkl5mn",
        local_addr="198.18.10.1",
        remote_addr="198.18.20.1",
        local_subnets=("10.1.0.0/16",),
        remote_subnets=("192.168.1.0/24",),
        ike=ike(),
        ipsec=ipsec(),
        effect_immediately=True,
        enable_dpd=True,
        enable_nat_traversal=True,
    )
    return replace(base, **changes)
