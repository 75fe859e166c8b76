"""Several-node benchmarks (root, strongSwan, PostgreSQL binaries): failover and spread.

1. **Failover.** Three lab nodes (``vpngw lab node``: a namespace playing a host each),
   three real ``vpngw agent --backend host`` processes on one PostgreSQL database (the
   suite's own server, started here), one gateway with an always-up connection to a lab
   peer. Each run kills the node that holds the gateway as a machine dies: ``kill -9``
   of its agent and of every process in its gateways' namespaces, and its uplink down.
   The clock runs from the kill to the first echo reply through the tunnel on the new
   node (the peer pings a VPC host once per millisecond). Each kill falls at a random
   moment between two lease renewals, as a real failure does. Then the node comes back
   (its agent restarted: it must stay out) and the next run kills the new holder. Median
   of 10 beside the lease time. Targets: under 10 s with a 5 s lease, and at most the lease
   time + 3 x the create-to-first-echo floor (docs/benchmarks.md).
2. **Spread.** 300 connections over 30 gateways are stored with no agent running (their
   peers already up); then three agents start at once, and the time to all 300
   ``Status=ipsec_sa_established`` (read from the store) is measured. Target: 5 s.
   The agents run as installed (``pip install`` writes their modules' bytecode): their
   source is compiled first (``--no-precompile``: as this machine finds it, where
   PYTHONDONTWRITEBYTECODE=1 makes every agent compile ~80 modules at every start). Each
   run also reports when each agent printed "is up" and the CPU it had spent by then
   (its start-up, before any tunnel). ``--baseline-src DIR/src --spread-runs N``: an A/B
   in one run, alternating the agents between that checkout's vpngw and this one's.

    .venv/bin/python bench/nodes_bench.py [--runs 10] [--db sqlite] [--json FILE]
    .venv/bin/python bench/nodes_bench.py --skip-failover --spread-runs 3 --baseline-src /tmp/base/src
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import func, select
from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dataplane_bench import PSK, first_reply_after, start_multi_peer  # noqa: E402
from tests.conftest import prepared  # noqa: E402
from tests.nodes.fleet import Fleet, NodeSite  # noqa: E402
from tests.support.api import Api, build_world, connection_params  # noqa: E402
from tests.support.postgres import start_postgres  # noqa: E402

from vpngw.api.app import build_app  # noqa: E402
from vpngw.config import Settings  # noqa: E402
from vpngw.dataplane.backends.lab import peer as lab_peer  # noqa: E402
from vpngw.dataplane.backends.lab.network import LabNetwork  # noqa: E402
from vpngw.dataplane.backends.lab.node import UPLINK  # noqa: E402
from vpngw.dataplane.charon import daemon as charon_daemon  # noqa: E402
from vpngw.dataplane.system import netns  # noqa: E402
from vpngw.store import leases as lease_store  # noqa: E402
from vpngw.store.engine import Database  # noqa: E402
from vpngw.store.models import VpnConnection  # noqa: E402

PEER_HOST = "10.10.1.7"
VPC_HOST = "10.1.1.5"


# The PostgreSQL server of the run in progress (its postmaster's pid), to count its CPU.
POSTMASTER: list[int] = []


@contextmanager
def database(kind: str, work: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{work / 'nodes.db'}"
        return
    server = start_postgres()
    try:
        POSTMASTER[:] = [int((server.datadir / "postmaster.pid").read_text().split()[0])]
        name = "b_" + uuid.uuid4().hex[:10]
        with DatabaseJanitor(user="postgres", host="127.0.0.1", port=server.port, dbname=name, password=None):
            yield f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{name}"
    finally:
        POSTMASTER.clear()
        server.stop()


def postgres_cpu_s() -> float:
    """CPU seconds of this run's PostgreSQL server so far: its postmaster, the backends it
    has reaped and the live ones (the agents' pooled connections); 0 on SQLite."""
    if not POSTMASTER:
        return 0.0
    postmaster = POSTMASTER[0]
    spent = sum(process_cpu_s(postmaster).values())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(words[1]) == postmaster:
            spent += (int(words[11]) + int(words[12])) / os.sysconf("SC_CLK_TCK")
    return spent


@contextmanager
def fleet_of(db_url: str, subnets: tuple[str, ...]) -> Iterator[tuple[Fleet, Api, Database]]:
    # One account makes every gateway here: the per-account quotas do not apply to a benchmark.
    settings = Settings(
        db_url=db_url, quota_vpcs=10**6, quota_vpn_gateways=10**6, quota_customer_gateways=10**6
    )
    db, authenticator = prepared(settings)
    lab = f"vb-{netns.unique_suffix()}"
    fleet = Fleet(LabNetwork(lab, Path(f"/tmp/vb{netns.unique_suffix()}") / lab), db_url, subnets)
    try:
        with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
            yield fleet, Api(client), db
    finally:
        fleet.teardown()
        db.dispose()


def node_of(api: Api, gateway_id: str) -> str:
    return str(api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)["NodeName"])


