"""the VPC-side next hop of each VPN gateway, and on its lease

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 12:20:00

Gateways that exist before this revision get no address here: the pool is the API
servers' setting (``VPNGW_VPC_NEXT_HOP_POOL``), which a migration cannot know, so an API
server gives them one when it starts (``actions.vpn_gateways.assign_missing_vpc_next_hops``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vpn_gateways") as batch_op:
        batch_op.add_column(sa.Column("vpc_next_hop", sa.String(length=15), nullable=True))
    # A unique index, not a constraint: SQLite adds it without rebuilding the table (a
    # rebuild would drop a table that connections refer to).
    op.create_index("ix_vpn_gateways_vpc_next_hop", "vpn_gateways", ["vpc_next_hop"], unique=True)
    with op.batch_alter_table("gateway_leases") as batch_op:
        batch_op.add_column(sa.Column("vpc_next_hop", sa.String(length=15), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_leases") as batch_op:
        batch_op.drop_column("vpc_next_hop")
    op.drop_index("ix_vpn_gateways_vpc_next_hop", table_name="vpn_gateways")
    # Not batched: SQLite (3.35+) drops a column in place; a rebuild would drop a table
    # that connections refer to.
    op.drop_column("vpn_gateways", "vpc_next_hop")
