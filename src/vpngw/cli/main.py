"""``vpngw serve`` and ``vpngw migrate``."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from vpngw.config import Settings, settings_from_env
from vpngw.store import migrate, queries
from vpngw.store.engine import Database, make_url


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="database URL (default: $VPNGW_DB, else sqlite:///./vpngw.db); "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )


def prepare_database(settings: Settings) -> Database:
    """Apply migrations and make sure the default account exists."""
    migrate.upgrade(settings.db_url)
    db = Database(settings.db_url)
    with db.session(write=True) as session, session.begin():
        queries.ensure_account(session, settings.default_account_id, "default", int(time.time() * 1000))
    return db


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from_env(args.db)
    migrate.upgrade(settings.db_url)
    print(f"vpngw: database {make_url(settings.db_url).render_as_string(hide_password=True)} is up to date")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from vpngw.api.app import build_app

    settings = settings_from_env(args.db)
    db = prepare_database(settings)
    app = build_app(db, settings)
    shown = make_url(settings.db_url).render_as_string(hide_password=True)
    print(f"vpngw: API listening on http://{args.host}:{args.port}/ (database {shown})", flush=True)
    print(f"vpngw: spec route POST http://{args.host}:{args.port}/apsara/route/Vpc/<Action>", flush=True)
    print("vpngw: no data plane in this build: connections are stored, tunnels are not built yet", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vpngw", description="A self-hosted IPsec VPN gateway service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    _db_option(serve)
    serve.set_defaults(run=cmd_serve)
    migrate_cmd = commands.add_parser("migrate", help="apply database schema migrations")
    _db_option(migrate_cmd)
    migrate_cmd.set_defaults(run=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
