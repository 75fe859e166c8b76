"""Who is calling: verify a request's signature and name its account.

Order of checks: credentials present and complete, timestamp inside the window, the
AccessKey exists and is enabled, the signature matches (in constant time), and last the
nonce is new. The nonce is recorded only for a request that proved it holds the secret,
so forged requests cannot burn nonces. Nonces live in the database, so a replay to
another server process of the same database is refused too. Before all of it, a client
address that failed too often lately is refused (``Throttling.User``, vpngw.auth.throttle).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError

from vpngw.accounts import ACCESS_KEY_PURPOSE
from vpngw.auth.signatures import (
    IncomingRequest,
    check_timestamp,
    read_credentials,
    verify,
)
from vpngw.auth.throttle import FailureThrottle
from vpngw.errors import BadRequest
from vpngw.sealing import Sealer
from vpngw.store import queries
from vpngw.store.engine import Database

MAX_SKEW_S = 900
PRUNE_EVERY_MS = 60_000


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Authenticator:
    db: Database
    sealer: Sealer
    insecure_account_id: str | None = None  # set only by `vpngw serve --insecure-no-auth`
    clock: Callable[[], datetime.datetime] = _utcnow
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    _pruned_at_ms: int = 0

    def account_of(self, req: IncomingRequest, client: str = "-") -> str:
        """The account of the key that signed ``req``. ``client`` is the client's address
        (from the ASGI scope): an address that keeps failing to authenticate is answered
        400 ``Throttling.User`` for a while (vpngw.auth.throttle)."""
        if self.insecure_account_id is not None:
            return self.insecure_account_id
        self.throttle.check(client)
        try:
            return self._verified_account(req)
        except BadRequest:
            self.throttle.failed(client)
            raise

    def _verified_account(self, req: IncomingRequest) -> str:
        creds = read_credentials(req)
        if creds is None:
            raise BadRequest(
                "MissingParameter.AccessKeyId",
                'The input parameter "AccessKeyId" that is mandatory for processing this request is not supplied: '
                "requests must be signed.",
            )
        now = self.clock()
        check_timestamp(creds, now, MAX_SKEW_S)
        with self.db.session(write=False) as session:
            key = queries.get_access_key(session, creds.access_key_id)
            if key is None:
                raise BadRequest("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
            if key.status != "enabled":
                raise BadRequest("InvalidAccessKeyId.Inactive", "Specified access key is disabled.")
            account_id, sealed = key.account_id, key.secret_sealed
        verify(req, creds, self.sealer.open(sealed, ACCESS_KEY_PURPOSE))
        now_ms = int(now.timestamp() * 1000)
        try:
            with self.db.transaction(write=True) as session:
                if now_ms - self._pruned_at_ms > PRUNE_EVERY_MS:
                    queries.forget_expired_nonces(session, now_ms)
                    self._pruned_at_ms = now_ms
                queries.record_nonce(
                    session, creds.access_key_id, creds.nonce, now_ms + 2 * MAX_SKEW_S * 1000
                )
        except IntegrityError:
            raise BadRequest("SignatureNonceUsed", "Specified signature nonce was used already.") from None
        return account_id
