"""Secrets at rest: AccessKey secrets, pre-shared keys and AuthKeys are stored sealed
with AES-256-GCM under a master key that lives outside the database.

The master key comes from ``VPNGW_MASTER_KEY`` (``<key id>:<base64 of 32 bytes>``, several
comma-separated for rotation: the first seals, all open) or else from a key file
(``VPNGW_MASTER_KEY_FILE``, default ``./vpngw.master.key``) that is created at first start,
readable only by its owner. A sealed value is ``sealed:v1:<key id>:<base64(nonce|ciphertext)>``;
the column it belongs to is bound in as associated data, so a sealed value copied into
another column does not open.

Values that must be compared but never read back (the ClientToken records' request hash)
are stored as keyed digests: HMAC-SHA256 under a key derived with HKDF from the master key,
so the database alone confirms no guess of what went into them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vpngw import files

PREFIX = "sealed:v1:"
DIGEST_PREFIX = "h1:"
DIGEST_INFO = b"vpngw keyed digest: "
DERIVED_INFO = b"vpngw derived key: "
_DERIVED_CACHE_SIZE = 4096
DEFAULT_KEY_FILE = "vpngw.master.key"


class SealingError(Exception):
    """A master key is missing or malformed, or a sealed value does not open."""


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    key: bytes


def parse_keyring(text: str) -> tuple[MasterKey, ...]:
    keys = []
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not sep or not key_id or len(key) != 32:
            raise SealingError("a master key must be written '<key id>:<base64 of 32 bytes>'")
        keys.append(MasterKey(key_id, key))
    if not keys:
        raise SealingError("no master key given")
    return tuple(keys)


def new_master_key_line(key_id: str | None = None) -> str:
    key_id = key_id or "k" + secrets.token_hex(4)
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


class Sealer:
    def __init__(self, keyring: tuple[MasterKey, ...]) -> None:
        self.keyring = keyring
        self._by_id = {k.key_id: AESGCM(k.key) for k in keyring}
        self._digest_keys: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._derived: dict[str, tuple[bytes, ...]] = {}

    @property
    def current_key_id(self) -> str:
        return self.keyring[0].key_id

    def seal(self, plaintext: str, purpose: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.keyring[0].key).encrypt(nonce, plaintext.encode(), purpose.encode())
        return f"{PREFIX}{self.keyring[0].key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, purpose: str) -> str:
        if not sealed.startswith(PREFIX):
            raise SealingError("not a sealed value")
        key_id, _, encoded = sealed[len(PREFIX) :].partition(":")
        aead = self._by_id.get(key_id)
        if aead is None:
            raise SealingError(f"the master key {key_id!r} is not in the keyring")
        try:
            raw = base64.b64decode(encoded, validate=True)
            return aead.decrypt(raw[:12], raw[12:], purpose.encode()).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SealingError("a sealed value does not open with its master key") from None

    # -- keyed digests -----------------------------------------------------------

    def _digest_key(self, master: MasterKey, purpose: str) -> tuple[str, bytes]:
        """(fingerprint, key) of the HMAC key derived from ``master`` for ``purpose``."""
        cached = self._digest_keys.get((master.key_id, purpose))
        if cached is None:
            key = _derive(master, DIGEST_INFO + purpose.encode())
            fingerprint = hmac.new(key, b"fingerprint", hashlib.sha256).hexdigest()[:8]
            cached = self._digest_keys[(master.key_id, purpose)] = (fingerprint, key)
        return cached

    def derived_keys(self, purpose: str) -> tuple[bytes, ...]:
        """The key derived (HKDF-SHA256) for ``purpose`` from every master key of the
        keyring, the current one first: sign with the first, accept any (a rotation)."""
        keys = self._derived.get(purpose)
        if keys is None:
            if len(self._derived) >= _DERIVED_CACHE_SIZE:
                self._derived.clear()  # bounded: one purpose per gateway, gateways come and go
            keys = self._derived[purpose] = tuple(
                _derive(master, DERIVED_INFO + purpose.encode()) for master in self.keyring
            )
        return keys

    def digest(self, data: bytes, purpose: str) -> str:
        """A keyed digest of ``data``: ``h1:<key fingerprint>:<base64url HMAC-SHA256>``
        (55 characters) under a key derived (HKDF-SHA256) from the current master key for
        ``purpose``. Without the master key it confirms no guess of ``data``."""
        fingerprint, key = self._digest_key(self.keyring[0], purpose)
        mac = base64.urlsafe_b64encode(hmac.new(key, data, hashlib.sha256).digest()).rstrip(b"=")
        return f"{DIGEST_PREFIX}{fingerprint}:{mac.decode()}"

    def digest_matches(self, stored: str, data: bytes, purpose: str) -> bool | None:
        """Whether ``stored`` (from :meth:`digest`) is the digest of ``data``; None when it
        cannot be told: ``stored`` is not a keyed digest (an unkeyed one made before 0.x,
        see docs/security.md) or its master key is no longer in the keyring."""
        if not stored.startswith(DIGEST_PREFIX):
            return None
        fingerprint, _, mac = stored[len(DIGEST_PREFIX) :].partition(":")
        for master in self.keyring:
            known, key = self._digest_key(master, purpose)
            if known == fingerprint:
                expected = base64.urlsafe_b64encode(hmac.new(key, data, hashlib.sha256).digest()).rstrip(b"=")
                return hmac.compare_digest(expected, mac.encode())
        return None


def _derive(master: MasterKey, info: bytes) -> bytes:
    """A 32-byte key derived (HKDF-SHA256) from ``master`` for ``info``."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master.key)


def load_sealer(environ: dict[str, str] | None = None, *, create: bool = True) -> tuple[Sealer, str]:
    """The sealer and a sentence saying where its key came from (never the key).

    ``create``: make a new key file when there is none. False for a data-plane agent and
    for a server on a database that holds sealed data: a new key opens none of the
    fleet's secrets, so such a node must refuse to start instead (SealingError)."""
    env = dict(os.environ if environ is None else environ)
    if env.get("VPNGW_MASTER_KEY"):
        return Sealer(parse_keyring(env["VPNGW_MASTER_KEY"])), "master key from VPNGW_MASTER_KEY"
    path = Path(env.get("VPNGW_MASTER_KEY_FILE") or DEFAULT_KEY_FILE)
    if not path.exists() and not create:
        raise SealingError(
            f"no master key: neither VPNGW_MASTER_KEY nor the key file {path} is there; give this node "
            "the fleet's master key (a new one would open none of the stored secrets)"
        )
    if not path.exists():
        fd = files.create_private_file(path)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_master_key_line() + "\n")
        return Sealer(parse_keyring(path.read_text())), f"master key created in {path} (mode 0600)"
    if path.stat().st_mode & 0o077:
        raise SealingError(f"{path} is readable by others; chmod 600 it")
    return Sealer(parse_keyring(path.read_text())), f"master key from {path}"
