"""Scalar parameters as they arrive on the wire: always strings."""

from __future__ import annotations

import re
from collections.abc import Iterable

from vpngw.errors import BadRequest, invalid_parameter

_INT = re.compile(r"[+-]?\d{1,20}", re.ASCII)
# Lone UTF-16 surrogates: a JSON body can carry them ("\\ud800"), no database can store them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable(value: str) -> str | None:
    """Why no database can store ``value`` as text (PostgreSQL refuses NUL; neither encodes
    a lone surrogate to UTF-8), or None when it can."""
    if "\x00" in value:
        return "contains a NUL character"
    if _SURROGATE.search(value):
        return "contains an invalid character (a lone UTF-16 surrogate)"
    return None


def check_storable(pairs: Iterable[tuple[str, str]]) -> None:
    """Refuse, before any query, a parameter whose name or value no database can store:
    400 ``InvalidParameter.<Name>`` (``InvalidParameter`` when the name itself is bad)."""
    for name, value in pairs:
        if unstorable(name):
            raise BadRequest(
                "InvalidParameter", "A parameter name contains a NUL character or an invalid character."
            )
        reason = unstorable(value)
        if reason:
            raise invalid_parameter(name, reason)


def check_max_length(param: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise invalid_parameter(param, f"must be at most {limit} characters")
    return value


def parse_bool(param: str, value: object) -> bool:
    """Booleans arrive as ``true``/``True``/``false``/``False`` (the SDKs send Python's
    ``str(bool)``); JSON bodies may carry real booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise invalid_parameter(param, "must be true or false")


def parse_int(param: str, value: object, low: int, high: int) -> int:
    """A whole number in ``[low, high]``, given as a JSON number or a decimal string."""
    if isinstance(value, bool):
        raise invalid_parameter(param, "must be a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INT.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise invalid_parameter(param, "must be a whole number")
    if not low <= number <= high:
        raise invalid_parameter(param, f"must be between {low} and {high}")
    return number


def check_client_token(value: str) -> str:
    """ClientToken: at most 64 printable ASCII characters."""
    if len(value) > 64 or not all(" " < ch <= "~" for ch in value):
        raise BadRequest(
            "InvalidParameter.ClientToken",
            'The specified parameter "ClientToken" is not valid: at most 64 printable ASCII characters.',
        )
    return value


def check_choice(param: str, value: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed``, compared case-insensitively, returned in its canonical spelling."""
    for choice in allowed:
        if value.lower() == choice.lower():
            return choice
    raise invalid_parameter(param, f"must be one of {', '.join(allowed)}")
