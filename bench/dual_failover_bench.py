"""Dual-tunnel failover (root, strongSwan, PostgreSQL binaries), beside the single-tunnel one.

Three lab nodes (``vpngw lab node``), three real ``vpngw agent --backend host`` processes on
one PostgreSQL database. Two connections in the same run:

* a dual-tunnel connection to a lab peer configured from the two-tunnel
  DownloadVpnConnectionConfig document (both tunnels started, dualtunnel.md's customer
  settings), its two addresses on two nodes;
* a single-tunnel connection (EffectImmediately) to a second peer, as bench/nodes_bench.py.

Each run makes the peer send on tunnel 1 (a rekey from the peer: its newest SA is the one it
sends on), waits a random 1-2 s (a random phase against the lease renewals), then kills the
node holding tunnel 1 as a machine dies (``kill -9`` of its agent and of every process of
its gateways' namespaces, its uplink down), and measures the outage of a 1 ms ICMP stream:
the last reply before the kill to the first after it. Then it waits until tunnel 1 is back
on another node (the connection dual again), brings the dead node back, and runs again.
The single-tunnel runs do the same to the single-tunnel gateway's holder.

The nodes share one VPC segment (``vpngw lab node create --shared-vpc``), whose hosts route
each peer's subnet to its gateway's VpcNextHop (set once). Both directions are measured
separately: customer -> VPC is the peer pinging a VPC host, VPC -> customer a VPC host
pinging the peer (each stream's own outage: its requests and replies take whatever path
the gateways give them; asymmetric paths work).

    .venv/bin/python bench/dual_failover_bench.py [--runs 10] [--db postgresql] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import random
import select
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from nodes_bench import database, fleet_of  # noqa: E402
from tests.nodes.dual import DualConnection, both_up_apart, make_dual_connection, tunnels_seen  # noqa: E402
from tests.nodes.fleet import Fleet, NodeSite  # noqa: E402
from tests.nodes.test_vpc_next_hop import neighbour_mac, next_hop_holders  # noqa: E402
from tests.support.api import Api, build_world, connection_params  # noqa: E402

from vpngw.dataplane.backends.lab import peer as lab_peer  # noqa: E402
from vpngw.dataplane.charon import daemon as charon_daemon  # noqa: E402
from vpngw.dataplane.charon.vici_client import ViciClient  # noqa: E402
from vpngw.dataplane.observe.prober import echo_request, open_icmp_socket, parse_echo_reply  # noqa: E402
from vpngw.dataplane.system import netns  # noqa: E402

VPC_HOST = "10.1.1.5"
DUAL_PEER, DUAL_HOST, DUAL_CUSTOMER = "cpe", "10.10.2.7", "198.19.0.11"
SINGLE_PEER, SINGLE_HOST, SINGLE_CUSTOMER = "one", "10.10.1.7", "198.19.0.10"
# Each kill's outage is read from the replies within this long after it.
WINDOW_S = 12.0
IKEV2 = json.dumps({"IkeVersion": "ikev2", "IkeEncAlg": "aes", "IkeAuthAlg": "sha256", "IkePfs": "group14"})


class Pinger:
    """One echo request per millisecond from ``source`` in ``namespace``; keeps the
    arrival time (perf_counter) of every reply."""

    def __init__(self, namespace: str, source: str, destination: str) -> None:
        self.sock = open_icmp_socket(namespace, source)
        self.destination = destination
        self.replies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._ping()
        except Exception as error:  # a silent stream would read as an outage
            print(f"pinger {self.destination} died: {error!r}", flush=True)
            raise

    def _ping(self) -> None:
        identifier, sequence = (os.getpid() + id(self)) & 0xFFFF, 0
        while not self._stop.is_set():
            sequence = (sequence + 1) & 0xFFFF
            try:
                self.sock.sendto(echo_request(identifier, sequence), (self.destination, 0))
            except OSError:
                pass
            until = time.perf_counter() + 0.001
            while (left := until - time.perf_counter()) > 0:
                readable, _w, _x = select.select([self.sock], [], [], left)
                if not readable:
                    break
                reply = parse_echo_reply(self.sock.recv(2048))
                if reply and reply[0] == self.destination and reply[1] == identifier:
                    self.replies.append(time.perf_counter())

    def outage_around(self, t0: float, window_s: float = WINDOW_S) -> float:
        """The longest silence of this stream around a kill at ``t0``: the largest gap
        between two consecutive replies from the last reply before ``t0`` to
        ``t0 + window_s`` (waited for). Replies still arriving while the node is being
        killed count as before; a later glitch of the same failover (the re-placed tunnel
        drawing the traffic) counts too. Raises if the stream never came back."""
        time.sleep(max(0.0, t0 + window_s - time.perf_counter()))
        replies = list(self.replies)
        before = [t for t in replies if t <= t0]
        during = [t for t in replies if t0 < t <= t0 + window_s]
        if not during:
            raise TimeoutError(f"no reply from {self.destination} within {window_s} s of the kill")
        points = [before[-1] if before else t0, *during]
        return max(later - earlier for earlier, later in zip(points, points[1:], strict=False))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def peer_sends_on(fleet: Fleet, tunnel: int) -> None:
    with ViciClient.connect(str(fleet.lab.peer_run_dir(DUAL_PEER) / "charon.vici"), 5) as client:
        client.rekey(f"peer-{DUAL_PEER}-{tunnel}")


class ReplacementWatch:
    """When tunnel 1 is up again on another node than ``gone`` (polled from the kill on)."""

    def __init__(self, fleet: Fleet, dual: DualConnection, gone: str, t0: float) -> None:
        self.at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(fleet, dual, gone, t0), daemon=True)
        self._thread.start()

    def _run(self, fleet: Fleet, dual: DualConnection, gone: str, t0: float) -> None:
        if netns.wait_until(
            functools.partial(replaced_elsewhere, fleet, dual, gone), timeout_s=60, interval_s=0.05
        ):
            self.at = time.perf_counter() - t0

    def wait(self) -> float:
        self._thread.join(70)
        if self.at is None:
            raise RuntimeError("tunnel 1 was not re-placed within 60 s")
        return self.at


def replaced_elsewhere(fleet: Fleet, dual: DualConnection, gone: str) -> bool:
    """Tunnel 1 is up again, on a node other than ``gone``."""
    tunnel = tunnels_seen(fleet.db_url, dual)[1]
    return tunnel.holder not in (None, gone) and tunnel.status == "ipsec_sa_established"


def site_named(sites: list[NodeSite], name: str | None) -> NodeSite:
    return next(site for site in sites if site.name == name)


def come_back(fleet: Fleet, site: NodeSite) -> None:
    fleet.revive(site)
    if not netns.wait_until(lambda: not site.gateway_namespaces(), timeout_s=90):
        raise RuntimeError(f"node {site.name} kept an address it no longer holds")


def outages(pingers: dict[str, Pinger], t0: float) -> dict[str, float]:
    """Each stream's outage around the kill at ``t0`` (inf: not back within the window)."""
    found: dict[str, float] = {}
    for direction, pinger in pingers.items():
        try:
            found[direction] = pinger.outage_around(t0)
        except TimeoutError as error:
            print(f"  {direction}: {error}", flush=True)
            found[direction] = float("inf")
    return found


