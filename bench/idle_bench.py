#!/usr/bin/env python
"""Idle cost of the data plane (issue 18, items 2, 3 and 5): what ``vpngw serve`` costs
while G gateways x K connections sit idle, and what the API pays for it.

    .venv/bin/python bench/idle_bench.py --gateways 100 --per-gateway 10
    .venv/bin/python bench/idle_bench.py --gateways 100 --baseline before=REV   # before/after, one run
    .venv/bin/python bench/idle_bench.py --gateways 10,100 --rounds 1 --idle-s 20

Root, strongSwan and TUN are needed (the lab backend). For each fleet size:

1. A fresh SQLite database is filled through the API (``vpngw serve --no-dataplane``): one
   VPC, G VPN gateways, K customer gateways, K connections per gateway
   (``EffectImmediately=false``: trapped, nothing negotiates, nothing changes: idle).
2. Rounds, interleaved so that the machine's drift hits every variant alike:
   * ``off``: ``vpngw serve --no-dataplane`` on that database;
   * ``on``: ``vpngw serve`` with its lab data plane (one charon per gateway);
   * ``LABEL`` (``--baseline LABEL=REV``, repeatable): the same as ``on`` with the source of git
     revision REV (e.g. the code before the data plane moved to its own process).
   Each waits until every gateway's charon runs and the observations have settled, then
   measures, idle: CPU over ``--idle-s`` of serve and every process it started (the ended
   ``ip`` commands included), charons apart (and the charons' own); memory (RSS and PSS from
   /proc/<pid>/smaps_rollup) of serve, of its data-plane process, and per charon. Then
   DescribeVpnConnections page 1 (PageSize 10, signed), ``--calls`` times from one client,
   asked in turn of that server and of the ``off`` server of the round, which stays up beside
   it on the same database: the machine's load falls on both alike (p50/p99 of both, and
   the p99 ratio, the target's measure).
   Then, still idle, ``--changes`` times: ModifyVpnConnectionAttribute (signed) of a random
   connection's IkeLifetime, timed from the request until that connection's ``list-conns``
   over its charon's VICI socket shows the change (polled every 2 ms): how long a change
   takes to reach its charon (item 3: within 100 ms).
3. Prints Markdown tables and writes everything to bench/results/idle-<date>.json. A
   baseline revision serves the same database: the working tree's migrations it lacks are
   copied into its source (serve upgrades to its own head when it starts).

The charons are left to the next round (each start adopts them) and removed at the end with
``vpngw lab down``. The lab is named ``vb-<random>``: nothing of anyone else's is touched.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_bench as ab

LAB = "vb-" + secrets.token_hex(3)
CLK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- processes


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, charons excluded (they are not serve's children anyway)."""
    out = [pid]
    for child in children(pid):
        if comm(child) != "charon":
            out += tree(child)
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children that have ended (the `ip` commands)."""
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in parts[11:15]) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def memory_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                out[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    return out


def lab_charons() -> list[int]:
    """pids of this lab's gateway charons (from their pid files)."""
    run_dir = Path("/run/vpngw") / LAB
    pids = []
    for pid_file in run_dir.glob("g-*/charon.pid"):
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
        if comm(pid) == "charon":
            pids.append(pid)
    return pids


# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    """One ``vpngw serve`` (stopped by its own pid only)."""

    db_url: str
    workdir: Path
    src: str
    dataplane: bool
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    log_path: Path = field(default_factory=Path)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, label: str) -> None:
        self.port = ab.free_port()
        self.log_path = self.workdir / f"serve-{label}.log"
        plane = ["--lab", LAB, "--node", f"{LAB}-n"] if self.dataplane else ["--no-dataplane"]
        cmd = [
            sys.executable,
            "-m",
            "vpngw.cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            self.db_url,
            "--log-level",
            "warning",
            *plane,
        ]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VPNGW_")},
            "VPNGW_MASTER_KEY": ab.MASTER_KEY,
            "VPNGW_ACCESS_KEY_ID": ab.KEY_ID,
            "VPNGW_ACCESS_KEY_SECRET": ab.KEY_SECRET,
            "VPNGW_QUOTA_VPCS": "1000000",
            "VPNGW_QUOTA_VPN_GATEWAYS": "1000000",
            "VPNGW_QUOTA_CUSTOMER_GATEWAYS": "1000000",
            "PYTHONPATH": self.src,
        }
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                httpx.get(self.base_url + "/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"serve did not answer in 120 s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- the world


def fill(server: Server, gateways: int, per_gateway: int) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        vpc = ab.call(client, "CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
        cgws = [
            ab.call(client, "CreateCustomerGateway", IpAddress=f"198.19.{k // 250}.{k % 250 + 1}")[
                "CustomerGatewayId"
            ]
            for k in range(per_gateway)
        ]
        for g in range(gateways):
            gid = ab.call(client, "CreateVpnGateway", VpcId=vpc, Bandwidth=10)["VpnGatewayId"]
            for k in range(per_gateway):
                ab.call(
                    client,
                    "CreateVpnConnection",
                    VpnGatewayId=gid,
                    CustomerGatewayId=cgws[k],
                    LocalSubnet=f"10.{k}.0.0/24",
                    RemoteSubnet=f"172.16.{k}.0/24",
                    EffectImmediately="false",
                )
            if (g + 1) % 50 == 0:
                print(f"[idle] {g + 1}/{gateways} gateways filled", flush=True)


def wait_settled(server: Server, gateways: int, timeout_s: float, warmup_s: float = 0.0) -> dict[str, float]:
    """Until every gateway's charon runs, ``warmup_s`` more have passed (a start that adopts
    running charons is a fleet-wide pass whose tail two similar windows can mistake for
    idle), and serve's CPU has fallen to its idle level."""
    assert server.proc is not None
    started = time.monotonic()
    while len(lab_charons()) < gateways:
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"only {len(lab_charons())}/{gateways} charons after {timeout_s} s")
        if server.proc.poll() is not None:
            raise RuntimeError(f"serve exited:\n{server.log_tail()}")
        time.sleep(0.5)
    all_up = time.monotonic() - started
    time.sleep(warmup_s)
    # Settled: two 3-s windows in a row within 20 % of each other (the first passes write
    # every observation; after that the passes only look).
    previous = None
    while time.monotonic() - started < timeout_s:
        current = idle_cpu(server.proc.pid, 3.0)["serve_tree_cores"]
        if previous is not None and abs(current - previous) <= max(0.2 * previous, 0.005):
            break
        previous = current
    return {"charons_up_s": round(all_up, 1), "settled_s": round(time.monotonic() - started, 1)}


def idle_cpu(pid: int, seconds: float) -> dict[str, Any]:
    pids = tree(pid)
    charons = lab_charons()
    t0 = time.perf_counter()
    serve0 = {p: cpu_s(p) for p in pids}
    charon0 = {p: cpu_s(p) for p in charons}
    busy0 = ab._system_busy_s()
    time.sleep(seconds)
    wall = time.perf_counter() - t0
    serve_cores = sum(cpu_s(p) - serve0[p] for p in pids) / wall
    charon_cores = sum(cpu_s(p) - charon0[p] for p in charons) / wall
    machine = (ab._system_busy_s() - busy0) / wall
    return {
        "seconds": round(wall, 1),
        "serve_tree_cores": round(serve_cores, 4),
        "by_process_cores": {str(p): round((cpu_s(p) - serve0[p]) / wall, 4) for p in pids},
        "charons_cores": round(charon_cores, 4),
        "charons": len(charons),
        "machine_other_cores": round(max(0.0, machine - serve_cores - charon_cores), 2),
    }


def memory(pid: int) -> dict[str, Any]:
    pids = tree(pid)
    charons = [memory_kib(p) for p in lab_charons()]
    n = max(1, len(charons))
    return {
        "serve": memory_kib(pid),
        # The data-plane process (a running `ip` command is not a process of serve's to count here).
        "children": [memory_kib(p) for p in pids[1:] if comm(p) != "ip"],
        "serve_tree_rss_mib": round(sum(memory_kib(p).get("Rss", 0) for p in pids) / 1024, 1),
        "serve_tree_pss_mib": round(sum(memory_kib(p).get("Pss", 0) for p in pids) / 1024, 1),
        "charons": len(charons),
        "charon_rss_mib_mean": round(sum(c.get("Rss", 0) for c in charons) / n / 1024, 2),
        "charon_pss_mib_mean": round(sum(c.get("Pss", 0) for c in charons) / n / 1024, 2),
        "charon_private_mib_mean": round(
            sum(c.get("Private_Clean", 0) + c.get("Private_Dirty", 0) for c in charons) / n / 1024, 2
        ),
        "charons_pss_mib_total": round(sum(c.get("Pss", 0) for c in charons) / 1024, 1),
    }


# --------------------------------------------------------------------------- sources


def export_source(rev: str, where: Path) -> str:
    """``src/vpngw`` of git revision ``rev``, unpacked under ``where``; its path for PYTHONPATH."""
    archive = subprocess.run(
        ["git", "archive", rev, "src/vpngw"], cwd=ab.REPO, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    return str(where / "src")


def add_missing_migrations(source: str, newer: str) -> list[str]:
    """Copy into ``source`` the migrations of ``newer`` it lacks: every variant serves the
    one database the newest code filled (serve upgrades to its own head at start and would
    not know a newer revision). An older data plane ignores the newer columns and triggers;
    they cost only on writes, and an idle fleet writes nothing."""
    versions = Path("vpngw/store/migrations/versions")
    mine, theirs = Path(source) / versions, Path(newer) / versions
    added = []
    for migration in sorted(theirs.glob("*.py")):
        if not (mine / migration.name).exists():
            shutil.copy(migration, mine / migration.name)
            added.append(migration.name)
    return added


# --------------------------------------------------------------------------- main


def run_size(args: argparse.Namespace, gateways: int, sources: dict[str, str], work: Path) -> dict[str, Any]:
    folder = work / f"g{gateways}"
    folder.mkdir()
    db_url = f"sqlite:///{folder / 'vpngw.db'}"
    filler = Server(db_url, folder, sources["on"], dataplane=False)
    t0 = time.monotonic()
    filler.start("fill")
    try:
        fill(filler, gateways, args.per_gateway)
    finally:
        filler.stop()
    print(f"[idle] {gateways} x {args.per_gateway} stored in {time.monotonic() - t0:.0f} s", flush=True)
    rounds: list[dict[str, Any]] = []
    page = {"PageSize": "10", "PageNumber": "1"}
    for round_no in range(args.rounds):
        # The API alone first, measured idle; it then keeps running beside each data-plane
        # variant, so that Describe can be asked of both in turn, call by call: the machine's
        # load (shared, noisy) falls on both alike, and the ratio is what the data plane costs.
        off = Server(db_url, folder, sources["on"], dataplane=False)
        print(f"[idle] {gateways} gateways, round {round_no + 1}: off", flush=True)
        off.start(f"off-{round_no}")
        try:
            assert off.proc is not None
            time.sleep(3)
            cpu = idle_cpu(off.proc.pid, args.idle_s)
            rounds.append(
                {
                    "variant": "off",
                    "round": round_no,
                    "cpu": cpu,
                    "memory": memory(off.proc.pid),
                    "describe": {},
                }
            )
            report(rounds[-1])
            for variant in sources:
                server = Server(db_url, folder, sources[variant], dataplane=True)
                print(f"[idle] {gateways} gateways, round {round_no + 1}: {variant}", flush=True)
                server.start(f"{variant}-{round_no}")
                try:
                    assert server.proc is not None
                    settle = wait_settled(server, gateways, args.settle_timeout_s, args.warmup_s)
                    cpu = idle_cpu(server.proc.pid, args.idle_s)
                    mem = memory(server.proc.pid)
                    describe = describe_interleaved(server.base_url, off.base_url, page, args.calls)
                    changes = change_latency(server.base_url, args.changes, seed=round_no)
                finally:
                    server.stop()
                rounds.append(
                    {
                        "variant": variant,
                        "round": round_no,
                        **settle,
                        "cpu": cpu,
                        "memory": mem,
                        "describe": describe,
                        "changes": changes,
                    }
                )
                report(rounds[-1])
        finally:
            off.stop()
    return {"gateways": gateways, "per_gateway": args.per_gateway, "rounds": rounds}


def describe_interleaved(url: str, off_url: str, params: dict[str, str], calls: int) -> dict[str, Any]:
    """DescribeVpnConnections (signed) of ``url`` and of ``off_url`` in turn, ``calls`` each
    (after 10 each of warm-up): p50/p99 of both, and the ratio of the p99s."""
    times: dict[str, list[float]] = {"dataplane": [], "off": []}
    with httpx.Client(base_url=url, timeout=30) as mine, httpx.Client(base_url=off_url, timeout=30) as other:
        for n in range(10 + calls):
            for key, client in (("dataplane", mine), ("off", other)):
                query = ab.signed("DescribeVpnConnections", {"RegionId": ab.REGION, **params})
                t0 = time.perf_counter()
                response = client.post("/", params=query)
                elapsed = time.perf_counter() - t0
                if response.status_code != 200:
                    raise RuntimeError(f"Describe answered {response.status_code}: {response.text[:300]}")
                if n >= 10:
                    times[key].append(elapsed)
    mine_s, off_s = ab.summarize(times["dataplane"]), ab.summarize(times["off"])
    return {
        "calls": calls,
        **mine_s,
        **tail_shape(times["dataplane"]),
        "off": {**off_s, **tail_shape(times["off"])},
        "p99_ratio": round(mine_s["p99_ms"] / off_s["p99_ms"], 2),
        "p50_ratio": round(mine_s["p50_ms"] / off_s["p50_ms"], 2),
    }


WINDOW = 200  # calls: the p99 the earlier runs reported (their second-slowest call)


def tail_shape(latencies_s: list[float]) -> dict[str, Any]:
    """How steady the p99 is: the ten slowest calls, and the p99 of each run of WINDOW calls
    in a row (what a run of WINDOW calls would have reported; one machine hiccup moves it)."""
    ms = [x * 1000 for x in latencies_s]
    windows = [ms[i : i + WINDOW] for i in range(0, len(ms) - WINDOW + 1, WINDOW)]
    return {
        "slowest_ms": [round(x, 2) for x in sorted(ms)[-10:]],
        "window_p99_ms": [ab.summarize([x / 1000 for x in w])["p99_ms"] for w in windows],
    }


def connection_gateways(url: str) -> list[tuple[str, str]]:
    """(connection id, gateway id) of every stored connection."""
    found: list[tuple[str, str]] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        page = 1
        while True:
            body = ab.call(client, "DescribeVpnConnections", PageSize=50, PageNumber=page)
            rows = body["VpnConnections"]["VpnConnection"]
            found += [(row["VpnConnectionId"], row["VpnGatewayId"]) for row in rows]
            if not rows or len(found) >= int(body["TotalCount"]):
                return found
            page += 1


def loaded_settings(session: Any, name: str) -> str:
    """What charon holds of connection ``name`` (``list-conns``), as comparable text."""
    return repr([dict(conn) for conn in session.list_conns({"ike": name})])


_CHANGE_NUMBERS = itertools.count(1)


def change_latency(url: str, changes: int, *, seed: int) -> dict[str, Any]:
    """How long a change of one connection takes to reach its charon (issue 18, item 3:
    within 100 ms): ``changes`` times, on an idle server, ModifyVpnConnectionAttribute
    (signed) of a random connection's IkeLifetime, then ``list-conns`` of that connection
    over the gateway's VICI socket every 2 ms until what charon holds differs. Timed from
    just before the request is sent; the API's own answer time is reported beside it."""
    import random
    import socket

    import vici

    if changes <= 0:
        return {}
    rng = random.Random(seed)
    pairs = connection_gateways(url)
    reach: list[float] = []
    answered: list[float] = []
    missed = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(changes):
            connection_id, gateway_id = rng.choice(pairs)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(Path("/run/vpngw") / LAB / f"g-{gateway_id}" / "charon.vici"))
            session = vici.Session(sock)
            try:
                before = loaded_settings(session, connection_id)
                # A value no earlier change of this run set (variants share the database:
                # the same value again would change nothing, and nothing would show).
                lifetime = 3600 + next(_CHANGE_NUMBERS)
                query = ab.signed(
                    "ModifyVpnConnectionAttribute",
                    {
                        "RegionId": ab.REGION,
                        "VpnConnectionId": connection_id,
                        "IkeConfig": json.dumps({"IkeLifetime": lifetime}),
                    },
                )
                t0 = time.perf_counter()
                response = client.post("/", params=query)
                answered.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"Modify answered {response.status_code}: {response.text[:300]}")
                deadline = t0 + 10.0
                while loaded_settings(session, connection_id) == before:
                    if time.perf_counter() > deadline:
                        missed += 1
                        break
                    time.sleep(0.002)
                else:
                    reach.append(time.perf_counter() - t0)
            finally:
                sock.close()
            time.sleep(rng.uniform(0.3, 0.7))  # not in step with the passes
    return {
        "changes": changes,
        "missed_10s": missed,
        "reach": ab.summarize(reach),
        "reach_ms": [round(x * 1000, 1) for x in reach],
        "within_100ms": sum(1 for x in reach if x <= 0.1),
        "api": ab.summarize(answered),
    }


