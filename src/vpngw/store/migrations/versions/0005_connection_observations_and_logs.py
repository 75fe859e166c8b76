"""connection observations (diagnosis, traffic) and negotiation logs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vpn_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("diagnosis", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("traffic", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("observed_time", sa.BigInteger(), nullable=True))
    op.create_table(
        "vpn_connection_logs",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("vpn_connection_id", sa.String(length=32), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(
        "ix_vpn_connection_logs_connection_time",
        "vpn_connection_logs",
        ["vpn_connection_id", "time_ms", "seq"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_vpn_connection_logs_connection_time", table_name="vpn_connection_logs")
    op.drop_table("vpn_connection_logs")
    with op.batch_alter_table("vpn_connections", schema=None) as batch_op:
        batch_op.drop_column("observed_time")
        batch_op.drop_column("traffic")
        batch_op.drop_column("diagnosis")
