"""dual tunnels: a gateway's second address, and one row per tunnel of a connection

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vpn_gateways") as batch_op:
        batch_op.add_column(sa.Column("disaster_recovery_internet_ip", sa.String(length=15), nullable=True))
        batch_op.add_column(
            sa.Column(
                "disaster_recovery_v_switch_id", sa.String(length=64), nullable=False, server_default=""
            )
        )
    # A unique index, not a constraint: SQLite adds it without rebuilding the table.
    op.create_index(
        "ix_vpn_gateways_disaster_recovery_internet_ip",
        "vpn_gateways",
        ["disaster_recovery_internet_ip"],
        unique=True,
    )
    op.create_table(
        "vpn_connection_tunnels",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("vpn_connection_id", sa.String(length=32), nullable=False),
        sa.Column("tunnel_index", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("customer_gateway_id", sa.String(length=32), nullable=False),
        sa.Column("enable_dpd", sa.Boolean(), nullable=False),
        sa.Column("enable_nat_traversal", sa.Boolean(), nullable=False),
        sa.Column("ike_config", sa.JSON(), nullable=False),
        sa.Column("ipsec_config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("diagnosis", sa.Text(), nullable=False, server_default=""),
        sa.Column("traffic", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("observed_time", sa.BigInteger(), nullable=True),
        sa.Column("observed_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["vpn_connection_id"], ["vpn_connections.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["customer_gateway_id"], ["customer_gateways.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("vpn_connection_id", "tunnel_index", name="uq_vpn_connection_tunnels_index"),
    )
    op.create_index(
        "ix_vpn_connection_tunnels_customer_gateway", "vpn_connection_tunnels", ["customer_gateway_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_vpn_connection_tunnels_customer_gateway", table_name="vpn_connection_tunnels")
    op.drop_table("vpn_connection_tunnels")
    op.drop_index("ix_vpn_gateways_disaster_recovery_internet_ip", table_name="vpn_gateways")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch rebuild of vpn_gateways
    # would drop a table that vpn_connections refers to.
    op.execute("ALTER TABLE vpn_gateways DROP COLUMN disaster_recovery_v_switch_id")
    op.execute("ALTER TABLE vpn_gateways DROP COLUMN disaster_recovery_internet_ip")
