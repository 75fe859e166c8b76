"""Master-key rotation: open every sealed secret with any key of the keyring and seal
it again under the first (current) one. See docs/security.md."""

from __future__ import annotations

from vpngw.accounts import ACCESS_KEY_PURPOSE
from vpngw.actions.customer_gateways import AUTH_KEY_PURPOSE
from vpngw.actions.dispatch import RESPONSE_PURPOSE
from vpngw.ike_config import PSK_PURPOSE
from vpngw.sealing import Sealer
from vpngw.store import queries
from vpngw.store.engine import Database


def reseal_all(db: Database, sealer: Sealer) -> int:
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
