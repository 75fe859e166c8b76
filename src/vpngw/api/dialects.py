"""Turn an HTTP request into ``(action name, parameters)`` for each wire dialect.

* RPC (what the official SDKs send): ``GET|POST /`` with ``Action`` (or the
  ``x-acs-action`` header), parameters merged from the query and a form body.
* Apsara route (the spec): ``POST /apsara/route/Vpc/<Action>``, parameters in the query
  and in a form-encoded or JSON body. A JSON body's values count as the strings a form
  body would carry, so both bodies validate the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request

from vpngw.auth.signatures import IncomingRequest, json_body_as_params
from vpngw.errors import BadRequest, NotFound, PayloadTooLarge, RequestTimeout
from vpngw.rules.values import check_storable

MAX_BODY_BYTES = 1024 * 1024
# The whole body must arrive within this after the head (1 MiB in 30 s is 280 kbit/s):
# a client trickling its body cannot hold a connection and a task for ever.
BODY_TIMEOUT_S = 30.0
RPC_VERSIONS = ("2016-04-28",)
APSARA_VERSIONS = ("2016-01-01", "2016-04-28")


@dataclass(frozen=True)
class ParsedRequest:
    """The action and its parameters, and the request as its signature covers it."""

    action: str
    params: dict[str, str]
    signed: IncomingRequest


def _incoming(
    request: Request, query: list[tuple[str, str]], form: list[tuple[str, str]], body: bytes, action: str
) -> IncomingRequest:
    """The request as its signature covers it; ``action`` is the action that will run, which
    the signature must bind (vpngw.auth.signatures.verify)."""
    return IncomingRequest(
        method=request.method,
        path=request.url.path,
        query=tuple(query),
        form=tuple(form),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
        action=action,
    )


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge("InvalidBody.TooLarge", f"The request body is larger than {MAX_BODY_BYTES} bytes.")


async def read_body(request: Request) -> bytes:
    """The body, read as it streams (with a Content-Length or chunked alike): at most
    ``MAX_BODY_BYTES`` are ever held, then ``InvalidBody.TooLarge`` (413), before the
    rest is read. The 413 closes the connection, so the rest is never read at all. A body
    not complete ``BODY_TIMEOUT_S`` after the head is ``InvalidBody.Timeout`` (408)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _too_large()
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            "InvalidBody.Timeout", f"The request body did not arrive within {BODY_TIMEOUT_S:.0f} seconds."
        ) from None
    return b"".join(chunks)


def _decode_form(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("InvalidBody", "The form body is not valid UTF-8 form encoding.") from None


def _decode_json(body: bytes) -> list[tuple[str, str]]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("InvalidBody", "The JSON body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise BadRequest("InvalidBody", "The JSON body must be an object of parameters.")
    return list(json_body_as_params(document))


def body_params(request: Request, body: bytes, *, allow_json: bool) -> list[tuple[str, str]]:
    if not body.strip():
        return []
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    looks_json = content_type == "application/json" or (not content_type and body.lstrip().startswith(b"{"))
    if allow_json and looks_json:
        return _decode_json(body)
    return _decode_form(body)


def merge(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Later pairs win (the body over the query), except that an empty value never
    hides a given one."""
    merged: dict[str, str] = {}
    for key, value in pairs:
        if value != "" or key not in merged:
            merged[key] = value
    return merged


def unify_region(params: dict[str, str]) -> None:
    """``RegionId`` and the spec's ``regionId``: either is enough; both must agree."""
    lower = params.pop("regionId", "")
    upper = params.get("RegionId", "")
    if lower and upper and lower != upper:
        raise BadRequest(
            "InvalidParameter.RegionId", f"RegionId ({upper}) and regionId ({lower}) name different regions."
        )
    if lower and not upper:
        params["RegionId"] = lower


def _check_version(version: str, allowed: tuple[str, ...]) -> None:
    if version and version not in allowed:
        raise BadRequest(
            "InvalidVersion",
            f"Specified parameter Version {version!r} is not valid; use {' or '.join(allowed)}.",
        )


def query_pairs(request: Request) -> list[tuple[str, str]]:
    return parse_qsl(request.url.query, keep_blank_values=True)


async def rpc_request(request: Request) -> ParsedRequest:
    body = await read_body(request)
    query, form = query_pairs(request), body_params(request, body, allow_json=False)
    check_storable(query + form)  # before anything can reach a database (docs/security.md)
    params = merge(query + form)
    action = params.get("Action") or request.headers.get("x-acs-action", "")
    if not action:
        raise BadRequest(
            "MissingParameter.Action",
            'The input parameter "Action" that is mandatory for processing this request is not supplied.',
        )
    _check_version(params.get("Version") or request.headers.get("x-acs-version", ""), RPC_VERSIONS)
    unify_region(params)
    return ParsedRequest(action, params, _incoming(request, query, form, body, action))


async def apsara_request(request: Request, path_params: Mapping[str, str]) -> ParsedRequest:
    product = path_params["product"]
    if product.lower() != "vpc":
        raise NotFound(
            "InvalidProduct.NotFound",
            f"The product {product!r} is not served here; use /apsara/route/Vpc/<Action>.",
        )
    body = await read_body(request)
    query, form = query_pairs(request), body_params(request, body, allow_json=True)
    check_storable(query + form)  # before anything can reach a database (docs/security.md)
    params = merge(query + form)
    _check_version(params.get("version") or params.get("Version", ""), APSARA_VERSIONS)
    unify_region(params)
    action = path_params["action"]
    return ParsedRequest(action, params, _incoming(request, query, form, body, action))
