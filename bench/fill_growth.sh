#!/usr/bin/env bash
# Does a create over HTTP get dearer as loadgen's fill mode fills the database? One
# `vpngw serve --no-dataplane` (this tree's .venv, a fresh SQLite file) is driven ITERATIONS
# times in a row by ../shared/perf/loadgen.py at C=1: a fill-mode create run (each run adds its
# own 20 VPN gateways, then as many as it needs, 10 connections each) and a no-op run, 3 s
# each after 1 s of warm-up; every line gives ok/s, the server's CPU share, the database
# file's size and the server's RSS (KiB) after the iteration.
#
#   flock /tmp/vpngw-bench.lock bench/fill_growth.sh [ITERATIONS]      (default 6)
#
# No moto: what this shows is whether vpngw alone slows down from one iteration to the next
# (docs/benchmarks.md, "Item 1 at C=1: why it is missed").
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
iterations=${1:-6}
loadgen=${LOADGEN:-$here/../shared/perf/loadgen.py}
source "$here/bench/bench_server.sh"
start_bench_server "$here" "" 1
pid=$server
echo "vpngw serve pid $pid, commit $(git -C "$here" rev-parse --short HEAD), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$iterations"); do
    line="iteration $i:"
    for target in vpngw vpngw-noop; do
        out=$(python3 "$loadgen" --target $target --endpoint "http://127.0.0.1:$port" --ak "$VPNGW_ACCESS_KEY_ID" \
            --secret "$VPNGW_ACCESS_KEY_SECRET" -c 1 -d 3 --warmup 1 --no-cleanup --server-pid "$pid" \
            --max-gateways 4000 2>&1)
        rate=$(grep -oE '[0-9.]+ ok/s' <<< "$out" | head -1)
        cpu=$(grep -oE 'server cpu [0-9.]+%' <<< "$out" | head -1)
        line="$line $target $rate ($cpu);"
    done
    echo "$line db $(stat -c %s "$work/vpngw.db") bytes, rss $(ps -o rss= -p "$pid") KiB"
done
