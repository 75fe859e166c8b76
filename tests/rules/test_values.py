"""vpngw.rules.values: scalar parameters as they arrive on the wire."""

from __future__ import annotations

import pytest

from tests.rules.helpers import error_of
from vpngw.rules.values import check_choice, check_client_token, parse_bool, parse_int

# parse_bool


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        (" true ", True),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        (True, True),
        (False, False),
    ],
)
def test_parse_bool_accepts_strings_in_any_case_and_json_booleans(value: object, expected: bool) -> None:
    assert parse_bool("AutoConfigRoute", value) is expected


@pytest.mark.parametrize("value", ["yes", "no", "1", "0", "", "tru", "truee", 1, 0, None, 1.0, [], {}])
def test_parse_bool_refuses_anything_else(value: object) -> None:
    error = error_of(parse_bool, "AutoConfigRoute", value)
    assert error.code == "InvalidParameter.AutoConfigRoute"
    assert "true or false" in error.message


# parse_int


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (86400, 86400), ("0", 0), ("86400", 86400), (" 42 ", 42), ("+7", 7), ("-0", 0), (3.0, 3)],
)
def test_parse_int_accepts_numbers_and_decimal_strings(value: object, expected: int) -> None:
    result = parse_int("X", value, 0, 86400)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", [-1, 86401, "-1", "86401", 10**30, "99999999999999999999"])
def test_parse_int_refuses_out_of_range(value: object) -> None:
    error = error_of(parse_int, "X", value, 0, 86400)
    assert error.code == "InvalidParameter.X"
    assert "between 0 and 86400" in error.message


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        3.5,
        float("nan"),
        float("inf"),
        "3.0",
        "1e3",
        "0x10",
        "",
        "abc",
        "1 2",
        "123456789012345678901",
        None,
        [1],
        {"a": 1},
    ],
)
def test_parse_int_refuses_non_whole_numbers(value: object) -> None:
    error = error_of(parse_int, "X", value, 0, 86400)
    assert error.code == "InvalidParameter.X"
    assert "whole number" in error.message


# check_client_token


@pytest.mark.parametrize("value", ["a" * 64, "02fb3da4-130e-11e9-8e44-001", "!~", "x"])
def test_client_token_accepts_up_to_64_printable_ascii(value: str) -> None:
    assert check_client_token(value) == value


@pytest.mark.parametrize("value", ["a" * 65, "tokén", "令牌", "has space", "tab\t", "nl\n", "\x7f"])
def test_client_token_refuses_long_or_non_printable_ascii(value: str) -> None:
    assert error_of(check_client_token, value).code == "InvalidParameter.ClientToken"


# check_choice


@pytest.mark.parametrize("value", ["ikev1", "IKEV1", "IkeV1"])
def test_check_choice_is_case_insensitive_and_returns_canonical(value: str) -> None:
    assert check_choice("IkeConfig.IkeVersion", value, ("ikev1", "ikev2")) == "ikev1"


def test_check_choice_returns_the_canonical_spelling_of_allowed() -> None:
    assert check_choice("P", "revoke_ROUTE", ("Revoke_Route",)) == "Revoke_Route"


@pytest.mark.parametrize("value", ["ikev3", "", " ikev1", "ikev"])
def test_check_choice_refuses_other_values(value: str) -> None:
    error = error_of(check_choice, "IkeConfig.IkeVersion", value, ("ikev1", "ikev2"))
    assert error.code == "InvalidParameter.IkeConfig.IkeVersion"
    assert "ikev1, ikev2" in error.message
