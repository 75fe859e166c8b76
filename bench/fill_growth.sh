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
# (docs/benchmarks.md, "the C=1 fill rounds").
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
iterations=${1:-6}
loadgen=${LOADGEN:-$here/../shared/perf/loadgen.py}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export VPNGW_ACCESS_KEY_ID=LTAIbench$RANDOM$RANDOM VPNGW_ACCESS_KEY_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
export VPNGW_MASTER_KEY="bench:$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')"
export VPNGW_QUOTA_VPN_GATEWAYS=100000 VPNGW_QUOTA_VPCS=100000 VPNGW_QUOTA_CUSTOMER_GATEWAYS=100000
(cd "$work" && exec "$here/.venv/bin/vpngw" serve --no-dataplane --port "$port" --log-level warning \
    --db "sqlite:///$work/vpngw.db" > "$work/serve.log" 2>&1) &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 120); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.5
done
sleep 1
pid=$(pgrep -f "vpngw serve --no-dataplane --port $port" | head -1)
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
