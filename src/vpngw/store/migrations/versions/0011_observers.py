"""who observed a connection, and the holder's confirmation of its gateways

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vpn_connections") as batch_op:
        batch_op.add_column(sa.Column("observed_by", sa.String(length=64), nullable=True))
    with op.batch_alter_table("gateway_leases") as batch_op:
        batch_op.add_column(sa.Column("observed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("observed_until_ms", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("pass_error", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("gateway_leases") as batch_op:
        batch_op.drop_column("pass_error")
        batch_op.drop_column("observed_until_ms")
        batch_op.drop_column("observed_by")
    with op.batch_alter_table("vpn_connections") as batch_op:
        batch_op.drop_column("observed_by")
