#!/usr/bin/env bash
# Installs the system packages the test suite needs when they are missing:
# the PostgreSQL server binaries (the suite starts its own server from them).
set -euo pipefail

have_postgres() {
    command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null
}

if ! have_postgres; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "PostgreSQL server binaries are missing; install the 'postgresql' package (needs root)." >&2
        exit 1
    fi
    echo "installing PostgreSQL from Debian's packages ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi

# As root, the suite runs PostgreSQL as the 'postgres' user (PostgreSQL refuses root).
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi
command -v runuser >/dev/null 2>&1 || { echo "runuser (util-linux) is missing" >&2; exit 1; }
echo "system packages: ok"
