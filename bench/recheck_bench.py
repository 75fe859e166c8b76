#!/usr/bin/env python
"""CPU of one network re-check of a lab gateway (issue 18, item 3 over the long run).

    flock /work/team/bench.lock .venv/bin/python bench/recheck_bench.py [--src OTHER/src] [--n 200]

Builds one lab gateway (its namespaces, WAN port, a connection's routes), then calls the
backend's ``sync_gateway`` on it ``--n`` times, as the reconciler's periodic re-check does
(every 22.5-30 minutes per gateway), and reports CPU per call: this process's (threads
included) and the processes it started and reaped (``ip``). ``--src`` runs another tree's
source (e.g. main before a change) for an A/B in one run. Root and iproute2 needed. The lab
is named ``rb-<random>`` and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time, tempfile
from pathlib import Path
from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.spec.from_store import GatewayState
import vpngw.dataplane.spec.from_store as fs
lab, n = sys.argv[1], int(sys.argv[2])
network = LabNetwork(lab, Path(tempfile.mkdtemp(prefix="rb-")) / lab)
state = GatewayState(vpn_gateway_id="vpn-rb", internet_ip="198.18.9.9", connections=(),
                     auto_routes=("172.16.0.0/24",))
try:
    network.prepare()
    network.sync_gateway(state)
    for _ in range(5):
        network.sync_gateway(state)
    def cpu():
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime
    s0, c0 = cpu(); t0 = time.perf_counter()
    for _ in range(n):
        network.sync_gateway(state)
    wall = time.perf_counter() - t0; s1, c1 = cpu()
    print(json.dumps({"calls": n, "wall_ms": wall / n * 1000, "self_cpu_ms": (s1 - s0) / n * 1000,
                      "children_cpu_ms": (c1 - c0) / n * 1000, "total_cpu_ms": (s1 - s0 + c1 - c0) / n * 1000}))
finally:
    network.teardown()
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--src", action="append", default=[], metavar="[LABEL=]SRC", help="another tree's src"
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("recheck_bench: needs root", file=sys.stderr)
        return 2
    sources = {"this": str(BENCH.parent / "src")}
    for given in args.src:
        label, _, src = given.rpartition("=")
        sources[label or "other"] = src
    results: dict[str, list[dict[str, float]]] = {label: [] for label in sources}
    for _ in range(args.rounds):
        for label, src in sources.items():
            lab = "rb-" + secrets.token_hex(3)
            done = subprocess.run(
                [sys.executable, "-c", CHILD, lab, str(args.n)],
                env={**os.environ, "PYTHONPATH": src},
                capture_output=True,
                text=True,
                check=True,
            )
            results[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(label, results[label][-1], flush=True)
    print("| tree | CPU per re-check, ms (median of rounds) | of it in `ip` processes | wall ms |")
    print("|---|---:|---:|---:|")
    for label, rows in results.items():
        med = sorted(rows, key=lambda r: r["total_cpu_ms"])[len(rows) // 2]
        print(
            f"| {label} | {med['total_cpu_ms']:.2f} | {med['children_cpu_ms']:.2f} | {med['wall_ms']:.2f} |"
        )
    print(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
