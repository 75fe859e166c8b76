#!/usr/bin/env bash
# Issue 18's benchmarks, as run for docs/benchmarks.md's "final run" (root, strongSwan, PostgreSQL binaries):
#   LOADGEN_MOTO_PYTHON=/path/to/moto-venv/bin/python bench/final_runs.sh [spread|moto|growth|pages|idle|all]
# Results: bench/results/$FINAL_TAG-*.json (default final-<date>), logs in /tmp/final-bench.
set -uo pipefail
cd "$(dirname "$0")/.."
R=bench/results; T=${FINAL_TAG:-final-$(date -u +%Y-%m-%d)}; L=/tmp/final-bench; mkdir -p $L
export LOADGEN_MOTO_PYTHON=${LOADGEN_MOTO_PYTHON:?an interpreter with moto[server], in its own virtualenv}
stamp(){ echo "== $(date -u +%H:%M:%S) $* (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a $L/steps.log; }
step=${1:-all}
if [[ $step == all || $step == spread ]]; then
  for i in 1 2 3 4 5; do
    stamp "spread $i"
    flock ${BENCH_LOCK:-/tmp/vpngw-bench.lock} .venv/bin/python bench/nodes_bench.py --skip-failover --json $R/$T-spread-$i.json > $L/spread-$i.log 2>&1
  done
fi
if [[ $step == all || $step == moto ]]; then
  for mode in fill pair; do
    stamp "moto sqlite $mode"
    flock ${BENCH_LOCK:-/tmp/vpngw-bench.lock} bench/moto_pair.sh $R/$T-moto-sqlite-$mode.json --rounds ${SQLITE_ROUNDS:-5} -c 1,16 -d 3 --warmup 1 --no-cleanup --conn-mode $mode --max-gateways 4000 > $L/moto-sqlite-$mode.log 2>&1
  done
  for mode in fill pair; do
    stamp "moto workers2 $mode"
    flock ${BENCH_LOCK:-/tmp/vpngw-bench.lock} bench/moto_pair.sh $R/$T-moto-workers2-$mode.json --workers 2 --rounds 2 -c 1,16 -d 3 --warmup 1 --no-cleanup --conn-mode $mode --max-gateways 4000 > $L/moto-workers2-$mode.log 2>&1
  done
  PGW=$(mktemp -d /tmp/pgbench-final-XXXX); chown postgres: $PGW
  PGB=$(dirname $(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)); PORT=${PG_PORT:-55432}
  runuser -u postgres -- $PGB/initdb -D $PGW/data -U postgres --auth=trust -E UTF8 > $L/pg.log 2>&1
  if ! runuser -u postgres -- $PGB/pg_ctl -D $PGW/data -o "-p $PORT -k $PGW -c listen_addresses=127.0.0.1 -c max_connections=200" -l $PGW/log -w start >> $L/pg.log 2>&1; then
    stamp "PostgreSQL did not start (its log: $L/pg-server.log)"  # once, port 55432 taken: PG_PORT=...
  fi
  for mode in fill pair; do
    stamp "moto postgresql $mode"
    runuser -u postgres -- $PGB/psql -h 127.0.0.1 -p $PORT -U postgres -c "CREATE DATABASE b_$mode" >> $L/pg.log 2>&1
    flock ${BENCH_LOCK:-/tmp/vpngw-bench.lock} bench/moto_pair.sh $R/$T-moto-postgresql-$mode.json --db postgresql+psycopg://postgres@127.0.0.1:$PORT/b_$mode --rounds 2 -c 1,16 -d 3 --warmup 1 --no-cleanup --conn-mode $mode --max-gateways 4000 > $L/moto-postgresql-$mode.log 2>&1
  done
  cp $PGW/log $L/pg-server.log 2>/dev/null
  runuser -u postgres -- $PGB/pg_ctl -D $PGW/data -m fast -w stop >> $L/pg.log 2>&1; rm -rf $PGW
fi
if [[ $step == all || $step == growth ]]; then
  stamp "fill growth"
  flock ${BENCH_LOCK:-/tmp/vpngw-bench.lock} bench/fill_growth.sh 6 > $L/fill-growth.log 2>&1
  cp $L/fill-growth.log $R/$T-fill-growth.txt
fi
if [[ $step == all || $step == pages ]]; then
  stamp "api_bench pages"
  flock ${BENCH_LOCK:-/tmp/vpngw-bench.lock} .venv/bin/python bench/api_bench.py --wait-idle 20 --out $R/$T-api.json > $L/api.log 2>&1
fi
if [[ $step == all || $step == idle ]]; then
  stamp "idle 10,100 x 10"
  flock ${BENCH_LOCK:-/tmp/vpngw-bench.lock} .venv/bin/python bench/idle_bench.py --gateways 10,100 --per-gateway 10 --rounds 1 --idle-s 60 --calls 1000 --changes 40 --out $R/$T-idle-100x10.json > $L/idle-100.log 2>&1
  stamp "idle 1000 x 1"
  flock ${BENCH_LOCK:-/tmp/vpngw-bench.lock} .venv/bin/python bench/idle_bench.py --gateways 1000 --per-gateway 1 --rounds 1 --idle-s 90 --calls 1000 --changes 40 --out $R/$T-idle-1000x1.json > $L/idle-1000.log 2>&1
fi
stamp "done $step"
