#!/usr/bin/env python
"""Markdown rows from loadgen --pair JSON files (bench/moto_pair.sh):

bench/pair_table.py LABEL=FILE.json ...
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    print(
        "| run | C | moto create ok/s | vpngw create ok/s | moto noop | vpngw noop | create vpngw/moto (range) "
        "| vpngw create/noop | vpngw create p50 / p99 ms | load avg |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for item in argv:
        label, path = item.split("=", 1)
        data = json.load(open(path))
        load = data["machine"]["loadavg"][0], data["machine_after"]["loadavg"][0]
        for summary in data["pair_summary"]:
            ok, ratio, spread = summary["median_ok_per_s"], summary["median_ratio"], summary["ratio_range"]
            low, high = spread["create vpngw/moto"]
            print(
                f"| {label} | {summary['concurrency']} | {ok['moto create']:.0f} | {ok['vpngw create']:.0f} "
                f"| {ok['moto noop']:.0f} | {ok['vpngw noop']:.0f} "
                f"| **{ratio['create vpngw/moto']:.2f}** ({low:.2f}–{high:.2f}) | {ratio['vpngw create/noop']:.2f} "
                f"| {summary['median_p50_ms']['vpngw create']:.1f} / {summary['median_p99_ms']['vpngw create']:.1f} "
                f"| {load[0]:.1f} → {load[1]:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
