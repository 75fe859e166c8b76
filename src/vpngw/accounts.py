"""Accounts and their AccessKey pairs. A secret is shown once, when it is made, and is
stored only sealed."""

from __future__ import annotations

import json
import os
import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path

from vpngw import files
from vpngw.config import Settings
from vpngw.sealing import Sealer
from vpngw.store import queries
from vpngw.store.engine import Database
from vpngw.store.models import AccessKey, Account

ACCESS_KEY_PURPOSE = "access_keys.secret"
_ALNUM = string.ascii_letters + string.digits


class AccountError(Exception):
    """A command-line mistake: an unknown account or key, a name taken."""


@dataclass(frozen=True)
class KeyPair:
    account_id: str
    access_key_id: str
    access_key_secret: str

    def as_json(self) -> str:
        return json.dumps(
            {
                "AccountId": self.account_id,
                "AccessKeyId": self.access_key_id,
                "AccessKeySecret": self.access_key_secret,
            }
        )

    def __repr__(self) -> str:
        return f"KeyPair(account_id={self.account_id!r}, access_key_id={self.access_key_id!r}, access_key_secret='***')"


def _now_ms() -> int:
    return int(time.time() * 1000)


def new_account_id() -> str:
    return str(secrets.randbelow(9 * 10**15) + 10**15)


def new_access_key_id() -> str:
    return "LTAI" + "".join(secrets.choice(_ALNUM) for _ in range(20))


def new_access_key_secret() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(30))


def _new_key_row(sealer: Sealer, account_id: str, key_id: str, secret: str) -> AccessKey:
    return AccessKey(
        id=key_id,
        account_id=account_id,
        secret_sealed=sealer.seal(secret, ACCESS_KEY_PURPOSE),
        status="enabled",
        create_time=_now_ms(),
    )


def _add_key(db: Database, sealer: Sealer, account_id: str, key_id: str, secret: str) -> KeyPair:
    with db.transaction(write=True) as session:
        queries.add(session, _new_key_row(sealer, account_id, key_id, secret))
    return KeyPair(account_id, key_id, secret)


def create_account(db: Database, sealer: Sealer, name: str) -> KeyPair:
    with db.transaction(write=True) as session:
        if queries.account_by_name(session, name):
            raise AccountError(f"an account named {name!r} exists already")
        account_id = new_account_id()
        queries.add(session, Account(id=account_id, name=name, create_time=_now_ms()))
    return _add_key(db, sealer, account_id, new_access_key_id(), new_access_key_secret())


def _account_id(db: Database, name_or_id: str) -> str:
    with db.session(write=False) as session:
        account = queries.account_by_name(session, name_or_id) or queries.get_account(session, name_or_id)
        if account is None:
            raise AccountError(f"no account named {name_or_id!r}")
        return account.id


#: The quotas an operator sets per account (``vpngw account quota``), by kind.
QUOTA_KINDS = ("vpcs", "vpn_gateways", "customer_gateways")


def quotas(db: Database, settings: Settings, account: str) -> dict[str, object]:
    """The account's quotas (its own, or the default) and what it holds, per region."""
    account_id = _account_id(db, account)
    with db.session(write=False) as session:
        own = queries.account_quotas(session, account_id)
        used: dict[str, dict[str, int]] = {}
        for row in queries.resource_counts_of(session, account_id):
            used.setdefault(row.kind, {})[row.region_id] = row.count
    return {
        "AccountId": account_id,
        "Quotas": {
            kind: {
                "Quota": own.get(kind, settings.default_quota(kind)),
                "Default": kind not in own,
                "HeldPerRegion": used.get(kind, {}),
            }
            for kind in QUOTA_KINDS
        },
    }


def set_quotas(db: Database, account: str, changes: dict[str, int | None]) -> None:
    """Set the account's quotas of the given kinds (``None``: back to the default). A quota
    below what the account holds stops new creates; it deletes nothing."""
    account_id = _account_id(db, account)
    with db.transaction(write=True) as session:
        for kind, quota in changes.items():
            if kind not in QUOTA_KINDS:
                raise AccountError(f"no quota named {kind!r}")
            if quota is not None and quota < 0:
                raise AccountError(f"a quota is a whole number from 0, not {quota}")
            queries.set_account_quota(session, account_id, kind, quota)


def create_key(db: Database, sealer: Sealer, account: str) -> KeyPair:
    return _add_key(db, sealer, _account_id(db, account), new_access_key_id(), new_access_key_secret())


def set_key_status(db: Database, access_key_id: str, status: str) -> None:
    with db.transaction(write=True) as session:
        key = queries.get_access_key(session, access_key_id)
        if key is None:
            raise AccountError(f"no AccessKey {access_key_id!r}")
        key.status = status


def delete_key(db: Database, access_key_id: str) -> None:
    with db.transaction(write=True) as session:
        key = queries.get_access_key(session, access_key_id)
        if key is None:
            raise AccountError(f"no AccessKey {access_key_id!r}")
        queries.delete(session, key)


def list_accounts(db: Database) -> list[dict[str, object]]:
    with db.session(write=False) as session:
        rows: list[dict[str, object]] = []
        for account in queries.list_accounts(session):
            keys = [
                {"AccessKeyId": k.id, "Status": k.status} for k in queries.access_keys_of(session, account.id)
            ]
            rows.append({"AccountId": account.id, "Name": account.name, "AccessKeys": keys})
        return rows


def ensure_key(db: Database, sealer: Sealer, account_id: str, key_id: str, secret: str) -> None:
    """Make ``key_id`` an enabled key of ``account_id`` with this secret (for a bootstrap
    key pair given in the environment)."""
    with db.transaction(write=True) as session:
        key = queries.get_access_key(session, key_id)
        if key is None:
            queries.add(session, _new_key_row(sealer, account_id, key_id, secret))
        else:
            key.account_id = account_id
            key.secret_sealed = sealer.seal(secret, ACCESS_KEY_PURPOSE)
            key.status = "enabled"


def bootstrap_credentials_file(db: Database, sealer: Sealer, account_id: str, path: Path) -> KeyPair | None:
    """On a first start (the default account has no key yet), make a key pair for it and
    write it to ``path``, readable only by its owner. Returns it, or None when not needed."""
    with db.session(write=False) as session:
        if queries.access_keys_of(session, account_id):
            return None
    pair = _add_key(db, sealer, account_id, new_access_key_id(), new_access_key_secret())
    if path.exists():
        path.unlink()
    fd = files.create_private_file(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(pair.as_json() + "\n")
    return pair
