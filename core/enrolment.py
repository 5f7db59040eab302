"""Always-on campaigns (DESIGN §11): enrol customers as they cross the line, every day.

An always-on campaign (``always_on``) selects its customers when it starts, like any
other, and then once a day while it is active: customers who newly match its criteria
join (a customer goes quiet every week), and a customer whose previous enrolment
ended more than ``reenroll_after_days`` ago may join again (:func:`core.targeting.
select_recipients` knows the rules).  It never completes by itself; stop ends it.

Enrolment is idempotent across scheduler processes: the campaign row is locked and
``last_enrolled_at`` says when the last daily enrolment ran, so two schedulers never
enrol the same day twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from core.models import Campaign
from core.targeting import select_recipients

log = logging.getLogger(__name__)

EVERY = timedelta(days=1)


def enrol(session: Session, *, campaign_id: uuid.UUID, now: datetime) -> int | None:
    """Run one campaign's daily enrolment if it is due (in the caller's transaction, the campaign row locked);
    returns how many customers joined, or ``None`` when it was not due."""
    campaign = session.get(Campaign, campaign_id, with_for_update=True, populate_existing=True)
    if campaign is None or campaign.status != "active" or not campaign.always_on:
        return None
    if campaign.last_enrolled_at is not None and campaign.last_enrolled_at > now - EVERY:
        return None  # another scheduler, or an earlier tick, enrolled today
    selected = select_recipients(session, campaign=campaign, now=now).selected
    campaign.last_enrolled_at = now
    log.info("campaign %s: always on: %d customers enrolled", campaign.id, selected)
    return selected


def enrol_due(factory: sessionmaker[Session], *, now: datetime) -> int:
    """The daily enrolment of every always-on campaign that is due; returns how many customers joined."""
    with factory() as session:
        ids = list(session.scalars(select(Campaign.id).where(
            Campaign.status == "active", Campaign.always_on.is_(True),
            or_(Campaign.last_enrolled_at.is_(None), Campaign.last_enrolled_at <= now - EVERY))))
    joined = 0
    for campaign_id in ids:
        with factory() as session, session.begin():
            joined += enrol(session, campaign_id=campaign_id, now=now) or 0
    return joined

