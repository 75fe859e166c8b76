"""Who is calling: verify a request's signature and name its account.

Order of checks: credentials present and complete, timestamp inside the window, the
AccessKey exists and is enabled, the signature matches (in constant time), and last the
nonce is new. The nonce is recorded only for a request that proved it holds the secret,
so forged requests cannot burn nonces. Nonces live in the database, so a replay to
another server process of the same database is refused too. A write action records its
nonce in its own transaction (one write transaction per create, not two: the API's
hot path); a read, or an action that fails, records it in a transaction of its own. Before all of it, a client
address that failed too often lately is refused (``Throttling.User``, vpngw.auth.throttle).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.orm import Session

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


@dataclass(frozen=True)
class Verified:
    """A request whose signature holds: its account, and the nonce still to be claimed
    (``None`` when authentication is off)."""

    account_id: str
    client: str
    access_key_id: str = ""
    nonce: str | None = None
    now_ms: int = 0


@dataclass
class Authenticator:
    db: Database
    sealer: Sealer
    insecure_account_id: str | None = None  # set only by `vpngw serve --insecure-no-auth`
    clock: Callable[[], datetime.datetime] = _utcnow
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    _pruned_at_ms: int = 0

    def account_of(self, req: IncomingRequest, client: str = "-") -> str:
        """The account of the key that signed ``req``, its nonce recorded. ``client`` is
        the client's address (from the ASGI scope): an address that keeps failing to
        authenticate is answered 400 ``Throttling.User`` for a while (vpngw.auth.throttle)."""
        verified = self.verify(req, client)
        self.record_nonce(verified)
        return verified.account_id

    def verify(self, req: IncomingRequest, client: str = "-") -> Verified:
        """Every check but the nonce's: the caller claims it next, with
        :meth:`claim_nonce` inside its own write transaction or with :meth:`record_nonce`."""
        if self.insecure_account_id is not None:
            return Verified(self.insecure_account_id, client)
        self.throttle.check(client)
        try:
            return self._verified(req, client)
        except BadRequest:
            self.throttle.failed(client)
            raise

    def record_nonce(self, verified: Verified) -> None:
        """Claim the nonce in a write transaction of its own."""
        if verified.nonce is not None:
            with self.db.connection(write=True) as connection:
                self.claim_nonce(verified, connection)

    def claim_nonce(self, verified: Verified, session: Session | Connection) -> None:
        """Claim the nonce in the caller's write transaction: ``SignatureNonceUsed`` when
        any process of the database claimed it before (and committed)."""
        if verified.nonce is None:
            return
        now_ms = verified.now_ms
        if now_ms - self._pruned_at_ms > PRUNE_EVERY_MS:
            queries.forget_expired_nonces(session, now_ms)
            self._pruned_at_ms = now_ms
        expires = now_ms + 2 * MAX_SKEW_S * 1000
        if not queries.claim_nonce(session, verified.access_key_id, verified.nonce, expires):
            self.throttle.failed(verified.client)
            raise nonce_used()

    def _verified(self, req: IncomingRequest, client: str) -> Verified:
        creds = read_credentials(req)
        if creds is None:
            raise BadRequest(
                "MissingParameter.AccessKeyId",
                'The input parameter "AccessKeyId" that is mandatory for processing this request is not supplied: '
                "requests must be signed.",
            )
        now = self.clock()
        check_timestamp(creds, now, MAX_SKEW_S)
        with self.db.connection(write=False) as connection:
            key = queries.access_key_credentials(connection, creds.access_key_id)
        if key is None:
            raise BadRequest("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        account_id, status, sealed = key
        if status != "enabled":
            raise BadRequest("InvalidAccessKeyId.Inactive", "Specified access key is disabled.")
        verify(req, creds, self.sealer.open(sealed, ACCESS_KEY_PURPOSE))
        return Verified(account_id, client, creds.access_key_id, creds.nonce, int(now.timestamp() * 1000))


def nonce_used() -> BadRequest:
    return BadRequest("SignatureNonceUsed", "Specified signature nonce was used already.")
