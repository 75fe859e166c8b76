#!/usr/bin/env python
"""Does a create get dearer as the tables fill? CPU per CreateVpnConnection (and per no-op)
inside vpngw's ASGI app, in buckets, as connections accumulate the way loadgen's fill mode
stores them (one VPC per VPN gateway, as many customer gateways, 10 connections a gateway).

    .venv/bin/python bench/create_growth.py          # N=4000 creates in BUCKETS=4 buckets

Reuses ``bench/request_cost.py``'s signed in-process calls (no HTTP, no client); CPU is this
process's ``process_time``, little disturbed by other processes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("VPNGW_QUOTA_CUSTOMER_GATEWAYS", "100000")

import request_cost as rc  # noqa: E402

from vpngw import accounts  # noqa: E402
from vpngw.api.app import build_app  # noqa: E402
from vpngw.auth.authenticator import Authenticator  # noqa: E402
from vpngw.cli.database import prepare_database  # noqa: E402
from vpngw.config import settings_from_env  # noqa: E402
from vpngw.sealing import load_sealer  # noqa: E402


async def main(n: int, buckets: int) -> None:
    path = f"{tempfile.mkdtemp()}/vpngw.db"
    settings = settings_from_env(f"sqlite:///{path}")
    sealer, _ = load_sealer()
    db = prepare_database(settings)
    accounts.ensure_key(db, sealer, settings.default_account_id, rc.KEY_ID, rc.SECRET)
    app = build_app(db, settings, Authenticator(db, sealer))
    gateways = []
    for _ in range(n // 10):
        vpc = (await rc.call(app, rc.signed_body({"Action": "CreateVpc", "CidrBlock": "10.0.0.0/8"})))[
            "VpcId"
        ]
        created = await rc.call(
            app, rc.signed_body({"Action": "CreateVpnGateway", "VpcId": vpc, "Bandwidth": "10"})
        )
        gateways.append(created["VpnGatewayId"])
    customers = [
        (
            await rc.call(
                app,
                rc.signed_body(
                    {"Action": "CreateCustomerGateway", "IpAddress": f"198.18.{i // 250}.{i % 250 + 1}"}
                ),
            )
        )["CustomerGatewayId"]
        for i in range(n // 10)
    ]
    per = n // buckets
    for bucket in range(buckets):
        creates = [
            rc.signed_body(
                {
                    "Action": "CreateVpnConnection",
                    "VpnGatewayId": gateways[(bucket * per + i) // 10],
                    "CustomerGatewayId": customers[(bucket * per + i) % len(customers)],
                    "LocalSubnet": f"172.16.{i % 250}.0/24",
                    "RemoteSubnet": f"10.{(bucket * per + i) // 250 % 250}.{i % 250}.0/24",
                    "ClientToken": uuid.uuid4().hex,
                }
            )
            for i in range(per)
        ]
        noops = [rc.signed_body({"Action": "DescribeRegions"}) for _ in range(per)]
        started = time.process_time()
        for body in creates:
            await rc.call(app, body)
        create = (time.process_time() - started) / per
        started = time.process_time()
        for body in noops:
            await rc.call(app, body)
        noop = (time.process_time() - started) / per
        wal = Path(path + "-wal")
        print(
            f"{(bucket + 1) * per} connections: create {create * 1e3:.2f} ms, no-op {noop * 1e3:.2f} ms of CPU; "
            f"database {Path(path).stat().st_size // 1024} KiB, WAL {wal.stat().st_size // 1024 if wal.exists() else 0} KiB",
            flush=True,
        )
    db.dispose()


if __name__ == "__main__":
    asyncio.run(main(int(os.environ.get("N", "4000")), int(os.environ.get("BUCKETS", "4"))))
