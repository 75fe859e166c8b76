# Sourced by bench/moto_pair.sh and bench/fill_growth.sh (bash): one `vpngw serve --no-dataplane`
# of this tree's .venv for loadgen, on a free port, with a benchmark key pair (exported for
# loadgen), quotas high enough for fill mode, and its log and SQLite file in a temporary folder.
#
#   start_bench_server HERE DB_URL WORKERS   (DB_URL empty: a fresh SQLite file in the folder)
#
# Sets `work` (the folder), `port`, `server` (the serve process) and `db`; an EXIT trap stops
# the server and removes the folder. Returns once the API answers.
start_bench_server() {
    local here=$1 workers=$3
    work=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    db=${2:-sqlite:///$work/vpngw.db}
    VPNGW_ACCESS_KEY_ID=LTAIbench$RANDOM$RANDOM
    VPNGW_ACCESS_KEY_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
    VPNGW_MASTER_KEY="bench:$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')"
    export VPNGW_ACCESS_KEY_ID VPNGW_ACCESS_KEY_SECRET VPNGW_MASTER_KEY
    export VPNGW_QUOTA_VPN_GATEWAYS=100000 VPNGW_QUOTA_VPCS=100000 VPNGW_QUOTA_CUSTOMER_GATEWAYS=100000
    (cd "$work" && exec "$here/.venv/bin/vpngw" serve --no-dataplane --port "$port" --log-level warning \
        --db "$db" --workers "$workers" > "$work/serve.log" 2>&1) &
    server=$!
    trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
    for _ in $(seq 1 120); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.5
    done
    sleep 1  # every worker up
}
