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


def test_lift_and_cost_in_the_results(session, now):
    """A campaign with a holdout: who came back on each side, the lift over the holdout (the same numbers
    as core.lift computes from the counts), what it cost and what each customer who came back cost."""
    import uuid

    from core import campaigns
    from core.lift import lift
    from core.models import OutreachAttempt

    p = f.make_profile(session)
    p.price_per_email = 0.002
    for i in range(40):
        f.lead(session, p, email=f"c{i:02d}@example.com", name=f"C{i}", now=now)
    c = f.campaign(session, p, method="email", holdout_percent=25)
    targeting.select_recipients(session, campaign=c, now=now)
    campaigns.start_campaign(session, profile_id=p.id, campaign_id=c.id, now=now)
    rows = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)
                           .order_by(CampaignRecipient.contact_key)).all()
    held = [r for r in rows if r.status == "holdout"]
    contacted = [r for r in rows if r.status != "holdout"]
    n_held, n_contacted = len(held), len(contacted)  # a share by contact key: about a quarter, the same each time
    assert n_held + n_contacted == 40 and 1 <= n_held <= 20
    t = now + timedelta(minutes=5)
    for n, r in enumerate(contacted):
        session.execute(update(CampaignRecipient).where(CampaignRecipient.id == r.id)
                        .values(status="delivered", sent_at=t, delivered_at=t, next_attempt_at=None))
        session.add(OutreachAttempt(id=uuid.uuid4(), profile_id=p.id, campaign_id=c.id, recipient_id=r.id, step=0,
                                    attempt_no=1, channel="email", provider="resend", idempotency_key=f"k{n}",
                                    outcome="accepted", cost=0.002, started_at=t))
    before = results.campaign_results(session, profile_id=p.id, campaign_id=c.id).as_dict()
    assert before["returned_count"] == 0 and before["cost_per_returned"] is None
    # nine contacted customers and one kept back call the shop again within the window
    for r in [*contacted[:9], held[0]]:
        f.lead(session, p, email=r.contact_key, name="Back again", days_ago=-3, now=now)
    out = results.campaign_results(session, profile_id=p.id, campaign_id=c.id).as_dict()
    assert (out["total_recipients"], out["holdout_count"]) == (n_contacted, n_held)
    assert (out["returned_count"], out["holdout_returned_count"]) == (9, 1)
    expected = lift(contacted=n_contacted, contacted_returned=9, holdout=n_held, holdout_returned=1)
    assert out["lift"] == expected.as_dict()
    assert out["lift"]["contacted_rate"] == round(9 / n_contacted, 6)
    assert out["lift"]["holdout_rate"] == round(1 / n_held, 6)
    cost = round(0.002 * n_contacted, 4)
    assert out["actual_cost"] == cost
    assert out["estimated_cost"] == cost  # one e-mail step for each contacted customer
    assert out["cost_per_returned"] == round(cost / 9, 4)
    # a campaign without a holdout has no lift, and says so with null
    plain = f.campaign(session, p, method="email")
    assert results.campaign_results(session, profile_id=p.id, campaign_id=plain.id).as_dict()["lift"] is None


def test_the_hour_curve_counted_in_sql_equals_the_planners_model(session, now):
    """Analytics' hour-of-day curve (core.besttime.business_model, counted in SQL) has the very tries and
    successes the planner's model counts row by row, customers' own time zones included."""
    import uuid

    from core import besttime
    from core.models import OutreachAttempt

    p = f.make_profile(session)
    phones = ["+12125550101", "+13105550102", "+13125550103", "+12065550104"]  # New York, LA, Chicago, Seattle
    for phone in phones:
        f.lead(session, p, phone=phone, name="Pat", now=now)
    c = f.campaign(session, p, method="call")
    targeting.select_recipients(session, campaign=c, now=now)
    rows = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)
                           .order_by(CampaignRecipient.contact_key)).all()
    for n in range(60):
        r = rows[n % len(rows)]
        started = now - timedelta(days=n % 9, hours=n * 5 % 24, minutes=n * 7 % 60)
        session.add(OutreachAttempt(id=uuid.uuid4(), profile_id=p.id, campaign_id=c.id, recipient_id=r.id,
                                    step=0, attempt_no=n + 1, channel="call", provider="vapi",
                                    idempotency_key=f"k{n}", outcome="accepted", started_at=started))
        if n % 3 == 0:  # answered within the two hours, once after them
            session.execute(update(CampaignRecipient).where(CampaignRecipient.id == r.id).values(
                answered_at=started + timedelta(minutes=30 if n % 2 else 180)))
            session.flush()
    session.flush()
    planner = besttime.load(session, profile_id=p.id, channel="call", now=now)
    drawn = besttime.business_model(session, profile_id=p.id, channel="call", now=now)
    assert sum(drawn.tries) == 60 and 0 < sum(drawn.successes) < 60
    assert (drawn.tries, drawn.successes) == (planner.tries, planner.successes)
