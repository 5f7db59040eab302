"""The customer list and erasing a customer (core.customers), on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core import customers, optouts, results
from core.errors import Invalid, NotFound
from core.models import CampaignRecipient, Lead, OutreachAttempt, OutreachEvent
from tests import factories as f
from tests.dashboard import helpers as h


def test_customers_are_grouped_paged_and_searched_in_sql(session, now):
    p = f.make_profile(session)
    # one customer with three leads; the newest lead has no name or e-mail
    f.lead(session, p, phone="+12015550101", email="mia@example.com", name="Mia Wong", status="Closed",
           days_ago=300, now=now, service_type="Color")
    f.lead(session, p, phone="+12015550101", name="Mia W.", status="Closed", days_ago=200, now=now)
    f.lead(session, p, phone="+12015550101", name=None, status="Contacted", days_ago=10, now=now)
    f.lead(session, p, email="zoe@example.com", name="Zoe Park", days_ago=5, now=now)
    f.lead(session, p, phone="+13125550199", name="Omar Haddad", days_ago=50, now=now)
    f.lead(session, f.make_profile(session), email="someone@else.example", name="Not Mine", now=now)

    frame, total = customers.list_customers(session, profile_id=p.id)
    assert total == 3
    assert list(frame["name"]) == ["Zoe Park", "Mia W.", "Omar Haddad"]  # most recently in touch first
    mia = frame.iloc[1]
    assert mia["contact_key"] == "+12015550101"
    assert mia["email"] == "mia@example.com"  # newest known, from an older lead
    assert mia["leads"] == 3 and mia["last_status"] == "Contacted" and mia["service"] == "Color"
    assert mia["last_contact"] == now - timedelta(days=10)

    page, total = customers.list_customers(session, profile_id=p.id, limit=2, offset=2)
    assert total == 3 and list(page["name"]) == ["Omar Haddad"]
    found, total = customers.list_customers(session, profile_id=p.id, search="wong")
    assert total == 1 and found["contact_key"].iloc[0] == "+12015550101"
    by_digits, total = customers.list_customers(session, profile_id=p.id, search="(312) 555")
    assert total == 1 and by_digits["name"].iloc[0] == "Omar Haddad"
    none, total = customers.list_customers(session, profile_id=p.id, search="100%_")
    assert total == 0 and none.empty
    assert customers.service_types(session, profile_id=p.id) == ["Color"]


def test_erasing_removes_personal_data_and_keeps_the_counts(session, now):
    p = f.make_profile(session)
    f.lead(session, p, phone="+12015550123", email="ana@example.com", name="Ana Lima", now=now,
           notes="Allergic to latex")
    f.lead(session, p, phone="+12015550123", name="Ana Lima", now=now, days_ago=400)
    # the same person also wrote in once by e-mail only: a second customer key, same e-mail
    f.lead(session, p, email="ana@example.com", name="Ana", now=now, days_ago=250)
    f.lead(session, p, phone="+12015550999", name="Bea Cruz", now=now)
    other = f.make_profile(session)
    f.lead(session, other, phone="+12015550123", email="ana@example.com", name="Ana at another shop", now=now)
    c = f.campaign(session, p, method="email", now=now)
    ids = h.recipients(session, c, now=now)
    ana = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id,
                                                          CampaignRecipient.customer_email == "ana@example.com")
                          ).all()
    assert len(ana) == 2  # as the phone customer and as the e-mail-only customer
    for r in ana:
        h.set_state(session, r.id, status="delivered", sent_at=now, delivered_at=now, responded_at=now,
                    response_data={"reply": "Yes please, Ana here"})
        h.event(session, r.id, "delivered", now, payload={"to": ["ana@example.com"]})
        h.attempt(session, r.id, at=now, detail={"to": "ana@example.com"})
    optouts.record_opt_out(session, profile_id=p.id, contact="ana@example.com", channel="email", source="manual")
    before = results.count_recipients(session, campaign_id=c.id)

    report = customers.erase_customer(session, profile_id=p.id, contact_key="+12015550123", now=now)
    assert (report.customers, report.leads, report.recipients, report.events, report.attempts) == (2, 3, 2, 2, 2)
    assert "Erased the personal details from 3 leads" in report.sentence()

    mine = session.scalars(select(Lead).where(Lead.profile_id == p.id)).all()
    erased = [lead for lead in mine if lead.contact_key.startswith("erased:")]
    assert len(erased) == 3 and len(mine) == 4
    for lead in erased:
        assert (lead.customer_name, lead.customer_phone, lead.customer_email, lead.notes, lead.fingerprint) == (
            None, None, None, None, None)
        assert lead.status and lead.created_at  # anonymous facts stay
    # two original customers keep two distinct opaque keys
    assert len({lead.contact_key for lead in erased}) == 2
    recipients = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)).all()
    assert len(recipients) == len(ids)
    gone = [r for r in recipients if r.contact_key.startswith("erased:")]
    assert len(gone) == 2
    assert all(r.customer_email is None and r.customer_name is None and r.response_data == {} for r in gone)
    assert all(r.status == "delivered" and r.responded_at is not None for r in gone)
    assert all(e.payload == {} for e in session.scalars(select(OutreachEvent)))
    assert all(a.detail == {} for a in session.scalars(select(OutreachAttempt)))
    assert results.count_recipients(session, campaign_id=c.id) == before
    # the opt-out stays, so a re-import cannot bring her back into a campaign
    assert optouts.is_opted_out(session, profile_id=p.id, contact="ana@example.com", channel="email")
    # the list no longer shows her; the other business still has its own record
    frame, total = customers.list_customers(session, profile_id=p.id)
    assert total == 1 and list(frame["name"]) == ["Bea Cruz"]
    assert session.scalar(select(func.count()).select_from(Lead).where(
        Lead.profile_id == other.id, Lead.customer_email == "ana@example.com")) == 1

    with pytest.raises(NotFound):
        customers.erase_customer(session, profile_id=p.id, contact_key="+12015550123")
    with pytest.raises(NotFound):
        customers.erase_customer(session, profile_id=p.id, contact_key=erased[0].contact_key)


def test_a_customer_of_another_business_cannot_be_erased(session, now):
    p, other = f.make_profile(session), f.make_profile(session)
    f.lead(session, other, phone="+12015550155", name="Kept", now=now)
    with pytest.raises(NotFound):
        customers.erase_customer(session, profile_id=p.id, contact_key="+12015550155")
    assert session.scalar(select(Lead.customer_name).where(Lead.profile_id == other.id)) == "Kept"


def test_find_customer_key_by_any_contact(session, now):
    p = f.make_profile(session)
    f.lead(session, p, phone="+12015550177", email="kai@example.com", name="Kai", now=now)
    assert customers.find_customer_key(session, profile_id=p.id, contact="(201) 555-0177") == "+12015550177"
    assert customers.find_customer_key(session, profile_id=p.id, contact="KAI@example.com") == "+12015550177"
    with pytest.raises(NotFound):
        customers.find_customer_key(session, profile_id=p.id, contact="nobody@example.com")
    with pytest.raises(Invalid) as exc:
        customers.find_customer_key(session, profile_id=p.id, contact="not a number")
    assert exc.value.field == "contact"
