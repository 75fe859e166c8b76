"""resource_counts.changes: how many creates and deletes moved a listing

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 13:05:00

An API process caches, per listing, the key of every 512th row (the page boundaries that
let a deep DescribeVpnConnections page seek instead of walking half the index); the cache
holds while ``(count, changes)`` of the listing's counter is what it was built from.
Existing rows start at 0: a process that starts after this revision has no cache yet.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resource_counts") as batch_op:
        batch_op.add_column(sa.Column("changes", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    # Not batched: SQLite (3.35+) drops a column in place.
    op.drop_column("resource_counts", "changes")
