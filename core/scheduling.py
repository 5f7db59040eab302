"""What the scheduler does on each tick."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.campaigns import transition
from core.db import utcnow
from core.models import Campaign

log = logging.getLogger(__name__)


def start_due_campaigns(factory: sessionmaker[Session], *, now: datetime | None = None) -> int:
    """Make every scheduled campaign whose time has come active (selecting its recipients)."""
    now = now or utcnow()
    with factory() as session:
        due = session.execute(select(Campaign.id, Campaign.profile_id).where(
            Campaign.status == "scheduled", Campaign.scheduled_at <= now)).all()
    started = 0
    for campaign_id, profile_id in due:
        with factory() as session, session.begin():
            campaign = session.get(Campaign, campaign_id, with_for_update=True)
            if campaign is None or campaign.status != "scheduled":
                continue  # another scheduler got there first
            transition(session, profile_id=profile_id, campaign_id=campaign_id, target="active", now=now)
            log.info("campaign %s: scheduled time reached, now active", campaign_id)
            started += 1
    return started
