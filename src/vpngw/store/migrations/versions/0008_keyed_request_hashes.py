"""keyed ClientToken request hashes: the unkeyed ones are wiped

Before this revision ``idempotency_records.request_hash`` was an unsalted SHA-256 of the
request's parameters (a Psk included): recomputing it confirmed a guessed Psk offline.
New records store a keyed digest (``h1:...``, vpngw.sealing.Sealer.digest). An unkeyed
hash cannot be turned into a keyed one (the parameters are gone), so it is replaced by
``unkeyed``: such a record still replays its result for a retry, it just can no longer
tell a retry with other parameters (docs/security.md). Records live 24 hours by default.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE idempotency_records SET request_hash = 'unkeyed' WHERE request_hash NOT LIKE 'h1:%'")


def downgrade() -> None:
    # Nothing to undo: an older release compares its own hash with a keyed digest and answers
    # IdempotentParameterMismatch to a retry of such a record, until the record expires.
    pass
