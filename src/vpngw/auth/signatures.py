"""Verification of the two request-signing schemes used by the official Alibaba Cloud SDKs.

* ``rpc-v1``: the RPC signature, version 1.0 (aliyun-python-sdk-core, Tea with
  ``signature_algorithm='v2'``, Node pop-core). The signature and its companions
  (``AccessKeyId``, ``SignatureMethod``, ``SignatureNonce``, ...) are ordinary parameters
  in the query string or the form body.
* ``acs3``: ``ACS3-HMAC-SHA256`` (the default of the current Tea SDKs). The signature is in
  the ``Authorization`` header; nonce and timestamp are ``x-acs-*`` headers.

The wire format is pinned byte for byte by ``tests/auth/test_signatures.py``, against
requests the official SDKs build.

Everything here is pure: no I/O, no clock (the caller passes ``now``), no storage. Nonce
replay protection (``SignatureNonceUsed``) needs storage and therefore lives with the
caller; :class:`Credentials` carries the nonce for it.

Typical use by the HTTP layer::

    creds = read_credentials(req)          # None: the request is not signed at all
    if creds is not None:
        check_timestamp(creds, now)
        secret = lookup_secret(creds.access_key_id)
        verify(req, creds, secret)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote

from vpngw.errors import BadRequest, invalid_parameter, missing_parameter
from vpngw.rules.values import check_storable

Scheme = Literal["rpc-v1", "acs3"]

ACS3_ALGORITHM = "ACS3-HMAC-SHA256"

#: SHA-256 of the empty string, the payload hash of a request without a body.

#: The parameters that make up an rpc-v1 signature. Any of them marks a request as signed;
#: all of them are required, and the first missing one (in this order) is reported.
_V1_AUTH_PARAMS = (
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
)

#: The longest SignatureNonce accepted (the SDKs send 32 or 64 hex characters); nonces are stored.
MAX_NONCE_LENGTH = 128

_V1_DIGESTS = {"HMAC-SHA1": hashlib.sha1, "HMAC-SHA256": hashlib.sha256}

_TIMESTAMP_RE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?Z")

MASK = "******"
#: Parameters whose whole value is a secret. A dotted name is matched on its last segment,
#: so ``TunnelOptionsSpecification.1.TunnelIkeConfig.Psk`` is masked too.
_SECRET_NAMES = frozenset({"Psk", "AccessKeySecret", "AuthKey"})
#: A secret member inside a JSON-valued parameter such as ``IkeConfig``: the key, the colon
#: and the value (a JSON string with its escapes, or a bare scalar).
_JSON_SECRET_RE = re.compile(
    r'("(?:Psk|AccessKeySecret|AuthKey)"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]\s]+)',
    re.IGNORECASE,
)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class IncomingRequest:
    """An HTTP request as the verifier sees it.

    ``query`` and ``form`` are *decoded* pairs in wire order with blank values kept
    (``urllib.parse.parse_qsl(raw, keep_blank_values=True)``); ``form`` holds the
    parameters of an ``application/x-www-form-urlencoded`` body and is empty otherwise.
    ``headers`` must have lower-case names. ``path`` is the request path as received
    (``/`` for every RPC API). ``body`` is the raw body, needed for the ACS3 payload hash.
    ``action`` is the action the server will run for this request (from the path on the
    Apsara route, from ``Action`` or ``x-acs-action`` on ``/``); the signature must bind it
    (see :func:`verify`). Empty means "not known" and skips that check (pure tests only).
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    form: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes
    action: str = ""


@dataclass(frozen=True)
class Credentials:
    """What a signed request claims: who signed it, when, and how.

    ``timestamp`` is timezone-aware (UTC). ``signature_method`` is ``SignatureMethod`` for
    rpc-v1 (e.g. ``HMAC-SHA1``) and the Authorization algorithm for acs3
    (``ACS3-HMAC-SHA256``). Neither is validated here; :func:`verify` does that.
    """

    scheme: Scheme
    access_key_id: str
    nonce: str
    timestamp: datetime
    signature_method: str


@dataclass(frozen=True)
class _Acs3Authorization:
    algorithm: str
    access_key_id: str
    signed_headers: str
    signature: str

    @property
    def signed_header_names(self) -> list[str]:
        return self.signed_headers.split(";")


# --------------------------------------------------------------------------- encoding


