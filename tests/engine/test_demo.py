"""The demo business: a past campaign with real history, and one the scheduler runs by itself."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from core.compliance import state_rule
from core.demo import SCHEDULED_AFTER, seed_demo
from core.models import Campaign, CampaignRecipient, Consent, Lead, OutreachEvent
from core.scheduling import tick
from core.targeting import preview_audience
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


def test_demo_consent_and_states_look_like_a_real_salons(session, now):
    """Most customers agreed in writing to offers by text, fewer by phone; about a fifth of the numbers are in
    states with their own calling rules, so the compliance panels have something to show."""
    out = seed_demo(session, now=now)
    session.commit()
    profile_id = uuid.UUID(out["profile_id"])
    phones = sorted({p for p in session.scalars(select(Lead.customer_phone).where(Lead.profile_id == profile_id))
                     if p})
    given: dict[str, set[tuple[str, str]]] = {}
    for c in session.scalars(select(Consent).where(Consent.profile_id == profile_id)):
        given.setdefault(c.contact, set()).add((c.channel, c.level))

    def share(test) -> float:
        return sum(1 for p in phones if test(given.get(p, set()))) / len(phones)

    def written(channel: str):
        return lambda g: any(ch in (channel, "all") and level == "express_written" for ch, level in g)

    assert len(phones) > 250
    assert 0.75 <= share(written("sms")) <= 0.80
    assert 0.35 <= share(written("call")) <= 0.45
    assert 0.05 <= share(lambda g: g and not written("sms")(g) and not written("call")(g)) <= 0.20  # express only
    assert 0.03 <= share(lambda g: not g) <= 0.15  # none at all
    channels = [ch for g in given.values() for ch, _ in g]
    assert 0 < channels.count("all") < channels.count("sms")  # some for both at once, most per channel
    states = [rule.state for p in phones if (rule := state_rule(p)) is not None]
    assert 0.15 <= len(states) / len(phones) <= 0.25 and set(states) == {"FL", "MD", "OK"}
    assert len(set(phones)) == len(phones)  # no number was moved onto another

    # a win-back by text (written consent to texts needed) and by phone have customers, in those states too
    for method in ("sms", "call"):
        preview = preview_audience(session, profile_id=profile_id, target_criteria={}, outreach_method=method,
                                   campaign_type="winback", now=now)
        by_state = preview.by_state
        assert preview.count > 50 and preview.suppressed_by["no_consent"] > 0, method
        assert set(by_state) == {"FL", "MD", "OK"} and all(s["recipients"] > 0 for s in by_state.values()), method
    # the demo's call and text drafts still reach someone
    for name in ("Call lapsed color clients", "How did we do?"):
        draft = session.scalars(select(Campaign).where(Campaign.name == name)).one()
        assert preview_audience(session, profile_id=profile_id, target_criteria=draft.target_criteria,
                                outreach_method=draft.outreach_method, campaign_type=draft.campaign_type,
                                now=now).count > 0, name