def dual_runs(
    fleet: Fleet, sites: list[NodeSite], dual: DualConnection, next_hop: str, runs: int
) -> dict[str, Any]:
    segment = sites[0].vpc_namespace
    pingers = {
        "customer_to_vpc": Pinger(fleet.lab.names.peer(DUAL_PEER), DUAL_HOST, VPC_HOST),
        "vpc_to_customer": Pinger(segment, VPC_HOST, DUAL_HOST),
    }
    samples: dict[str, list[float]] = {direction: [] for direction in pingers}
    replaced: list[float] = []
    moves: list[tuple[str, str, str]] = []
    try:
        for _ in range(runs):
            if not netns.wait_until(lambda: both_up_apart(fleet.db_url, dual), timeout_s=60, interval_s=0.2):
                raise RuntimeError(f"the connection is not dual again: {tunnels_seen(fleet.db_url, dual)}")
            time.sleep(1.0)  # the two nodes have heard each other; the next hop is back
            peer_sends_on(fleet, 1)
            seen = tunnels_seen(fleet.db_url, dual)
            victim = site_named(sites, seen[1].holder)
            time.sleep(random.uniform(1.0, 2.0))
            t0 = time.perf_counter()
            fleet.die(victim)
            watch = ReplacementWatch(fleet, dual, victim.name, t0)
            time.sleep(max(0.0, t0 + 1.5 - time.perf_counter()))
            seen_at_1_5 = (next_hop_holders(sites, next_hop), neighbour_mac(segment, next_hop))
            for direction, outage in outages(pingers, t0).items():
                samples[direction].append(outage)
                if outage == float("inf"):
                    print(f"  not back: {tunnels_seen(fleet.db_url, dual)}", flush=True)
                    print(f"  next hop on: {next_hop_holders(sites, next_hop)}", flush=True)
                    print(netns.ip_json("-n", segment, "neigh", "show", next_hop), flush=True)
            replaced.append(watch.wait())
            after = tunnels_seen(fleet.db_url, dual)
            moves.append((victim.name, str(after[1].holder), str(after[2].holder)))
            print(
                f"dual failover {len(replaced)}: customer -> VPC {samples['customer_to_vpc'][-1] * 1000:.0f} ms, "
                f"VPC -> customer {samples['vpc_to_customer'][-1] * 1000:.0f} ms; tunnel 1 {victim.name} -> "
                f"{after[1].holder} (up again after {replaced[-1]:.2f} s), tunnel 2 on {after[2].holder}; "
                f"at +1.5 s the next hop was on {seen_at_1_5[0]}, the VPC sent to {seen_at_1_5[1]}",
                flush=True,
            )
            if os.environ.get("DUAL_BENCH_KEEP_LOGS") and max(s[-1] for s in samples.values()) > 2.0:
                keep = Path(os.environ["DUAL_BENCH_KEEP_LOGS"]) / f"run{len(replaced)}"
                keep.mkdir(parents=True, exist_ok=True)
                for log in [
                    fleet.lab.peer_dir(DUAL_PEER) / "charon.log",
                    *Path("/tmp").glob("vn*/*/g-*/charon.log"),
                ]:
                    if log.exists():
                        (keep / log.parent.name).mkdir(exist_ok=True)
                        (keep / log.parent.name / "charon.log").write_bytes(log.read_bytes())
            come_back(fleet, victim)
    finally:
        for pinger in pingers.values():
            pinger.stop()
    return {
        "runs": runs,
        **{f"{direction}_ms": [round(s * 1000, 1) for s in values] for direction, values in samples.items()},
        **{
            f"{direction}_median_ms": round(statistics.median(values) * 1000, 1)
            for direction, values in samples.items()
        },
        **{f"{direction}_max_ms": round(max(values) * 1000, 1) for direction, values in samples.items()},
        "tunnel_replaced_s": [round(s, 2) for s in replaced],
        "tunnel_replaced_median_s": round(statistics.median(replaced), 2),
        "moves": moves,
    }


