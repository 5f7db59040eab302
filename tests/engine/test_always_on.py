"""Always-on campaigns (DESIGN §11) run by the scheduler itself, with an injected clock across days and two
schedulers ticking at the same moment: customers are enrolled as they go quiet, once a day, never twice,
and the campaign never completes by itself."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from core import campaigns
from core.analytics import ALWAYS_ON_LABEL, campaign_table
from core.models import Campaign, CampaignRecipient
from core.scheduling import tick
from tests.engine import helpers as h


def _two_ticks(factory: Any, email: h.Scripted, at: datetime) -> int:
    """Two schedulers tick at the same moment; returns how many customers they enrolled together."""
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run(worker: str) -> None:
        try:
            reports.append(tick(factory, now=at, worker=worker, settings=h.settings(), adapters={"email": email},
                                budget=5.0))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"scheduler-{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return sum(r.enrolled for r in reports)


def test_an_always_on_campaign_enrols_customers_as_they_go_quiet_once_a_day(session, factory, now):
    profile = h.business(session)
    # two customers quiet for 200 days; one at 179 days (quiet enough tomorrow); one at 170.5 (in ten days)
    h.add_leads(session, profile, h.emails(2, prefix="quiet"), now=now, days_ago=200)
    h.add_leads(session, profile, h.emails(1, prefix="tomorrow"), now=now, days_ago=179.5)
    h.add_leads(session, profile, h.emails(1, prefix="later"), now=now, days_ago=170.5)
    cid = h.campaign(session, profile, now=now, start=False, always_on=True, reenroll_after_days=365,
                     target_criteria={"last_contact_days": 180})
    campaigns.start_campaign(session, profile_id=profile.id, campaign_id=cid, now=now)
    session.commit()
    email = h.Scripted("email")

    assert _two_ticks(factory, email, now + timedelta(minutes=1)) == 0  # the start selected the first two
    assert sorted(m.to for m in email.sent) == ["quiet0@example.com", "quiet1@example.com"]

    day = now
    for _ in range(12):
        day += timedelta(days=1)
        _two_ticks(factory, email, day)
        _two_ticks(factory, email, day + timedelta(hours=3))  # a later tick the same day enrols nobody
    sent = sorted(m.to for m in email.sent)
    assert sent == ["later0@example.com", "quiet0@example.com", "quiet1@example.com", "tomorrow0@example.com"]
    rows = h.recipients(session, cid)
    assert [(r.contact_key, r.enrollment) for r in rows] == [(k, 1) for k in sent]
    # who joined when: the 179.5-day customer on day 1, the 170-day one on day 10 (the day they crossed 180)
    joined = {r.contact_key: (r.created_at - now).days for r in rows}
    assert joined == {"quiet0@example.com": 0, "quiet1@example.com": 0, "tomorrow0@example.com": 1,
                      "later0@example.com": 10}
    c = session.get(Campaign, cid, populate_existing=True)
    assert c.status == "active" and c.completed_at is None  # everyone is done, and it keeps running
    session.commit()

    table, _ = campaign_table(session, profile_id=profile.id, now=day)
    row = table.loc[table["id"] == str(cid)].iloc[0]
    assert row["status_label"] == ALWAYS_ON_LABEL
    assert row["schedule"] == "Enrols 0.1 a day (last 7 days)"  # one customer (day 10) in the last 7 days


def test_stopping_an_always_on_campaign_ends_its_enrolment(session, factory, now):
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(1, prefix="quiet"), now=now, days_ago=200)
    cid = h.campaign(session, profile, now=now, always_on=True, target_criteria={"last_contact_days": 180})
    session.commit()
    email = h.Scripted("email")
    _two_ticks(factory, email, now)
    with factory() as s, s.begin():
        campaigns.stop_campaign(s, profile_id=profile.id, campaign_id=cid, now=now + timedelta(hours=1))
    h.add_leads(session, profile, h.emails(1, prefix="newcomer"), now=now, days_ago=200)
    session.commit()
    assert _two_ticks(factory, email, now + timedelta(days=2)) == 0
    assert [m.to for m in email.sent] == ["quiet0@example.com"]
    assert session.scalars(select(CampaignRecipient.contact_key).where(CampaignRecipient.campaign_id == cid)).all() \
        == ["quiet0@example.com"]
