"""vpngw.store.direct: a prepared statement on the DBAPI cursor gives what the same statement
gives through SQLAlchemy (JSON in and out), raises the exceptions
SQLAlchemy raises (so dispatch's retries and the API's errors do not change), and a failed
transaction leaves nothing behind."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from tests.conftest import make_sealer
from vpngw import accounts
from vpngw.cli.database import prepare_database
from vpngw.config import Settings
from vpngw.store import queries
from vpngw.store.direct import Direct, Prepared, rows
from vpngw.store.engine import Database
from vpngw.store.models import Account, IdempotencyRecord, VpnConnectionLog

ACCOUNT = "1234567890123456"


def _database(settings: Settings) -> Database:
    db = prepare_database(settings)
    with db.transaction(write=True) as session:
        queries.ensure_account(session, ACCOUNT, "direct", 0)
    return db


def test_json_and_defaults_read_back_alike_on_both_paths(settings: Settings) -> None:
    db = _database(settings)
    response = {"sealed": "x", "nested": {"a": [1, 2]}}
    with db.direct(write=True) as tx:
        assert queries.try_claim_idempotency_record(tx, ACCOUNT, "Act", "token-1", "hash", 5)
        queries.set_idempotency_response(tx, ACCOUNT, "Act", "token-1", response)
        add_line = Prepared(
            VpnConnectionLog.__table__.insert(),  # type: ignore[attr-defined]
            column_keys=["vpn_connection_id", "time_ms", "message"],
        )
        rows(tx, add_line, {"vpn_connection_id": "vco-x", "time_ms": 7, "message": "m"})
    with db.direct(write=False) as tx:
        direct = queries.idempotency_record(tx, ACCOUNT, "Act", "token-1")
    with db.transaction(write=False) as session:
        core = queries.idempotency_record(session, ACCOUNT, "Act", "token-1")
        line = session.scalars(select(VpnConnectionLog)).one()
    assert direct is not None and core is not None
    assert direct.response == response == core.response
    assert (direct.request_hash, direct.create_time) == ("hash", 5) == (core.request_hash, core.create_time)
    assert (line.vpn_connection_id, line.time_ms, line.message) == ("vco-x", 7, "m")
    db.dispose()


def test_a_conflict_raises_sqlalchemy_s_integrity_error_and_writes_nothing(settings: Settings) -> None:
    db = _database(settings)
    with db.direct(write=True) as tx:
        queries.claim_idempotency_record(tx, ACCOUNT, "Act", "token-2", "h", 1)
    with pytest.raises(IntegrityError) as raised:
        with db.direct(write=True) as tx:
            queries.claim_idempotency_record(tx, ACCOUNT, "Act", "token-3", "h", 2)
            queries.claim_idempotency_record(tx, ACCOUNT, "Act", "token-2", "h", 3)
    # The parameters are not appended to the error's text (a client's input can be one), as
    # with the engine's hide_parameters (PostgreSQL's own DETAIL line may still name a key).
    assert "[parameters:" not in str(raised.value)
    assert raised.value.hide_parameters
    with db.transaction(write=False) as session:
        tokens = sorted(session.scalars(select(IdempotencyRecord.client_token)))
    assert tokens == ["token-2"]  # token-3 was rolled back with the failed transaction
    # The connection went back to the pool usable.
    with db.direct(write=True) as tx:
        assert queries.try_claim_idempotency_record(tx, ACCOUNT, "Act", "token-3", "h", 4)
    db.dispose()


def test_an_error_in_the_caller_rolls_back(settings: Settings) -> None:
    db = _database(settings)
    with pytest.raises(RuntimeError):
        with db.direct(write=True) as tx:
            assert queries.claim_nonce(tx, "LTAIkey", "nonce-1", 10)
            raise RuntimeError("the action failed")
    with db.direct(write=True) as tx:
        assert queries.claim_nonce(tx, "LTAIkey", "nonce-1", 10)  # not claimed by the failed one
        assert not queries.claim_nonce(tx, "LTAIkey", "nonce-1", 10)
    db.dispose()


def test_a_statement_runs_the_same_in_a_session_and_on_the_cursor(settings: Settings) -> None:
    db = _database(settings)
    names = Prepared(select(Account.id, Account.name).where(Account.id == bindparam("i")))
    with db.direct(write=False) as tx:
        on_cursor = [tuple(row) for row in rows(tx, names, {"i": ACCOUNT})]
    with db.transaction(write=False) as session:
        in_session = [tuple(row) for row in rows(session, names, {"i": ACCOUNT})]
    assert on_cursor == in_session == [(ACCOUNT, "direct")]
    db.dispose()


def test_the_nonce_claim_and_the_key_read_are_one_round_trip_on_postgresql(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """queries.claim_nonce_reading_key: the claim and the AccessKey's columns, in one
    statement on PostgreSQL (two on SQLite, where a statement is no round trip); a nonce
    goes in once; an unknown key reads as None."""
    db = _database(settings)
    accounts.ensure_key(db, make_sealer(), ACCOUNT, "LTAIroundtrip0001", "secret-of-the-key")
    statements: list[object] = []
    execute = Direct.execute

    def counted(self: Direct, prepared: Prepared, values: object) -> object:
        statements.append(prepared)
        return execute(self, prepared, values)  # type: ignore[arg-type]

    monkeypatch.setattr(Direct, "execute", counted)
    with db.direct(write=True) as tx:
        claimed, key = queries.claim_nonce_reading_key(tx, "LTAIroundtrip0001", "nonce-1", 10**13)
    assert len(statements) == (1 if db.engine.dialect.name == "postgresql" else 2)
    assert claimed and key is not None and key[:2] == (ACCOUNT, "enabled")
    with db.direct(write=False) as tx:
        assert key == queries.access_key_credentials(tx, "LTAIroundtrip0001")
    with db.direct(write=True) as tx:
        again, same = queries.claim_nonce_reading_key(tx, "LTAIroundtrip0001", "nonce-1", 10**13)
    assert (again, same) == (False, key)
    with db.direct(write=True) as tx:
        assert queries.claim_nonce_reading_key(tx, "LTAInosuchkey0001", "nonce-2", 10**13)[1] is None
    db.dispose()