def report(result: dict[str, Any]) -> None:
    cpu, mem, describe = result["cpu"], result["memory"], result["describe"]
    line = (
        f"[idle]   serve tree {cpu['serve_tree_cores']:.4f} cores, charons {cpu['charons_cores']:.4f}, "
        f"serve tree RSS {mem['serve_tree_rss_mib']} MiB, charon PSS {mem['charon_pss_mib_mean']} MiB "
        f"(other load {cpu['machine_other_cores']} cores)"
    )
    if describe:
        line += (
            f"; describe p50/p99 {describe['p50_ms']}/{describe['p99_ms']} ms, off beside it "
            f"{describe['off']['p50_ms']}/{describe['off']['p99_ms']} ms: p99 x{describe['p99_ratio']} "
            f"(p99 of each {WINDOW} calls: {describe.get('window_p99_ms')} / {describe['off'].get('window_p99_ms')})"
        )
    changes = result.get("changes")
    if changes:
        line += (
            f"; a change reaches charon p50/p90/p99/max {changes['reach']['p50_ms']}/"
            f"{changes['reach']['p90_ms']}/{changes['reach']['p99_ms']}/{changes['reach']['max_ms']} ms "
            f"({changes['within_100ms']}/{changes['changes']} within 100 ms, API answer p50 "
            f"{changes['api']['p50_ms']} ms)"
        )
    print(line, flush=True)


