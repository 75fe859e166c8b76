#!/usr/bin/env python
"""API benchmark for vpngw: CreateVpnConnection throughput/latency against the
DescribeRegions ceiling, and DescribeVpnConnections page latency at 100,000 rows.

    .venv/bin/python bench/api_bench.py [--quick] [--db postgresql+psycopg://...]

What it does (everything against a real ``vpngw serve`` subprocess on a loopback port):

1. Starts the server on a fresh SQLite file in a temporary directory (or on the empty
   database given with ``--db``), with a benchmark AccessKey and master key given in the
   environment. Every request is signed (RPC v1, HMAC-SHA1, as the official SDKs send
   it), so the server's authentication (signature check + nonce write) is included.
2. Builds a world through the API (one VPC, VPN gateways, customer gateways), then, at 1
   and at 16 concurrent clients (threads, one keep-alive ``httpx.Client`` each, a fixed
   number of requests per run, bounded in time), measures DescribeRegions (the ceiling:
   the cheapest action) and CreateVpnConnection. Creates are spread round-robin over
   the gateways so that no gateway exceeds the default quota of 10 connections.
3. Stops the server, bulk-inserts VpnConnection rows directly into the database with
   SQLAlchemy and vpngw's own models (rows built the way actions/vpn_connections.py
   builds them: defaults merged, Psk sealed under the same master key) until the
   account holds exactly 100,000 connections, restarts the server on the same database
   and measures DescribeVpnConnections page latency (page 1, the middle page, the last
   page, filtered by VpnGatewayId) from one client.
4. Prints a Markdown table and writes the raw numbers to bench/results/<date>.json.

The server is always stopped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import itertools
import json
import math
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# vpngw itself is imported lazily (see use_source): the benchmark runs the server and
# its own imports from one snapshot of src/, so that edits made to the working tree
# while it runs cannot mix two versions of the code into one measurement.

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
REGION = "cn-hangzhou"
VERSION = "2016-04-28"
# vpngw's default quota of connections per gateway (config.Settings).
PER_GATEWAY = 10
# Same prefix as actions/vpn_connections.PSK_PURPOSE; imported below when available.
PSK_PURPOSE = "vpn_connections.psk"

KEY_ID = "LTAIbench" + secrets.token_hex(8)
KEY_SECRET = secrets.token_urlsafe(24)
MASTER_KEY = "bench:" + base64.b64encode(secrets.token_bytes(32)).decode()


# --------------------------------------------------------------------------- source snapshot

SOURCE: dict[str, str] = {"src": str(REPO / "src"), "kind": "working tree"}


def use_source(workdir: Path | None) -> None:
    """Copy src/vpngw into ``workdir`` (when given) and import vpngw from there, here and
    in every server this process starts (PYTHONPATH comes before the editable install)."""
    if workdir is not None:
        snapshot = workdir / "src"
        shutil.copytree(
            REPO / "src" / "vpngw", snapshot / "vpngw", ignore=shutil.ignore_patterns("__pycache__")
        )
        SOURCE.update(src=str(snapshot), kind="snapshot of the working tree taken at start")
        digest = hashlib.sha256()
        for path in sorted((snapshot / "vpngw").rglob("*.py")):
            digest.update(str(path.relative_to(snapshot)).encode() + b"\0" + path.read_bytes())
        SOURCE["sha256_of_py_files"] = digest.hexdigest()[:16]
    if "vpngw" in sys.modules and not sys.modules["vpngw"].__file__.startswith(SOURCE["src"]):  # type: ignore[union-attr]
        raise RuntimeError("vpngw was imported before use_source()")
    sys.path.insert(0, SOURCE["src"])


def _sign_rpc_v1(*args: Any, **kwargs: Any) -> dict[str, str]:
    from vpngw.auth.signatures import sign_rpc_v1

    return sign_rpc_v1(*args, **kwargs)


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vpngw_executable() -> str:
    here = Path(sys.executable).parent / "vpngw"
    if here.exists():
        return str(here)
    found = shutil.which("vpngw")
    if not found:
        raise SystemExit("api_bench: the vpngw command is not installed (pip install -e . in the venv)")
    return found


def serve_supports(flag: str) -> bool:
    out = subprocess.run(
        [vpngw_executable(), "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return flag in out


@dataclass
class Server:
    """One ``vpngw serve`` subprocess. Stopped by its own pid only."""

    db_url: str
    workdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    log_path: Path | None = None
    flags: list[str] = field(default_factory=list)
    src: str | None = None  # another tree's src/ (--baseline-src), else this run's SOURCE

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, label: str) -> None:
        self.port = free_port()
        self.log_path = self.workdir / f"server-{label}.log"
        self.flags = ["--log-level", "warning"]
        # The API alone: on a machine that can run the data plane (root, strongSwan), serve would
        # otherwise start a charon per gateway of the world (421) and measure them too.
        if serve_supports("--no-dataplane"):
            self.flags.append("--no-dataplane")
        if serve_supports("--no-access-log"):
            self.flags.append("--no-access-log")
        cmd = [
            vpngw_executable(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            self.db_url,
            *self.flags,
        ]
        env = {
            **os.environ,
            "VPNGW_MASTER_KEY": MASTER_KEY,
            "VPNGW_ACCESS_KEY_ID": KEY_ID,
            "VPNGW_ACCESS_KEY_SECRET": KEY_SECRET,
            # One account makes every resource here: the per-account quotas do not apply.
            "VPNGW_QUOTA_VPCS": "1000000",
            "VPNGW_QUOTA_VPN_GATEWAYS": "1000000",
            "VPNGW_QUOTA_CUSTOMER_GATEWAYS": "1000000",
            **self.env_extra,
            "PYTHONPATH": os.pathsep.join(
                x for x in (self.src or SOURCE["src"], os.environ.get("PYTHONPATH", "")) if x
            ),
        }
        env.pop("VPNGW_DB", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                httpx.get(self.base_url + "/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"the server did not answer within 60 s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def access_log(self) -> bool:
        return "--no-access-log" not in self.flags

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0

    def server_side(self, since: int, action: str) -> dict[str, Any]:
        """Durations the server's access log reports for ``action`` after byte ``since``
        (parse to response, as app.py measures it), if the access log is on."""
        if self.log_path is None or not self.access_log():
            return {}
        time.sleep(0.2)
        with open(self.log_path, "rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
        durations = [float(m) / 1000 for m in re.findall(rf" {re.escape(action)} 200 - ([0-9.]+)ms", text)]
        if not durations:
            return {}
        return {f"server_{k}": v for k, v in summarize(durations).items()} | {
            "server_samples": len(durations)
        }

    def log_counts(self) -> dict[str, int]:
        text = self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
        return {
            "retried_after_conflict": text.count("after a conflict"),
            "error_lines": sum(1 for line in text.splitlines() if " ERROR " in line),
        }


@contextmanager
def running(server: Server, label: str) -> Iterator[Server]:
    server.start(label)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- cpu accounting


def _clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def _system_busy_s() -> float:
    """Busy CPU seconds of the whole machine (all cores) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _clock_ticks()


