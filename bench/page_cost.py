#!/usr/bin/env python
"""CPU per ``queries.page`` call at 100,000 rows, in process (no HTTP, no rendering).

Stores 100,000 VPCs of one account (Core bulk insert, the counter kept as the API keeps it)
in a fresh SQLite file, then times page 1, the middle page and the last page (PageSize 10),
each in its own read transaction as DescribeVpnConnections runs it. CPU time is far less
disturbed by other processes on a shared machine than wall time, so two trees can be
compared on a busy machine:

    .venv/bin/python bench/page_cost.py
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/page_cost.py

``ROWS`` (default 100000) and ``CALLS`` (per page, default 200) come from the environment.
"""

from __future__ import annotations

import base64
import os
import statistics
import tempfile
import time

os.environ.setdefault("VPNGW_MASTER_KEY", "bench:" + base64.b64encode(b"k" * 32).decode())

from sqlalchemy import insert  # noqa: E402

from vpngw.cli.database import prepare_database  # noqa: E402
from vpngw.config import settings_from_env  # noqa: E402
from vpngw.store import queries  # noqa: E402
from vpngw.store.models import ResourceCount, Vpc  # noqa: E402

REGION = "cn-hangzhou"


def main() -> None:
    rows, calls = int(os.environ.get("ROWS", "100000")), int(os.environ.get("CALLS", "200"))
    settings = settings_from_env(f"sqlite:///{tempfile.mkdtemp()}/vpngw.db")
    db = prepare_database(settings)
    account = settings.default_account_id
    with db.transaction(write=True) as session:
        session.execute(
            insert(Vpc),
            [
                {
                    "id": f"vpc-{n:021d}",
                    "account_id": account,
                    "region_id": REGION,
                    "name": "v",
                    "description": "",
                    "cidr_block": "10.0.0.0/8",
                    "create_time": n,
                }
                for n in range(rows)
            ],
        )
        session.add(ResourceCount(account_id=account, region_id=REGION, kind="vpcs", count=rows))
    last = (rows + 9) // 10
    for label, number in (
        ("page 1", 1),
        (f"middle page ({last // 2})", last // 2),
        (f"last page ({last})", last),
    ):
        times = []
        for _ in range(calls):
            started = time.process_time()
            with db.transaction(write=False) as session:
                found, total = queries.page(session, Vpc, account, REGION, {}, number, 10)
            times.append(time.process_time() - started)
            assert total == rows and len(found) == min(10, rows - (number - 1) * 10)
        times.sort()
        print(
            f"{label:24s} CPU p50 {statistics.median(times) * 1e3:6.2f} ms  "
            f"p99 {times[int(len(times) * 0.99) - 1] * 1e3:6.2f} ms  max {times[-1] * 1e3:6.2f} ms"
        )
    db.dispose()


if __name__ == "__main__":
    main()
