#!/usr/bin/env python
"""The SQL under DescribeVpnConnections at 100,000 rows, timed on its own (no HTTP).

Builds the same database as bench/api_bench.py (world through the API, rows bulk-inserted),
then times the two statements queries.page() issues per request (the COUNT for TotalCount
and the page itself) with the plan SQLite chooses, and the same statements on a copy of the
database after ANALYZE and after adding a composite index. Nothing here changes vpngw; the
copy is thrown away.

    .venv/bin/python bench/describe_sql.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_bench as ab

ACCOUNT = "1000000000000000"


def timed(
    con: sqlite3.Connection, sql: str, args: tuple[object, ...], n: int = 30
) -> tuple[float, float, str]:
    plan = " / ".join(row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql, args))
    for _ in range(3):
        con.execute(sql, args).fetchall()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        con.execute(sql, args).fetchall()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2] * 1000, samples[-1] * 1000, plan


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = (
        Path(args.out) if args.out else ab.BENCH_DIR / "results" / f"describe-sql-{datetime.date.today()}.txt"
    )

    workdir = Path(tempfile.mkdtemp(prefix="vpngw-sql-"))
    ab.use_source(workdir)
    db_path = workdir / "vpngw.db"
    server = ab.Server(db_url=f"sqlite:///{db_path}", workdir=workdir)
    try:
        with ab.running(server, "setup"):
            world = ab.build_world(server.base_url, 1, 100, 16)
        loaded = ab.bulk_load(f"sqlite:///{db_path}", world, args.rows)
        gw = world.bulk_gateways[len(world.bulk_gateways) // 2][0]
        per_gw = loaded["rows_per_bulk_gateway"]
        last = (args.rows - 1) // 10 * 10
        gw_last = (per_gw - 1) // 10 * 10
        owner = "account_id=? AND region_id=?"
        statements = [
            (
                "COUNT (TotalCount)",
                f"SELECT count(*) FROM vpn_connections WHERE {owner}",
                (ACCOUNT, ab.REGION),
            ),
            (
                "page 1",
                f"SELECT * FROM vpn_connections WHERE {owner} ORDER BY seq LIMIT 10 OFFSET 0",
                (ACCOUNT, ab.REGION),
            ),
            (
                "last page",
                f"SELECT * FROM vpn_connections WHERE {owner} ORDER BY seq LIMIT 10 OFFSET {last}",
                (ACCOUNT, ab.REGION),
            ),
            (
                "COUNT, VpnGatewayId filter",
                f"SELECT count(*) FROM vpn_connections WHERE {owner} AND vpn_gateway_id=?",
                (ACCOUNT, ab.REGION, gw),
            ),
            (
                "page 1, VpnGatewayId filter",
                f"SELECT * FROM vpn_connections WHERE {owner} AND vpn_gateway_id=? ORDER BY seq LIMIT 10 OFFSET 0",
                (ACCOUNT, ab.REGION, gw),
            ),
            (
                "last page, VpnGatewayId filter",
                f"SELECT * FROM vpn_connections WHERE {owner} AND vpn_gateway_id=? ORDER BY seq LIMIT 10 OFFSET {gw_last}",
                (ACCOUNT, ab.REGION, gw),
            ),
        ]
        lines = [
            (
                f"DescribeVpnConnections SQL at {loaded['rows_total']:,} rows ({per_gw} on the filtered gateway); "
                f"sqlite {sqlite3.sqlite_version}; median / max of 30 runs, one connection, warm"
            ),
            "",
        ]
        variants = [
            ("as vpngw creates the schema (no ANALYZE, default 2 MB page cache)", []),
            ("with PRAGMA cache_size=-65536 (64 MB page cache)", ["PRAGMA cache_size=-65536"]),
            ("after ANALYZE", ["ANALYZE"]),
            (
                "with an index (account_id, region_id, vpn_gateway_id, seq)",
                [
                    "CREATE INDEX ix_bench_owner_gateway ON vpn_connections (account_id, region_id, vpn_gateway_id, seq)"
                ],
            ),
        ]
        copy = workdir / "copy.db"
        for title, setup in variants:
            shutil.copy(db_path, copy)
            con = sqlite3.connect(copy)
            for statement in setup:
                con.execute(statement)
            con.commit()
            lines.append(f"## {title}")
            for label, sql, params in statements:
                median, worst, plan = timed(con, sql, params)
                lines.append(f"  {label:32} {median:7.2f} ms (max {worst:6.2f})  {plan}")
            lines.append("")
            con.close()
        text = "\n".join(lines)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(text)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
