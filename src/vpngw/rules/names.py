"""Names and descriptions of resources (the Apsara Stack rules of the spec)."""

from __future__ import annotations

import re

from vpngw.errors import BadRequest

# A letter or a Chinese character first, then letters, digits, Chinese, '.', '_' or '-'.
_CHINESE = "\u4e00-\u9fa5"
_NAME = re.compile(rf"[A-Za-z{_CHINESE}][A-Za-z0-9{_CHINESE}._-]{{1,127}}")


def _starts_with_url_scheme(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def check_name(value: str) -> str:
    """2–128 characters, starting with a letter or a Chinese character, then letters,
    digits, Chinese characters, '.', '_' or '-'; never starting with http:// or https://."""
    if _starts_with_url_scheme(value) or not _NAME.fullmatch(value):
        raise BadRequest(
            "InvalidName",
            "The name is not valid: 2-128 characters, starting with a letter or a Chinese character, "
            "then letters, digits, Chinese characters, '.', '_' or '-', not starting with http:// or https://.",
        )
    return value


def check_description(value: str) -> str:
    """2–256 characters, not starting with http:// or https://."""
    if not 2 <= len(value) <= 256 or _starts_with_url_scheme(value) or not value.isprintable():
        raise BadRequest(
            "InvalidDescription",
            "The description is not valid: 2-256 printable characters, not starting with http:// or https://.",
        )
    return value
