"""The cold build of a gateway on the host backend (root, strongSwan): what one of the
spread's 30 gateways costs a node before IKE, measured alone (docs/benchmarks.md, "Nodes").

One lab node (a namespace playing a host), ``--gateways`` gateways of 10 connections
each, built one after another as an agent's pass builds them: the backend's network
sync, then charon's start. Reports wall time per step and how many processes each
step spawned (``ip``, ``sysctl``, ``arping``, charon), then removes everything.

    .venv/bin/python bench/gateway_build_bench.py [--gateways 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpngw.dataplane.backends.host.network import HostConfig, HostNetwork  # noqa: E402
from vpngw.dataplane.backends.lab import node as lab_node  # noqa: E402
from vpngw.dataplane.backends.lab.network import LabNetwork  # noqa: E402
from vpngw.dataplane.charon import daemon as charon_daemon  # noqa: E402
from vpngw.dataplane.spec.from_store import GatewayState, connection_spec  # noqa: E402
from vpngw.dataplane.system import netns  # noqa: E402

PSK = "bench-psk-0123456789"
IKE = {
    "Psk": PSK,
    "IkeVersion": "ikev2",
    "IkeMode": "main",
    "IkeEncAlg": "aes",
    "IkeAuthAlg": "sha1",
    "IkePfs": "group2",
    "IkeLifetime": 86400,
    "LocalId": "",
    "RemoteId": "",
}
IPSEC = {"IpsecEncAlg": "aes", "IpsecAuthAlg": "sha1", "IpsecPfs": "group2", "IpsecLifetime": 86400}

spawned: Counter[str] = Counter()
_real_run, _real_popen_init = subprocess.run, subprocess.Popen.__init__


def _name(argv: Any) -> str:
    words = [str(w) for w in (argv if isinstance(argv, list | tuple) else [argv])]
    if words[:2] == ["ip", "netns"] and len(words) > 4 and words[2] == "exec":
        return f"ip netns exec {Path(words[4]).name}"
    return Path(words[0]).name


def _counting_popen_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
    spawned[_name(args)] += 1
    _real_popen_init(self, args, *rest, **kwargs)


def state_of(index: int, per_gateway: int) -> GatewayState:
    internet_ip = f"198.19.{200 + index // 200}.{index % 200 + 1}"
    connections = tuple(
        connection_spec(
            connection_id=f"vco-bench{index:03d}{k:02d}",
            gateway_ip=internet_ip,
            customer_ip=f"198.19.{index + 1}.{k}",
            local_subnet=f"10.{index + 1}.{k}.0/24",
            remote_subnet=f"172.16.{index * 16 + k}.0/24",
            ike_config=IKE,
            ipsec_config=IPSEC,
            effect_immediately=True,
            enable_dpd=True,
            enable_nat_traversal=True,
        )
        for k in range(1, per_gateway + 1)
    )
    return GatewayState(
        f"vpn-bench{index:03d}", internet_ip, connections, vpc_next_hop=f"169.254.51.{index + 10}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateways", type=int, default=5)
    parser.add_argument("--per-gateway", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    reason = charon_daemon.missing_prerequisites()
    if reason:
        print(f"gateway_build_bench: {reason}", file=sys.stderr)
        return 2
    states = [state_of(index, args.per_gateway) for index in range(args.gateways)]
    suffix = netns.unique_suffix()
    lab = LabNetwork(f"vg-{suffix}", Path(tempfile.mkdtemp(prefix="vg", dir="/tmp")) / f"vg-{suffix}")
    node = lab_node.create_node(lab, f"vg-{suffix}-n1", vpc_subnets=("10.0.0.0/8",))
    state_dir = Path(tempfile.mkdtemp(prefix="vgs", dir="/tmp"))
    backend = HostNetwork(
        HostConfig(node.name, lab_node.UPLINK, lab_node.VPC_SIDE, state_dir, host_namespace=node.namespace)
    )
    subprocess.Popen.__init__ = _counting_popen_init  # type: ignore[method-assign]
    network_ms: list[float] = []
    charon_ms: list[float] = []
    processes: list[dict[str, int]] = []
    try:
        for index, state in enumerate(states):
            spawned.clear()
            backend.hold_internet_ip(state.vpn_gateway_id, state.internet_ip, 4.5)
            backend.hold_vpc_next_hop(state.vpn_gateway_id, str(state.vpc_next_hop), 4.5)
            t0 = time.perf_counter()
            backend.sync_gateway(state)
            t1 = time.perf_counter()
            charon_daemon.start_gateway_charon(backend.gateway(state.vpn_gateway_id))
            t2 = time.perf_counter()
            network_ms.append((t1 - t0) * 1000)
            charon_ms.append((t2 - t1) * 1000)
            processes.append(dict(spawned))
            print(
                f"gateway {index}: network {network_ms[-1]:.0f} ms, charon {charon_ms[-1]:.0f} ms, "
                f"processes {dict(spawned)}",
                flush=True,
            )
        # A warm pass over the same gateways (nothing to change): what a re-check costs.
        spawned.clear()
        t0 = time.perf_counter()
        for state in states:
            backend.sync_gateway(state)
        warm_ms = (time.perf_counter() - t0) * 1000 / args.gateways
        warm_processes = sum(spawned.values()) / args.gateways
    finally:
        subprocess.Popen.__init__ = _real_popen_init  # type: ignore[method-assign]
        for state in states:
            backend.remove_gateway(state.vpn_gateway_id)
        lab_node.remove_node(lab, node.name)
        lab.teardown()
    result = {
        "gateways": args.gateways,
        "connections_per_gateway": args.per_gateway,
        "network_ms_median": round(statistics.median(network_ms), 1),
        "charon_ms_median": round(statistics.median(charon_ms), 1),
        "processes_per_cold_build": round(statistics.median(sum(p.values()) for p in processes), 1),
        "warm_sync_ms": round(warm_ms, 1),
        "warm_sync_processes": round(warm_processes, 1),
        "processes_first_gateway": processes[0] if processes else {},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