def die(fleet: Fleet, site: NodeSite) -> None:
    """The node goes as a machine would: every process at once, and off the network."""
    fleet.kill_agent(site)
    for namespace in site.gateway_namespaces():
        for pid in netns.namespace_pids(namespace):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    netns.run("ip", "-n", site.node.namespace, "link", "set", UPLINK, "down")


def come_back(fleet: Fleet, site: NodeSite) -> None:
    netns.run("ip", "-n", site.node.namespace, "link", "set", UPLINK, "up")
    fleet.start_agent(site)
    if not netns.wait_until(lambda: not site.gateway_namespaces(), timeout_s=20):
        raise RuntimeError(f"node {site.name} kept a gateway it no longer holds")


def measure_failover(db_url: str, runs: int) -> dict[str, Any]:
    with fleet_of(db_url, ("10.1.1.0/24",)) as (fleet, api, _db):
        sites = [fleet.add_node(i) for i in (1, 2, 3)]
        for site in sites:
            fleet.start_agent(site)
        place = build_world(api)
        connection_id = api.ok(
            "CreateVpnConnection",
            **connection_params(
                place,
                LocalSubnet="10.1.1.0/24",
                EffectImmediately="true",
                AutoConfigRoute="true",
                IkeConfig=json.dumps(
                    {"IkeVersion": "ikev2", "IkeEncAlg": "aes", "IkeAuthAlg": "sha256", "IkePfs": "group14"}
                ),
            ),
        )["VpnConnectionId"]
        config = api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection_id)["VpnConnectionConfig"]
        lab_peer.create_peer(fleet.lab, lab_peer.peer_from_download("cpe", config))
        peer_ns = fleet.lab.names.peer("cpe")
        first_reply_after(time.perf_counter(), peer_ns, PEER_HOST, VPC_HOST, timeout_s=30)
        samples: list[float] = []
        moves: list[tuple[str, str]] = []
        for _ in range(runs):
            holder = node_of(api, place.vpn_gateway_id)
            site = next(s for s in sites if s.name == holder)
            # A real failure falls anywhere between two renewals: a random phase (a fixed
            # pause after the previous run would always kill just after the same renewal).
            time.sleep(random.uniform(1.0, 2.0))
            t0 = time.perf_counter()
            die(fleet, site)
            samples.append(first_reply_after(t0, peer_ns, PEER_HOST, VPC_HOST, timeout_s=30))
            moves.append((holder, node_of(api, place.vpn_gateway_id)))
            print(
                f"failover {len(samples)}: {samples[-1]:.2f} s ({moves[-1][0]} -> {moves[-1][1]})", flush=True
            )
            come_back(fleet, site)
        return {
            "lease_s": fleet.lease_s,
            "runs": runs,
            "samples_s": [round(s, 3) for s in samples],
            "median_s": round(statistics.median(samples), 3),
            "min_s": round(min(samples), 3),
            "max_s": round(max(samples), 3),
            "moves": moves,
        }


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores, /proc/stat)."""
    fields = [int(word) for word in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> dict[str, float]:
    """A process's own CPU seconds and its waited-for children's (its ``ip`` commands)."""
    words = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(words[11]) + int(words[12])) / tick
    children = (int(words[13]) + int(words[14])) / tick
    return {"own": round(own, 2), "children": round(children, 2)}


def charon_cpu_s(sites: list[NodeSite], lab_state: Path) -> dict[str, float]:
    """CPU seconds of this run's live charons: the gateways' (under the nodes' state
    directories) and the lab peers' (under the lab's)."""
    spent = {"gateway_charons": 0.0, "peer_charons": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "charon":
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
            words = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        conf = next(
            (e[len(b"STRONGSWAN_CONF=") :].decode() for e in environ if e.startswith(b"STRONGSWAN_CONF=")), ""
        )
        cpu = (int(words[11]) + int(words[12])) / tick
        if any(conf.startswith(str(site.state_dir)) for site in sites):
            spent["gateway_charons"] += cpu
        elif conf.startswith(str(lab_state)):
            spent["peer_charons"] += cpu
    return spent


def start_profilers(sites: list[NodeSite], directory: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy (on PATH or beside this Python) sampling every agent, all its threads, until
    :func:`stop_profilers`: one ``<node>.txt`` of collapsed stacks each (flamegraph input;
    ``--gil`` off, idle off, so what is counted is CPU)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(site.process.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(directory / f"{site.name}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for site in sites
        if site.process is not None
    ]


def stop_profilers(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output as it stops
    for spy in spies:
        spy.wait(30)


def precompile(source: Path, *, enabled: bool) -> None:
    """Write the bytecode of the vpngw package under ``source`` (``__pycache__``, ignored by
    git), as ``pip install`` does for an installed agent (docs/hosts.md): without it, and
    with PYTHONDONTWRITEBYTECODE=1 (this machine's environment), each agent compiles ~80
    modules from source at every start, CPU the spread's three agents share two cores for."""
    if enabled:
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(source / "vpngw")],
            check=True,
            stdout=subprocess.DEVNULL,
        )


