#!/usr/bin/env python
"""CPU per DescribeVpnConnections request inside vpngw's ASGI app at 100,000 rows (no HTTP).

Builds the database bench/api_bench.py builds (VPC, gateways and customer gateways through
the API, then rows bulk-inserted the way CreateVpnConnection writes them), then sends signed
DescribeVpnConnections requests one at a time through the app: page 1, the middle page, the
last page and a VpnGatewayId filter (first and last page), PageSize 10 and 50. CPU time
(``process_time``: every thread of this process, the worker-thread hand-off included) is far
less disturbed by other processes on a shared machine than wall time, so two trees can be
compared on a busy machine:

    .venv/bin/python bench/describe_cost.py                        # this tree
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/describe_cost.py

Environment: ``ROWS`` (default 100000), ``CALLS`` per page (default 200), ``DB`` (a file to
keep the built database in and reuse on the next run: building it takes about a minute),
``BODIES`` (a directory: each page's response body, RequestId removed, is written there, so
that two trees' responses can be compared byte for byte), ``PROFILE`` (a page label: that
page's requests run under cProfile and the top functions are printed).
"""

from __future__ import annotations

import asyncio
import base64
import cProfile
import os
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_bench as ab  # noqa: E402  (imports no vpngw at module level)

# One fixed master key: the bulk-loaded rows' Psks are sealed under it, and a kept database
# (DB) must open on the next run.
ab.MASTER_KEY = os.environ["VPNGW_MASTER_KEY"] = "bench:" + base64.b64encode(b"p" * 32).decode()
os.environ["VPNGW_QUOTA_VPN_GATEWAYS"] = "100000"
os.environ["VPNGW_QUOTA_VPCS"] = "100000"

from request_cost import KEY_ID, SECRET, call, signed_body  # noqa: E402

import vpngw.api.app as app_module  # noqa: E402
from vpngw import accounts  # noqa: E402
from vpngw.api.app import build_app  # noqa: E402
from vpngw.auth.authenticator import Authenticator  # noqa: E402
from vpngw.cli.database import prepare_database  # noqa: E402
from vpngw.config import settings_from_env  # noqa: E402
from vpngw.sealing import load_sealer  # noqa: E402

REQUEST_ID = re.compile(rb'"RequestId":\s*"[^"]*"')


async def build(app: Any, db_url: str, rows: int) -> None:
    vpc = (await call(app, signed_body({"Action": "CreateVpc", "CidrBlock": "10.0.0.0/8"})))["VpcId"]
    gateways = []
    for _ in range(100):
        body = signed_body({"Action": "CreateVpnGateway", "VpcId": vpc, "Bandwidth": "10"})
        gateway_id = (await call(app, body))["VpnGatewayId"]
        body = signed_body({"Action": "DescribeVpnGateway", "VpnGatewayId": gateway_id})
        gateways.append((gateway_id, (await call(app, body))["InternetIp"]))
    customers = []
    for n in range(16):
        ip = f"198.19.{n // 250}.{n % 250 + 1}"
        body = signed_body({"Action": "CreateCustomerGateway", "IpAddress": ip})
        customers.append(((await call(app, body))["CustomerGatewayId"], ip))
    # One connection through the API first: it creates the listing's counter (resource_counts),
    # which bulk_load brings to the rows' count.
    local, remote = ab.subnets_for(65535)
    body = signed_body(
        {
            "Action": "CreateVpnConnection",
            "VpnGatewayId": gateways[0][0],
            "CustomerGatewayId": customers[0][0],
            "LocalSubnet": local,
            "RemoteSubnet": remote,
        }
    )
    await call(app, body)
    ab.bulk_load(db_url, ab.World(vpc, [], gateways, customers), rows)


async def raw_call(app: Any, body: bytes) -> bytes:
    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

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
    await app(scope, receive, send)
    assert out[0]["status"] == 200, b"".join(m.get("body", b"") for m in out[1:])
    return b"".join(m.get("body", b"") for m in out[1:])


async def main() -> None:
    rows, calls = int(os.environ.get("ROWS", "100000")), int(os.environ.get("CALLS", "200"))
    kept = os.environ.get("DB")
    workdir = Path(tempfile.mkdtemp(prefix="vpngw-describe-cost-"))
    path = workdir / "vpngw.db"
    if kept and Path(kept).exists():
        shutil.copy(kept, path)
    settings = settings_from_env(f"sqlite:///{path}")
    sealer, _ = load_sealer()
    db = prepare_database(settings)
    accounts.ensure_key(db, sealer, settings.default_account_id, KEY_ID, SECRET)
    app = build_app(db, settings, Authenticator(db, sealer))
    first = await call(app, signed_body({"Action": "DescribeVpnConnections", "PageSize": "1"}))
    if first["TotalCount"] == 0:
        await build(app, settings.db_url, rows)
        if kept:
            db.dispose()
            shutil.copy(path, kept)
    listing = await call(app, signed_body({"Action": "DescribeVpnConnections", "PageSize": "1"}))
    total = listing["TotalCount"]
    gateway_id = listing["VpnConnections"]["VpnConnection"][0]["VpnGatewayId"]
    gateway_total = (
        await call(app, signed_body({"Action": "DescribeVpnConnections", "VpnGatewayId": gateway_id}))
    )["TotalCount"]
    bodies = os.environ.get("BODIES")
    profiled = os.environ.get("PROFILE")
    if profiled:
        # cProfile sees one thread: the worker thread's part runs on the loop instead.
        async def inline(function: Any, *args: Any) -> Any:
            return function(*args)

        app_module.run_in_threadpool = inline  # type: ignore[attr-defined]
    print(f"{total} rows, {gateway_total} on {gateway_id}; CPU per request over {calls} requests")
    for size in (10, 50):
        last, gateway_last = -(-total // size), -(-gateway_total // size)
        for label, params in (
            ("page 1", {"PageNumber": "1"}),
            ("middle page", {"PageNumber": str(last // 2)}),
            ("last page", {"PageNumber": str(last)}),
            ("gateway page 1", {"VpnGatewayId": gateway_id, "PageNumber": "1"}),
            ("gateway last page", {"VpnGatewayId": gateway_id, "PageNumber": str(gateway_last)}),
        ):
            requests = [
                signed_body({"Action": "DescribeVpnConnections", "PageSize": str(size), **params})
                for _ in range(calls + 10)
            ]
            for body in requests[:10]:
                answer = await raw_call(app, body)
            if bodies:
                name = f"{size}-{label.replace(' ', '-')}.json"
                Path(bodies, name).write_bytes(REQUEST_ID.sub(b'"RequestId": ""', answer))
            profile = cProfile.Profile() if profiled == f"{label} {size}" else None
            times = []
            for body in requests[10:]:
                if profile:
                    profile.enable()
                started = time.process_time()
                await raw_call(app, body)
                times.append(time.process_time() - started)
                if profile:
                    profile.disable()
            times.sort()
            print(
                f"PageSize {size:2d} {label:18s} CPU p50 {statistics.median(times) * 1e3:6.2f} ms  "
                f"p90 {times[int(len(times) * 0.9) - 1] * 1e3:6.2f} ms  mean {statistics.fmean(times) * 1e3:6.2f} ms",
                flush=True,
            )
            if profile:
                pstats.Stats(profile).sort_stats(os.environ.get("SORT", "tottime")).print_stats(
                    int(os.environ.get("TOP", "30"))
                )
    db.dispose()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if bodies_dir := os.environ.get("BODIES"):
        Path(bodies_dir).mkdir(parents=True, exist_ok=True)
    asyncio.run(main())
