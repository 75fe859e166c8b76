#!/usr/bin/env python
"""CPU per request inside vpngw's ASGI app, without HTTP and without a client.

DescribeRegions (the no-op) and CreateVpnConnection (with a ClientToken, as loadgen sends it),
signed, on a fresh SQLite file, one request at a time. CPU time (``process_time``: every thread
of this process) is far less disturbed by other processes on a shared machine than wall time,
so two trees can be compared on a busy machine:

    .venv/bin/python bench/request_cost.py                        # this tree
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/request_cost.py

``N`` (requests per action, default 400) and ``REPEAT`` (runs; the median is printed, default 3)
come from the environment.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import statistics
import tempfile
import time
import uuid
from typing import Any
from urllib.parse import urlencode

os.environ.setdefault("VPNGW_MASTER_KEY", "bench:" + base64.b64encode(b"k" * 32).decode())
os.environ["VPNGW_QUOTA_VPN_GATEWAYS"] = "100000"
os.environ["VPNGW_QUOTA_VPCS"] = "100000"

from vpngw import accounts  # noqa: E402
from vpngw.api.app import build_app  # noqa: E402
from vpngw.auth.authenticator import Authenticator  # noqa: E402
from vpngw.auth.signatures import sign_rpc_v1  # noqa: E402
from vpngw.cli.database import prepare_database  # noqa: E402
from vpngw.config import settings_from_env  # noqa: E402
from vpngw.sealing import load_sealer  # noqa: E402

KEY_ID, SECRET = "LTAIcost00000001", "costsecretcostsecret"


def signed_body(params: dict[str, str]) -> bytes:
    signed = sign_rpc_v1(
        "POST",
        {"Version": "2016-04-28", "Format": "JSON", "RegionId": "cn-hangzhou", **params},
        KEY_ID,
        SECRET,
        nonce=uuid.uuid4().hex,
        timestamp=datetime.datetime.now(datetime.UTC),
    )
    return urlencode(signed).encode()


async def call(app: Any, body: bytes) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 80),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    out: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    await app(scope, receive, send)
    assert out[0]["status"] == 200, b"".join(m.get("body", b"") for m in out[1:])
    document: dict[str, Any] = json.loads(b"".join(m.get("body", b"") for m in out[1:]))
    return document


async def one_run(n: int) -> tuple[float, float]:
    settings = settings_from_env(f"sqlite:///{tempfile.mkdtemp()}/vpngw.db")
    sealer, _ = load_sealer()
    db = prepare_database(settings)
    accounts.ensure_key(db, sealer, settings.default_account_id, KEY_ID, SECRET)
    app = build_app(db, settings, Authenticator(db, sealer))
    vpc = (await call(app, signed_body({"Action": "CreateVpc", "CidrBlock": "10.0.0.0/8"})))["VpcId"]
    gateways = [
        (await call(app, signed_body({"Action": "CreateVpnGateway", "VpcId": vpc, "Bandwidth": "10"})))[
            "VpnGatewayId"
        ]
        for _ in range((n + 9) // 10)
    ]
    customers = [
        (await call(app, signed_body({"Action": "CreateCustomerGateway", "IpAddress": f"198.18.0.{i + 1}"})))[
            "CustomerGatewayId"
        ]
        for i in range(10)
    ]
    noops = [signed_body({"Action": "DescribeRegions"}) for _ in range(n)]
    creates = [
        signed_body(
            {
                "Action": "CreateVpnConnection",
                "VpnGatewayId": gateways[i // 10],
                "CustomerGatewayId": customers[i % 10],
                "LocalSubnet": f"172.16.{i % 250}.0/24",
                "RemoteSubnet": f"10.{i // 250}.{i % 250}.0/24",
                "ClientToken": uuid.uuid4().hex,
            }
        )
        for i in range(n)
    ]
    started = time.process_time()
    for body in noops:
        await call(app, body)
    noop = (time.process_time() - started) / n
    started = time.process_time()
    for body in creates:
        await call(app, body)
    create = (time.process_time() - started) / n
    db.dispose()
    return noop, create


def main() -> None:
    n, repeat = int(os.environ.get("N", "400")), int(os.environ.get("REPEAT", "3"))
    runs = [asyncio.run(one_run(n)) for _ in range(repeat)]
    noop = statistics.median(r[0] for r in runs)
    create = statistics.median(r[1] for r in runs)
    print(
        f"CPU per request (median of {repeat} runs of {n}): DescribeRegions {noop * 1e3:.2f} ms, "
        f"CreateVpnConnection {create * 1e3:.2f} ms, create/noop {create / noop:.2f}"
    )


if __name__ == "__main__":
    main()