def measure_spread(
    db_url: str,
    gateways: int = 30,
    per_gateway: int = 10,
    *,
    timeout_s: float = 120.0,
    keep_logs: Path | None = None,
    profile: Path | None = None,
    cprofile: Path | None = None,
    agent_src: Path | None = None,
) -> dict[str, Any]:
    subnets = tuple(f"10.{g}.0.0/16" for g in range(1, gateways + 1))
    with fleet_of(db_url, subnets) as (fleet, api, db):
        fleet.agent_src = agent_src
        if cprofile is not None:
            cprofile.mkdir(parents=True, exist_ok=True)
            fleet.agent_cprofile = cprofile
        sites = [fleet.add_node(i) for i in (1, 2, 3)]
        peers: list[charon_daemon.Charon] = []
        gateway_ids: list[str] = []
        try:
            for g in range(1, gateways + 1):
                vpc = api.ok("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
                gateway = api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=10)["VpnGatewayId"]
                gateway_ids.append(gateway)
                configs = []
                for k in range(1, per_gateway + 1):
                    customer = api.ok("CreateCustomerGateway", IpAddress=f"198.19.{g}.{k}")[
                        "CustomerGatewayId"
                    ]
                    connection = api.ok(
                        "CreateVpnConnection",
                        VpnGatewayId=gateway,
                        CustomerGatewayId=customer,
                        LocalSubnet=f"10.{g}.{k}.0/24",
                        RemoteSubnet=f"172.{16 + g // 16}.{(g % 16) * 16 + k}.0/24",
                        EffectImmediately="true",
                        IkeConfig=json.dumps({"IkeVersion": "ikev2", "Psk": PSK}),
                    )["VpnConnectionId"]
                    configs.append(
                        api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection)[
                            "VpnConnectionConfig"
                        ]
                    )
                peers.append(start_multi_peer(fleet.lab, f"s{g}", configs))
            total = gateways * per_gateway
            busy0, bench0 = machine_busy_s(), time.process_time()
            charons0 = charon_cpu_s(sites, fleet.lab.state_dir)
            postgres0 = postgres_cpu_s()
            t0 = time.perf_counter()
            for site in sites:
                fleet.start_agent(site)
            spies = start_profilers(sites, profile) if profile is not None else []
            up_at: float | None = None
            marks: dict[str, float] = {}
            timeline: list[tuple[float, int, int, int]] = []
            printed = -1.0
            started_cpu: list[float] = []
            # When each agent printed "is up" (imports, database, backend, reconciler
            # started: its start-up before any tunnel) and the CPU it had spent by then.
            up_lines: dict[str, tuple[float, float]] = {}
            while time.perf_counter() - t0 < timeout_s:
                for site in sites:
                    if site.name not in up_lines and site.process and " is up;" in fleet.log_of(site):
                        up_lines[site.name] = (
                            round(time.perf_counter() - t0, 2),
                            process_cpu_s(site.process.pid)["own"],
                        )
                with db.transaction(write=False) as session:
                    # A count, not the rows: the poller must not take the CPU it measures.
                    up = (
                        session.scalar(
                            select(func.count()).where(VpnConnection.status == "ipsec_sa_established")
                        )
                        or 0
                    )
                    now_ms = int(time.time() * 1000)
                    registered = len(lease_store.nodes(session))
                    if "all_nodes_registered_s" not in marks and registered == len(sites):
                        marks["all_nodes_registered_s"] = round(time.perf_counter() - t0, 2)
                        # What starting cost each agent (imports, database, first round).
                        started_cpu = [
                            process_cpu_s(site.process.pid)["own"] for site in sites if site.process
                        ]
                    held = lease_store.holders(session, gateway_ids, now_ms=now_ms)
                    if "all_gateways_leased_s" not in marks and len(held) == gateways:
                        marks["all_gateways_leased_s"] = round(time.perf_counter() - t0, 2)
                elapsed = time.perf_counter() - t0
                if up and "first_established_s" not in marks:
                    marks["first_established_s"] = round(elapsed, 2)
                if up >= total // 2 and "half_established_s" not in marks:
                    marks["half_established_s"] = round(elapsed, 2)
                if not timeline or timeline[-1][1:] != (registered, len(held), up):
                    timeline.append((round(elapsed, 2), registered, len(held), up))
                if elapsed - printed >= 1.0:
                    printed = elapsed
                    print(
                        f"  {elapsed:5.2f} s: {registered} nodes, {len(held)} gateways leased, "
                        f"{up}/{total} established",
                        flush=True,
                    )
                if up == total:
                    up_at = time.perf_counter() - t0
                    break
                time.sleep(0.05)
            elapsed_s = time.perf_counter() - t0
            cpu = {
                "machine_busy_cores": round((machine_busy_s() - busy0) / elapsed_s, 2),
                "agents_cpu_s": [process_cpu_s(site.process.pid) for site in sites if site.process],
                "agents_cpu_at_registration_s": started_cpu,
                "agents_up_s": [up_lines[site.name][0] for site in sites if site.name in up_lines],
                "agents_cpu_at_up_s": [up_lines[site.name][1] for site in sites if site.name in up_lines],
                "bench_cpu_s": round(time.process_time() - bench0, 2),
                "postgres_cpu_s": round(postgres_cpu_s() - postgres0, 2),
                **{
                    f"{kind}_cpu_s": round(spent - charons0.get(kind, 0.0), 2)
                    for kind, spent in charon_cpu_s(sites, fleet.lab.state_dir).items()
                },
            }
            stop_profilers(spies)
            if cprofile is not None:
                for site in sites:
                    fleet.stop_agent(site)  # cProfile writes its file as the agent exits
            if keep_logs is not None:
                keep_logs.mkdir(parents=True, exist_ok=True)
                for site in sites:
                    shutil.copy(site.state_dir / "agent.log", keep_logs / f"{site.name}.log")
            placed = Counter(node_of(api, gateway_id) for gateway_id in gateway_ids)
            return {
                "connections": total,
                "gateways": gateways,
                "nodes": len(sites),
                "all_established_s": round(up_at, 2) if up_at else None,
                **marks,
                "timeline": timeline,
                **cpu,
                "gateways_per_node": dict(placed),
            }
        finally:
            for charon in peers:
                charon_daemon.stop_charon(charon)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--skip-spread", action="store_true")
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--gateways", type=int, default=30, help="spread: gateways (10 connections each)")
    parser.add_argument("--spread-timeout", type=float, default=120.0)
    parser.add_argument("--keep-logs", type=Path, default=None, help="spread: copy the agents' logs here")
    parser.add_argument(
        "--profile", type=Path, default=None, help="spread: py-spy every agent, collapsed stacks here"
    )
    parser.add_argument(
        "--cprofile",
        type=Path,
        default=None,
        help="spread: every agent under cProfile (its main thread: the start-up), <node>.prof here",
    )
    parser.add_argument(
        "--agent-src",
        type=Path,
        default=None,
        help="spread: the agents run the vpngw package under this src folder (an A/B against "
        "another checkout: `git worktree add /tmp/base main`, then --agent-src /tmp/base/src)",
    )
    parser.add_argument("--spread-runs", type=int, default=1, help="spread: runs (each variant)")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="spread: an A/B in one run: runs alternate between the vpngw package under this src "
        "folder (`git worktree add --detach /tmp/base main`: /tmp/base/src) and this tree's",
    )
    parser.add_argument(
        "--no-precompile",
        action="store_true",
        help="spread: do not compile the agents' modules to bytecode first (measures the agents "
        "as the machine finds them: under PYTHONDONTWRITEBYTECODE=1 they compile every module "
        "at every start, which an installed agent never does)",
    )
    args = parser.parse_args()
    reason = charon_daemon.missing_prerequisites()
    if reason:
        print(f"nodes_bench: {reason}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="vb", dir="/tmp"))
    try:
        failover = None
        if not args.skip_failover:
            with database(args.db, work) as url:
                failover = measure_failover(url, args.runs)
            print("failover:", failover, flush=True)
        spreads: list[dict[str, Any]] = []
        if not args.skip_spread:
            this_src = args.agent_src or ROOT / "src"
            variants = [("this", this_src)]
            if args.baseline_src is not None:
                variants = [("baseline", args.baseline_src), *variants]
            for source in {src for _name, src in variants}:
                precompile(source, enabled=not args.no_precompile)
            for run in range(args.spread_runs):
                for variant, source in variants:
                    with database(args.db, work) as url:
                        spread = measure_spread(
                            url,
                            args.gateways,
                            timeout_s=args.spread_timeout,
                            keep_logs=args.keep_logs,
                            profile=args.profile,
                            cprofile=args.cprofile,
                            agent_src=None if source == ROOT / "src" else source,
                        )
                    spread = {"variant": variant, "agent_src": str(source), "run": run + 1, **spread}
                    print("spread:", spread, flush=True)
                    spreads.append(spread)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "database": args.db,
        # An installed agent (`pip install`, docs/hosts.md) has its modules' bytecode; an
        # agent run from this tree under PYTHONDONTWRITEBYTECODE=1 compiles ~80 of them at
        # every start (about 0.1 s of CPU each) unless the bench compiled them first.
        "agent_bytecode": "as found" if args.no_precompile else "precompiled",
        "failover": failover,
        "spread": spreads[0] if spreads else None,
        "spread_runs": spreads,
    }
    print(json.dumps(result, indent=2))
    target = args.json or ROOT / "bench" / "results" / f"nodes-{datetime.date.today().isoformat()}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
