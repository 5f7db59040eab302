"""attempt completion: when an attempt's work ended (calls stay open until their end is reported)

Revision ID: 0002_engine_attempt_completion
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0002_engine_attempt_completion"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = sa.text("completed_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("outreach_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("completed_at", core.db.UTCDateTime(timezone=True), nullable=True))
    # attempts recorded before this column existed are over
    op.execute("UPDATE outreach_attempts SET completed_at = COALESCE(finished_at, started_at) "
               "WHERE outcome IS NOT NULL")
    # the few attempts still open (in flight, or calls in progress): reconciliation and concurrency limits
    op.create_index("ix_outreach_attempts_open", "outreach_attempts", ["channel", "campaign_id"], unique=False,
                    postgresql_where=_OPEN, sqlite_where=_OPEN)


def downgrade() -> None:
    op.drop_index("ix_outreach_attempts_open", table_name="outreach_attempts")
    with op.batch_alter_table("outreach_attempts", schema=None) as batch_op:
        batch_op.drop_column("completed_at")