def single_runs(fleet: Fleet, sites: list[NodeSite], api: Api, runs: int) -> dict[str, Any]:
    place = build_world(api, customer_ip=SINGLE_CUSTOMER)
    connection_id = api.ok(
        "CreateVpnConnection",
        **connection_params(
            place,
            LocalSubnet="10.1.1.0/24",
            RemoteSubnet="10.10.1.0/24",
            EffectImmediately="true",
            AutoConfigRoute="true",
            IkeConfig=IKEV2,
        ),
    )["VpnConnectionId"]
    config = api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection_id)["VpnConnectionConfig"]
    lab_peer.create_peer(fleet.lab, lab_peer.peer_from_download(SINGLE_PEER, config))
    segment = sites[0].vpc_namespace
    next_hop = str(api.ok("DescribeVpnGateway", VpnGatewayId=place.vpn_gateway_id)["VpcNextHop"])
    netns.wait_until(lambda: bool(next_hop_holders(sites, next_hop)), timeout_s=30)
    netns.run("ip", "-n", segment, "route", "replace", "10.10.1.0/24", "via", next_hop)

    def holder() -> str:
        return str(api.ok("DescribeVpnGateway", VpnGatewayId=place.vpn_gateway_id)["NodeName"])

    pingers = {
        "customer_to_vpc": Pinger(fleet.lab.names.peer(SINGLE_PEER), SINGLE_HOST, VPC_HOST),
        "vpc_to_customer": Pinger(segment, VPC_HOST, SINGLE_HOST),
    }
    samples: dict[str, list[float]] = {direction: [] for direction in pingers}
    skipped = 0
    try:
        for _ in range(runs):
            if not netns.wait_until(
                lambda: all(
                    p.replies and time.perf_counter() - p.replies[-1] < 0.1 for p in pingers.values()
                ),
                timeout_s=60,
            ):
                skipped += 1
                print(
                    "  single-tunnel connection not answering both ways before the kill: "
                    f"{ {d: len(p.replies) for d, p in pingers.items()} } replies; next hop {next_hop} on "
                    f"{next_hop_holders(sites, next_hop)}; gateway on {holder()} (the remaining runs skipped)",
                    flush=True,
                )
                break
            victim = site_named(sites, holder())
            time.sleep(random.uniform(1.0, 2.0))
            t0 = time.perf_counter()
            fleet.die(victim)
            for direction, outage in outages(pingers, t0).items():
                samples[direction].append(outage)
            print(
                f"single failover {len(samples['customer_to_vpc'])}: customer -> VPC "
                f"{samples['customer_to_vpc'][-1] * 1000:.0f} ms, VPC -> customer "
                f"{samples['vpc_to_customer'][-1] * 1000:.0f} ms ({victim.name} -> {holder()})",
                flush=True,
            )
            come_back(fleet, victim)
    finally:
        for pinger in pingers.values():
            pinger.stop()
    return {
        "runs": len(samples["customer_to_vpc"]),
        "not_answering_before_a_kill": skipped,
        **{f"{direction}_ms": [round(s * 1000, 1) for s in values] for direction, values in samples.items()},
        **{
            f"{direction}_median_ms": round(statistics.median(values) * 1000, 1) if values else None
            for direction, values in samples.items()
        },
        **{
            f"{direction}_max_ms": round(max(values) * 1000, 1) if values else None
            for direction, values in samples.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", choices=("dual", "single"), help="one of the two measures")
    args = parser.parse_args()
    reason = charon_daemon.missing_prerequisites()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as work, database(args.db, Path(work)) as db_url:
        with fleet_of(db_url, ("10.1.1.0/24",)) as (fleet, api, _db):
            sites = [fleet.add_node(i, shared_vpc=True) for i in (1, 2, 3)]
            for site in sites:
                fleet.start_agent(site)
            dual = make_dual_connection(api, db_url, remote_subnet="10.10.2.0/24", customer_ip=DUAL_CUSTOMER)
            lab_peer.create_peer(fleet.lab, lab_peer.peer_from_download(DUAL_PEER, dual.peer_config))
            next_hop = str(api.ok("DescribeVpnGateway", VpnGatewayId=dual.vpn_gateway_id)["VpcNextHop"])
            netns.run("ip", "-n", sites[0].vpc_namespace, "route", "add", "10.10.2.0/24", "via", next_hop)
            result = {
                "benchmark": "dual_failover",
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.node()} {os.cpu_count()} cpus",
                "db": args.db,
                "lease_s": fleet.lease_s,
                "dual": dual_runs(fleet, sites, dual, next_hop, args.runs) if args.only != "single" else None,
                "single": single_runs(fleet, sites, api, args.runs) if args.only != "dual" else None,
            }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
