"""Identifiers and generated secrets, all from the operating system's CSPRNG."""

from __future__ import annotations

import os
import string
import uuid

_ID_ALPHABET = string.ascii_lowercase + string.digits
_PSK_ALPHABET = string.ascii_letters + string.digits


def random_string(alphabet: str, length: int) -> str:
    """``length`` characters drawn uniformly from ``alphabet`` (at most 256 of them), from
    one ``os.urandom`` read: a byte past the largest multiple of the alphabet's size is
    dropped (rejection sampling), so no character is likelier than another.
    ``secrets.choice`` per character made one ``getrandom`` call each: 0.1 ms per id, a
    twentieth of a create."""
    size = len(alphabet)
    limit = 256 - 256 % size
    out: list[str] = []
    while len(out) < length:
        for byte in os.urandom(length + 8):
            if byte < limit:
                out.append(alphabet[byte % size])
                if len(out) == length:
                    break
    return "".join(out)


def new_resource_id(prefix: str) -> str:
    """``vco-``, ``vpn-``, ``cgw-`` or ``vpc-`` and 21 random lowercase alphanumerics,
    like the real service's ids (``vco-bp1dfksi8lnbvbegl****``)."""
    return prefix + "-" + random_string(_ID_ALPHABET, 21)


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def new_psk() -> str:
    """The default pre-shared key: 16 random letters and digits."""
    return random_string(_PSK_ALPHABET, 16)