def _process_cpu_s(pid: int) -> float:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / _clock_ticks()
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuMeter:
    """CPU used during a run by the server, by this benchmark process, and by everything
    else on the machine (other jobs disturb a 2-core measurement: this says how much)."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.t0 = time.perf_counter()
        self.sys0 = _system_busy_s()
        self.self0 = _process_cpu_s(os.getpid())
        self.srv0 = _process_cpu_s(server_pid) if server_pid else 0.0

    def stop(self) -> dict[str, float]:
        wall = max(1e-9, time.perf_counter() - self.t0)
        system = _system_busy_s() - self.sys0
        me = _process_cpu_s(os.getpid()) - self.self0
        srv = (_process_cpu_s(self.server_pid) - self.srv0) if self.server_pid else 0.0
        return {
            "cpu_server_cores": round(srv / wall, 2),
            "cpu_client_cores": round(me / wall, 2),
            "cpu_other_cores": round(max(0.0, system - me - srv) / wall, 2),
        }


def wait_for_quiet(max_wait_s: float, threshold_cores: float = 0.3) -> dict[str, float]:
    """Wait (up to max_wait_s) until other processes use less than threshold_cores."""
    started = time.perf_counter()
    busy = 0.0
    while True:
        meter = CpuMeter(None)
        time.sleep(2.0)
        busy = meter.stop()["cpu_other_cores"]
        waited = time.perf_counter() - started
        if busy < threshold_cores or waited >= max_wait_s:
            return {"other_cores_at_start": busy, "waited_s": round(waited, 1)}
        print(f"[bench] machine busy ({busy:.2f} cores used by other processes); waiting ...", flush=True)


# --------------------------------------------------------------------------- client


def signed(action: str, params: dict[str, str]) -> dict[str, str]:
    query = {"Action": action, "Version": VERSION, "Format": "JSON", **params}
    return _sign_rpc_v1(
        "POST",
        query,
        KEY_ID,
        KEY_SECRET,
        nonce=uuid.uuid4().hex,
        timestamp=datetime.datetime.now(datetime.UTC),
    )


def call(client: httpx.Client, action: str, **params: Any) -> dict[str, Any]:
    params.setdefault("RegionId", REGION)
    response = client.post("/", params=signed(action, {k: str(v) for k, v in params.items()}))
    if response.status_code != 200:
        raise RuntimeError(f"{action} answered {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(latencies_s: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies_s)
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3) if ms else float("nan"),
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else float("nan"),
    }


def load(
    base_url: str,
    action: str,
    make_params: Callable[[int], dict[str, str]],
    *,
    total: int,
    concurrency: int,
    time_limit_s: float,
) -> dict[str, Any]:
    """``total`` requests from ``concurrency`` threads (closed loop, one keep-alive client
    each). Request i gets ``make_params(i)``. Latency is measured around the HTTP call
    (signing is done before the clock starts)."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    error_count = 0
    finished: list[float] = []
    start_at: list[float] = []

    def begin() -> None:
        start_at.append(time.perf_counter())

    barrier = threading.Barrier(concurrency, action=begin)

    def worker() -> None:
        nonlocal error_count
        mine: list[float] = []
        with httpx.Client(base_url=base_url, timeout=30) as client:
            # Open the keep-alive connection before the clock starts.
            client.post("/", params=signed("DescribeRegions", {}))
            barrier.wait()
            deadline = start_at[0] + time_limit_s
            while True:
                with lock:
                    i = next(counter)
                if i >= total or time.perf_counter() > deadline:
                    break
                query = signed(action, make_params(i))
                t0 = time.perf_counter()
                response = client.post("/", params=query)
                dt = time.perf_counter() - t0
                if response.status_code == 200:
                    mine.append(dt)
                else:
                    with lock:
                        error_count += 1
                        if len(errors) < 5:
                            errors.append(f"{response.status_code} {response.text[:300]}")
        with lock:
            latencies.extend(mine)
            finished.append(time.perf_counter())

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = max(finished) - start_at[0]
    ok = len(latencies)
    return {
        "action": action,
        "concurrency": concurrency,
        "requested": total,
        "ok": ok,
        "errors": error_count,
        "error_samples": errors,
        "elapsed_s": round(elapsed, 3),
        "timed_out": ok + error_count < total,
        "rps": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        **summarize(latencies),
    }


