"""channels: find a customer's recipients by phone across businesses (inbound SMS, STOP)

Revision ID: 0003_channels_contact_lookup
Revises: 0002_engine_attempt_completion
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_channels_contact_lookup"
down_revision: str | None = "0002_engine_attempt_completion"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # an inbound text names only the phone number: every business that texted it is looked up by it
    op.create_index("ix_campaign_recipients_contact_key", "campaign_recipients", ["contact_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_campaign_recipients_contact_key", table_name="campaign_recipients")
