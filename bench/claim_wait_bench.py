#!/usr/bin/env python
"""What a signed read pays when its nonce claim meets another process's write (issue 18,
item 2: the data plane's lease renewal and observations hold SQLite's write lock for a
few milliseconds, about 0.3 % of the time while idle; docs/benchmarks.md, "the API's tail
beside the data plane").

    .venv/bin/python bench/claim_wait_bench.py --baseline before=REV [--hold-ms 3] [--calls 100]

One SQLite database (10 gateways x 10 connections), one ``vpngw serve --no-dataplane`` per
source (the working tree's, and each ``--baseline`` revision's), started fresh. Then, call
by call and server by server in turn: another connection of this process takes the write
lock (``BEGIN IMMEDIATE``) and holds it ``--hold-ms``, as the data plane's renewal does;
DescribeVpnConnections page 1 (signed) is sent just after it took the lock; its latency is
timed from the request to the answer. A call with no lock held is timed beside each, the
baseline of the same moment. The first call that meets the lock is reported apart (a
process's first hand-off to a worker thread, if any, is paid there).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_bench as ab
import idle_bench as ib


def held_call(client: httpx.Client, db_path: Path, hold_s: float) -> float:
    """One Describe sent while another connection holds the write lock for ``hold_s``."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(hold_s)
        other.execute("COMMIT")
        other.close()
        done.set()

    query = ab.signed("DescribeVpnConnections", {"RegionId": ab.REGION, "PageSize": "10", "PageNumber": "1"})
    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait()
    t0 = time.perf_counter()
    response = client.post("/", params=query)
    elapsed = time.perf_counter() - t0
    holder.join()
    if response.status_code != 200:
        raise RuntimeError(f"Describe answered {response.status_code}: {response.text[:300]}")
    return elapsed


def free_call(client: httpx.Client) -> float:
    query = ab.signed("DescribeVpnConnections", {"RegionId": ab.REGION, "PageSize": "10", "PageNumber": "1"})
    t0 = time.perf_counter()
    response = client.post("/", params=query)
    elapsed = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"Describe answered {response.status_code}: {response.text[:300]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hold-ms", type=float, default=3.0, help="how long the other writer holds the lock")
    parser.add_argument(
        "--calls", type=int, default=100, help="held calls per server (and as many free ones)"
    )
    parser.add_argument("--baseline", metavar="[LABEL=]REV", action="append", default=[])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vpngw-claim-"))
    ab.use_source(work)
    sources = {"new": ab.SOURCE["src"]}
    for given in args.baseline:
        label, _, rev = given.rpartition("=")
        sources[label or "baseline"] = ib.export_source(rev, work / (label or "baseline"))
        ib.add_missing_migrations(sources[label or "baseline"], sources["new"])
    db_path = work / "vpngw.db"
    db_url = f"sqlite:///{db_path}"
    filler = ib.Server(db_url, work, sources["new"], dataplane=False)
    filler.start("fill")
    try:
        ib.fill(filler, 10, 10)
    finally:
        filler.stop()
    servers = {label: ib.Server(db_url, work, src, dataplane=False) for label, src in sources.items()}
    started = datetime.datetime.now(datetime.UTC)
    times: dict[str, dict[str, list[float]]] = {label: {"held": [], "free": []} for label in servers}
    try:
        for label, server in servers.items():
            server.start(label)
        clients = {label: httpx.Client(base_url=s.base_url, timeout=30) for label, s in servers.items()}
        for client in clients.values():
            for _ in range(10):
                free_call(client)  # warm-up, no lock met
        for _ in range(args.calls):
            for label, client in clients.items():
                times[label]["held"].append(held_call(client, db_path, args.hold_ms / 1000))
                times[label]["free"].append(free_call(client))
                time.sleep(0.01)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": ab.machine(),
        "source": ab.SOURCE,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "servers": {},
    }
    print(
        "| server | first held call ms | held calls p50 / p90 / max ms (the rest) | free calls p50 / p90 ms | held p50 - free p50 ms |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, measured in times.items():
        held, free = ab.summarize(measured["held"][1:]), ab.summarize(measured["free"])
        first = round(measured["held"][0] * 1000, 2)
        result["servers"][label] = {"first_held_ms": first, "held": held, "free": free}
        print(
            f"| {label} | {first} | {held['p50_ms']:.2f} / {held['p90_ms']:.2f} / {held['max_ms']:.2f} "
            f"| {free['p50_ms']:.2f} / {free['p90_ms']:.2f} | {held['p50_ms'] - free['p50_ms']:.2f} |"
        )
    out = args.out or ab.BENCH_DIR / "results" / f"claim-wait-{started:%Y-%m-%d-%H%M}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"raw numbers: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
