"""Data-plane benchmarks (root, strongSwan): time to a working tunnel, and a cold start.

1. **Create to first echo.** From the moment a signed CreateVpnConnection
   (EffectImmediately=true, AutoConfigRoute=true) leaves the client to the first ICMP
   echo reply from the peer's subnet at a VPC-side address, through the tunnel. vpngw
   runs as ``vpngw serve`` would (uvicorn on a loopback port, the reconciler in
   process, SQLite); the peer is a lab peer that only responds.
   **The floor**: the same tunnel between two namespaces brought up with ``swanctl``
   alone (``--load-conns`` of a conn with ``start_action=start``), timed the same way.
   Median of 20 each; the target is vpngw <= 3 x the floor.
2. **Cold start.** 100 connections over 10 gateways are stored while no data plane runs
   (their peers already up); then the reconciler starts with no namespace and no charon
   of the lab, and the time to all 100 ``Status=ipsec_sa_established`` (read from the
   store) is measured. Target: 5 s.

The echo is a raw ICMP socket inside the source namespace (vpngw's prober code), one
request per millisecond, so the resolution is about 1 ms.

    .venv/bin/python bench/dataplane_bench.py [--runs 20] [--json bench/results/dataplane-<date>.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import prepared  # noqa: E402
from tests.support.api import signed_query  # noqa: E402
from tests.support.postgres import free_port  # noqa: E402

from vpngw.api.app import build_app  # noqa: E402
from vpngw.config import Settings  # noqa: E402
from vpngw.dataplane.backends.lab import charon_profile as lab_profile  # noqa: E402
from vpngw.dataplane.backends.lab import peer as lab_peer  # noqa: E402
from vpngw.dataplane.backends.lab.network import LabNetwork  # noqa: E402
from vpngw.dataplane.charon import daemon as charon_daemon  # noqa: E402
from vpngw.dataplane.core.reconciler import Reconciler  # noqa: E402
from vpngw.dataplane.observe.prober import ProbeSocketError, echo_request, open_icmp_socket, parse_echo_reply  # noqa: E402
from vpngw.dataplane.spec.render import render_connection, render_shared_key  # noqa: E402
from vpngw.dataplane.system import netns  # noqa: E402
from vpngw.store.engine import Database  # noqa: E402
from vpngw.store.models import VpnConnection  # noqa: E402

REGION = "cn-qingdao-env66-d01"
PSK = "bench-pre-shared-key"
SWANCTL = "/usr/sbin/swanctl"


# -- measuring ----------------------------------------------------------------------


def first_reply_after(
    t0: float, namespace: str, source: str, destination: str, timeout_s: float = 10.0
) -> float:
    """Seconds from ``t0`` (perf_counter) to the first echo reply; one request per ms.

    The VPC side gets its hosts when the reconciler has run, so the socket is retried too.
    """
    deadline = t0 + timeout_s
    while True:
        try:
            sock = open_icmp_socket(namespace, source)
            break
        except ProbeSocketError:
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.001)
    identifier, sequence = os.getpid() & 0xFFFF, 0
    try:
        while time.perf_counter() < deadline:
            sequence = (sequence + 1) & 0xFFFF
            try:
                sock.sendto(echo_request(identifier, sequence), (destination, 0))
            except OSError:
                pass  # no route yet
            until = time.perf_counter() + 0.001
            while (left := until - time.perf_counter()) > 0:
                readable, _w, _x = select.select([sock], [], [], left)
                if not readable:
                    break
                reply = parse_echo_reply(sock.recv(2048))
                if reply and reply[0] == destination and reply[1] == identifier:
                    return time.perf_counter() - t0
        raise TimeoutError(f"no echo reply from {destination} within {timeout_s} s")
    finally:
        sock.close()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "runs": len(ordered),
    }


# -- the floor: swanctl alone -------------------------------------------------------


def swanctl_conf(name: str, local: str, remote: str, local_ts: str, remote_ts: str, start: bool) -> str:
    child_start = "start" if start else "none"
    return f"""connections {{
  {name} {{
    version = 2
    local_addrs = {local}
    remote_addrs = {remote}
    proposals = aes128-sha256-modp2048
    local {{ auth = psk
      id = {local} }}
    remote {{ auth = psk
      id = {remote} }}
    children {{
      {name} {{ local_ts = {local_ts}
        remote_ts = {remote_ts}
        esp_proposals = aes128-sha256
        start_action = {child_start} }}
    }}
  }}
}}
secrets {{
  ike-1 {{ id-a = {local}
    id-b = {remote}
    secret = {PSK} }}
}}
"""


def measure_floor(runs: int, work: Path) -> list[float]:
    suffix = netns.unique_suffix()
    a, b = f"vpngw-t-{suffix}f", f"vpngw-t-{suffix}p"
    samples: list[float] = []
    charons: list[charon_daemon.Charon] = []
    try:
        for namespace in (a, b):
            netns.create_namespace(namespace)
        netns.add_veth_pair(a, f"vb{suffix}f", b, f"vb{suffix}p")
        netns.add_address(a, f"vb{suffix}f", "198.19.250.1/24")
        netns.add_address(b, f"vb{suffix}p", "198.19.250.2/24")
        netns.add_address(a, "lo", "10.1.1.1/32")
        netns.add_address(b, "lo", "10.10.1.1/32")
        netns.run("ip", "-n", a, "route", "add", "local", "10.1.1.0/24", "dev", "lo")
        netns.run("ip", "-n", b, "route", "add", "local", "10.10.1.0/24", "dev", "lo")
        charon_a = charon_daemon.start_charon(a, work / "fa", lab_profile.strongswan_conf)
        charon_b = charon_daemon.start_charon(b, work / "fb", lab_profile.strongswan_conf)
        charons += [charon_a, charon_b]
        (work / "b.conf").write_text(
            swanctl_conf("t", "198.19.250.2", "198.19.250.1", "10.10.1.0/24", "10.1.1.0/24", False)
        )
        (work / "a.conf").write_text(
            swanctl_conf("t", "198.19.250.1", "198.19.250.2", "10.1.1.0/24", "10.10.1.0/24", True)
        )
        (work / "empty.conf").write_text("connections {}\nsecrets {}\n")
        swanctl(charon_b, "--load-all", "--file", str(work / "b.conf"))
        swanctl(charon_a, "--load-creds", "--file", str(work / "a.conf"))
        for _ in range(runs):
            t0 = time.perf_counter()
            swanctl(charon_a, "--load-conns", "--file", str(work / "a.conf"))
            samples.append(first_reply_after(t0, a, "10.1.1.5", "10.10.1.7"))
            swanctl(charon_a, "--terminate", "--ike", "t")
            swanctl(charon_a, "--load-conns", "--file", str(work / "empty.conf"))
            time.sleep(0.2)
    finally:
        for charon in charons:
            charon_daemon.stop_charon(charon)
        for namespace in (a, b):
            netns.delete_namespace(namespace)
    return samples


def swanctl(charon: charon_daemon.Charon, *args: str) -> None:
    subprocess.run([SWANCTL, *args, "--uri", f"unix://{charon.vici_path}"], check=True, capture_output=True)


# -- vpngw --------------------------------------------------------------------------


class Client:
    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30)

    def call(self, action: str, **params: Any) -> dict[str, Any]:
        query = {
            "Action": action,
            "Version": "2016-04-28",
            "RegionId": REGION,
            **{k: str(v) for k, v in params.items()},
        }
        response = self.http.post("/", params=signed_query("POST", query))
        body: dict[str, Any] = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"{action}: {body}")
        return body


# One account makes every resource here: the per-account quotas do not apply to a benchmark.
BENCH_QUOTAS = {"quota_vpcs": 10**6, "quota_vpn_gateways": 10**6, "quota_customer_gateways": 10**6}


@contextmanager
def vpngw(
    work: Path, *, dataplane: bool, lab_name: str, db_file: Path | None = None
) -> Iterator[tuple[Client, Database, Reconciler | None, LabNetwork]]:
    settings = Settings(db_url=f"sqlite:///{db_file or work / 'vpngw.db'}", **BENCH_QUOTAS)
    db, authenticator = prepared(settings)
    network = LabNetwork(lab_name, work / lab_name)
    reconciler = Reconciler(db, authenticator.sealer, network) if dataplane else None
    if reconciler:
        reconciler.start()
    app = build_app(db, settings, authenticator, on_change=reconciler.wake if reconciler else None)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            httpx.get(base, timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    try:
        yield Client(base), db, reconciler, network
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if reconciler:
            reconciler.stop()
        db.dispose()


def measure_vpngw(runs: int, work: Path) -> list[float]:
    lab_name = f"vb-{netns.unique_suffix()}"
    samples: list[float] = []
    with vpngw(work, dataplane=True, lab_name=lab_name) as (client, _db, reconciler, network):
        assert reconciler is not None
        try:
            vpc = client.call("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
            gateway = client.call("CreateVpnGateway", VpcId=vpc, Bandwidth=10)["VpnGatewayId"]
            customer = client.call("CreateCustomerGateway", IpAddress="198.19.0.10")["CustomerGatewayId"]
            params = {
                "VpnGatewayId": gateway,
                "CustomerGatewayId": customer,
                "LocalSubnet": "10.1.1.0/24",
                "RemoteSubnet": "10.10.1.0/24",
                "EffectImmediately": "true",
                "AutoConfigRoute": "true",
                "IkeConfig": json.dumps(
                    {"IkeVersion": "ikev2", "IkeAuthAlg": "sha256", "IkePfs": "group14", "Psk": PSK}
                ),
                "IpsecConfig": json.dumps({"IpsecAuthAlg": "sha256", "IpsecPfs": "group14"}),
            }
            # The peer, configured once from a first connection's config; then that one goes.
            first = client.call("CreateVpnConnection", **params)["VpnConnectionId"]
            config = client.call("DownloadVpnConnectionConfig", VpnConnectionId=first)["VpnConnectionConfig"]
            client.call("DeleteVpnConnection", VpnConnectionId=first)
            lab_peer.create_peer(network, lab_peer.peer_from_download("bench", config))
            reconciler.wait_for_pass()
            peer_vici = str(network.peer_dir("bench") / "charon.vici")
            from vpngw.dataplane.charon.vici_client import ViciClient

            for _ in range(runs):
                t0 = time.perf_counter()
                connection = client.call("CreateVpnConnection", **params)["VpnConnectionId"]
                samples.append(first_reply_after(t0, network.names.vpc(gateway), "10.1.1.5", "10.10.1.7"))
                client.call("DeleteVpnConnection", VpnConnectionId=connection)
                reconciler.wait_for_pass()
                with ViciClient.connect(peer_vici, 5) as peer:
                    for sa in peer.list_sas():
                        peer.terminate(sa.name, force=True, timeout_ms=1000)
                time.sleep(0.2)
        finally:
            reconciler.stop()
            network.teardown()
    return samples


# -- cold start ---------------------------------------------------------------------


def measure_cold_start(work: Path, gateways: int = 10, per_gateway: int = 10) -> dict[str, Any]:
    lab_name = f"vc-{netns.unique_suffix()}"
    db_file = work / "cold.db"
    network = LabNetwork(lab_name, work / lab_name)
    peers: list[charon_daemon.Charon] = []
    try:
        with vpngw(work, dataplane=False, lab_name=lab_name, db_file=db_file) as (
            client,
            _db,
            _none,
            _network,
        ):
            configs: dict[int, list[dict[str, Any]]] = {}
            for g in range(1, gateways + 1):
                vpc = client.call("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
                gateway = client.call("CreateVpnGateway", VpcId=vpc, Bandwidth=10)["VpnGatewayId"]
                configs[g] = []
                for k in range(1, per_gateway + 1):
                    customer = client.call("CreateCustomerGateway", IpAddress=f"198.19.{g}.{k}")[
                        "CustomerGatewayId"
                    ]
                    connection = client.call(
                        "CreateVpnConnection",
                        VpnGatewayId=gateway,
                        CustomerGatewayId=customer,
                        LocalSubnet=f"10.{g}.{k}.0/24",
                        RemoteSubnet=f"172.{15 + g}.{k}.0/24",
                        EffectImmediately="true",
                        IkeConfig=json.dumps({"IkeVersion": "ikev2", "Psk": PSK}),
                    )["VpnConnectionId"]
                    configs[g].append(
                        client.call("DownloadVpnConnectionConfig", VpnConnectionId=connection)[
                            "VpnConnectionConfig"
                        ]
                    )
        network.ensure_wan()
        for g, group in configs.items():
            peers.append(start_multi_peer(network, f"cold{g}", group))
        settings = Settings(db_url=f"sqlite:///{db_file}", **BENCH_QUOTAS)
        db, authenticator = prepared(settings)
        reconciler = Reconciler(db, authenticator.sealer, network)
        total = gateways * per_gateway
        t0 = time.perf_counter()
        reconciler.start()
        up_at: float | None = None
        try:
            while time.perf_counter() - t0 < 60:
                with db.transaction(write=False) as session:
                    up = sum(
                        1 for c in session.query(VpnConnection).all() if c.status == "ipsec_sa_established"
                    )
                if up == total:
                    up_at = time.perf_counter() - t0
                    break
                time.sleep(0.05)
        finally:
            reconciler.stop()
            db.dispose()
        return {
            "connections": total,
            "gateways": gateways,
            "all_established_s": round(up_at, 2) if up_at else None,
        }
    finally:
        for charon in peers:
            charon_daemon.stop_charon(charon)
        network.teardown()


def start_multi_peer(network: LabNetwork, name: str, configs: list[dict[str, Any]]) -> charon_daemon.Charon:
    """One peer namespace answering for several customer gateways (one address each)."""
    specs = [
        lab_peer.peer_from_download(f"{name}-{n}", config).connection for n, config in enumerate(configs)
    ]
    charon = lab_peer.start_peer_site(
        network, name, [spec.local_addr for spec in specs], [s for spec in specs for s in spec.local_subnets]
    )
    with charon.client() as client:
        for n, spec in enumerate(specs):
            client.load_shared({**render_shared_key(spec), "id": f"psk-{n}"})
            client.load_conn(render_connection(spec))
    return charon


# -- main ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    reason = charon_daemon.missing_prerequisites()
    if reason:
        print(f"dataplane_bench: {reason}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="vb", dir="/tmp"))
    try:
        floor = summary(measure_floor(args.runs, work))
        print("floor (swanctl alone):", floor, flush=True)
        ours = summary(measure_vpngw(args.runs, work))
        print("vpngw (CreateVpnConnection):", ours, flush=True)
        cold = measure_cold_start(work)
        print("cold start:", cold, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = round(ours["median_ms"] / floor["median_ms"], 2)
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "create_to_first_echo": ours,
        "swanctl_floor": floor,
        "ratio": ratio,
        "cold_start": cold,
    }
    print(json.dumps(result, indent=2))
    target = args.json or ROOT / "bench" / "results" / f"dataplane-{datetime.date.today().isoformat()}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
