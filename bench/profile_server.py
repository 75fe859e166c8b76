#!/usr/bin/env python
"""Where does a vpngw request spend its time? Samples the server with py-spy while
bench/api_bench.py's load runs against it, then prints the inclusive share of the
frames that matter.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile_server.py [--action CreateVpnConnection] [--clients 16]
        [--requests 2000] [--rows N] [--out bench/results/profile-<action>-c<clients>.txt]

``--rows N`` bulk-loads N connections first (as api_bench.py does) and profiles
DescribeVpnConnections (``--action DescribeVpnConnections``). The collapsed stacks are
kept next to the summary (``.folded``, with ``--keep-folded``) for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_bench as ab

# (label, substring of a collapsed frame "function (file:line)") inclusive shares to report.
MARKERS = [
    ("authenticator.account_of (auth total)", "account_of (vpngw/auth/authenticator.py"),
    ("  auth: verify signature", "verify (vpngw/auth/signatures.py"),
    ("  auth: record nonce (write txn)", "record_nonce (vpngw/store/queries.py"),
    ("  auth: forget_expired_nonces", "forget_expired_nonces (vpngw/store/queries.py"),
    ("dispatch (action total)", "dispatch (vpngw/actions/dispatch.py"),
    ("  parse_params (pydantic)", "parse_params (vpngw/actions/dispatch.py"),
    ("  create_vpn_connection", "create_vpn_connection (vpngw/actions/vpn_connections.py"),
    ("    _check_gateway_room", "_check_gateway_room (vpngw/actions/vpn_connections.py"),
    ("  describe_vpn_connections", "describe_vpn_connections (vpngw/actions/vpn_connections.py"),
    ("    queries.page", "page (vpngw/store/queries.py"),
    ("    opened_ike (AES-GCM open)", "opened_ike (vpngw/actions/vpn_connections.py"),
    ("  model_dump (response)", "model_dump (pydantic/main.py"),
    ("sealing.open", "open (vpngw/sealing.py"),
    ("sealing.seal", "seal (vpngw/sealing.py"),
    ("BEGIN / BEGIN IMMEDIATE (waits for the SQLite write lock)", "on_begin (vpngw/store/engine.py"),
    ("session commit", "commit (sqlalchemy/orm/session.py"),
    ("sqlite3 execute (any)", "do_execute (sqlalchemy/engine/default.py"),
    ("sqlite3 executemany", "do_executemany (sqlalchemy/engine/default.py"),
    ("sqlalchemy connection checkout/begin", "_connection_for_bind (sqlalchemy/orm/session.py"),
    ("render JSON response", "render (starlette/responses.py"),
    ("app: Api._serve (request handling in the loop)", "_serve (vpngw/api/app.py"),
    ("dialects.rpc_request (parse query/body)", "rpc_request (vpngw/api/dialects.py"),
    ("logging (access log)", "(logging/__init__.py"),
    ("anyio worker-thread handoff", "run_sync_in_worker_thread (anyio/_backends/_asyncio.py"),
    (
        "Database.transaction (incl. waiting for the in-process SQLite write lock)",
        "transaction (vpngw/store/engine.py",
    ),
    ("sqlite connect + PRAGMAs (pool churn)", "on_connect (vpngw/store/engine.py"),
    ("session close / rollback", "close (sqlalchemy/orm/session.py"),
    ("uvicorn h11 protocol", "h11_impl.py"),
]
# Leaf frames of a thread with nothing to do (an idle anyio worker, the loop in epoll).
IDLE_LEAVES = ("Condition.wait (threading.py", "EpollSelector.select (selectors.py")


def summarize(folded: Path) -> str:
    total = 0
    idle = 0
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    by_thread: collections.Counter[str] = collections.Counter()
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        by_thread[frames[0]] += count
        if any(needle in frames[-1] for needle in IDLE_LEAVES):
            idle += count
        for label, needle in MARKERS:
            if any(needle in f for f in frames):
                inclusive[label] += count
        self_time[frames[-1]] += count
    busy = max(1, total - idle)
    out = [
        f"samples: {total} (idle {idle}: threads waiting for work or in select)",
        "",
        "inclusive share of the busy samples (all threads):",
    ]
    for label, _needle in MARKERS:
        if inclusive[label]:
            out.append(f"  {inclusive[label] / busy * 100:5.1f}%  {label}")
    out += ["", "top 25 leaf frames (self, share of busy samples):"]
    for frame, count in self_time.most_common(40):
        if any(needle in frame for needle in IDLE_LEAVES):
            continue
        out.append(f"  {count / busy * 100:5.1f}%  {frame[:150]}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--action", default="CreateVpnConnection")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--page", default="1")
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--keep-folded", action="store_true", help="keep the collapsed stacks next to the summary"
    )
    parser.add_argument(
        "--cpu-only", action="store_true", help="sample only threads that run (no --idle): a CPU profile"
    )
    args = parser.parse_args()

    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise SystemExit("install py-spy into the venv first: .venv/bin/pip install py-spy")
    suffix = "-cpu" if args.cpu_only else ""
    out = (
        Path(args.out)
        if args.out
        else ab.BENCH_DIR / "results" / f"profile-{args.action}-c{args.clients}{suffix}.txt"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    folded = out.with_suffix(".folded")
    if not args.keep_folded:
        folded = Path(tempfile.mkdtemp(prefix="vpngw-profile-stacks-")) / folded.name

    workdir = Path(tempfile.mkdtemp(prefix="vpngw-profile-"))
    ab.use_source(workdir)
    db_url = f"sqlite:///{workdir / 'vpngw.db'}"
    server = ab.Server(db_url=db_url, workdir=workdir)
    n_creates = args.requests + 200 if args.action == "CreateVpnConnection" else 0
    spy: subprocess.Popen[bytes] | None = None
    try:
        server.start("setup")
        world = ab.build_world(
            server.base_url, max(1, n_creates // ab.PER_GATEWAY + 1), 100 if args.rows else 0, 16
        )
        if args.rows:
            server.stop()
            print(ab.bulk_load(db_url, world, args.rows))
            server.start("profile")
        counter = itertools.count()
        lock = threading.Lock()

        def params(_i: int) -> dict[str, str]:
            if args.action == "CreateVpnConnection":
                with lock:
                    k = next(counter)
                local, remote = ab.subnets_for(k)
                return {
                    "RegionId": ab.REGION,
                    "VpnGatewayId": world.gateways[k % len(world.gateways)][0],
                    "CustomerGatewayId": world.customer_gateways[k % len(world.customer_gateways)][0],
                    "LocalSubnet": local,
                    "RemoteSubnet": remote,
                }
            if args.action == "DescribeVpnConnections":
                return {"RegionId": ab.REGION, "PageNumber": args.page}
            return {}

        ab.load(server.base_url, args.action, params, total=100, concurrency=4, time_limit_s=30)  # warm-up
        assert server.proc is not None
        spy = subprocess.Popen(
            [
                str(py_spy),
                "record",
                "--pid",
                str(server.proc.pid),
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--threads",
                *([] if args.cpu_only else ["--idle"]),
                "-o",
                str(folded),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)
        run = ab.load(
            server.base_url,
            args.action,
            params,
            total=args.requests,
            concurrency=args.clients,
            time_limit_s=120,
        )
        spy.send_signal(signal.SIGINT)
        _out, err = spy.communicate(timeout=60)
        spy = None
        if not folded.exists():
            raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')[-2000:]}")
        header = (
            f"{args.action} c={args.clients} rows={args.rows}: {run['ok']} ok, {run['errors']} errors, {run['rps']} req/s, "
            f"p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, max {run['max_ms']} ms\n"
        )
        text = header + summarize(folded)
        retries = server.log_tail(100000).count("retrying")
        text += f"\n\nserver log: {retries} 'retrying ... after a conflict' lines\n"
        out.write_text(text)
        print(text)
    finally:
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