def pct(s: str) -> str:
    """RFC 3986 percent-encoding of the UTF-8 bytes of ``s``.

    ``A-Z a-z 0-9 - _ . ~`` stay literal; every other byte becomes ``%XX`` (upper-case
    hex), so a space is ``%20`` (never ``+``), ``*`` is ``%2A`` and ``/`` is ``%2F``.
    """
    if _UNRESERVED.fullmatch(s):
        return s  # most keys and values (a quote() call was a sixth of a request's CPU)
    return quote(s, safe="~", encoding="utf-8", errors="strict")


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # ASCII only: the ranges are not \w


def format_timestamp(moment: datetime) -> str:
    """``YYYY-MM-DDThh:mm:ssZ`` in UTC, the form the SDKs send. A naive datetime is taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str, name: str = "Timestamp") -> datetime:
    """Parse ``YYYY-MM-DDThh:mm:ssZ`` (fractional seconds allowed) into an aware UTC datetime.

    Raises 400 ``InvalidTimeStamp.Format`` otherwise; ``name`` is the parameter or header
    named in the message.
    """
    match = _TIMESTAMP_RE.fullmatch(value)
    moment: datetime | None = None
    if match is not None:
        try:
            moment = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        except ValueError:  # well-formed but impossible, such as month 13
            moment = None
    if match is None or moment is None:
        raise BadRequest(
            "InvalidTimeStamp.Format",
            f'Specified time stamp or date value is not well formatted. "{name}" must be a UTC time '
            "in the form YYYY-MM-DDThh:mm:ssZ.",
        )
    fraction = match.group(2)
    if fraction:
        moment += timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return moment


def json_body_as_params(body: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """The parameters of a JSON request body, as the strings a form body would carry.

    This is how JSON-body parameters (the Apsara Stack route) are covered by an rpc-v1
    signature: the client signs every top-level member as a string.

    * strings as they are; booleans ``true`` / ``false``;
    * numbers through ``json.dumps`` (``1``, ``1.5``; a float that was written ``1.50``
      on the wire comes back as ``1.5``, because the original text is gone after parsing);
    * objects and arrays as compact JSON (``{"a":1}``), non-ASCII kept as is;
    * ``null`` members are left out: they carry no value, as an absent parameter.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in body.items():
        if value is None:
            continue
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool):  # before int: bool is a subclass of int
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = json.dumps(value)
        else:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        pairs.append((key, text))
    return tuple(pairs)


