"""Response bodies. Success: the action's fields plus ``RequestId`` (and the spec's
``RequestID`` on the Apsara route). Failure: an HTTP 4xx/5xx status and
``RequestId, HostId, Code, Message, Recommend`` (plus the spec's ``resultCode``,
``resultMsg`` and ``result: null`` on the Apsara route)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from vpngw.errors import ApiError

JSON_TYPE = "application/json;charset=utf-8"


def success(fields: dict[str, Any], request_id: str, *, apsara: bool) -> JSONResponse:
    body: dict[str, Any] = {"RequestId": request_id, **fields}
    if apsara:
        body["RequestID"] = request_id
    return JSONResponse(body, media_type=JSON_TYPE)


def failure(error: ApiError, request_id: str, host_id: str, *, apsara: bool) -> JSONResponse:
    body: dict[str, Any] = {
        "RequestId": request_id,
        "HostId": host_id,
        "Code": error.code,
        "Message": error.message,
        "Recommend": error.recommend,
    }
    if apsara:
        # The spec's failure fields; resultCode carries the HTTP status (never 0).
        body.update(
            {"RequestID": request_id, "resultCode": error.status, "resultMsg": error.message, "result": None}
        )
    # After a 413 (or a 408) the rest of the body is still on its way: closing the connection
    # is the only way not to read it (docs/security.md, "Bounded request bodies").
    headers = {"Connection": "close"} if error.status in (408, 413) else None
    return JSONResponse(body, status_code=error.status, media_type=JSON_TYPE, headers=headers)
