"""Results are counted from the recipients, per the documented rules."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from core import results, targeting
from core.models import CampaignRecipient, CampaignResult
from tests import factories as f


def test_counting_rules_and_breakdowns(session, now):
    p = f.make_profile(session)
    for i in range(8):
        f.lead(session, p, email=f"c{i}@example.com", name=f"C{i}", now=now)
    c = f.campaign(session, p, method="email", variants=[{"name": "A"}, {"name": "B"}])
    targeting.select_recipients(session, campaign=c, now=now)
    ids = session.scalars(select(CampaignRecipient.id).where(CampaignRecipient.campaign_id == c.id)
                          .order_by(CampaignRecipient.contact_key)).all()
    t = now + timedelta(minutes=5)
    states = [
        dict(status="answered", sent_at=t, delivered_at=t, answered_at=t, responded_at=t, converted=True,
             last_channel="email"),
        dict(status="delivered", sent_at=t, delivered_at=t, responded_at=t, last_channel="email"),
        dict(status="delivered", sent_at=t, delivered_at=t, last_channel="email"),
        dict(status="sent", sent_at=t, last_channel="email"),
        dict(status="failed", sent_at=t, error_message="bounced", last_channel="email"),
        dict(status="failed", error_message="invalid address"),
        dict(status="opted_out"),
        dict(status="pending"),
    ]
    for rid, values in zip(ids, states, strict=True):
        session.execute(update(CampaignRecipient).where(CampaignRecipient.id == rid).values(**values))
    out = results.campaign_results(session, profile_id=p.id, campaign_id=c.id).as_dict()
    assert {k: out[k] for k in results.COUNTERS} == {
        "total_recipients": 8, "sent_count": 5, "delivered_count": 3, "answered_count": 1, "responded_count": 2,
        "converted_count": 1, "failed_count": 2, "opted_out_count": 1}
    assert out["response_rate"] == 0.4 and out["conversion_rate"] == 0.2
    assert set(out["by_variant"]) == {"A", "B"}
    assert sum(v["total_recipients"] for v in out["by_variant"].values()) == 8
    assert out["by_channel"]["email"]["total_recipients"] == 8

    stored = results.refresh_campaign_results(session, campaign_id=c.id)
    row = session.scalars(select(CampaignResult).where(CampaignResult.campaign_id == c.id)).one()
    assert row.sent_count == stored.sent_count == 5
    session.execute(update(CampaignRecipient).where(CampaignRecipient.id == ids[7]).values(status="sent", sent_at=t))
    results.refresh_campaign_results(session, campaign_id=c.id)
    session.refresh(row)
    assert row.sent_count == 6
    assert session.scalars(select(CampaignResult)).all() == [row]  # upserted, not duplicated


def test_empty_campaign(session, now):
    p = f.make_profile(session)
    c = f.campaign(session, p, method="sms")
    out = results.campaign_results(session, profile_id=p.id, campaign_id=c.id).as_dict()
    assert out["total_recipients"] == 0 and out["response_rate"] == 0.0 and out["by_variant"] == {}