def mask_secrets(params: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """A copy of ``params`` with secret values replaced by ``******``.

    Masked: the whole value of ``Psk``, ``AccessKeySecret`` and ``AuthKey`` (also as the
    last segment of a dotted name such as ``TunnelOptionsSpecification.1.TunnelIkeConfig.Psk``),
    and, in any JSON-valued parameter (``IkeConfig``, ``TunnelOptionsSpecification.*``),
    the value of a member with one of those names. Everything else is kept byte for byte.
    The mask contains no ``:``, which the legacy SDK's ``split(':')`` relies on.
    """
    masked: list[tuple[str, str]] = []
    for key, value in params:
        if key.rsplit(".", 1)[-1] in _SECRET_NAMES:
            value = MASK
        elif '"' in value:
            value = _JSON_SECRET_RE.sub(lambda m: f'{m.group(1)}"{MASK}"', value)
        masked.append((key, value))
    return tuple(masked)


# --------------------------------------------------------------------------- reading


def _single(params: Sequence[tuple[str, str]], name: str) -> str | None:
    """The value of ``name``; ``None`` if absent. An authentication parameter must not repeat."""
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise BadRequest(
            "IncompleteSignature", f'The parameter "{name}" appears more than once in the request.'
        )
    return values[0] if values else None


def _v1_params(req: IncomingRequest) -> tuple[tuple[str, str], ...]:
    return req.query + req.form


def _scheme_of(req: IncomingRequest) -> Scheme | None:
    """Which scheme the request is signed with; ``None`` when it carries no signature.

    An ``Authorization`` header that is not ACS3 (Basic, Bearer, the ROA ``acs AK:sig``)
    is rejected unless the request also carries rpc-v1 parameters, in which case the header
    belongs to something else (a proxy) and is ignored.
    """
    authorization = req.headers.get("authorization")
    if authorization is not None and authorization.lstrip().upper().startswith("ACS3-"):
        return "acs3"
    if any(k in _V1_AUTH_PARAMS for k, _ in _v1_params(req)):
        return "rpc-v1"
    if authorization is not None:
        scheme = authorization.strip().split(" ", 1)[0]
        raise BadRequest(
            "InvalidSignatureMethod",
            f'The Authorization scheme "{scheme}" is not supported; use {ACS3_ALGORITHM} or the RPC signature 1.0.',
        )
    return None


def _parse_authorization(req: IncomingRequest) -> _Acs3Authorization:
    """Split ``ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex``."""
    raw = req.headers.get("authorization", "").strip()
    algorithm, _, rest = raw.partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name in fields:
            raise BadRequest(
                "IncompleteSignature", f'"{name}" appears more than once in the Authorization header.'
            )
        fields[name] = value.strip()
    for name in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(name):
            raise BadRequest("IncompleteSignature", f'The Authorization header has no "{name}".')
    signed_headers = fields["SignedHeaders"]
    if "" in signed_headers.split(";"):
        raise BadRequest(
            "IncompleteSignature", "SignedHeaders in the Authorization header has an empty name."
        )
    return _Acs3Authorization(
        algorithm=algorithm,
        access_key_id=fields["Credential"],
        signed_headers=signed_headers,
        signature=fields["Signature"],
    )


def _required_header(req: IncomingRequest, name: str) -> str:
    value = req.headers.get(name)
    if not value:
        raise BadRequest(
            "IncompleteSignature", f'The header "{name}" is required for an {ACS3_ALGORITHM} request.'
        )
    return value


def read_credentials(req: IncomingRequest) -> Credentials | None:
    """The credentials a request claims, or ``None`` when it is not signed at all.

    A partially signed request is an error: 400 ``MissingParameter.<Name>`` for a missing
    rpc-v1 parameter, 400 ``IncompleteSignature`` for a malformed ACS3 Authorization header,
    a missing ``x-acs-date`` / ``x-acs-signature-nonce``, or a repeated signature parameter;
    400 ``InvalidParameter.SignatureVersion`` for a version other than 1.0; 400
    ``InvalidTimeStamp.Format`` for a malformed timestamp; 400 ``InvalidParameter.AccessKeyId``
    / ``InvalidParameter.SignatureNonce`` for a value no database can store (a NUL, a lone
    surrogate, a nonce over 128 characters). Nothing is verified here.
    """
    scheme = _scheme_of(req)
    if scheme is None:
        return None
    creds = _claimed(req, scheme)
    # Both are looked up or stored: refused here, before any query, when no database could.
    check_storable((("AccessKeyId", creds.access_key_id), ("SignatureNonce", creds.nonce)))
    if len(creds.nonce) > MAX_NONCE_LENGTH:
        raise invalid_parameter("SignatureNonce", f"must be at most {MAX_NONCE_LENGTH} characters")
    return creds


def _claimed(req: IncomingRequest, scheme: Scheme) -> Credentials:
    if scheme == "acs3":
        auth = _parse_authorization(req)
        return Credentials(
            scheme="acs3",
            access_key_id=auth.access_key_id,
            nonce=_required_header(req, "x-acs-signature-nonce"),
            timestamp=parse_timestamp(_required_header(req, "x-acs-date"), "x-acs-date"),
            signature_method=auth.algorithm,
        )

    params = _v1_params(req)
    values = {name: _single(params, name) for name in _V1_AUTH_PARAMS}
    for name in _V1_AUTH_PARAMS:
        if not values[name]:
            raise missing_parameter(name)
    if values["SignatureVersion"] != "1.0":
        raise BadRequest(
            "InvalidParameter.SignatureVersion",
            'The specified parameter "SignatureVersion" is not valid: only 1.0 is supported.',
        )
    return Credentials(
        scheme="rpc-v1",
        access_key_id=str(values["AccessKeyId"]),
        nonce=str(values["SignatureNonce"]),
        timestamp=parse_timestamp(str(values["Timestamp"])),
        signature_method=str(values["SignatureMethod"]),
    )


def check_timestamp(creds: Credentials, now: datetime, max_skew_s: int = 900) -> None:
    """Reject a request signed more than ``max_skew_s`` seconds before or after ``now``.

    ``now`` must be timezone-aware. Raises 400 ``InvalidTimeStamp.Expired``.
    """
    if abs((now - creds.timestamp).total_seconds()) > max_skew_s:
        raise BadRequest(
            "InvalidTimeStamp.Expired",
            f"Specified time stamp or date value is expired. The request time {format_timestamp(creds.timestamp)} "
            f"is more than {max_skew_s} seconds away from the server time {format_timestamp(now)}.",
        )


# --------------------------------------------------------------------------- strings to sign


def _rpc_v1_string_to_sign(method: str, params: Sequence[tuple[str, str]], path: str = "/") -> str:
    """``METHOD&pct(path)&pct(canon)``; ``canon`` is every parameter but ``Signature``, sorted
    by key. ``path`` is ``/`` for the RPC route (what the SDKs sign) and the requested path on
    any other route, so that the signature binds the action the path names."""
    pairs = sorted((p for p in params if p[0] != "Signature"), key=lambda p: p[0])
    canon = "&".join(f"{pct(k)}={pct(v)}" for k, v in pairs)
    return f"{method.upper()}&{pct(path or '/')}&{pct(canon)}"


def _is_root(path: str) -> bool:
    return path in ("", "/")


def _v1_signed_paths(req: IncomingRequest) -> tuple[str, ...]:
    """The paths an rpc-v1 string to sign may name for this request, the preferred first.

    * On ``/`` (the SDKs' RPC route): ``/``, and the action run must be the signed ``Action``
      parameter (a v1 request whose action comes only from the unsigned ``x-acs-action``
      header is refused).
    * On any other path (the Apsara route ``/apsara/route/Vpc/<Action>``): the requested
      path itself; or ``/`` when the request carries a signed ``Action`` equal to the action
      the path names. A request signed for ``/`` with another action, or none, can never be
      replayed to this path as that path's action.
    """
    signed_action = _single(_v1_params(req), "Action")
    if _is_root(req.path):
        if req.action and signed_action != req.action:
            raise BadRequest(
                "IncompleteSignature",
                "The action is not covered by the signature: send it as the signed Action parameter.",
            )
        return ("/",)
    if req.action and signed_action == req.action:
        return (req.path, "/")
    return (req.path,)


def _payload_hash(req: IncomingRequest) -> str:
    """Hex SHA-256 of the body; it must equal ``x-acs-content-sha256`` when that is sent."""
    computed = hashlib.sha256(req.body).hexdigest()
    claimed = req.headers.get("x-acs-content-sha256")
    if claimed is not None and not hmac.compare_digest(claimed.strip().lower().encode(), computed.encode()):
        raise BadRequest(
            "SignatureDoesNotMatch",
            "The x-acs-content-sha256 header does not match the SHA-256 of the request body.",
        )
    return computed


def canonical_request(req: IncomingRequest) -> str:
    """The ACS3 canonical request (see sdk-wire.md) from the Authorization header's SignedHeaders.

    Only the query is canonicalised; form parameters are covered by the payload hash.
    Raises 400 ``IncompleteSignature`` when a signed header is absent from the request.
    """
    auth = _parse_authorization(req)
    query = sorted(req.query, key=lambda p: p[0])
    canonical_query = "&".join(f"{pct(k)}={pct(v)}" for k, v in query)
    header_lines = []
    for name in auth.signed_header_names:
        value = req.headers.get(name.lower())
        if value is None:
            raise BadRequest("IncompleteSignature", f'The signed header "{name}" is not in the request.')
        header_lines.append(f"{name}:{value.strip()}\n")
    return "\n".join(
        [
            req.method.upper(),
            req.path or "/",
            canonical_query,
            "".join(header_lines),
            auth.signed_headers,
            _payload_hash(req),
        ]
    )


def string_to_sign(req: IncomingRequest) -> str:
    """The string the client must have signed, for whichever scheme the request uses.

    rpc-v1: ``METHOD&pct(path)&pct(canon)`` over query and form parameters minus
    ``Signature``, where ``path`` is ``/`` on the RPC route and the requested path elsewhere
    (the form a new client should sign; :func:`verify` also takes ``/`` on the Apsara route
    when the signed ``Action`` equals the path's action).
    acs3: ``ACS3-HMAC-SHA256\\n`` + hex SHA-256 of :func:`canonical_request`.
    Raises 400 ``IncompleteSignature`` for an unsigned request.
    """
    scheme = _scheme_of(req)
    if scheme == "rpc-v1":
        return _rpc_v1_string_to_sign(req.method, _v1_params(req), req.path)
    if scheme == "acs3":
        digest = hashlib.sha256(canonical_request(req).encode("utf-8")).hexdigest()
        return f"{ACS3_ALGORITHM}\n{digest}"
    raise BadRequest("IncompleteSignature", "The request is not signed.")


# --------------------------------------------------------------------------- verification


def _signature_mismatch(server_string_to_sign: str) -> BadRequest:
    """The error for a wrong signature, in the form aliyun-python-sdk-core parses.

    core runs ``Message.split(':')[1]`` and compares the result with its own string to sign
    (equal means a wrong secret, reported as ``InvalidAccessKeySecret``). The string to sign
    is percent-encoded, so the ``:`` after ``is`` is the only one, and secrets are masked
    before it is built.
    """
    return BadRequest(
        "SignatureDoesNotMatch",
        f"Specified signature is not matched with our calculation. server string to sign is:{server_string_to_sign}",
    )


def _check_signed_headers(req: IncomingRequest, auth: _Acs3Authorization) -> None:
    """Strict mode: ``host``, every ``x-acs-*`` header and (with a body) ``content-type`` must be signed."""
    signed = {name.lower() for name in auth.signed_header_names}
    required = ["host"] + sorted(name for name in req.headers if name.startswith("x-acs-"))
    if req.body:
        required.append("content-type")
    for name in required:
        if name not in signed:
            raise BadRequest("IncompleteSignature", f'The header "{name}" must be listed in SignedHeaders.')


def verify(req: IncomingRequest, creds: Credentials, secret: str, *, strict: bool = True) -> None:
    """Check the request's signature against ``secret``; return quietly when it matches.

    Raises 400 ``InvalidSignatureMethod`` for an unsupported SignatureMethod / algorithm,
    400 ``IncompleteSignature`` when an ACS3 request leaves required headers unsigned
    (``strict``) or lacks a signed header, and 400 ``SignatureDoesNotMatch`` otherwise.
    The digests are compared in constant time.
    """
    if _scheme_of(req) != creds.scheme:
        raise BadRequest("IncompleteSignature", f"The request is not signed with the {creds.scheme} scheme.")

    if creds.scheme == "rpc-v1":
        digest = _V1_DIGESTS.get(creds.signature_method)
        if digest is None:
            raise BadRequest(
                "InvalidSignatureMethod",
                f'The SignatureMethod "{creds.signature_method}" is not supported; use HMAC-SHA1 or HMAC-SHA256.',
            )
        params = _v1_params(req)
        provided = (_single(params, "Signature") or "").encode("utf-8")
        paths = _v1_signed_paths(req)
        matched = False
        for path in paths:  # every candidate is computed: the time does not tell which matched
            to_sign = _rpc_v1_string_to_sign(req.method, params, path)
            mac = hmac.new((secret + "&").encode("utf-8"), to_sign.encode("utf-8"), digest)
            expected = base64.b64encode(mac.digest()).decode("ascii")
            matched |= hmac.compare_digest(expected.encode("ascii"), provided)
        if not matched:
            raise _signature_mismatch(_rpc_v1_string_to_sign(req.method, mask_secrets(params), paths[0]))
        return

    auth = _parse_authorization(req)
    if auth.algorithm != ACS3_ALGORITHM:
        raise BadRequest(
            "InvalidSignatureMethod",
            f'The signature algorithm "{auth.algorithm}" is not supported; use {ACS3_ALGORITHM}.',
        )
    if strict:
        _check_signed_headers(req, auth)
    to_sign = string_to_sign(req)
    expected = hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), auth.signature.lower().encode("utf-8")):
        # The ACS3 string to sign is a digest; it shows no parameter value, secret or not.
        raise _signature_mismatch(to_sign)


