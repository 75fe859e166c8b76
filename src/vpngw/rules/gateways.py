"""Rules for VPCs, VPN gateways and customer gateways."""

from __future__ import annotations

import ipaddress
import re

from vpngw.errors import BadRequest, invalid_parameter

BANDWIDTHS = (5, 10, 20, 50, 100, 200, 500, 1000)
# Addresses a customer gateway can never have (the reference's list).
_RESERVED = tuple(
    ipaddress.IPv4Network(n)
    for n in ("0.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")
)
_PRIVATE_BLOCKS = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_ASN_DOT = re.compile(r"(\d{1,5})\.(\d{1,5})", re.ASCII)
_DIGITS = re.compile(r"\d{1,10}", re.ASCII)
ALIBABA_ASN = 45104


def check_customer_gateway_ip(value: str) -> str:
    """An IPv4 address outside the reserved ranges (loopback, link-local, multicast, CGNAT, ...)."""
    try:
        address = ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise BadRequest(
            "InvalidIpAddress.WrongFormat", f"Specified IpAddress {value!r} is not an IPv4 address."
        ) from None
    if any(address in network for network in _RESERVED) or address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        raise BadRequest(
            "InvalidIpAddress.WrongFormat", f"Specified IpAddress {address} is in a reserved range."
        )
    return str(address)


def parse_asn(value: str) -> int:
    """1–4294967295 except Alibaba's own 45104, plain or as ``high.low`` 16-bit halves."""
    dotted = _ASN_DOT.fullmatch(value.strip())
    if dotted:
        high, low = int(dotted.group(1)), int(dotted.group(2))
        if high > 65535 or low > 65535:
            raise invalid_parameter("Asn", "each half of a dotted ASN is at most 65535")
        asn = high * 65536 + low
    elif _DIGITS.fullmatch(value.strip()):
        asn = int(value.strip())
    else:
        raise invalid_parameter("Asn", "must be a number from 1 to 4294967295")
    if not 1 <= asn <= 4294967295:
        raise invalid_parameter("Asn", "must be a number from 1 to 4294967295")
    if asn == ALIBABA_ASN:
        raise invalid_parameter("Asn", f"{ALIBABA_ASN} is reserved for the VPN gateway side")
    return asn


def check_auth_key(value: str) -> str:
    """1–64 printable ASCII characters, no spaces and no '?'. Never echoed: it is a secret."""
    if not 1 <= len(value) <= 64 or not all("!" <= ch <= "~" and ch != "?" for ch in value):
        raise invalid_parameter("AuthKey", "must be 1-64 printable ASCII characters without spaces or '?'")
    return value


def parse_bandwidth(value: str) -> int:
    if not _DIGITS.fullmatch(value.strip()) or int(value) not in BANDWIDTHS:
        raise invalid_parameter("Bandwidth", f"must be one of {', '.join(map(str, BANDWIDTHS))} (Mbit/s)")
    return int(value)


def check_vpc_cidr(value: str) -> str:
    """A private block (10/8, 172.16/12, 192.168/16) or a part of one, prefix /8 to /28."""
    try:
        network = ipaddress.IPv4Network(value.strip(), strict=True)
    except ValueError:
        raise BadRequest(
            "InvalidCidrBlock.Malformed", f"Specified CIDR block {value!r} is not valid."
        ) from None
    if not 8 <= network.prefixlen <= 28 or not any(network.subnet_of(block) for block in _PRIVATE_BLOCKS):
        raise BadRequest(
            "InvalidCidrBlock.Malformed",
            f"Specified CIDR block {value!r} is not valid: use 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 "
            "or a part of one, with a prefix from /8 to /28.",
        )
    return str(network)
