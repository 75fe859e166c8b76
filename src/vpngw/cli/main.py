"""The ``vpngw`` command line: serve, migrate, accounts and keys, call, reseal."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from vpngw import accounts, files, logs
from vpngw.cli import lab as lab_cli
from vpngw.cli import nodes as nodes_cli
from vpngw.cli.database import admin_db_url, assign_vpc_next_hops, live_node_names, prepare_database
from vpngw.config import Settings, settings_from_env
from vpngw.sealing import Sealer, SealingError, load_sealer
from vpngw.store import backup, migrate
from vpngw.store.engine import Database

if TYPE_CHECKING:
    from vpngw.auth.authenticator import Authenticator
    from vpngw.cli.dataplane_process import DataplaneProcess


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="database URL (default: $VPNGW_DB, else sqlite:///./vpngw.db); "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )


def _open(args: argparse.Namespace) -> tuple[Settings, Database, Sealer]:
    settings = settings_from_env(args.db)
    sealer, _where = load_sealer()
    return settings, prepare_database(settings), sealer


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from_env(admin_db_url(args.db, create=args.create))
    migrate.upgrade(settings.db_url)
    print(f"vpngw: database {make_url(settings.db_url).render_as_string(hide_password=True)} is up to date")
    return 0


def configure_authentication(
    args: argparse.Namespace, settings: Settings, db: Database, sealer: Sealer, environ: dict[str, str]
) -> Authenticator:
    """The authenticator of ``vpngw serve``, and the bootstrap key pair of a first start:
    from ``VPNGW_ACCESS_KEY_ID``/``VPNGW_ACCESS_KEY_SECRET``, else written to
    ``--credentials-file`` when the default account has no key yet."""
    from vpngw.auth.authenticator import Authenticator

    if args.insecure_no_auth:
        print(
            "vpngw: WARNING: --insecure-no-auth: requests are NOT authenticated; every caller is the default account",
            flush=True,
        )
        return Authenticator(db, sealer, insecure_account_id=settings.default_account_id)
    key_id, secret = environ.get("VPNGW_ACCESS_KEY_ID"), environ.get("VPNGW_ACCESS_KEY_SECRET")
    if key_id and secret:
        accounts.ensure_key(db, sealer, settings.default_account_id, key_id, secret)
        print(f"vpngw: AccessKey {key_id} from the environment belongs to the default account", flush=True)
    elif args.credentials_file:
        pair = accounts.bootstrap_credentials_file(
            db, sealer, settings.default_account_id, Path(args.credentials_file)
        )
        if pair:
            print(
                f"vpngw: first start: a key pair for the default account is in {args.credentials_file} (mode 0600)",
                flush=True,
            )
    return Authenticator(db, sealer)


def cmd_serve(args: argparse.Namespace) -> int:
    from vpngw.api.app import build_app
    from vpngw.api.http_server import TlsCertificate, api_server
    from vpngw.cli.dataplane_process import ChildMetrics
    from vpngw.metrics import OperatorListener

    if args.insecure_no_auth and not _is_loopback(args.host):
        print(
            "vpngw: --insecure-no-auth is refused unless the server binds a loopback address", file=sys.stderr
        )
        return 2
    if args.workers < 1 or (args.workers > 1 and not args.no_dataplane):
        print(
            "vpngw: --workers N needs N >= 1, and more than one worker needs --no-dataplane (the data "
            "plane wakes on its own process's writes; run it as `vpngw agent` beside the workers)",
            file=sys.stderr,
        )
        return 2
    if args.workers > 1 and args.metrics:
        print("vpngw: --metrics is served by a single process: not with --workers", file=sys.stderr)
        return 2
    metrics_address = nodes_cli.listen_address(args.metrics) if args.metrics else None
    if bool(args.tls_cert) != bool(args.tls_key):
        print("vpngw: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    try:
        tls = TlsCertificate(args.tls_cert, args.tls_key) if args.tls_cert else None
    except (OSError, ssl.SSLError) as error:  # before anything starts
        print(f"vpngw: cannot load the TLS certificate and key: {error}", file=sys.stderr)
        return 2
    scheme = "https" if tls else "http"
    if tls is None and not _is_loopback(args.host):
        print(
            f"vpngw: WARNING: plain HTTP on {args.host}: signed requests and answers (pre-shared keys among "
            "them) cross the network in clear; give --tls-cert and --tls-key (docs/operations.md)",
            flush=True,
        )
    from vpngw.resealing import check_opens, sealed_samples

    settings = settings_from_env(args.db)
    db = prepare_database(settings)
    assign_vpc_next_hops(db, settings)
    try:
        # A new master key only for a database that holds no secret yet: on one that
        # does, it would open nothing (and an agent never makes one).
        sealer, key_source = load_sealer(create=not sealed_samples(db))
        check_opens(db, sealer)
    except SealingError as error:
        print(f"vpngw: refusing to start: {error}", file=sys.stderr)
        return 2
    print(f"vpngw: {key_source}", flush=True)
    authenticator = configure_authentication(args, settings, db, sealer, dict(os.environ))
    dataplane = start_dataplane(args, db, sealer)
    app = build_app(
        db,
        settings,
        authenticator,
        on_change=dataplane.wake if dataplane else None,
        group_commits=args.workers == 1,
    )
    shown = make_url(settings.db_url).render_as_string(hide_password=True)
    print(f"vpngw: API listening on {scheme}://{args.host}:{args.port}/ (database {shown})", flush=True)
    print(f"vpngw: spec route POST {scheme}://{args.host}:{args.port}/apsara/route/Vpc/<Action>", flush=True)
    listener: OperatorListener | None = None
    try:
        if metrics_address is not None:
            child = ChildMetrics(dataplane.metrics_port) if dataplane and dataplane.metrics_port else None
            listener = OperatorListener(db, *metrics_address, also=child)
            print(
                f"vpngw: operator metrics on http://{args.metrics}/metrics (not on the API port)", flush=True
            )
        if args.workers > 1:
            return _serve_workers(args, app, db, tls)
        server = api_server(app, host=args.host, port=args.port, log_level=args.log_level, tls=tls)
        if dataplane is not None:
            server.after_shutdown = lambda: _stop_dataplane(args, dataplane)
        server.run()
        if not server.started:
            return 1  # uvicorn logged why (the port is taken, ...)
    finally:
        if listener is not None:
            listener.stop()
        if dataplane is not None:
            _stop_dataplane(args, dataplane)
    return 0


def _stop_dataplane(args: argparse.Namespace, dataplane: DataplaneProcess) -> None:
    if dataplane.stop():
        where = (
            "(the next start adopts them)"
            if args.backend == "host"
            else f"(vpngw lab down --lab {args.lab} removes them)"
        )
        print(f"vpngw: data plane stopped; charons keep running {where}", flush=True)


def _serve_workers(args: argparse.Namespace, app: Any, db: Database, tls: Any) -> int:
    """``--workers N``: N processes forked after everything is loaded, accepting on one socket."""
    from vpngw.api.http_server import api_server, listening_socket, run_workers

    try:
        sock = listening_socket(args.host, args.port)
    except OSError as error:
        print(f"vpngw: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    db.dispose()  # no connection crosses the fork: each worker opens its own

    def serve(listening: socket.socket) -> bool:
        server = api_server(app, host=args.host, port=args.port, log_level=args.log_level, tls=tls)
        server.run(sockets=[listening])
        return bool(server.started)

    print(f"vpngw: {args.workers} worker processes share the port", flush=True)
    return run_workers(args.workers, sock, serve)


# A node whose heartbeat is this recent is taken for running (heartbeats come every second).
RESTORE_LIVE_MS = 15_000


def cmd_backup(args: argparse.Namespace) -> int:
    url = admin_db_url(args.db)
    backup.backup(url, Path(args.file))
    print(
        f"vpngw: {make_url(url).database} backed up to {args.file}; the master key is not in it: keep it apart "
        "(docs/operations.md)"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    url = admin_db_url(args.db, create=args.create)
    live = live_node_names(url, within_ms=RESTORE_LIVE_MS)
    if live:
        print(
            f"vpngw: refusing to restore: node(s) {', '.join(live)} run on this database (a heartbeat within "
            f"{RESTORE_LIVE_MS // 1000} s); stop every vpngw serve and agent on it first (docs/operations.md)",
            file=sys.stderr,
        )
        return 2
    backup.restore(Path(args.file), url)
    migrate.upgrade(url)  # a backup from an older release gets today's schema
    print(
        f"vpngw: {make_url(url).database} restored from {args.file}; on its next pass the data plane makes the "
        "tunnels match it",
        flush=True,
    )
    return 0


def host_agents(db: Database, *, besides: str | None) -> list[str]:
    """Names of the host-backend nodes registered on the database (other than ``besides``)."""
    from vpngw.store import leases as lease_store

    with db.transaction(write=False) as session:
        return [n.name for n in lease_store.nodes(session) if n.backend == "host" and n.name != besides]


def start_dataplane(args: argparse.Namespace, db: Database, sealer: Sealer) -> DataplaneProcess | None:
    """The data plane of ``--backend`` (lab or host) in its own process, when this machine
    can run it (root, strongSwan, TUN). ``sealer``: the key the API opened the database
    with; the process loads the same one (the environment or the key file)."""
    from vpngw.cli.dataplane_process import DataplaneProcess
    from vpngw.dataplane.charon.daemon import missing_prerequisites

    if args.no_dataplane:
        print(
            "vpngw: data plane off (--no-dataplane): connections are stored, no tunnel is built", flush=True
        )
        return None
    agents = host_agents(db, besides=args.node)
    if agents and not args.backend_given:
        # A fleet: the gateways belong on the agents' hosts, not in lab namespaces here.
        print(
            f"vpngw: data plane off: host agents run on this database ({', '.join(agents)}); the API runs "
            "alone (give --backend to run a data plane here too, --no-dataplane to say so)",
            flush=True,
        )
        return None
    reason = missing_prerequisites()
    if reason:
        print(
            f"vpngw: no data plane: {reason}; the API runs alone (connections are stored, no tunnel is built)",
            flush=True,
        )
        return None
    # The data plane runs in a process of its own, so that the API's interpreter does not
    # pay for it (cli/dataplane_process.py; docs/operations.md, "The data-plane process").
    dataplane = DataplaneProcess(args, db.url, with_metrics=bool(args.metrics))
    refused = dataplane.start()
    if refused is not None:
        print(
            f"vpngw: no data plane: its process exited with code {refused} (why is above); the API runs alone",
            flush=True,
        )
        return None
    print(
        f"vpngw: data plane: node {args.node}, {nodes_cli.describe_backend(args)} (process {dataplane.pid})",
        flush=True,
    )
    return dataplane


def cmd_account_create(args: argparse.Namespace) -> int:
    _settings, db, sealer = _open(args)
    print(accounts.create_account(db, sealer, args.name).as_json())
    return 0


def cmd_account_list(args: argparse.Namespace) -> int:
    _settings, db, _sealer = _open(args)
    print(json.dumps(accounts.list_accounts(db), indent=2))
    return 0


def cmd_account_quota(args: argparse.Namespace) -> int:
    settings, db, _sealer = _open(args)
    changes = {
        kind: getattr(args, kind) for kind in accounts.QUOTA_KINDS if getattr(args, kind) is not _UNCHANGED
    }
    if changes:
        accounts.set_quotas(db, args.account, changes)
    print(json.dumps(accounts.quotas(db, settings, args.account), indent=2))
    return 0


_UNCHANGED = object()


def _quota_value(text: str) -> int | None:
    """A quota on the command line: a whole number from 0, or ``default``."""
    if text == "default":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a quota is a whole number from 0 or 'default', not {text!r}")
    return int(text)


def cmd_key_create(args: argparse.Namespace) -> int:
    _settings, db, sealer = _open(args)
    print(accounts.create_key(db, sealer, args.account).as_json())
    return 0


def cmd_key_status(args: argparse.Namespace) -> int:
    _settings, db, _sealer = _open(args)
    accounts.set_key_status(
        db, args.access_key_id, "enabled" if args.command_name == "enable" else "disabled"
    )
    print(f"vpngw: AccessKey {args.access_key_id} {args.command_name}d")
    return 0


def cmd_key_delete(args: argparse.Namespace) -> int:
    _settings, db, _sealer = _open(args)
    accounts.delete_key(db, args.access_key_id)
    print(f"vpngw: AccessKey {args.access_key_id} deleted")
    return 0


def cmd_reseal(args: argparse.Namespace) -> int:
    from vpngw.resealing import reseal_all

    _settings, db, sealer = _open(args)
    count = reseal_all(db, sealer)
    print(f"vpngw: {count} secrets sealed under master key {sealer.current_key_id}")
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    from vpngw.cli.call import run_call

    return run_call(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vpngw", description="A self-hosted IPsec VPN gateway service.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on stderr as text or as one JSON object each (docs/operations.md)",
    )
    serve.add_argument(
        "--credentials-file",
        metavar="FILE",
        default=None,
        help="on a first start, write a new key pair for the default account here (mode 0600)",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="DANGER: accept unsigned requests as the default account (loopback only, for local experiments)",
    )
    serve.add_argument("--no-dataplane", action="store_true", help="serve the API only: build no tunnels")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve the API from N processes on one port and one database (with --no-dataplane; "
        "docs/benchmarks.md measures what it buys)",
    )
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        default=os.environ.get("VPNGW_TLS_CERT"),
        help="serve HTTPS (TLS 1.2+) with this PEM certificate chain (default $VPNGW_TLS_CERT); "
        "reloaded on SIGHUP",
    )
    serve.add_argument(
        "--tls-key",
        metavar="FILE",
        default=os.environ.get("VPNGW_TLS_KEY"),
        help="the certificate's PEM private key, unencrypted (default $VPNGW_TLS_KEY)",
    )
    serve.add_argument(
        "--metrics",
        default=os.environ.get("VPNGW_METRICS"),
        metavar="HOST:PORT",
        help="serve /metrics for Prometheus on this operator-only address (default $VPNGW_METRICS; "
        "the API port never serves it)",
    )
    nodes_cli.add_backend_options(serve)
    nodes_cli.add_node_options(serve, node_required=False)
    _db_option(serve)
    serve.set_defaults(run=cmd_serve)

    migrate_cmd = commands.add_parser("migrate", help="apply database schema migrations")
    _db_option(migrate_cmd)
    migrate_cmd.add_argument(
        "--create", action="store_true", help="create the SQLite file if there is none (else refused)"
    )
    migrate_cmd.set_defaults(run=cmd_migrate)

    account = commands.add_parser("account", help="manage accounts").add_subparsers(dest="sub", required=True)
    create = account.add_parser("create", help="create an account and print its first key pair as JSON")
    create.add_argument("name")
    _db_option(create)
    create.set_defaults(run=cmd_account_create)
    quota = account.add_parser(
        "quota",
        help="show an account's quotas (per region) and what it holds; set them with the options",
        description="Quotas count per account and region. N is a whole number from 0, or 'default' "
        "(the server's default: VPNGW_QUOTA_VPCS=10, VPNGW_QUOTA_VPN_GATEWAYS=500, "
        "VPNGW_QUOTA_CUSTOMER_GATEWAYS=100 unless set). A quota below what the account holds only "
        "stops new creates.",
    )
    quota.add_argument("account", help="account name or id")
    for option, kind in (
        ("--vpcs", "vpcs"),
        ("--vpn-gateways", "vpn_gateways"),
        ("--customer-gateways", "customer_gateways"),
    ):
        quota.add_argument(option, dest=kind, metavar="N", type=_quota_value, default=_UNCHANGED)
    _db_option(quota)
    quota.set_defaults(run=cmd_account_quota)
    listing = account.add_parser("list", help="list accounts and their AccessKey ids")
    _db_option(listing)
    listing.set_defaults(run=cmd_account_list)

    key = commands.add_parser("key", help="manage AccessKeys").add_subparsers(dest="sub", required=True)
    key_create = key.add_parser("create", help="create a key pair for an account (name or id) and print it")
    key_create.add_argument("account")
    _db_option(key_create)
    key_create.set_defaults(run=cmd_key_create)
    for name in ("disable", "enable"):
        status = key.add_parser(name, help=f"{name} an AccessKey")
        status.add_argument("access_key_id")
        _db_option(status)
        status.set_defaults(run=cmd_key_status, command_name=name)
    delete = key.add_parser("delete", help="delete an AccessKey")
    delete.add_argument("access_key_id")
    _db_option(delete)
    delete.set_defaults(run=cmd_key_delete)

    backup_cmd = commands.add_parser("backup", help="write a consistent copy of the SQLite database (online)")
    backup_cmd.add_argument("file", help="the new backup file (must not exist)")
    _db_option(backup_cmd)
    backup_cmd.set_defaults(run=cmd_backup)
    restore_cmd = commands.add_parser(
        "restore", help="replace the SQLite database with a backup (server stopped)"
    )
    restore_cmd.add_argument("file", help="a file written by vpngw backup")
    _db_option(restore_cmd)
    restore_cmd.add_argument(
        "--create", action="store_true", help="restore into a new SQLite file (else it must exist)"
    )
    restore_cmd.set_defaults(run=cmd_restore)

    reseal = commands.add_parser(
        "reseal", help="re-encrypt every stored secret under the first master key (rotation)"
    )
    _db_option(reseal)
    reseal.set_defaults(run=cmd_reseal)

    call = commands.add_parser(
        "call", help="call an action with a signed request and print the JSON response"
    )
    call.add_argument("action")
    call.add_argument("params", nargs="*", metavar="Key=Value")
    call.add_argument("--endpoint", default=os.environ.get("VPNGW_ENDPOINT", "http://127.0.0.1:8080"))
    call.add_argument(
        "--credentials",
        metavar="FILE",
        default=None,
        help="key pair file (default .vpngw/credentials.json, then ~/.vpngw/credentials.json)",
    )
    call.add_argument(
        "--region", default=os.environ.get("VPNGW_REGION"), help="RegionId when not given as a parameter"
    )
    call.set_defaults(run=cmd_call)

    lab_cli.build_lab_parser(commands)
    nodes_cli.add_agent_parser(commands)
    nodes_cli.add_node_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Every file vpngw and its children (charon) create is the owner's alone (docs/security.md).
    os.umask(files.UMASK)
    args = build_parser().parse_args(argv)
    if hasattr(args, "backend"):
        args.backend_given = args.backend is not None
        args.backend = args.backend or "lab"
    logs.configure(getattr(args, "log_format", "text"))
    if args.command != "migrate":
        logging.getLogger("alembic").setLevel(logging.WARNING)  # a no-op upgrade at every start says nothing
    try:
        return int(args.run(args))
    except (accounts.AccountError, SealingError, backup.BackupError, ValueError) as error:
        print(f"vpngw: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
