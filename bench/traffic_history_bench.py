#!/usr/bin/env python
"""What the traffic history costs: the data plane's write_observation with and without
recording a history point, and DescribeVpnConnectionTraffic with a full 24 hours stored.

    .venv/bin/python bench/traffic_history_bench.py [--connections 100] [--db URL]

1. A fresh database (SQLite in a temporary directory unless ``--db`` names an empty one),
   migrated, with ``--connections`` connections made through the API in process.
2. ``write_observation`` with counters that change at every call (what the data plane
   does while traffic flows, at most every 2 s per connection), one transaction per call
   as the reconciler does: first with ``traffic_history.record`` replaced by a no-op (the
   cost before the history existed), then as shipped. Median and p95 per call.
3. Bulk-inserts 24 hours of points (one per 10 s: 8,640 per connection), then measures
   ``write_observation`` again (its prune deletes through the time index) and
   DescribeVpnConnectionTraffic for the last hour (360 points) and the whole day (8,640).
4. Prints a Markdown table; writes the numbers to bench/results/traffic-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert
from starlette.testclient import TestClient

from vpngw.api.app import build_app
from vpngw.auth.authenticator import Authenticator
from vpngw.cli.main import prepare_database
from vpngw.config import Settings
from vpngw.sealing import Sealer, new_master_key_line, parse_keyring
from vpngw.store import queries, traffic_history
from vpngw.store.engine import Database
from vpngw.store.models import VpnConnectionTrafficPoint

REGION = "cn-qingdao-env66-d01"
ROUNDS = 20


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def make_world(client: TestClient, connections: int) -> list[str]:
    def ok(action: str, **params: Any) -> dict[str, Any]:
        response = client.post("/", params={"Action": action, "RegionId": REGION, **params})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    vpc = ok("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
    ids = []
    for n in range(connections):
        if n % 10 == 0:  # 10 connections per gateway (the default quota)
            gateway = ok("CreateVpnGateway", VpcId=vpc, Bandwidth=10)["VpnGatewayId"]
        customer = ok("CreateCustomerGateway", IpAddress=f"198.19.{n // 250}.{n % 250 + 1}")[
            "CustomerGatewayId"
        ]
        ids.append(
            ok(
                "CreateVpnConnection",
                VpnGatewayId=gateway,
                CustomerGatewayId=customer,
                LocalSubnet=f"10.{n // 250}.{n % 250}.0/24",
                RemoteSubnet=f"172.16.{n % 250}.0/24",
            )["VpnConnectionId"]
        )
    return ids


def time_writes(db: Database, ids: list[str], start_ms: int) -> list[float]:
    """ms per write_observation (one transaction each), counters changing every call."""
    samples = []
    for round_ in range(ROUNDS):
        for n, connection_id in enumerate(ids):
            traffic = {
                "BytesIn": 84 * (round_ + 1),
                "BytesOut": 84 * round_,
                "PacketsIn": round_ + 1,
                "PacketsOut": round_,
            }
            began = time.perf_counter()
            with db.transaction(write=True) as session:
                queries.write_observation(
                    session,
                    connection_id,
                    status="ipsec_sa_established",
                    diagnosis="",
                    traffic=traffic,
                    now_ms=start_ms + round_ * 2000 + n,
                )
            samples.append((time.perf_counter() - began) * 1000)
    return samples


def fill_day(db: Database, ids: list[str], now_ms: int) -> int:
    buckets = traffic_history.RETENTION_MS // traffic_history.BUCKET_MS
    first = (
        now_ms - now_ms % traffic_history.BUCKET_MS - traffic_history.RETENTION_MS + traffic_history.BUCKET_MS
    )
    rows = 0
    with db.transaction(write=True) as session:
        session.execute(delete(VpnConnectionTrafficPoint))  # the points of the timed writes
        for connection_id in ids:
            batch = [
                {
                    "vpn_connection_id": connection_id,
                    "bucket_ms": first + i * traffic_history.BUCKET_MS,
                    "time_ms": first + i * traffic_history.BUCKET_MS + 1234,
                    "bytes_in": i * 840,
                    "bytes_out": i * 420,
                    "packets_in": i * 10,
                    "packets_out": i * 5,
                }
                for i in range(buckets - 1)
            ]
            session.execute(insert(VpnConnectionTrafficPoint), batch)
            rows += len(batch)
    return rows


def time_call(call: Callable[[], Any], times: int = 30) -> list[float]:
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(percentile(samples, 0.95), 3),
        "n": len(samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument(
        "--db", default=None, help="an empty database (default: SQLite in a temporary directory)"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="vpngw-traffic-bench-"))
    url = args.db or f"sqlite:///{workdir / 'vpngw.db'}"
    settings = Settings(db_url=url)
    db = prepare_database(settings)
    sealer = Sealer(parse_keyring(new_master_key_line()))
    app = build_app(db, settings, Authenticator(db, sealer, insecure_account_id=settings.default_account_id))
    results: dict[str, Any] = {
        "connections": args.connections,
        "db": url.split(":")[0],
        "machine": platform.platform(),
    }
    with TestClient(app) as client:
        ids = make_world(client, args.connections)
        now_ms = int(time.time() * 1000)

        recorder = traffic_history.record
        traffic_history.record = lambda *_args, **_kwargs: None  # type: ignore[assignment]
        try:
            results["write_without_history"] = summary(time_writes(db, ids, now_ms - 600_000))
        finally:
            traffic_history.record = recorder
        results["write_with_history"] = summary(time_writes(db, ids, now_ms - 300_000))

        results["points_stored_for_24h"] = fill_day(db, ids, now_ms - 200_000)
        results["write_with_full_day"] = summary(time_writes(db, ids, now_ms))

        def describe(window_s: int) -> Callable[[], Any]:
            def call() -> Any:
                response = client.post(
                    "/",
                    params={
                        "Action": "DescribeVpnConnectionTraffic",
                        "RegionId": REGION,
                        "VpnConnectionId": ids[len(ids) // 2],
                        "From": str(int(time.time()) - window_s),
                    },
                )
                assert response.status_code == 200, response.text
                return response.json()["Count"]

            return call

        results["describe_last_hour"] = summary(time_call(describe(3600)))
        results["describe_last_hour"]["points"] = describe(3600)()
        results["describe_whole_day"] = summary(time_call(describe(86400), 10))
        results["describe_whole_day"]["points"] = describe(86400)()
    if url.startswith("sqlite"):
        results["sqlite_file_mb"] = round((workdir / "vpngw.db").stat().st_size / 2**20, 1)
    db.dispose()

    print(f"| measure ({args.connections} connections, {results['db']}) | median ms | p95 ms |")
    print("|---|---|---|")
    for key in (
        "write_without_history",
        "write_with_history",
        "write_with_full_day",
        "describe_last_hour",
        "describe_whole_day",
    ):
        print(f"| {key} | {results[key]['median_ms']} | {results[key]['p95_ms']} |")
    print(
        f"points stored: {results['points_stored_for_24h']}; SQLite file: {results.get('sqlite_file_mb', '-')} MB"
    )
    out = Path(__file__).parent / "results" / f"traffic-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
