"""``vpngw node check``: what a host still lacks before it may run gateways (docs/hosts.md).

Each check prints ``ok`` or ``MISSING`` with what to do; the exit status is 1 when
something is missing. Nothing is changed on the host.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Callable
from functools import partial

from vpngw.cli.clock import check_clock
from vpngw.cli.database import admin_db_url, prepare_database
from vpngw.config import settings_from_env
from vpngw.dataplane.charon.daemon import missing_prerequisites
from vpngw.dataplane.nodes.placement import LeaseTiming
from vpngw.dataplane.system import netns
from vpngw.resealing import check_opens
from vpngw.sealing import SealingError, load_sealer

Check = Callable[[], str | None]  # None: fine; else what is missing and how to fix it


def _sysctl(namespace: str | None, name: str) -> str:
    command = ["sysctl", "-n", name]
    if namespace:
        command = ["ip", "netns", "exec", namespace, *command]
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()


def _forwarding(namespace: str | None) -> str | None:
    if _sysctl(namespace, "net.ipv4.ip_forward") == "1":
        return None
    return "set it in /etc/sysctl.d/90-vpngw.conf and run `sysctl --system`"


def _interface(namespace: str | None, option: str, ifname: str | None) -> str | None:
    if not ifname:
        return f"not given ({option} IF)"
    return None if netns.link_exists(namespace, ifname) else "no such interface (ip link)"


def checks(args: argparse.Namespace) -> list[tuple[str, Check]]:
    host = args.host_netns
    return [
        ("root, strongSwan's charon, iproute2, /dev/net/tun", missing_prerequisites),
        ("net.ipv4.ip_forward = 1", partial(_forwarding, host)),
        (f"the uplink {args.uplink or ''}".strip(), partial(_interface, host, "--uplink", args.uplink)),
        (
            f"the VPC-side interface {args.vpc_side or ''}".strip(),
            partial(_interface, host, "--vpc-side", args.vpc_side),
        ),
        ("the fleet's master key and database", partial(_key_and_database, args)),
    ]


def _key_and_database(args: argparse.Namespace) -> str | None:
    try:
        sealer, _where = load_sealer(create=False)
        db = prepare_database(settings_from_env(admin_db_url(args.db)))
    except (SealingError, ValueError) as error:
        return str(error)
    except Exception as error:  # the database is unreachable, refuses the role, ...
        return f"cannot open the database: {type(error).__name__}: {str(error).splitlines()[0]}"
    try:
        check_opens(db, sealer)
        check_clock(db, LeaseTiming(lease_s=args.lease_s, renew_s=args.renew_s))
    except (SealingError, ValueError) as error:
        return str(error)
    finally:
        db.dispose()
    return None


def cmd_node_check(args: argparse.Namespace) -> int:
    missing = 0
    for what, check in checks(args):
        problem = check()
        if problem is None:
            print(f"ok       {what}")
        else:
            missing += 1
            print(f"MISSING  {what}: {problem}")
    print("vpngw node check: " + (f"{missing} thing(s) missing" if missing else "this host can run gateways"))
    return 1 if missing else 0


def add_check_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    check = sub.add_parser("check", help="print what this host lacks to run gateways (changes nothing)")
    check.add_argument("--uplink", default=os.environ.get("VPNGW_UPLINK"), metavar="IF")
    check.add_argument("--vpc-side", default=os.environ.get("VPNGW_VPC_SIDE"), metavar="IF")
    check.add_argument("--host-netns", default=None, help=argparse.SUPPRESS)
    check.add_argument("--renew-s", type=float, default=1.0, help=argparse.SUPPRESS)
    check.set_defaults(run=cmd_node_check)
    return check
