"""The access log: one line per API request (logger ``vpngw.access``).

A line names the request id the client got, the client's address, the AccessKeyId the
request claims (whether or not its signature held: that is what an operator chasing bad
signatures needs), the method, the path, the action asked for, the HTTP status, the error
code (``-`` for success) and the duration. Never a parameter value, the query string, a
signature or a secret. Every value a client chose is escaped by the log formatter
(``vpngw.logs.escape``), and the free-form ones are cut to ``MAX_FIELD`` characters.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote

from starlette.requests import Request

from vpngw.auth.signatures import IncomingRequest

access_log = logging.getLogger("vpngw.access")

# In the text line, fields are separated by spaces: a client-chosen value is written with
# its spaces, percent signs, control and non-ASCII characters percent-encoded, so it stays
# one field (the JSON format carries the values themselves, escaped by the formatter).
_TOKEN_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")

MAX_FIELD = 64
_CREDENTIAL = re.compile(r"Credential=([^,\s]*)")


def claimed_access_key_id(request: Request, signed: IncomingRequest | None) -> str:
    """The AccessKeyId a request names (RPC v1 parameter or ACS3 ``Credential=``), or ``-``.

    Read without judging the signature. Only the id: a secret is never in these places."""
    authorization = request.headers.get("authorization", "")
    if authorization.startswith("ACS3-"):
        found = _CREDENTIAL.search(authorization)
        return found.group(1)[:MAX_FIELD] if found and found.group(1) else "-"
    pairs = list(signed.query) + list(signed.form) if signed else parse_qsl(request.url.query)
    for name, value in pairs:
        if name == "AccessKeyId" and value:
            return value[:MAX_FIELD]
    return "-"


def client_address(request: Request) -> str:
    """The TCP peer (or, behind a proxy on loopback, the address it forwards: uvicorn's
    ``forwarded_allow_ips``)."""
    return request.client.host if request.client else "-"


def write(
    request: Request,
    *,
    request_id: str,
    access_key_id: str,
    action: str,
    status: int,
    code: str,
    seconds: float,
) -> None:
    path = str(request.scope.get("path", ""))[:256]  # as decoded by the server (url.path drops \n)
    code = code[:128]  # InvalidParameter.<Name> names whatever parameter the client sent
    client = client_address(request)
    access_log.info(
        "%s %s %s %s %s %s %d %s %.1fms",
        request_id,
        _token(client),
        _token(access_key_id),
        request.method,
        _token(path),
        _token(action[:MAX_FIELD]),
        status,
        _token(code),
        seconds * 1000,
        extra={
            "request_id": request_id,
            "client": client,
            "access_key_id": access_key_id,
            "method": request.method,
            "path": path,
            "action": action[:MAX_FIELD],
            "status": status,
            "code": code,
            "duration_ms": round(seconds * 1000, 1),
        },
    )


def _token(value: str) -> str:
    return quote(value, safe=_TOKEN_SAFE) if value else "-"
