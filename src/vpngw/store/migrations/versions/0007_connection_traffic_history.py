"""connection traffic history (one point per 10 s per connection, kept 24 h)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 09:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vpn_connection_traffic",
        sa.Column("vpn_connection_id", sa.String(length=32), nullable=False),
        sa.Column("bucket_ms", sa.BigInteger(), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("packets_in", sa.BigInteger(), nullable=False),
        sa.Column("packets_out", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("vpn_connection_id", "bucket_ms"),
    )
    op.create_index("ix_vpn_connection_traffic_time", "vpn_connection_traffic", ["time_ms"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_vpn_connection_traffic_time", table_name="vpn_connection_traffic")
    op.drop_table("vpn_connection_traffic")
