#!/usr/bin/env bash
# CreateVpnConnection side by side with moto, in one run of ../shared/perf/loadgen.py --pair
# (interleaved rounds: moto create, vpngw create, moto noop, vpngw noop).
#
#   bench/moto_pair.sh OUT.json [--db URL] [--workers N] [loadgen args...]
#
# Starts `vpngw serve --no-dataplane` (this tree's .venv) on a free port with a fresh SQLite file
# (or the EMPTY database of --db), a benchmark key pair and quotas high enough for fill mode,
# runs loadgen with --server-pid for every vpngw process, then stops the server.
# Needs: LOADGEN_MOTO_PYTHON (an interpreter with moto[server], in its own virtualenv: moto is
# never a dependency of vpngw) and LOADGEN (default ../shared/perf/loadgen.py next to the repo).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$1
shift
db=""
workers=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --db) db=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        *) break ;;
    esac
done
loadgen=${LOADGEN:-$here/../shared/perf/loadgen.py}
source "$here/bench/bench_server.sh"
start_bench_server "$here" "$db" "$workers"
pids=(--server-pid "$server")
for child in $(cat /proc/"$server"/task/*/children 2>/dev/null); do
    pids+=(--server-pid "$child")
    for grandchild in $(cat /proc/"$child"/task/*/children 2>/dev/null); do pids+=(--server-pid "$grandchild"); done
done
echo "vpngw serve --workers $workers on $db (pids ${pids[*]}), commit $(git -C "$here" rev-parse --short HEAD)"
VPNGW_ENDPOINT=http://127.0.0.1:$port VPNGW_AK=$VPNGW_ACCESS_KEY_ID VPNGW_SECRET=$VPNGW_ACCESS_KEY_SECRET \
    python3 "$loadgen" --pair --json "$out" "${pids[@]}" "$@"
