"""vpngw.rules.gateways: VPCs, VPN gateways and customer gateways."""

from __future__ import annotations

import pytest

from tests.rules.helpers import error_of
from vpngw.rules.gateways import (
    ALIBABA_ASN,
    BANDWIDTHS,
    check_auth_key,
    check_customer_gateway_ip,
    check_vpc_cidr,
    parse_asn,
    parse_bandwidth,
)

# check_customer_gateway_ip


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("198.19.0.10", "198.19.0.10"),
        ("47.100.1.2", "47.100.1.2"),
        (" 8.8.8.8 ", "8.8.8.8"),
        ("1.0.0.0", "1.0.0.0"),
        ("100.63.255.255", "100.63.255.255"),  # just below CGNAT
        ("100.128.0.0", "100.128.0.0"),  # just above CGNAT
        ("223.255.255.255", "223.255.255.255"),  # just below multicast
        ("10.1.2.3", "10.1.2.3"),
    ],
)
def test_customer_gateway_ip_accepted(value: str, expected: str) -> None:
    assert check_customer_gateway_ip(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "0.0.0.1",
        "0.0.0.0",
        "127.0.0.1",
        "169.254.1.1",
        "100.64.0.1",
        "100.127.255.255",
        "224.0.0.1",
        "239.255.255.255",
        "240.0.0.1",
        "255.255.255.255",
    ],
)
def test_customer_gateway_ip_refuses_reserved_ranges(value: str) -> None:
    error = error_of(check_customer_gateway_ip, value)
    assert error.code == "InvalidIpAddress.WrongFormat"
    assert "reserved range" in error.message


@pytest.mark.parametrize(
    "value", ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "::1", "example.com", "1.2.3.4/32", "01.2.3.4"]
)
def test_customer_gateway_ip_refuses_non_ipv4(value: str) -> None:
    error = error_of(check_customer_gateway_ip, value)
    assert error.code == "InvalidIpAddress.WrongFormat"
    assert "not an IPv4 address" in error.message


# parse_asn


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1),
        ("65534", 65534),
        (" 65000 ", 65000),
        ("4294967295", 4294967295),
        ("45103", 45103),
        ("45105", 45105),
        ("1.0", 65536),
        ("0.1", 1),
        ("65535.65535", 4294967295),
        ("1.10", 65546),
    ],
)
def test_asn_accepted_plain_and_dotted(value: str, expected: int) -> None:
    assert parse_asn(value) == expected


@pytest.mark.parametrize("value", ["0", "0.0", "4294967296", "99999999999999999999"])
def test_asn_refuses_out_of_range(value: str) -> None:
    error = error_of(parse_asn, value)
    assert error.code == "InvalidParameter.Asn"
    assert "1 to 4294967295" in error.message


@pytest.mark.parametrize("value", [str(ALIBABA_ASN), "0.45104", " 45104 "])
def test_asn_refuses_alibaba_asn(value: str) -> None:
    error = error_of(parse_asn, value)
    assert error.code == "InvalidParameter.Asn"
    assert "45104 is reserved" in error.message


@pytest.mark.parametrize("value", ["65536.0", "0.65536", "99999.1"])
def test_asn_refuses_dotted_half_above_65535(value: str) -> None:
    error = error_of(parse_asn, value)
    assert error.code == "InvalidParameter.Asn"
    assert "at most 65535" in error.message


@pytest.mark.parametrize("value", ["", "-1", "+5", "AS65000", "1.2.3", "1.", ".1", "1e3", "0x10", "65 000"])
def test_asn_refuses_non_numbers(value: str) -> None:
    error = error_of(parse_asn, value)
    assert error.code == "InvalidParameter.Asn"
    assert "must be a number" in error.message


@pytest.mark.parametrize("value", ["²", "6500²"])
def test_asn_with_superscript_digit_is_an_api_error(value: str) -> None:
    assert error_of(parse_asn, value).code == "InvalidParameter.Asn"


# check_auth_key


@pytest.mark.parametrize("value", ["k", "x" * 64, "!#$%&'()*+,-./:;<=>@[\\]^_`{|}~", "AbC123"])
def test_auth_key_accepted(value: str) -> None:
    assert check_auth_key(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "x" * 65, "what?", "?", "with space", "tab\there", "clé", "密钥", "nl\n", "\x7f"],
)
def test_auth_key_refused(value: str) -> None:
    error = error_of(check_auth_key, value)
    assert error.code == "InvalidParameter.AuthKey"
    assert "without spaces or '?'" in error.message


@pytest.mark.parametrize("secret", ["Sup3rS3cret?Key", "Sup3r S3cret", "Sup3rSécret", "Sup3rS3cret" * 6])
def test_auth_key_error_never_contains_the_key(secret: str) -> None:
    error = error_of(check_auth_key, secret)
    assert error.code == "InvalidParameter.AuthKey"
    for text in (error.message, str(error), repr(error)):
        assert secret not in text
        assert "Sup3r" not in text


# parse_bandwidth


@pytest.mark.parametrize("value", [str(b) for b in BANDWIDTHS])
def test_bandwidth_accepted(value: str) -> None:
    assert parse_bandwidth(value) == int(value)


def test_bandwidth_set_is_the_documented_one() -> None:
    assert BANDWIDTHS == (5, 10, 20, 50, 100, 200, 500, 1000)


def test_bandwidth_tolerates_surrounding_spaces() -> None:
    assert parse_bandwidth(" 10 ") == 10


@pytest.mark.parametrize("value", ["0", "1", "6", "15", "2000", "-5", "+5", "5.0", "", "ten", "5M"])
def test_bandwidth_refused(value: str) -> None:
    error = error_of(parse_bandwidth, value)
    assert error.code == "InvalidParameter.Bandwidth"
    assert "5, 10, 20, 50, 100, 200, 500, 1000" in error.message


def test_bandwidth_with_superscript_digit_is_an_api_error() -> None:
    assert error_of(parse_bandwidth, "5²").code == "InvalidParameter.Bandwidth"


# check_vpc_cidr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("172.16.0.0/12", "172.16.0.0/12"),
        ("192.168.0.0/16", "192.168.0.0/16"),
        ("10.10.0.0/16", "10.10.0.0/16"),
        ("172.31.255.240/28", "172.31.255.240/28"),
        ("192.168.1.0/24", "192.168.1.0/24"),
        (" 10.0.0.0/8 ", "10.0.0.0/8"),
    ],
)
def test_vpc_cidr_accepted(value: str, expected: str) -> None:
    assert check_vpc_cidr(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.0/7",  # prefix below /8 (and not inside 10/8)
        "10.0.0.0/29",  # prefix above /28
        "192.168.1.0/32",
        "172.0.0.0/8",  # larger than 172.16/12
        "172.32.0.0/16",  # outside 172.16/12
        "192.169.0.0/16",
        "11.0.0.0/8",
        "100.64.0.0/10",
        "8.8.8.0/24",
        "0.0.0.0/0",
    ],
)
def test_vpc_cidr_refuses_non_private_or_bad_prefix(value: str) -> None:
    error = error_of(check_vpc_cidr, value)
    assert error.code == "InvalidCidrBlock.Malformed"
    assert "/8 to /28" in error.message


@pytest.mark.parametrize("value", ["", "10.0.0.1/24", "10.0.0.0/33", "abc", "10.0.0/8", "fd00::/8"])
def test_vpc_cidr_refuses_malformed(value: str) -> None:
    error = error_of(check_vpc_cidr, value)
    assert error.code == "InvalidCidrBlock.Malformed"
    assert "/8 to /28" not in error.message