def change_table(sizes: list[dict[str, Any]]) -> str:
    lines = [
        "| gateways x conns | variant | round | changes | reached charon p50 / p90 / p99 / max ms "
        "| within 100 ms | API answer p50 / p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        for r in size["rounds"]:
            c = r.get("changes")
            if not c:
                continue
            reach, api = c["reach"], c["api"]
            lines.append(
                f"| {size['gateways']} x {size['per_gateway']} | {r['variant']} | {r['round'] + 1} | {c['changes']} "
                f"| {reach['p50_ms']:.1f} / {reach['p90_ms']:.1f} / {reach['p99_ms']:.1f} / {reach['max_ms']:.1f} "
                f"| {c['within_100ms']} | {api['p50_ms']:.1f} / {api['p99_ms']:.1f} |"
            )
    return "\n".join(lines)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def table(sizes: list[dict[str, Any]]) -> str:
    lines = [
        "| gateways x conns | variant | serve tree CPU (cores) | charons CPU (cores) "
        "| Describe p1 p50 / p99 ms | the API alone beside it, p50 / p99 ms | p99 ratio (per round) "
        "| serve RSS MiB | data-plane process RSS MiB | charon RSS / PSS MiB (mean) | other load (cores) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        for variant in dict.fromkeys(r["variant"] for r in size["rounds"]):
            rows = [r for r in size["rounds"] if r["variant"] == variant]
            described = [r["describe"] for r in rows if r["describe"]]
            child_rss = [
                c.get("Rss", 0) / 1024
                for r in rows
                for c in r["memory"]["children"][:1]
                if c.get("Rss", 0) > 10240
            ]
            cells = [
                f"{size['gateways']} x {size['per_gateway']}",
                variant,
                f"{median([r['cpu']['serve_tree_cores'] for r in rows]):.4f}",
                f"{median([r['cpu']['charons_cores'] for r in rows]):.3f}",
                (
                    f"{median([d['p50_ms'] for d in described]):.1f} / {median([d['p99_ms'] for d in described]):.1f}"
                    if described
                    else "-"
                ),
                (
                    f"{median([d['off']['p50_ms'] for d in described]):.1f} / "
                    f"{median([d['off']['p99_ms'] for d in described]):.1f}"
                    if described
                    else "-"
                ),
                ", ".join(f"{d['p99_ratio']:.2f}" for d in described) or "-",
                f"{median([r['memory']['serve'].get('Rss', 0) / 1024 for r in rows]):.0f}",
                f"{median(child_rss):.0f}" if child_rss else "-",
                (
                    f"{median([r['memory']['charon_rss_mib_mean'] for r in rows]):.1f} / "
                    f"{median([r['memory']['charon_pss_mib_mean'] for r in rows]):.1f}"
                    if variant != "off"
                    else "-"
                ),
                f"{median([r['cpu']['machine_other_cores'] for r in rows]):.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateways", default="100", help="fleet sizes, comma-separated (default 100)")
    parser.add_argument("--per-gateway", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--calls", type=int, default=300, help="DescribeVpnConnections calls per variant")
    parser.add_argument("--settle-timeout-s", type=float, default=600.0)
    parser.add_argument(
        "--warmup-s", type=float, default=20.0, help="after every charon runs, before the settle check"
    )
    parser.add_argument(
        "--changes",
        type=int,
        default=40,
        help="ModifyVpnConnectionAttribute calls per data-plane variant, each timed until charon holds it",
    )
    parser.add_argument(
        "--baseline",
        metavar="[LABEL=]REV",
        action="append",
        default=[],
        help="also measure the data plane of this git revision (repeatable; label default 'baseline')",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--table", type=Path, metavar="JSON", help="print the table of an earlier run and stop"
    )
    args = parser.parse_args()
    if args.table:
        sizes_read = json.loads(args.table.read_text())["sizes"]
        print(table(sizes_read))
        print()
        print(change_table(sizes_read))
        return 0
    if os.geteuid() != 0 or not shutil.which("swanctl"):
        print("idle_bench: needs root and strongSwan (the lab data plane)", file=sys.stderr)
        return 2
    # A SIGTERM stops the servers and removes the lab too (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="vpngw-idle-"))
    ab.use_source(work)  # the working tree's src, copied: edits during the run do not mix in
    sources = {"on": ab.SOURCE["src"]}
    for given in args.baseline:
        label, _, rev = given.rpartition("=")
        label = label or "baseline"
        sources[label] = export_source(rev, work / label)
        added = add_missing_migrations(sources[label], sources["on"])
        if added:
            print(f"[idle] {label}: migrations of the working tree added: {', '.join(added)}", flush=True)
    started = datetime.datetime.now(datetime.UTC)
    sizes: list[dict[str, Any]] = []
    try:
        for gateways in (int(x) for x in args.gateways.split(",")):
            sizes.append(run_size(args, gateways, sources, work))
            subprocess.run(
                [sys.executable, "-m", "vpngw.cli.main", "lab", "down", "--lab", LAB],
                env={**os.environ, "PYTHONPATH": sources["on"]},
                capture_output=True,
                check=False,
            )
    finally:
        subprocess.run(
            [sys.executable, "-m", "vpngw.cli.main", "lab", "down", "--lab", LAB],
            env={**os.environ, "PYTHONPATH": sources["on"]},
            capture_output=True,
            check=False,
        )
        report = {
            "started": started.isoformat(timespec="seconds"),
            "machine": ab.machine(),
            "source": ab.SOURCE,
            "baseline": args.baseline,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "sizes": sizes,
        }
        out = args.out or ab.BENCH_DIR / "results" / f"idle-{started:%Y-%m-%d-%H%M}.json"
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"[idle] raw numbers: {out}", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    print(table(sizes))
    print()
    print(change_table(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
