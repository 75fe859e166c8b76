"""Turn an HTTP request into ``(action name, parameters)`` for each wire dialect.

* RPC (what the official SDKs send): ``GET|POST /`` with ``Action`` (or the
  ``x-acs-action`` header), parameters merged from the query and a form body.
* Apsara route (the spec): ``POST /apsara/route/Vpc/<Action>``, parameters in the query
  and in a form-encoded or JSON body. A JSON body's values count as the strings a form
  body would carry, so both bodies validate the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.requests import Request

from vpngw.errors import ApiError, BadRequest, NotFound

MAX_BODY_BYTES = 1024 * 1024
RPC_VERSIONS = ("2016-04-28",)
APSARA_VERSIONS = ("2016-01-01", "2016-04-28")


class PayloadTooLarge(ApiError):
    status = 413


def json_value_as_string(value: object) -> str:
    """Strings as they are, booleans ``true``/``false``, numbers as written, objects and
    arrays as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge("InvalidBody.TooLarge", f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge("InvalidBody.TooLarge", f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    return body


def _decode_form(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("InvalidBody", "The form body is not valid UTF-8 form encoding.") from None


def _decode_json(body: bytes) -> list[tuple[str, str]]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("InvalidBody", "The JSON body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise BadRequest("InvalidBody", "The JSON body must be an object of parameters.")
    return [(str(key), json_value_as_string(value)) for key, value in document.items()]


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
        raise BadRequest("InvalidVersion", f"Specified parameter Version {version!r} is not valid; use {' or '.join(allowed)}.")


def query_pairs(request: Request) -> list[tuple[str, str]]:
    return parse_qsl(request.url.query, keep_blank_values=True)


async def rpc_request(request: Request) -> tuple[str, dict[str, str]]:
    body = await read_body(request)
    params = merge(query_pairs(request) + body_params(request, body, allow_json=False))
    action = params.get("Action") or request.headers.get("x-acs-action", "")
    if not action:
        raise BadRequest("MissingParameter.Action", 'The input parameter "Action" that is mandatory for processing this request is not supplied.')
    _check_version(params.get("Version") or request.headers.get("x-acs-version", ""), RPC_VERSIONS)
    unify_region(params)
    return action, params


async def apsara_request(request: Request, path_params: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    product = path_params["product"]
    if product.lower() != "vpc":
        raise NotFound("InvalidProduct.NotFound", f"The product {product!r} is not served here; use /apsara/route/Vpc/<Action>.")
    body = await read_body(request)
    params = merge(query_pairs(request) + body_params(request, body, allow_json=True))
    _check_version(params.get("version") or params.get("Version", ""), APSARA_VERSIONS)
    unify_region(params)
    return path_params["action"], params
