"""data-plane nodes and gateway leases

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("addresses", sa.JSON(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("heartbeat_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("draining", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "gateway_leases",
        sa.Column("vpn_gateway_id", sa.String(length=32), nullable=False),
        sa.Column("internet_ip", sa.String(length=15), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("pinned_node", sa.String(length=64), nullable=True),
        sa.Column("previous_holder", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("vpn_gateway_id"),
    )
    op.create_index("ix_gateway_leases_holder", "gateway_leases", ["holder"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_gateway_leases_holder", table_name="gateway_leases")
    op.drop_table("gateway_leases")
    op.drop_table("nodes")
