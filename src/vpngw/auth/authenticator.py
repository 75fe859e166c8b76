"""Who is calling: verify a request's signature and name its account.

Order of checks: credentials present and complete, timestamp inside the window, the
AccessKey exists and is enabled, the signature matches (in constant time), and last the
nonce is new. The nonce is recorded only for a request that proved it holds the secret,
so forged requests cannot burn nonces. The AccessKey is checked against a copy this
process read earlier (no read transaction per request), and read again inside the
transaction that claims the nonce: a key disabled, deleted or given another secret since
is refused there, as if the copy had never been kept. Nonces live in the database, so a replay to
another server process of the same database is refused too. A write action records its
nonce in its own transaction (one write transaction per create, not two: the API's
hot path); a read, or an action that fails, records it in a transaction of its own. Before all of it, a client
address that failed too often lately is refused (``Throttling.User``, vpngw.auth.throttle).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError

from vpngw.accounts import ACCESS_KEY_PURPOSE
from vpngw.auth.signatures import (
    Credentials,
    IncomingRequest,
    check_timestamp,
    read_credentials,
    verify,
)
from vpngw.auth.throttle import FailureThrottle
from vpngw.errors import BadRequest
from vpngw.sealing import Sealer
from vpngw.store import queries
from vpngw.store.direct import Where
from vpngw.store.engine import Database

MAX_SKEW_S = 900
PRUNE_EVERY_MS = 60_000
KEYS_KEPT = 4096  # AccessKeys whose stored columns a process keeps (all dropped when full)

StoredKey = tuple[str, str, str]  # (account id, status, sealed secret), as the store has them


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
    # The stored key the signature was checked against, and what to check it again with.
    key: StoredKey | None = field(default=None, compare=False)
    request: IncomingRequest | None = field(default=None, compare=False, repr=False)
    credentials: Credentials | None = field(default=None, compare=False, repr=False)


@dataclass
class Authenticator:
    db: Database
    sealer: Sealer
    insecure_account_id: str | None = None  # set only by `vpngw serve --insecure-no-auth`
    clock: Callable[[], datetime.datetime] = _utcnow
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    _pruned_at_ms: int = 0
    _keys: dict[str, StoredKey] = field(default_factory=dict)

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
        """Claim the nonce in a write transaction of its own. A pooled connection the
        database dropped (a PostgreSQL restart within the pool's ping interval) fails its
        first statement, nothing written: the claim runs once more on a new connection
        rather than fail the request."""
        if verified.nonce is None:
            return
        for attempt in (1, 2):
            try:
                with self.db.direct(write=True) as tx:
                    self.claim_nonce(verified, tx)
                return
            except DBAPIError as error:
                if attempt == 2 or not error.connection_invalidated:
                    raise

    def claim_nonce(self, verified: Verified, session: Where) -> None:
        """Claim the nonce in the caller's write transaction: ``SignatureNonceUsed`` when
        any process of the database claimed it before (and committed)."""
        if verified.nonce is None:
            return
        now_ms = verified.now_ms
        if now_ms - self._pruned_at_ms > PRUNE_EVERY_MS:
            queries.forget_expired_nonces(session, now_ms)
            self._pruned_at_ms = now_ms
        expires = now_ms + 2 * MAX_SKEW_S * 1000
        # The claim and the key's re-read in one round trip on PostgreSQL. A changed key is
        # judged first, as before: any error here rolls the caller's transaction (and the
        # claim) back.
        claimed, stored = queries.claim_nonce_reading_key(
            session, verified.access_key_id, verified.nonce, expires
        )
        if stored != verified.key:
            self._key_changed(verified, stored)
        if not claimed:
            self.throttle.failed(verified.client)
            raise nonce_used()

    def _key_changed(self, verified: Verified, stored: StoredKey | None) -> None:
        """The key changed since the copy the signature was checked against: the error
        the stored key gives (raises), or nothing when it still accepts the signature (its
        secret sealed anew, or the key enabled again)."""
        self._keys.pop(verified.access_key_id, None)
        try:
            _check_key(stored)
            assert stored is not None and verified.request is not None and verified.credentials is not None
            verify(verified.request, verified.credentials, self.sealer.open(stored[2], ACCESS_KEY_PURPOSE))
            if stored[0] != verified.account_id:
                raise BadRequest("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        except BadRequest:
            self.throttle.failed(verified.client)
            raise

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
        kept = self._keys.get(creds.access_key_id)
        if kept is not None:
            try:
                return self._checked(req, creds, kept, client, now)
            except BadRequest:
                # The kept copy may be stale: the stored key decides.
                self._keys.pop(creds.access_key_id, None)
        with self.db.direct(write=False) as tx:
            key = queries.access_key_credentials(tx, creds.access_key_id)
        if key is not None:
            if len(self._keys) >= KEYS_KEPT:
                self._keys.clear()
            self._keys[creds.access_key_id] = key
        return self._checked(req, creds, key, client, now)

    def _checked(
        self,
        req: IncomingRequest,
        creds: Credentials,
        key: StoredKey | None,
        client: str,
        now: datetime.datetime,
    ) -> Verified:
        _check_key(key)
        assert key is not None
        verify(req, creds, self.sealer.open(key[2], ACCESS_KEY_PURPOSE))
        return Verified(
            key[0],
            client,
            creds.access_key_id,
            creds.nonce,
            int(now.timestamp() * 1000),
            key=key,
            request=req,
            credentials=creds,
        )


def _check_key(key: StoredKey | None) -> None:
    if key is None:
        raise BadRequest("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    if key[1] != "enabled":
        raise BadRequest("InvalidAccessKeyId.Inactive", "Specified access key is disabled.")


# The errors a nonce's claim itself can raise (a replay; a key changed since the copy the
# signature was checked against): a request failing with one of them records no nonce.
CLAIM_ERRORS = frozenset(
    {
        "SignatureNonceUsed",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidSignatureMethod",
    }
)


def nonce_used() -> BadRequest:
    return BadRequest("SignatureNonceUsed", "Specified signature nonce was used already.")
