"""Identifiers and generated secrets, all from the operating system's CSPRNG."""

from __future__ import annotations

import secrets
import string
import uuid

_ID_ALPHABET = string.ascii_lowercase + string.digits
_PSK_ALPHABET = string.ascii_letters + string.digits


def new_resource_id(prefix: str) -> str:
    """``vco-``, ``vpn-``, ``cgw-`` or ``vpc-`` and 21 random lowercase alphanumerics,
    like the real service's ids (``vco-bp1dfksi8lnbvbegl****``)."""
    return prefix + "-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(21))


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def new_psk() -> str:
    """The default pre-shared key: 16 random letters and digits."""
    return "".join(secrets.choice(_PSK_ALPHABET) for _ in range(16))
