"""resource counts and owner gateway indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 19:19:54.066535
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resource_counts",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("region_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("account_id", "region_id", "kind"),
    )
    with op.batch_alter_table("vpn_connections", schema=None) as batch_op:
        batch_op.create_index(
            "ix_vpn_connections_owner_customer_gateway",
            ["account_id", "region_id", "customer_gateway_id", "seq"],
            unique=False,
        )
        batch_op.create_index(
            "ix_vpn_connections_owner_gateway",
            ["account_id", "region_id", "vpn_gateway_id", "seq"],
            unique=False,
        )

    # Count what is there already.
    for table in ("vpcs", "vpn_gateways", "customer_gateways", "vpn_connections"):
        op.execute(
            f"INSERT INTO resource_counts (account_id, region_id, kind, count) "
            f"SELECT account_id, region_id, '{table}', COUNT(*) FROM {table} GROUP BY account_id, region_id"
        )


def downgrade() -> None:
    with op.batch_alter_table("vpn_connections", schema=None) as batch_op:
        batch_op.drop_index("ix_vpn_connections_owner_gateway")
        batch_op.drop_index("ix_vpn_connections_owner_customer_gateway")

    op.drop_table("resource_counts")