# --------------------------------------------------------------------------- world


@dataclass
class World:
    vpc_id: str
    gateways: list[tuple[str, str]]  # (id, internet_ip) for the HTTP creates
    bulk_gateways: list[tuple[str, str]]  # (id, internet_ip) for the bulk-loaded rows
    customer_gateways: list[tuple[str, str]]  # (id, ip_address)


def build_world(base_url: str, n_gateways: int, n_bulk_gateways: int, n_customer_gateways: int) -> World:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        vpc_id = call(client, "CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]

        def gateway() -> tuple[str, str]:
            gid = call(client, "CreateVpnGateway", VpcId=vpc_id, Bandwidth=10)["VpnGatewayId"]
            ip = call(client, "DescribeVpnGateway", VpnGatewayId=gid)["InternetIp"]
            return gid, ip

        gateways = [gateway() for _ in range(n_gateways)]
        bulk = [gateway() for _ in range(n_bulk_gateways)]
        cgws = []
        for n in range(n_customer_gateways):
            ip = f"198.19.{n // 250}.{n % 250 + 1}"
            cgws.append((call(client, "CreateCustomerGateway", IpAddress=ip)["CustomerGatewayId"], ip))
    return World(vpc_id, gateways, bulk, cgws)


def subnets_for(n: int) -> tuple[str, str]:
    """Distinct traffic selectors for the n-th connection of a gateway (n < 65536)."""
    return f"10.{(n >> 8) & 255}.{n & 255}.0/24", f"172.16.{(n >> 8) & 255}.0/24"


# --------------------------------------------------------------------------- bulk load


def bulk_load(db_url: str, world: World, target_rows: int) -> dict[str, Any]:
    """Insert VpnConnection rows directly (the server must be stopped) until the default
    account holds ``target_rows`` connections in REGION. Rows are spread round-robin over
    the bulk gateways and built like create_vpn_connection builds them."""
    from sqlalchemy import func, insert, select

    from vpngw import ids
    from vpngw.config import Settings
    from vpngw.rules.tunnel_config import (
        DEFAULT_HEALTH_CHECK,
        DEFAULT_IPSEC,
        default_ike,
        merge_health_check,
        merge_ike,
        merge_ipsec,
    )
    from vpngw.sealing import Sealer, parse_keyring
    from vpngw.store.engine import Database
    from vpngw.store.models import VpnConnection

    try:
        from vpngw.actions.vpn_connections import INITIAL_STATUS
        from vpngw.actions.vpn_connections import PSK_PURPOSE as purpose
    except Exception:  # noqa: BLE001 - a tree without these names: the values of this version
        INITIAL_STATUS, purpose = "ike_sa_not_established", PSK_PURPOSE

    sealer = Sealer(parse_keyring(MASTER_KEY))
    account_id = Settings().default_account_id
    db = Database(db_url)
    started = time.perf_counter()
    try:
        with db.session(write=False) as session:
            existing = (
                session.scalar(
                    select(func.count())
                    .select_from(VpnConnection)
                    .where(VpnConnection.account_id == account_id, VpnConnection.region_id == REGION)
                )
                or 0
            )
        to_add = max(0, target_rows - existing)
        health = dict(merge_health_check(DEFAULT_HEALTH_CHECK, {}))
        ipsec = dict(merge_ipsec(DEFAULT_IPSEC, {}))
        health_status = "failed" if health["Enable"] else "success"
        now_ms = int(time.time() * 1000)
        batch: list[dict[str, Any]] = []
        inserted = 0
        n_gw = len(world.bulk_gateways)

        def flush() -> None:
            nonlocal inserted
            if not batch:
                return
            with db.session(write=True) as session, session.begin():
                session.execute(insert(VpnConnection), batch)
            inserted += len(batch)
            batch.clear()

        for i in range(to_add):
            gw_id, gw_ip = world.bulk_gateways[i % n_gw]
            cgw_id, cgw_ip = world.customer_gateways[i % len(world.customer_gateways)]
            local, remote = subnets_for(i // n_gw)
            vco_id = ids.new_resource_id("vco")
            ike = dict(merge_ike(default_ike(ids.new_psk(), gw_ip, cgw_ip), {}))
            ike["Psk"] = sealer.seal(ike["Psk"], purpose)
            batch.append(
                {
                    "id": vco_id,
                    "account_id": account_id,
                    "region_id": REGION,
                    "vpn_gateway_id": gw_id,
                    "customer_gateway_id": cgw_id,
                    "name": vco_id,
                    "local_subnet": local,
                    "remote_subnet": remote,
                    "effect_immediately": False,
                    "auto_config_route": False,
                    "enable_dpd": True,
                    "enable_nat_traversal": True,
                    "ike_config": ike,
                    "ipsec_config": ipsec,
                    "health_check": health,
                    "status": INITIAL_STATUS,
                    "health_check_status": health_status,
                    "state": "active",
                    "create_time": now_ms + i,
                }
            )
            if len(batch) >= 5000:
                flush()
        flush()
        # Keep the server's invariant: unfiltered totals are read from resource_counts,
        # which create/delete keep in step; a bulk insert must do the same.
        from sqlalchemy import text

        with db.session(write=True) as session, session.begin():
            session.execute(
                text(
                    "UPDATE resource_counts SET count = (SELECT COUNT(*) FROM vpn_connections "
                    "WHERE account_id = :a AND region_id = :r) "
                    "WHERE account_id = :a AND region_id = :r AND kind = 'vpn_connections'"
                ),
                {"a": account_id, "r": REGION},
            )
        with db.session(write=False) as session:
            total = (
                session.scalar(
                    select(func.count())
                    .select_from(VpnConnection)
                    .where(VpnConnection.account_id == account_id, VpnConnection.region_id == REGION)
                )
                or 0
            )
    finally:
        db.dispose()
    return {
        "method": "direct bulk INSERT with SQLAlchemy (insert(vpngw.store.models.VpnConnection), executemany, "
        "5000 rows per transaction) while the server was stopped; rows built like CreateVpnConnection "
        "(default IKE/IPsec/health-check configs, Psk sealed under the server's master key); "
        "account, VPC, gateways and customer gateways created through the API",
        "rows_via_api": existing,
        "rows_bulk_inserted": inserted,
        "rows_total": total,
        "bulk_gateways": n_gw,
        "rows_per_bulk_gateway": math.ceil(inserted / n_gw) if n_gw else 0,
        "seconds": round(time.perf_counter() - started, 2),
    }


# --------------------------------------------------------------------------- describe


def describe_latency(base_url: str, params: dict[str, str], calls: int, warmup: int = 10) -> dict[str, Any]:
    latencies = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        body: dict[str, Any] = {}
        for n in range(warmup + calls):
            query = signed("DescribeVpnConnections", {"RegionId": REGION, **params})
            t0 = time.perf_counter()
            response = client.post("/", params=query)
            dt = time.perf_counter() - t0
            if response.status_code != 200:
                raise RuntimeError(
                    f"DescribeVpnConnections {params} answered {response.status_code}: {response.text[:300]}"
                )
            if n >= warmup:
                latencies.append(dt)
            body = response.json()
    return {
        "params": params,
        "calls": calls,
        "total_count": body.get("TotalCount"),
        "items": len(body.get("VpnConnections", {}).get("VpnConnection", [])),
        "response_bytes": len(response.content),
        **summarize(latencies),
    }


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            return ""

    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty_files": len(git("status", "--porcelain").splitlines()),
    }


# --------------------------------------------------------------------------- main


def fmt(x: float) -> str:
    return f"{x:.1f}" if isinstance(x, (int, float)) and not math.isnan(x) else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a small run (smoke test): fewer requests and 10,000 rows"
    )
    parser.add_argument(
        "--db", metavar="URL", default=None, help="an EMPTY database to use instead of a fresh SQLite file"
    )
    parser.add_argument(
        "--rows", type=int, default=None, help="connections stored for the Describe test (default 100000)"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=None,
        metavar="S",
        help="wait up to S seconds for other processes to go quiet first (default 180 full, 0 quick)",
    )
    parser.add_argument(
        "--no-snapshot", action="store_true", help="run the live working tree instead of a snapshot of src/"
    )
    parser.add_argument(
        "--out", metavar="FILE", default=None, help="JSON output (default bench/results/<date>.json)"
    )
    parser.add_argument(
        "--baseline-src",
        metavar="DIR",
        default=None,
        help="another tree's src/ (e.g. git archive <commit> src): its server runs beside this one on the "
        "same database in the Describe phase, each page measured on both, in turns (before/after in one run)",
    )
    args = parser.parse_args(argv)

    quick = args.quick
    requests_per_run = 200 if quick else 2000
    warmup_requests = 50 if quick else 200
    describe_calls = 50 if quick else 200
    target_rows = args.rows or (10_000 if quick else 100_000)
    time_limit_s = 30.0 if quick else 45.0
    concurrencies = (1, 16)
    n_bulk_gateways = 10 if quick else 100
    n_customer_gateways = 16

    total_creates = warmup_requests + requests_per_run * len(concurrencies)
    n_gateways = math.ceil(total_creates / PER_GATEWAY) + 1
    started_utc = datetime.datetime.now(datetime.UTC)
    results: dict[str, Any] = {
        "date_utc": started_utc.isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "command": " ".join([sys.executable, *sys.argv]),
        "machine": machine(),
    }

    wait_s = args.wait_idle if args.wait_idle is not None else (0.0 if quick else 180.0)
    results["quiet_check"] = wait_for_quiet(wait_s) if wait_s > 0 else {}
    workdir = Path(tempfile.mkdtemp(prefix="vpngw-bench-"))
    if args.no_snapshot:
        use_source(None)
    else:
        use_source(workdir)
    results["source"] = dict(SOURCE)
    db_url = args.db or f"sqlite:///{workdir / 'vpngw.db'}"
    results["database"] = (
        "postgresql" if db_url.startswith("postgresql") else "sqlite (fresh file in a temp dir, WAL)"
    )
    server = Server(db_url=db_url, workdir=workdir)
    t_all = time.perf_counter()
    try:
        # ---- phase 1: throughput and latency over HTTP
        with running(server, "throughput"):
            results["server"] = {
                "command": f"vpngw serve --host 127.0.0.1 --port <free> --db <url> {' '.join(server.flags)}",
                "access_log": server.access_log(),
                "auth": "signed requests (RPC v1 HMAC-SHA1), AccessKey from VPNGW_ACCESS_KEY_ID/SECRET",
                "max_connections_per_gateway": PER_GATEWAY,
            }
            print(f"[bench] server on {server.base_url}, db {results['database']}", flush=True)
            t0 = time.perf_counter()
            world = build_world(server.base_url, n_gateways, n_bulk_gateways, n_customer_gateways)
            results["setup"] = {
                "vpn_gateways_for_creates": len(world.gateways),
                "vpn_gateways_for_bulk_rows": len(world.bulk_gateways),
                "customer_gateways": len(world.customer_gateways),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            print(f"[bench] world built via the API in {results['setup']['seconds']} s", flush=True)

            next_create = itertools.count()
            create_lock = threading.Lock()

            def create_params(_i: int) -> dict[str, str]:
                with create_lock:
                    k = next(next_create)
                gw_id, _ip = world.gateways[k % len(world.gateways)]
                cgw_id, _cip = world.customer_gateways[k % len(world.customer_gateways)]
                local, remote = subnets_for(k)
                return {
                    "RegionId": REGION,
                    "VpnGatewayId": gw_id,
                    "CustomerGatewayId": cgw_id,
                    "LocalSubnet": local,
                    "RemoteSubnet": remote,
                }

            def regions_params(_i: int) -> dict[str, str]:
                return {}

            # Warm-up (not recorded): imports, caches, SQLite pages.
            load(
                server.base_url,
                "DescribeRegions",
                regions_params,
                total=warmup_requests,
                concurrency=4,
                time_limit_s=time_limit_s,
            )
            load(
                server.base_url,
                "CreateVpnConnection",
                create_params,
                total=warmup_requests,
                concurrency=4,
                time_limit_s=time_limit_s,
            )

            runs = []
            for c in concurrencies:
                for action, make in (
                    ("DescribeRegions", regions_params),
                    ("CreateVpnConnection", create_params),
                ):
                    since = server.log_size()
                    meter = CpuMeter(server.proc.pid if server.proc else None)
                    run = load(
                        server.base_url,
                        action,
                        make,
                        total=requests_per_run,
                        concurrency=c,
                        time_limit_s=time_limit_s,
                    )
                    run.update(meter.stop())
                    run["server_cpu_ms_per_request"] = (
                        round(run["cpu_server_cores"] * 1000 / run["rps"], 2) if run["rps"] else None
                    )
                    run.update(server.server_side(since, action))
                    runs.append(run)
                    print(
                        f"[bench] {action:<20} c={c:<2} {run['ok']:>5} ok {run['errors']} err  {run['rps']:>7.1f} req/s  "
                        f"p50 {run['p50_ms']:.2f} ms  p99 {run['p99_ms']:.2f} ms  "
                        f"(cpu: server {run['cpu_server_cores']}, client {run['cpu_client_cores']}, "
                        f"others {run['cpu_other_cores']} cores)",
                        flush=True,
                    )
                    if run["errors"]:
                        print(f"[bench]   errors: {run['error_samples']}", flush=True)
            results["throughput"] = runs
            results["server_log_throughput_phase"] = server.log_counts()

        # ---- phase 2: bulk load while the server is stopped
        print(f"[bench] server stopped; bulk-inserting connections up to {target_rows} rows ...", flush=True)
        results["bulk_load"] = bulk_load(db_url, world, target_rows)
        bl = results["bulk_load"]
        print(
            f"[bench] {bl['rows_via_api']} rows via the API + {bl['rows_bulk_inserted']} bulk-inserted = "
            f"{bl['rows_total']} rows ({bl['seconds']} s)",
            flush=True,
        )

        # ---- phase 3: Describe page latency at target_rows
        baseline: Server | None = None
        if args.baseline_src:
            copy = workdir / "baseline" / "src"
            shutil.copytree(
                Path(args.baseline_src) / "vpngw",
                copy / "vpngw",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            baseline = Server(db_url=db_url, workdir=workdir, src=str(copy))
            results["baseline_src"] = str(Path(args.baseline_src).resolve())
        with (
            running(server, "describe"),
            running(baseline, "describe-baseline") if baseline else contextlib.nullcontext(),
        ):
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                total = call(client, "DescribeVpnConnections")["TotalCount"]
                gw_id = world.bulk_gateways[len(world.bulk_gateways) // 2][0]
                gw_total = call(client, "DescribeVpnConnections", VpnGatewayId=gw_id)["TotalCount"]
            cases = []
            for page_size in (10, 50):
                last = max(1, math.ceil(total / page_size))
                gw_last = max(1, math.ceil(gw_total / page_size))
                for label, params in (
                    ("page 1", {"PageNumber": "1"}),
                    (f"middle page ({last // 2})", {"PageNumber": str(max(1, last // 2))}),
                    (f"last page ({last})", {"PageNumber": str(last)}),
                    ("VpnGatewayId filter, page 1", {"VpnGatewayId": gw_id, "PageNumber": "1"}),
                    (
                        f"VpnGatewayId filter, last page ({gw_last})",
                        {"VpnGatewayId": gw_id, "PageNumber": str(gw_last)},
                    ),
                ):
                    measured: dict[str, dict[str, Any]] = {}
                    # Both trees measured on each page, in turns (the first to run alternates).
                    order = [("after", server), ("before", baseline)] if baseline else [("after", server)]
                    if len(cases) % 2:
                        order.reverse()
                    for which, one in order:
                        assert one is not None
                        since = one.log_size()
                        meter = CpuMeter(one.proc.pid if one.proc else None)
                        case = describe_latency(
                            one.base_url, {**params, "PageSize": str(page_size)}, describe_calls
                        )
                        case.update(meter.stop())
                        case.update(one.server_side(since, "DescribeVpnConnections"))
                        measured[which] = case
                        print(
                            f"[bench] Describe PageSize={page_size:<2} {label:<38} {which + ':' if baseline else ''} "
                            f"p50 {case['p50_ms']:.2f} ms  p99 {case['p99_ms']:.2f} ms  (TotalCount {case['total_count']})",
                            flush=True,
                        )
                    case = measured["after"]
                    if baseline:
                        case["baseline"] = measured["before"]
                    case["label"] = label
                    case["page_size"] = page_size
                    cases.append(case)
            results["describe"] = {"rows": total, "gateway_rows": gw_total, "cases": cases}
            results["server_log_describe_phase"] = server.log_counts()
    except BaseException:
        print("[bench] FAILED; server log tail:\n" + server.log_tail(), file=sys.stderr)
        raise
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["wall_seconds"] = round(time.perf_counter() - t_all, 1)

    # ---- targets
    by = {(r["action"], r["concurrency"]): r for r in results["throughput"]}
    targets = []
    for c in concurrencies:
        ceiling, create = by[("DescribeRegions", c)], by[("CreateVpnConnection", c)]
        ratio = create["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
        targets.append(
            {
                "target": f"CreateVpnConnection >= 40% of DescribeRegions req/s at {c} client{'s' if c > 1 else ''}",
                "value": f"{ratio * 100:.1f}% ({create['rps']:.0f} / {ceiling['rps']:.0f} req/s)",
                "pass": ratio >= 0.40 and create["errors"] == 0,
            }
        )
    c16 = by[("CreateVpnConnection", 16)]
    targets.append(
        {
            "target": "CreateVpnConnection p99 < 25 ms at 16 clients",
            "value": f"{c16['p99_ms']:.1f} ms",
            "pass": c16["p99_ms"] < 25.0 and c16["errors"] == 0,
        }
    )
    default_cases = [c for c in results["describe"]["cases"] if c["page_size"] == 10]
    worst = max(default_cases, key=lambda c: c["p99_ms"])
    targets.append(
        {
            "target": f"DescribeVpnConnections page < 10 ms at {results['describe']['rows']:,} rows (p99, PageSize=10, every case)",
            "value": f"worst p99 {worst['p99_ms']:.1f} ms ({worst['label']}); worst p50 "
            f"{max(c['p50_ms'] for c in default_cases):.1f} ms",
            "pass": worst["p99_ms"] < 10.0,
        }
    )
    results["targets"] = targets

    # ---- output
    out = (
        Path(args.out)
        if args.out
        else BENCH_DIR / "results" / f"{started_utc:%Y-%m-%d}{'-quick' if quick else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")

    lines = [
        "",
        f"vpngw API benchmark, {results['mode']} mode, {results['date_utc']}, {results['database']}",
        "",
        "| Action | Clients | Requests | req/s | p50 ms | p99 ms | max ms | server p50 ms | server p99 ms | server CPU ms/req | Errors | CPU others |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["throughput"]:
        lines.append(
            f"| {r['action']} | {r['concurrency']} | {r['ok'] + r['errors']} | {r['rps']:.0f} | "
            f"{fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {fmt(r.get('server_p50_ms', math.nan))} | "
            f"{fmt(r.get('server_p99_ms', math.nan))} | {fmt(r['server_cpu_ms_per_request'] or math.nan)} | "
            f"{r['errors']} | {r['cpu_other_cores']:.2f} |"
        )
    lines += [
        "",
        (
            f"DescribeVpnConnections, {results['describe']['rows']:,} stored connections "
            f"({bl['rows_via_api']:,} via the API, {bl['rows_bulk_inserted']:,} bulk-inserted directly into the database "
            f"with SQLAlchemy while the server was stopped); filtered gateway holds {results['describe']['gateway_rows']:,}; "
            f"1 client, {describe_calls} calls per case"
        ),
        "",
        "| Page | PageSize | p50 ms | p99 ms | server p50 ms | server p99 ms | CPU others |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results["describe"]["cases"]:
        for tree, m in (("", c), (" (baseline)", c.get("baseline"))):
            if m is None:
                continue
            lines.append(
                f"| {c['label']}{tree} | {c['page_size']} | {fmt(m['p50_ms'])} | {fmt(m['p99_ms'])} | "
                f"{fmt(m.get('server_p50_ms', math.nan))} | {fmt(m.get('server_p99_ms', math.nan))} | "
                f"{m['cpu_other_cores']:.2f} |"
            )
    lines += ["", "| Target | Measured | Result |", "|---|---|---|"]
    for t in targets:
        lines.append(f"| {t['target']} | {t['value']} | {'PASS' if t['pass'] else 'FAIL'} |")
    lines += [
        "",
        (
            "Latency is measured by the client around the HTTP call (closed loop, so at 16 clients it includes "
            "queueing: mean latency ~= clients / throughput); 'server' columns are the server's own access-log "
            "durations (parse to response) when the access log is on. 'CPU others' = cores used by "
            "processes other than this benchmark and its server during the run (disturbance)."
        ),
    ]
    lines += [
        "",
        f"raw numbers: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}; wall time {results['wall_seconds']} s",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
