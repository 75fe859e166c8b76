"""vpngw.rules.subnets: LocalSubnet / RemoteSubnet traffic selectors."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rules.helpers import error_of
from vpngw.errors import ApiError
from vpngw.rules.subnets import (
    Selectors,
    check_no_conflict,
    check_sides,
    is_destination_routing,
    join_subnets,
    parse_stored,
    parse_subnets,
)

MAX = 10


def nets(text: str) -> tuple[IPv4Network, ...]:
    return tuple(IPv4Network(item) for item in text.split(","))


# parse_subnets: accepted


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.0/24", "10.0.0.0/24"),
        ("10.1.1.0/24,10.1.2.0/24", "10.1.1.0/24,10.1.2.0/24"),
        (" 10.1.1.0/24 , 10.1.2.0/24 ", "10.1.1.0/24,10.1.2.0/24"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("192.168.1.1/32", "192.168.1.1/32"),
        ("10.0.0.0/8,10.0.0.0/16", "10.0.0.0/8,10.0.0.0/16"),  # overlap on one side is not a duplicate
    ],
)
def test_parse_subnets_accepted(value: str, expected: str) -> None:
    parsed = parse_subnets("LocalSubnet", value, MAX)
    assert all(isinstance(n, IPv4Network) for n in parsed)
    assert join_subnets(parsed) == expected


def test_parse_subnets_accepts_max_count() -> None:
    value = ",".join(f"10.0.{i}.0/24" for i in range(10))
    assert len(parse_subnets("LocalSubnet", value, MAX)) == 10


def test_parse_subnets_refuses_more_than_max_count() -> None:
    value = ",".join(f"10.0.{i}.0/24" for i in range(11))
    error = error_of(parse_subnets, "LocalSubnet", value, MAX)
    assert error.code == "IllegalParam.LocalSubnet"
    assert "at most 10" in error.message


# parse_subnets: refused


@pytest.mark.parametrize("value", ["", " ", ",", "10.0.0.0/24,", ",10.0.0.0/24", "10.0.0.0/24,,10.1.0.0/24"])
def test_parse_subnets_refuses_empty_items(value: str) -> None:
    error = error_of(parse_subnets, "RemoteSubnet", value, MAX)
    assert error.code == "IllegalParam.RemoteSubnet"
    assert "empty item" in error.message


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.0",  # no prefix
        "10.0.0.0/255.255.255.0",  # netmask form
        "10.0.0/24",
        "10.0.0.0.0/24",
        "a.b.c.d/24",
        "10.0.0.0/024",
        "::/0",
        "fe80::/64",
        "10.0.0.0 /24",
        "10.0.0.0/24;10.1.0.0/24",
    ],
)
def test_parse_subnets_refuses_non_cidr_text(value: str) -> None:
    error = error_of(parse_subnets, "LocalSubnet", value, MAX)
    assert error.code == "IllegalParam.LocalSubnet"
    assert "not an IPv4 CIDR block" in error.message


@pytest.mark.parametrize("value", ["10.0.0.0/33", "10.0.0.0/99"])
def test_parse_subnets_refuses_bad_prefix_length(value: str) -> None:
    error = error_of(parse_subnets, "LocalSubnet", value, MAX)
    assert error.code == "IllegalParam.LocalSubnet"
    assert "invalid prefix length" in error.message


@pytest.mark.parametrize(
    ("value", "hint"),
    [("10.0.0.1/24", "10.0.0.0/24"), ("192.168.1.77/16", "192.168.0.0/16"), ("10.0.0.1/0", "0.0.0.0/0")],
)
def test_parse_subnets_refuses_host_address_with_hint(value: str, hint: str) -> None:
    error = error_of(parse_subnets, "LocalSubnet", value, MAX)
    assert error.code == "IllegalParam.LocalSubnet"
    assert "not a network address" in error.message
    assert f"did you mean {hint}?" in error.message


@pytest.mark.parametrize("value", ["300.0.0.0/8", "10.0.0.256/32", "010.0.0.0/8"])
def test_parse_subnets_refuses_bad_octets_without_hint(value: str) -> None:
    error = error_of(parse_subnets, "LocalSubnet", value, MAX)
    assert error.code == "IllegalParam.LocalSubnet"
    assert "not a network address" in error.message
    assert "did you mean" not in error.message


@pytest.mark.parametrize(
    "value", ["10.0.0.0/24,10.0.0.0/24", "10.0.0.0/24, 10.0.0.0/24", "10.0.0.0/8,10.1.0.0/16,10.0.0.0/8"]
)
def test_parse_subnets_refuses_duplicates(value: str) -> None:
    error = error_of(parse_subnets, "LocalSubnet", value, MAX)
    assert error.code == "IllegalParam.LocalSubnet"
    assert "listed twice" in error.message


def test_parse_subnets_error_names_parameter_and_value() -> None:
    error = error_of(parse_subnets, "RemoteSubnet", "10.0.0.1/24", MAX)
    assert '"RemoteSubnet"' in error.message
    assert "(10.0.0.1/24)" in error.message


# check_sides / is_destination_routing


def test_check_sides_accepts_disjoint_sides() -> None:
    check_sides(nets("10.0.0.0/16,10.1.0.0/16"), nets("192.168.0.0/24,172.16.0.0/12"))


def test_check_sides_accepts_adjacent_sides() -> None:
    check_sides(nets("10.0.0.0/25"), nets("10.0.0.128/25"))


@pytest.mark.parametrize(
    ("local", "remote"),
    [
        ("10.0.0.0/16", "10.0.1.0/24"),
        ("10.0.1.0/24", "10.0.0.0/16"),
        ("10.0.0.0/24", "10.0.0.0/24"),
        ("192.168.0.0/24,10.0.0.0/8", "172.16.0.0/12,10.9.9.9/32"),
        ("0.0.0.0/0", "10.0.0.0/8"),
        ("10.0.0.0/8", "0.0.0.0/0"),
    ],
)
def test_check_sides_refuses_overlap(local: str, remote: str) -> None:
    error = error_of(check_sides, nets(local), nets(remote))
    assert error.code == "IllegalParam.RemoteSubnet"
    assert "overlaps" in error.message


def test_check_sides_refuses_destination_routing() -> None:
    any_net = nets("0.0.0.0/0")
    assert is_destination_routing(any_net, any_net)
    assert error_of(check_sides, any_net, any_net).code == "OperationUnsupported.DestinationRouting"


@pytest.mark.parametrize(
    ("local", "remote"),
    [("0.0.0.0/0", "10.0.0.0/8"), ("10.0.0.0/8", "0.0.0.0/0"), ("0.0.0.0/0,10.0.0.0/8", "0.0.0.0/0")],
)
def test_destination_routing_only_when_both_sides_are_exactly_any(local: str, remote: str) -> None:
    assert not is_destination_routing(nets(local), nets(remote))


# check_no_conflict

OTHER = Selectors("vco-other", nets("10.0.0.0/16"), nets("192.168.0.0/16"))


def test_no_conflict_without_other_connections() -> None:
    check_no_conflict(nets("10.0.0.0/16"), nets("192.168.0.0/16"), [])


@pytest.mark.parametrize(
    ("local", "remote"),
    [
        ("10.0.0.0/24", "172.16.0.0/12"),  # only the local sides overlap
        ("10.1.0.0/16", "192.168.1.0/24"),  # only the remote sides overlap
        ("10.1.0.0/16", "172.16.0.0/12"),  # nothing overlaps
    ],
)
def test_no_conflict_unless_both_sides_overlap(local: str, remote: str) -> None:
    check_no_conflict(nets(local), nets(remote), [OTHER])


@pytest.mark.parametrize(
    ("local", "remote"),
    [
        ("10.0.0.0/24", "192.168.1.0/24"),
        ("10.0.0.0/8", "192.0.0.0/2"),
        ("172.16.0.0/12,10.0.5.0/24", "192.168.7.7/32"),
    ],
)
def test_conflict_when_both_sides_overlap(local: str, remote: str) -> None:
    others = [Selectors("vco-unrelated", nets("172.31.0.0/16"), nets("8.8.8.0/24")), OTHER]
    error = error_of(check_no_conflict, nets(local), nets(remote), others)
    assert error.code == "VpnConnection.SubnetConflict"
    assert "vco-other" in error.message


def test_parse_stored_reads_canonical_text() -> None:
    assert parse_stored("10.0.0.0/24,10.1.0.0/16") == nets("10.0.0.0/24,10.1.0.0/16")


# properties

CIDR_ALPHABET = "0123456789./, "


@settings(max_examples=300, database=None, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet=CIDR_ALPHABET)))
def test_parse_subnets_returns_networks_or_raises_api_error(text: str) -> None:
    try:
        result = parse_subnets("LocalSubnet", text, MAX)
    except ApiError as error:
        assert error.code == "IllegalParam.LocalSubnet"
    else:
        assert 1 <= len(result) <= MAX
        assert all(isinstance(n, IPv4Network) for n in result)
        assert len(set(result)) == len(result)


network_st = st.builds(
    lambda address, prefix: IPv4Network(f"{address}/{prefix}", strict=False),
    st.ip_addresses(v=4),
    st.integers(min_value=0, max_value=32),
)


@settings(max_examples=200, database=None, deadline=None)
@given(st.lists(network_st, min_size=1, max_size=MAX, unique=True))
def test_join_parse_round_trip(networks: list[IPv4Network]) -> None:
    text = join_subnets(networks)
    parsed = parse_subnets("LocalSubnet", text, MAX)
    assert parsed == tuple(networks)
    assert join_subnets(parsed) == text
    assert parse_stored(text) == parsed
