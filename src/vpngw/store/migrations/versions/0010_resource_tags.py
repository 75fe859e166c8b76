"""tags on VPCs, VPN gateways, customer gateways and IPsec connections

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resource_tags",
        sa.Column("resource_id", sa.String(length=32), nullable=False),
        sa.Column("tag_key", sa.String(length=128), nullable=False),
        sa.Column("tag_value", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("region_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("resource_id", "tag_key"),
    )
    op.create_index(
        "ix_resource_tags_owner",
        "resource_tags",
        ["account_id", "region_id", "resource_type", "resource_id"],
    )
    op.create_index("ix_resource_tags_key", "resource_tags", ["account_id", "tag_key", "tag_value"])


def downgrade() -> None:
    op.drop_index("ix_resource_tags_key", table_name="resource_tags")
    op.drop_index("ix_resource_tags_owner", table_name="resource_tags")
    op.drop_table("resource_tags")
