#!/usr/bin/env bash
# Installs the system packages the test suite needs when they are missing:
# the PostgreSQL server binaries (the suite starts its own server from them) and, as root,
# strongSwan with swanctl, iproute2, ping and arping (gateways moving between nodes) for the data-plane tests (real charons in
# network namespaces that the tests create and remove), and Debian's Chromium for the console tests (Playwright drives it;
# Playwright's own browser download is not reachable here).
set -euo pipefail

apt_updated=0
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_postgres() {
    command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null
}

if ! have_postgres; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "PostgreSQL server binaries are missing; install the 'postgresql' package (needs root)." >&2
        exit 1
    fi
    echo "installing PostgreSQL from Debian's packages ..."
    apt_install postgresql
fi

if [ "$(id -u)" -eq 0 ]; then
    if [ ! -x /usr/lib/ipsec/charon ] || ! command -v swanctl >/dev/null 2>&1 \
        || ! command -v ip >/dev/null 2>&1 || ! command -v ping >/dev/null 2>&1 \
        || ! command -v arping >/dev/null 2>&1; then
        echo "installing strongSwan, iproute2, ping and arping from Debian's packages ..."
        apt_install strongswan-charon strongswan-swanctl libcharon-extra-plugins \
            libstrongswan-standard-plugins libstrongswan-extra-plugins iproute2 iputils-ping iputils-arping
    fi
    if [ ! -x /usr/bin/chromium ]; then
        echo "installing Chromium from Debian's packages (for the console tests) ..."
        apt_install chromium
    fi
else
    echo "not root: the data-plane tests (network namespaces, strongSwan) will be skipped"
    [ -x /usr/bin/chromium ] || echo "not root: chromium is missing, the console tests will be skipped"
fi

# As root, the suite runs PostgreSQL as the 'postgres' user (PostgreSQL refuses root).
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi
command -v runuser >/dev/null 2>&1 || { echo "runuser (util-linux) is missing" >&2; exit 1; }
echo "system packages: ok"
