"""leads: drop the (profile_id, created_at) index no query uses

Every query over a business's leads goes through the customer, served by
(profile_id, contact_key, created_at); keeping a second date index up to date
made a large import markedly slower for nothing.

Revision ID: 0004_leads_drop_created_at_index
Revises: 0003_channels_contact_lookup
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_leads_drop_created_at_index"
down_revision: str | None = "0003_channels_contact_lookup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_leads_profile_id_created_at", table_name="leads")


def downgrade() -> None:
    op.create_index("ix_leads_profile_id_created_at", "leads", ["profile_id", "created_at"], unique=False)
