"""Text no database can store never reaches one (issue 15, item 6).

PostgreSQL refuses NUL in text, and neither database can encode a lone UTF-16 surrogate
(which a JSON body can carry as ``"\\ud800"``); a too-long SignatureNonce overflows its
column on PostgreSQL. Every such input is refused as ``InvalidParameter.<Name>`` before any
query, on SQLite and PostgreSQL alike: no answer >= 500, and no log line carries an SQL
statement's parameters or the hostile values.
"""

from __future__ import annotations

import datetime
import json
import logging
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.support.api import REGION, TEST_KEY_ID, TEST_KEY_SECRET, Api, build_world
from vpngw.auth.signatures import sign_rpc_v1
from vpngw.config import Settings
from vpngw.store.engine import Database

NUL_KEY = "LT\x00AI"
SURROGATE = "\ud800"


def _signed(params: dict[str, str], *, nonce: str | None = None, path: str = "/") -> dict[str, str]:
    return sign_rpc_v1(
        "POST",
        params,
        TEST_KEY_ID,
        TEST_KEY_SECRET,
        nonce=nonce if nonce is not None else uuid.uuid4().hex,
        timestamp=datetime.datetime.now(datetime.UTC),
        path=path,
    )


def _json_post(api: Api, path: str, document: dict[str, Any], query: dict[str, str]) -> httpx.Response:
    """A JSON body as written by ``json.dumps`` (a lone surrogate becomes ``\\ud800``)."""
    response: httpx.Response = api.client.post(
        path,
        params=query,
        content=json.dumps(document).encode(),
        headers={"content-type": "application/json"},
    )
    return response


def _cases(api: Api, vpc_id: str) -> list[tuple[str, httpx.Response]]:
    describe = {"Action": "DescribeVpcs", "RegionId": REGION}
    apsara = "/apsara/route/Vpc/DescribeVpcs"
    surrogate_body = {"RegionId": REGION, "VpcName": "vpc" + SURROGATE}
    return [
        # The reproduction: an unsigned request with a NUL in AccessKeyId.
        ("AccessKeyId", api.client.post("/", params={**describe, "AccessKeyId": NUL_KEY})),
        # A NUL in the SignatureNonce of a correctly signed request (it reaches the nonce insert).
        ("SignatureNonce", api.client.post("/", params=_signed(describe, nonce="n\x00" + uuid.uuid4().hex))),
        # A nonce longer than its column.
        ("SignatureNonce", api.client.post("/", params=_signed(describe, nonce="n" * 300))),
        # A NUL in any parameter of a signed request.
        ("VpcName", api.client.post("/", params=_signed({**describe, "VpcName": "a\x00b"}))),
        # A NUL in a parameter's name.
        ("", api.client.post("/", params=_signed({**describe, "X\x00Y": "1"}))),
        # Lone surrogates from a JSON body: in a parameter, in AccessKeyId, in the nonce.
        (
            "VpcName",
            _json_post(
                api,
                apsara,
                surrogate_body,
                {
                    k: v
                    for k, v in _signed({"RegionId": REGION, "VpcName": "vpcx"}, path=apsara).items()
                    if k not in surrogate_body
                },
            ),
        ),
        ("AccessKeyId", _json_post(api, apsara, {"RegionId": REGION, "AccessKeyId": "LT" + SURROGATE}, {})),
        (
            "SignatureNonce",
            _json_post(
                api,
                apsara,
                {"RegionId": REGION, "SignatureNonce": "n" + SURROGATE},
                {
                    k: v
                    for k, v in _signed({"RegionId": REGION}, path=apsara).items()
                    if k != "SignatureNonce"
                },
            ),
        ),
        # A VSwitchId longer than its column (PostgreSQL enforces VARCHAR lengths).
        (
            "VSwitchId",
            api.client.post(
                "/",
                params=_signed(
                    {
                        "Action": "CreateVpnGateway",
                        "RegionId": REGION,
                        "VpcId": vpc_id,
                        "Bandwidth": "10",
                        "VSwitchId": "vsw-" + "x" * 200,
                    }
                ),
            ),
        ),
    ]


def test_hostile_text_is_refused_before_any_query(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    world = build_world(api)
    caplog.set_level(logging.DEBUG)
    for name, response in _cases(api, world.vpc_id):
        assert response.status_code < 500, (name, response.text)
        body = response.json()
        assert response.status_code == 400, (name, response.text)
        expected = f"InvalidParameter.{name}" if name else "InvalidParameter"
        assert body["Code"] == expected, (name, response.text)
    # Nothing reached the database: the world is as it was, and the server still answers.
    assert api.ok("DescribeVpcs")["TotalCount"] == 1
    server_lines = "\n".join(
        record.getMessage()
        + "\n"
        + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
        if not record.name.startswith(("httpx", "httpcore"))
    )
    for leak in (
        "[parameters:",
        "pk_1",
        "LT\x00AI",
        "\x00",
        SURROGATE,
        "n" * 300,
        "x" * 200,
        TEST_KEY_SECRET,
    ):
        assert leak not in server_lines, leak


def test_the_engine_hides_sql_parameters(settings: Settings) -> None:
    """Whatever else goes wrong, an SQL error's text never holds the statement's values."""
    db = Database(settings.db_url)
    try:
        with pytest.raises(DBAPIError) as failure:
            with db.transaction(write=False) as session:
                session.execute(
                    text("SELECT * FROM no_such_table WHERE x = :secret"), {"secret": "Hidden-Value-1"}
                )
    finally:
        db.dispose()
    assert "Hidden-Value-1" not in str(failure.value)
    assert "hide_parameters" in str(failure.value)
