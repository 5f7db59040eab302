"""campaign_recipients.waiting_reason: why a put-off try waits, kept with the recipient

The engine puts a try off for the send window, a state's calling hours or its
24-hour cap, the customer's best hour or an A/B test; the recipient kept only
until when.  The reason, in words, is now kept too, so the campaign's customer
list and the API say why each one waits.

Revision ID: 0006_recipient_waiting_reason
Revises: 0005_second_round
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_recipient_waiting_reason"
down_revision: str | None = "0005_second_round"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_recipients") as batch:
        batch.add_column(sa.Column("waiting_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_recipients") as batch:
        batch.drop_column("waiting_reason")
