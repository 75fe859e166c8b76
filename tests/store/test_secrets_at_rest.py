"""Secrets stay secret at rest (issue 15, item 5).

* The ClientToken record keeps a keyed digest of its request, so the database alone
  confirms no guessed Psk; it keeps working across a master-key rotation.
* Every file vpngw creates (database, -wal, -shm, backups, credentials, master key, their
  directories) is its owner's alone whatever the umask.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.conftest import TEST_MASTER_KEY, prepared
from tests.support.api import REGION, Api, build_world, connection_params
from vpngw.actions.dispatch import parse_params
from vpngw.actions.registry import ACTIONS
from vpngw.api.app import build_app
from vpngw.auth.authenticator import Authenticator
from vpngw.config import Settings
from vpngw.resealing import reseal_all
from vpngw.sealing import Sealer, new_master_key_line, parse_keyring
from vpngw.store import backup
from vpngw.store.engine import Database
from vpngw.store.migrate import alembic_config, upgrade

PSK = "Guessable-Psk-1"


def _hashes(db: Database) -> list[str]:
    with db.engine.connect() as connection:
        return [row[0] for row in connection.execute(text("SELECT request_hash FROM idempotency_records"))]


def _unkeyed_hash(action: str, raw: dict[str, str]) -> str:
    """What the record held before: an unsalted SHA-256 anyone can recompute from a guess."""
    params = parse_params(ACTIONS[action], raw)
    body = params.model_dump(mode="json", exclude={"client_token"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@contextmanager
def _client(db: Database, settings: Settings, sealer: Sealer) -> Iterator[Api]:
    with TestClient(
        build_app(db, settings, Authenticator(db, sealer)), raise_server_exceptions=False
    ) as client:
        yield Api(client)


def test_the_request_hash_confirms_no_guess_and_survives_key_rotation(settings: Settings) -> None:
    db, authenticator = prepared(settings)
    old = authenticator.sealer
    with _client(db, settings, old) as api:
        world = build_world(api)
        create = connection_params(world, IkeConfig=json.dumps({"Psk": PSK}), ClientToken="tok-1")
        first = api.ok("CreateVpnConnection", **create)
        stored = _hashes(db)
        assert len(stored) == 1 and stored[0].startswith("h1:") and len(stored[0]) <= 64
        # The attack: recompute the hash from a guess. The right guess does not match.
        guess = {"RegionId": REGION, **{k: str(v) for k, v in create.items()}}
        assert _unkeyed_hash("CreateVpnConnection", guess) not in stored[0]
        assert PSK not in stored[0]
        assert api.ok("CreateVpnConnection", **create)["VpnConnectionId"] == first["VpnConnectionId"]
        other = dict(create, IkeConfig=json.dumps({"Psk": PSK + "x"}))
        api.fails("CreateVpnConnection", 400, "IdempotentParameterMismatch", **other)

    # Rotation: a new key first, the old one still in the keyring, then vpngw reseal.
    rotated = Sealer(parse_keyring(new_master_key_line("k2") + "," + TEST_MASTER_KEY))
    reseal_all(db, rotated)
    with _client(db, settings, rotated) as api:
        assert api.ok("CreateVpnConnection", **create)["VpnConnectionId"] == first["VpnConnectionId"]
        api.fails("CreateVpnConnection", 400, "IdempotentParameterMismatch", **other)
        api.ok("CreateVpc", ClientToken="tok-2")
    assert len({h.split(":")[1] for h in _hashes(db)}) == 2  # one digest per key, told apart by fingerprint

    # The old key retired: its records still replay (they cannot tell other parameters any more).
    retired = Sealer(rotated.keyring[:1])
    with _client(db, settings, retired) as api:
        assert api.ok("CreateVpnConnection", **create)["VpnConnectionId"] == first["VpnConnectionId"]
        assert api.ok("CreateVpnConnection", **other)["VpnConnectionId"] == first["VpnConnectionId"]
    db.dispose()


def test_migration_wipes_unkeyed_hashes_and_their_records_still_replay(db_url: str) -> None:
    command.upgrade(alembic_config(db_url), "0007")
    db = Database(db_url)
    with db.engine.begin() as connection:
        connection.execute(text("INSERT INTO accounts (id, name, create_time) VALUES ('a1', 'one', 0)"))
        connection.execute(
            text(
                "INSERT INTO idempotency_records (account_id, action, client_token, request_hash, response, create_time)"
                " VALUES ('a1', 'CreateVpc', 't', :h, '{}', 0)"
            ),
            {"h": hashlib.sha256(b"guessable").hexdigest()},
        )
    upgrade(db_url)
    assert _hashes(db) == ["unkeyed"]
    sealer = Sealer(parse_keyring(TEST_MASTER_KEY))
    assert sealer.digest_matches("unkeyed", b"anything", "x") is None
    db.dispose()


# --------------------------------------------------------------------------- file modes


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    database = state / "vpngw.db"
    url = f"sqlite:///{database}"
    with _umask(0):
        db = Database(url)
        upgrade(url)
        with db.transaction(write=True) as session:  # the WAL and its index exist while the engine is open
            session.execute(text("INSERT INTO accounts (id, name, create_time) VALUES ('a', 'a', 0)"))
        wal, shm = database.with_name("vpngw.db-wal"), database.with_name("vpngw.db-shm")
        assert wal.exists() and shm.exists()
        for path in (database, wal, shm):
            assert _mode(path) == 0o600, path
        for directory in (tmp_path / "new", state):
            assert _mode(directory) == 0o700, directory
        copy = tmp_path / "backups" / "one.db"
        backup.backup(url, copy)
        assert _mode(copy) == 0o600 and _mode(copy.parent) == 0o700
        db.dispose()
        restored = tmp_path / "restored" / "vpngw.db"
        backup.restore(copy, f"sqlite:///{restored}")
        assert _mode(restored) == 0o600
    # A database made 0644 (an older release, a loose umask) is made private when opened.
    loose = tmp_path / "loose.db"
    loose.touch()
    loose.chmod(0o644)
    Database(f"sqlite:///{loose}").dispose()
    assert _mode(loose) == 0o600


def test_the_command_line_creates_private_files_under_a_loose_umask(tmp_path: Path) -> None:
    """`vpngw account create` on a first start: master key, database and credentials."""
    home = tmp_path / "home"
    environment = {
        **os.environ,
        "VPNGW_MASTER_KEY_FILE": str(home / "keys" / "master.key"),
        "VPNGW_DB": f"sqlite:///{home / 'db' / 'vpngw.db'}",
    }
    environment.pop("VPNGW_MASTER_KEY", None)
    result = subprocess.run(
        [sys.executable, "-m", "vpngw.cli.main", "account", "create", "tenant"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0),
    )
    assert result.returncode == 0, result.stderr
    created = [p for p in home.rglob("*")]
    assert {p.name for p in created} >= {"keys", "master.key", "db", "vpngw.db"}
    for path in created:
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277])
def test_credentials_file_is_0600(tmp_path: Path, mask: int) -> None:
    from vpngw import accounts
    from vpngw.store import queries

    db, authenticator = prepared(Settings(db_url=f"sqlite:///{tmp_path / 'c.db'}"))
    with db.transaction(write=True) as session:
        queries.ensure_account(session, "9000000000000001", "no-keys-yet", 0)
    path = tmp_path / "cred" / "credentials.json"
    with _umask(mask):
        pair = accounts.bootstrap_credentials_file(db, authenticator.sealer, "9000000000000001", path)
    assert pair is not None
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert json.loads(path.read_text())["AccessKeyId"] == pair.access_key_id
    db.dispose()