# --------------------------------------------------------------------------- client side


def sign_rpc_v1(
    method: str,
    params: Mapping[str, str],
    access_key_id: str,
    secret: str,
    *,
    nonce: str,
    timestamp: datetime,
    signature_method: Literal["HMAC-SHA1", "HMAC-SHA256"] = "HMAC-SHA1",
    path: str = "/",
) -> dict[str, str]:
    """``params`` plus the rpc-v1 signature parameters, ready to send as query or form.

    ``params`` holds the API parameters (``Action``, ``Version``, ...) as strings; any
    signature parameters in it are replaced. ``path`` is the path the request goes to:
    ``/`` for the RPC route, ``/apsara/route/Vpc/<Action>`` for the Apsara route (whose
    signature must name it, docs/security.md).
    """
    signed = {k: v for k, v in params.items() if k not in _V1_AUTH_PARAMS}
    signed.update(
        {
            "AccessKeyId": access_key_id,
            "SignatureMethod": signature_method,
            "SignatureVersion": "1.0",
            "SignatureNonce": nonce,
            "Timestamp": format_timestamp(timestamp),
        }
    )
    to_sign = _rpc_v1_string_to_sign(method, list(signed.items()), path)
    mac = hmac.new((secret + "&").encode("utf-8"), to_sign.encode("utf-8"), _V1_DIGESTS[signature_method])
    signed["Signature"] = base64.b64encode(mac.digest()).decode("ascii")
    return signed
