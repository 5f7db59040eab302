"""The demo business: a past campaign with real history, and one the scheduler runs by itself."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from core.demo import SCHEDULED_AFTER, seed_demo
from core.models import Campaign, CampaignRecipient, Lead, OutreachEvent
from core.scheduling import tick
from tests.engine import helpers as h


def test_demo_has_history_and_a_campaign_that_runs_by_itself(session, factory, now):
    out = seed_demo(session, now=now)
    session.commit()
    campaigns = {c.name: c for c in session.scalars(select(Campaign))}
    past = campaigns["Autumn win-back"]
    assert str(past.id) == out["past_campaign_id"] and past.status == "completed"
    assert past.started_at < past.completed_at < now - timedelta(days=7)
    recipients = h.recipients(session, past.id)
    assert len(recipients) > 50 and all(r.next_attempt_at is None for r in recipients)
    kinds = {e.type for e in h.events(session, past.id)}
    assert {"sent", "delivered", "opened", "clicked", "converted"} <= kinds
    assert session.scalar(select(func.count()).select_from(OutreachEvent)
                          .where(OutreachEvent.processed_at.is_(None))) == 0
    assert session.scalar(select(func.count()).select_from(Lead).where(Lead.campaign_id == past.id)) == sum(
        r.converted for r in recipients) > 0
    h.assert_results_match(session, past.id)
    # the drafts are still there to explore
    assert {"Win back dormant regulars", "Call lapsed color clients", "How did we do?"} <= set(campaigns)
    assert all(campaigns[n].status == "draft" for n in ("Win back dormant regulars", "How did we do?"))

    spring = campaigns["Spring color refresh"]
    assert spring.status == "scheduled" and spring.scheduled_at == now + SCHEDULED_AFTER
    s = h.settings(resend_max_per_second=2.0)  # the defaults a newcomer runs with
    t = now
    for _ in range(300):  # the scheduler's ticks, every two seconds
        tick(factory, now=t, worker="demo", settings=s)
        status = session.scalar(select(Campaign.status).where(Campaign.id == spring.id))
        session.commit()
        if status == "completed":
            break
        t += timedelta(seconds=2)
    assert status == "completed" and t - now < timedelta(minutes=5)
    assert session.scalar(select(func.count()).select_from(CampaignRecipient)
                          .where(CampaignRecipient.campaign_id == spring.id, CampaignRecipient.sent_at.is_not(None)))
    h.assert_results_match(session, spring.id)
