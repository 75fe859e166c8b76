"""Shared helpers for the rule tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vpngw.errors import ApiError


def error_of(func: Callable[..., Any], *args: Any) -> ApiError:
    """The ApiError that ``func(*args)`` raises (any other outcome fails the test)."""
    with pytest.raises(ApiError) as caught:
        func(*args)
    return caught.value
