"""vpngw.rules.names: names and descriptions of resources."""

from __future__ import annotations

import pytest

from tests.rules.helpers import error_of
from vpngw.rules.names import check_description, check_name


@pytest.mark.parametrize(
    "value",
    [
        "ab",  # 2 characters: the minimum
        "a" * 128,  # the maximum
        "IPsec",
        "中文",
        "连接-1",
        "a中",
        "Z9._-",
        "http",  # not a URL scheme prefix
        "httpsConnection",
    ],
)
def test_name_accepted(value: str) -> None:
    assert check_name(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a",  # 1 character
        "a" * 129,  # 129 characters
        "中" * 129,
        "1abc",  # starts with a digit
        "_abc",
        ".abc",
        "-abc",
        " abc",
        "ab c",
        "ab/c",
        "abé",  # not a letter of A-Za-z nor Chinese
        "ab😀",
        "http://example",
        "https://example",
        "HTTP://example",
    ],
)
def test_name_refused(value: str) -> None:
    assert error_of(check_name, value).code == "InvalidName"


def test_name_with_trailing_newline_refused() -> None:
    assert error_of(check_name, "ab\n").code == "InvalidName"


@pytest.mark.parametrize(
    "value", ["ab", "d" * 256, "A connection to the IDC.", "中文描述", "1 starts with a digit", "http:/x"]
)
def test_description_accepted(value: str) -> None:
    assert check_description(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a",
        "d" * 257,
        "http://example.com",
        "https://example.com",
        "HTTPS://x",
        "line\nbreak",
        "tab\there",
        "ab\x00",
    ],
)
def test_description_refused(value: str) -> None:
    assert error_of(check_description, value).code == "InvalidDescription"
