"""Run one action: parse its parameters, run it in one transaction, honour ClientToken.

The order of checks is fixed: the action must exist, required parameters must be
present, every parameter must be valid, the region must exist; only then is the
database touched. A request with a ClientToken whose first result is recorded gets that
result again, whatever happened since; the same token with other parameters is refused.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError

from vpngw.actions.framework import GIVEN, Action, Context, Params, list_fields
from vpngw.actions.registry import ACTIONS
from vpngw.config import Settings
from vpngw.errors import (
    BadRequest,
    NotFound,
    ServiceUnavailable,
    dry_run_passed,
    invalid_parameter,
    missing_parameter,
)
from vpngw.rules.values import check_storable
from vpngw.sealing import Sealer
from vpngw.store import queries
from vpngw.store.direct import NeedsSession, Where
from vpngw.store.engine import Database, WouldBlock, waiting_allowed

log = logging.getLogger(__name__)

ATTEMPTS = 4
RESPONSE_PURPOSE = "idempotency_records.response"
REQUEST_HASH_PURPOSE = "idempotency_records.request_hash"


def find_action(name: str) -> Action[Any]:
    action = ACTIONS.get(name)
    if action is None:
        raise NotFound(
            "InvalidAction.NotFound",
            f"Specified api {name!r} is not found, please check your url and method.",
        )
    return action


# ``Name.N``, ``Name.N.Member`` and ``Name.N.Member.Key`` (TunnelOptionsSpecification.1.TunnelIkeConfig.Psk).
_REPEATED = re.compile(r"^([A-Za-z]+)\.(\d{1,9})(?:\.([A-Za-z]+(?:\.[A-Za-z]+)?))?$")
MAX_REPEATS = 50  # the largest N of a repeated parameter (Tag.N takes at most 20)


def gather_lists(model: type[Params], given: dict[str, str]) -> dict[str, Any]:
    """The SDKs' flattened lists (``Tags.1.Key``, ``ResourceId.1``) of the model's declared
    list fields, gathered into lists ordered by N (a member's own keys, ``Name.N.Member.Key``,
    stay dotted in the item: ``{"Member.Key": value}``); everything else as it came."""
    heads = list_fields(model)
    out: dict[str, Any] = {}
    items: dict[str, dict[int, Any]] = {}
    for key, value in given.items():
        match = _REPEATED.match(key)
        if match is None or match.group(1) not in heads:
            out[key] = value
            continue
        head, index, sub = match.group(1), int(match.group(2)), match.group(3)
        if not 1 <= index <= MAX_REPEATS:
            raise invalid_parameter(head, f"the index N of {head}.N must be 1-{MAX_REPEATS}")
        slot = items.setdefault(head, {})
        if sub is None:
            slot[index] = value
        else:
            entry = slot.setdefault(index, {})
            if not isinstance(entry, dict):
                raise invalid_parameter(head, f"{head}.{index} is given both as a value and with members")
            entry[sub] = value
    for head, slot in items.items():
        if head in out:
            raise invalid_parameter(head, f"{head} is given both whole and as {head}.N")
        out[head] = [slot[index] for index in sorted(slot)]
    for head in model.OBJECTS:
        members = {key[len(head) + 1 :]: out.pop(key) for key in list(out) if key.startswith(head + ".")}
        if members:
            if head in out:
                raise invalid_parameter(head, f"{head} is given both whole and as {head}.Member")
            out[head] = members
    return out


def refusal(model: type[Params], params: Params, given: Mapping[str, Any]) -> BadRequest | None:
    """The error for the first refused parameter of the request, if any (docs/api.md)."""
    for key in given:
        refused = model.REFUSED.get(key) or model.REFUSED.get(key.split(".", 1)[0])
        if refused is not None and refused.when is GIVEN:
            return BadRequest(refused.code, f'The parameter "{key}" is not supported: {refused.why}')
    for name, field in model.model_fields.items():
        refused = model.REFUSED.get(field.alias or name)
        if refused is not None and refused.when is not GIVEN and getattr(params, name) == refused.when:
            return BadRequest(refused.code, f'"{field.alias}" is not supported: {refused.why}')
    return None


def parse_params(action: Action[Any], raw: Mapping[str, str]) -> Params:
    """Validate the wire parameters, then refuse what vpngw does not do (before anything is
    written). An empty value counts as not given."""
    given = {key: value for key, value in raw.items() if value != ""}
    # No database stores a NUL (PostgreSQL) or a lone surrogate in text, and no valid value has one.
    check_storable(given.items())
    gathered = gather_lists(action.params, given)
    for name, field in action.params.model_fields.items():
        if field.is_required() and field.alias not in gathered:
            raise missing_parameter(field.alias or name)
    try:
        params: Params = action.params.model_validate(gathered)
    except ValidationError as error:
        first = error.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else "Parameters"
        raise invalid_parameter(where, first["msg"]) from None
    refused = refusal(action.params, params, given)
    if refused is not None:
        raise refused
    return params


def _request_bytes(params: Params) -> bytes:
    body = params.model_dump(mode="json", exclude={"client_token"})
    return json.dumps(body, sort_keys=True).encode()


def request_hash(params: Params, sealer: Sealer) -> str:
    """What a ClientToken record keeps of its request: a keyed digest (the parameters can
    hold a Psk; an unkeyed hash would confirm a guess offline, docs/security.md)."""
    return sealer.digest(_request_bytes(params), REQUEST_HASH_PURPOSE)


Handler = Callable[[Context, Any, Params], Any]


def _run(
    handler: Handler, action: Action[Any], ctx: Context, session: Where, params: Params
) -> dict[str, Any]:
    if getattr(params, "dry_run", False):
        # Every check of the real call runs (references, quotas, conflicts), then the error
        # leaves the transaction, which rolls everything back; no ClientToken is recorded.
        handler(ctx, session, params)
        raise dry_run_passed()
    token: str | None = getattr(params, "client_token", None)
    if token is None:
        return dict(handler(ctx, session, params).model_dump(by_alias=True, mode="json"))
    # Past its lifetime a token counts as new: an expired record is dropped when its token
    # comes back, and all expired ones about once a minute (queries.prune_idempotency_records).
    expired_before = ctx.now_ms - ctx.settings.client_token_ttl_s * 1000
    queries.prune_idempotency_records(session, expired_before, ctx.now_ms)
    # Claim the token before doing anything (the common case: one INSERT that went in). A
    # concurrent request with the same token waits on this row's unique key until we
    # commit, then finds our result.
    digest = request_hash(params, ctx.sealer)
    if not queries.try_claim_idempotency_record(
        session, ctx.account_id, action.name, token, digest, ctx.now_ms
    ):
        record = queries.idempotency_record(session, ctx.account_id, action.name, token)
        if record is not None and record.create_time < expired_before:
            queries.forget_idempotency_record(session, ctx.account_id, action.name, token)
            record = None
        if record is not None:
            # None: an unkeyed hash from before migration 0008, or its master key was retired
            # from the keyring; such a record still replays (the same token is almost always
            # the same request), it just cannot tell other parameters (docs/security.md).
            same = ctx.sealer.digest_matches(
                record.request_hash, _request_bytes(params), REQUEST_HASH_PURPOSE
            )
            if same is False:
                raise BadRequest(
                    "IdempotentParameterMismatch",
                    "The request is retried with the same ClientToken but other parameters.",
                )
            replay: dict[str, Any] = json.loads(ctx.sealer.open(record.response["sealed"], RESPONSE_PURPOSE))
            return replay
        # Expired (or gone since the insert met it): an insert of our own; a concurrent
        # claim makes it fail with IntegrityError, and dispatch() runs the request again.
        queries.claim_idempotency_record(session, ctx.account_id, action.name, token, digest, ctx.now_ms)
    result: dict[str, Any] = handler(ctx, session, params).model_dump(by_alias=True, mode="json")
    # Responses can hold secrets (a Modify response carries the Psk): sealed at rest.
    queries.set_idempotency_response(
        session,
        ctx.account_id,
        action.name,
        token,
        {"sealed": ctx.sealer.seal(json.dumps(result), RESPONSE_PURPOSE)},
    )
    return result


def dispatch(
    db: Database,
    settings: Settings,
    sealer: Sealer,
    action_name: str,
    raw: Mapping[str, str],
    *,
    account_id: str,
    request_id: str,
    host: str,
    first: Callable[[Where], None] | None = None,
) -> dict[str, Any]:
    """The action's response fields (without RequestId). ``first`` runs at the start of
    the action's transaction, and again on each retry (the API claims the request's
    SignatureNonce there: one write transaction per write action).

    An action with a ``direct`` handler runs on the DBAPI cursor (vpngw.store.direct); a
    request it cannot serve there (NeedsSession) runs again, from the start of a new
    transaction, in an ORM session."""
    action = find_action(action_name)
    params = parse_params(action, raw)
    region_id = getattr(params, "region_id", None)
    if region_id is not None and region_id not in settings.region_ids:
        raise NotFound("InvalidRegionId.NotFound", f"The specified RegionId {region_id!r} does not exist.")
    ctx = Context(
        account_id=account_id,
        request_id=request_id,
        settings=settings,
        now_ms=int(time.time() * 1000),
        host=host,
        sealer=sealer,
    )
    direct = action.direct
    for attempt in range(1, ATTEMPTS + 1):
        try:
            if direct is not None:
                try:
                    with db.direct(write=action.writes) as tx:
                        if first is not None:
                            first(tx)
                        return _run(direct, action, ctx, tx, params)
                except NeedsSession:
                    direct = None
            with db.transaction(write=action.writes) as session:
                if first is not None:
                    first(session)
                return _run(action.handler, action, ctx, session, params)
        except (IntegrityError, OperationalError) as error:
            if action.writes and not waiting_allowed():
                raise WouldBlock() from error  # rolled back: run again where a retry may sleep
            # A concurrent transaction took the same unique value (an InternetIp, a
            # ClientToken) or the database was busy: the whole action runs again and
            # sees the other transaction's result.
            log.info(
                "retrying %s after a conflict (attempt %d): %s", action.name, attempt, type(error).__name__
            )
            time.sleep(random.uniform(0, 0.01 * attempt))
    raise ServiceUnavailable()
