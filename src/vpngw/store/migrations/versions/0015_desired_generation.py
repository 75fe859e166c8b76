"""vpn_gateways.desired_generation: a change stamp of what the data plane realises

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 15:10:00

Every write that changes a gateway's desired state (what
``vpngw.dataplane.spec.from_store.load_desired`` reads of it: the gateway's addresses and
VPC-side next hop, its connections' settings, their tunnels' settings, the addresses of
their customer gateways) bumps the gateway's ``desired_generation`` in the same
transaction. The data plane reads the stamps in one query per pass and reloads only the
gateways whose stamp moved (docs/dataplane.md, "Change stamps and the heal pass").

The bump is done by database triggers, so that no writer can forget it (ORM, Core, a
script, a future action): the columns listed below are the ones the data plane reads;
its own observation columns (Status, Diagnosis, traffic, health verdict, observed_*) are
not listed, so its writes never bump. ``tests/store/test_desired_generation.py`` walks
every write action of the registry and fails if the desired state changed while no
stamp moved. A later SQLite migration that rebuilds one of these tables (Alembic's batch
mode "move and copy") drops its triggers: re-create them with :func:`create_triggers`
(that test fails otherwise).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# The columns load_desired reads, per table (an UPDATE that sets one of them bumps).
GATEWAY_COLUMNS = ("internet_ip", "disaster_recovery_internet_ip", "vpc_next_hop")
CONNECTION_COLUMNS = (
    "vpn_gateway_id",
    "customer_gateway_id",
    "local_subnet",
    "remote_subnet",
    "effect_immediately",
    "auto_config_route",
    "enable_dpd",
    "enable_nat_traversal",
    "ike_config",
    "ipsec_config",
    "health_check",
)
TUNNEL_COLUMNS = (
    "vpn_connection_id",
    "tunnel_index",
    "role",
    "customer_gateway_id",
    "enable_dpd",
    "enable_nat_traversal",
    "ike_config",
    "ipsec_config",
)
CUSTOMER_GATEWAY_COLUMNS = ("ip_address",)

_BUMP = "UPDATE vpn_gateways SET desired_generation = desired_generation + 1 WHERE id"
# The gateways whose connections (or their tunnels) use a customer gateway.
_USERS_OF_CUSTOMER_GATEWAY = (
    "SELECT vpn_gateway_id FROM vpn_connections WHERE customer_gateway_id = {cgw} "
    "UNION SELECT c.vpn_gateway_id FROM vpn_connection_tunnels t "
    "JOIN vpn_connections c ON c.id = t.vpn_connection_id WHERE t.customer_gateway_id = {cgw}"
)
_GATEWAY_OF_CONNECTION = "SELECT vpn_gateway_id FROM vpn_connections WHERE id = {connection}"

# Each trigger and the table it is on.
TRIGGER_TABLES = {
    "desired_gateway_update": "vpn_gateways",
    "desired_connection_insert": "vpn_connections",
    "desired_connection_update": "vpn_connections",
    "desired_connection_delete": "vpn_connections",
    "desired_tunnel_insert": "vpn_connection_tunnels",
    "desired_tunnel_update": "vpn_connection_tunnels",
    "desired_tunnel_delete": "vpn_connection_tunnels",
    "desired_customer_gateway_update": "customer_gateways",
    "desired_customer_gateway_delete": "customer_gateways",
}


def _sqlite_triggers() -> list[str]:
    def of(columns: tuple[str, ...]) -> str:
        return ", ".join(columns)

    return [
        # The inner UPDATE sets desired_generation only, which fires no trigger of the list.
        f"CREATE TRIGGER desired_gateway_update AFTER UPDATE OF {of(GATEWAY_COLUMNS)} ON vpn_gateways "
        f"BEGIN {_BUMP} = NEW.id; END",
        f"CREATE TRIGGER desired_connection_insert AFTER INSERT ON vpn_connections "
        f"BEGIN {_BUMP} = NEW.vpn_gateway_id; END",
        f"CREATE TRIGGER desired_connection_update AFTER UPDATE OF {of(CONNECTION_COLUMNS)} ON vpn_connections "
        f"BEGIN {_BUMP} IN (OLD.vpn_gateway_id, NEW.vpn_gateway_id); END",
        f"CREATE TRIGGER desired_connection_delete AFTER DELETE ON vpn_connections "
        f"BEGIN {_BUMP} = OLD.vpn_gateway_id; END",
        f"CREATE TRIGGER desired_tunnel_insert AFTER INSERT ON vpn_connection_tunnels "
        f"BEGIN {_BUMP} IN ({_GATEWAY_OF_CONNECTION.format(connection='NEW.vpn_connection_id')}); END",
        f"CREATE TRIGGER desired_tunnel_update AFTER UPDATE OF {of(TUNNEL_COLUMNS)} ON vpn_connection_tunnels "
        f"BEGIN {_BUMP} IN ({_GATEWAY_OF_CONNECTION.format(connection='OLD.vpn_connection_id')} "
        f"UNION {_GATEWAY_OF_CONNECTION.format(connection='NEW.vpn_connection_id')}); END",
        f"CREATE TRIGGER desired_tunnel_delete AFTER DELETE ON vpn_connection_tunnels "
        f"BEGIN {_BUMP} IN ({_GATEWAY_OF_CONNECTION.format(connection='OLD.vpn_connection_id')}); END",
        f"CREATE TRIGGER desired_customer_gateway_update AFTER UPDATE OF {of(CUSTOMER_GATEWAY_COLUMNS)} "
        f"ON customer_gateways BEGIN {_BUMP} IN ({_USERS_OF_CUSTOMER_GATEWAY.format(cgw='NEW.id')}); END",
        f"CREATE TRIGGER desired_customer_gateway_delete AFTER DELETE ON customer_gateways "
        f"BEGIN {_BUMP} IN ({_USERS_OF_CUSTOMER_GATEWAY.format(cgw='OLD.id')}); END",
    ]


def _postgresql_triggers() -> list[str]:
    def function(name: str, body: str) -> str:
        return (
            f"CREATE OR REPLACE FUNCTION vpngw_{name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {body} RETURN NULL; END $$"
        )

    def trigger(name: str, when: str, table: str) -> str:
        return f"CREATE TRIGGER {name} AFTER {when} ON {table} FOR EACH ROW EXECUTE FUNCTION vpngw_{name}()"

    def of(columns: tuple[str, ...]) -> str:
        return "UPDATE OF " + ", ".join(columns)

    statements: list[tuple[str, str, str, str]] = [
        ("desired_gateway_update", of(GATEWAY_COLUMNS), "vpn_gateways", f"{_BUMP} = NEW.id;"),
        ("desired_connection_insert", "INSERT", "vpn_connections", f"{_BUMP} = NEW.vpn_gateway_id;"),
        (
            "desired_connection_update",
            of(CONNECTION_COLUMNS),
            "vpn_connections",
            f"{_BUMP} IN (OLD.vpn_gateway_id, NEW.vpn_gateway_id);",
        ),
        ("desired_connection_delete", "DELETE", "vpn_connections", f"{_BUMP} = OLD.vpn_gateway_id;"),
        (
            "desired_tunnel_insert",
            "INSERT",
            "vpn_connection_tunnels",
            f"{_BUMP} IN ({_GATEWAY_OF_CONNECTION.format(connection='NEW.vpn_connection_id')});",
        ),
        (
            "desired_tunnel_update",
            of(TUNNEL_COLUMNS),
            "vpn_connection_tunnels",
            f"{_BUMP} IN ({_GATEWAY_OF_CONNECTION.format(connection='OLD.vpn_connection_id')} "
            f"UNION {_GATEWAY_OF_CONNECTION.format(connection='NEW.vpn_connection_id')});",
        ),
        (
            "desired_tunnel_delete",
            "DELETE",
            "vpn_connection_tunnels",
            f"{_BUMP} IN ({_GATEWAY_OF_CONNECTION.format(connection='OLD.vpn_connection_id')});",
        ),
        (
            "desired_customer_gateway_update",
            of(CUSTOMER_GATEWAY_COLUMNS),
            "customer_gateways",
            f"{_BUMP} IN ({_USERS_OF_CUSTOMER_GATEWAY.format(cgw='NEW.id')});",
        ),
        (
            "desired_customer_gateway_delete",
            "DELETE",
            "customer_gateways",
            f"{_BUMP} IN ({_USERS_OF_CUSTOMER_GATEWAY.format(cgw='OLD.id')});",
        ),
    ]
    result: list[str] = []
    for name, when, table, body in statements:
        result += [function(name, body), trigger(name, when, table)]
    return result


def create_triggers() -> None:
    """(Re)create the triggers that bump desired_generation (both databases)."""
    dialect = op.get_bind().dialect.name
    for statement in _postgresql_triggers() if dialect == "postgresql" else _sqlite_triggers():
        op.execute(statement)


def upgrade() -> None:
    # Not batched: SQLite adds a column with a constant default in place (a rebuild would
    # drop a table that connections refer to).
    op.add_column(
        "vpn_gateways",
        sa.Column("desired_generation", sa.BigInteger(), nullable=False, server_default="0"),
    )
    create_triggers()


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, table in TRIGGER_TABLES.items():
        if postgresql:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS vpngw_{name}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_column("vpn_gateways", "desired_generation")
