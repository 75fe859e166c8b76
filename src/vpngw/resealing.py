"""Master-key rotation: open every sealed secret with any key of the keyring and seal
it again under the first (current) one. See docs/security.md."""

from __future__ import annotations

from vpngw.accounts import ACCESS_KEY_PURPOSE
from vpngw.ike_config import PSK_PURPOSE
from vpngw.sealing import Sealer, SealingError
from vpngw.store import queries
from vpngw.store.engine import Database


def reseal_all(db: Database, sealer: Sealer) -> int:
    # Here, not at the top: every agent imports this module for check_opens, and the
    # actions (with pydantic) are a quarter of a second of its start it never needs.
    from vpngw.actions.customer_gateways import AUTH_KEY_PURPOSE
    from vpngw.actions.dispatch import RESPONSE_PURPOSE

    def again(sealed: str, purpose: str) -> str:
        return sealer.seal(sealer.open(sealed, purpose), purpose)

    count = 0
    with db.transaction(write=True) as session:
        for key in queries.all_access_keys(session):
            key.secret_sealed = again(key.secret_sealed, ACCESS_KEY_PURPOSE)
            count += 1
        for connection in queries.all_connections(session):
            ike = dict(connection.ike_config)
            ike["Psk"] = again(ike["Psk"], PSK_PURPOSE)
            connection.ike_config = ike
            count += 1
        for gateway in queries.all_customer_gateways(session):
            if gateway.auth_key:
                gateway.auth_key = again(gateway.auth_key, AUTH_KEY_PURPOSE)
                count += 1
        for record in queries.all_idempotency_records(session):
            if "sealed" in record.response:
                record.response = {"sealed": again(record.response["sealed"], RESPONSE_PURPOSE)}
                count += 1
    return count


def sealed_samples(db: Database) -> list[tuple[str, str]]:
    """A few sealed values of the database (sealed text, purpose): one of each kind."""
    samples: list[tuple[str, str]] = []
    with db.transaction(write=False) as session:
        key = queries.first_access_key(session)
        if key is not None:
            samples.append((key.secret_sealed, ACCESS_KEY_PURPOSE))
        connection = queries.first_connection(session)
        if connection is not None:
            samples.append((str(connection.ike_config["Psk"]), PSK_PURPOSE))
    return samples


def check_opens(db: Database, sealer: Sealer) -> None:
    """Raise SealingError unless ``sealer`` opens the database's secrets (a node with
    another fleet's master key, or a new one, must not start: it would run nothing it
    holds, docs/hosts.md)."""
    for sealed, _purpose in sealed_samples(db):
        try:
            sealer.open(sealed, _purpose)
        except SealingError as error:
            raise SealingError(
                f"this node's master key does not open the secrets stored in the database ({error}); "
                "give it the fleet's master key (VPNGW_MASTER_KEY or VPNGW_MASTER_KEY_FILE)"
            ) from None
