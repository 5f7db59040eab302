"""Attribution: a customer a campaign reached who comes back with a new lead within the campaign's
window is that campaign's conversion — through every path that creates leads."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core import leads as leads_module
from core.leads import add_lead, import_leads
from core.models import Campaign, Lead
from tests.channels import helpers as h
from tests.engine.helpers import Scripted
from tests.engine.helpers import settings as sandbox_settings


@pytest.fixture
def reached(session, factory, now):
    """A business whose e-mail campaign reached three customers at ``now`` (one of them phone + e-mail)."""
    profile = h.business(session)
    h.add_leads(session, profile, [{"email": "ann@example.com", "name": "Ann Lee"},
                                   {"email": "bo@example.com", "name": "Bo Kim"},
                                   {"phone": "+12125550103", "email": "cy@example.com", "name": "Cy Park"}], now=now)
    cid = h.campaign(session, profile, method="email", now=now)
    session.commit()
    email = Scripted("email", provider="resend")
    assert h.run(factory, profile.id, cid, now, sandbox_settings(), adapters={"email": email}).sent == 3
    return profile, cid


def new_lead(session, profile, now, *, days: float, **contact):
    lead = add_lead(session, profile_id=profile.id, customer_name="Returning customer", status="New",
                    created_at=now + timedelta(days=days), **contact)
    session.commit()
    return lead


def test_a_click_then_a_new_lead_is_a_conversion(session, client, reached, now):
    profile, cid = reached
    r = h.recipient(session, cid, "ann@example.com")
    # the customer clicked the booking link (the tracked redirect), then booked through the agent
    from core.clicks import tracked_url

    path = tracked_url(r.id, "https://bellavista.example/book", h.live_settings()).removeprefix(h.PUBLIC)
    assert client.get(path).status_code == 302
    leads_before = h.count(session, Lead)
    lead = new_lead(session, profile, now, days=3, customer_email="Ann@Example.com")
    assert lead.campaign_id == cid  # linked to the campaign that won the customer back
    r = h.recipient(session, cid, "ann@example.com")
    assert r.converted and r.converted_at == now + timedelta(days=3) and r.responded_at is not None
    assert h.count(session, Lead) == leads_before + 1  # the lead is the conversion: no second one
    (event,) = h.events(session, provider="attribution")
    assert event.type == "converted" and event.payload["lead_id"] == str(lead.id)
    counts = h.results_match(session, cid)
    assert counts["converted_count"] == 1


@pytest.mark.parametrize(("days", "converted"), [(-1, False), (0.01, True), (13.9, True), (14.1, False)])
def test_only_within_the_window_after_the_contact(session, reached, now, days, converted):
    profile, cid = reached
    new_lead(session, profile, now, days=days, customer_email="bo@example.com")
    assert h.recipient(session, cid, "bo@example.com").converted is converted


def test_the_campaigns_own_window(session, reached, now):
    profile, cid = reached
    session.execute(update(Campaign).where(Campaign.id == cid).values(attribution_days=3))
    session.commit()
    new_lead(session, profile, now, days=4, customer_email="bo@example.com")
    assert not h.recipient(session, cid, "bo@example.com").converted
    new_lead(session, profile, now, days=2.5, customer_email="ann@example.com")
    assert h.recipient(session, cid, "ann@example.com").converted


def test_matched_by_phone_or_by_the_email_the_campaign_knew(session, reached, now):
    profile, cid = reached
    # Cy's customer key is the phone; the new lead gives the phone only
    new_lead(session, profile, now, days=1, customer_phone="(212) 555-0103")
    assert h.recipient(session, cid, "+12125550103").converted
    # Bo was known by e-mail only; the new lead brings a phone too (another customer key)
    new_lead(session, profile, now, days=1, customer_phone="+12125550222", customer_email="bo@example.com")
    assert h.recipient(session, cid, "bo@example.com").converted


def test_last_touch_wins_and_nobody_converts_twice(session, factory, reached, now):
    profile, first = reached
    second = h.campaign(session, profile, method="email", now=now + timedelta(days=2))
    session.commit()
    email = Scripted("email", provider="resend")
    h.run(factory, profile.id, second, now + timedelta(days=2), sandbox_settings(), adapters={"email": email})
    new_lead(session, profile, now, days=5, customer_email="ann@example.com")
    assert not h.recipient(session, first, "ann@example.com").converted
    assert h.recipient(session, second, "ann@example.com").converted
    # another lead of the same customer: the recipient is converted already, nothing is counted again
    new_lead(session, profile, now, days=6, customer_email="ann@example.com")
    assert len(h.events(session, provider="attribution")) == 1
    assert h.results_match(session, second)["converted_count"] == 1
    assert h.results_match(session, first)["converted_count"] == 0


def test_a_recipient_converted_by_its_reply_is_not_counted_again(session, reached, now):
    from core.events import apply_event, record_event
    from core.models import OutreachEvent

    profile, cid = reached
    r = h.recipient(session, cid, "bo@example.com")
    record_event(session, provider="test", provider_event_id="reply-yes", type="converted",
                 occurred_at=now + timedelta(hours=1), recipient_id=r.id, payload={"source": "positive SMS reply"})
    apply_event(session, session.scalars(select(OutreachEvent).where(
        OutreachEvent.provider_event_id == "reply-yes")).one(), now=now + timedelta(hours=1))
    session.commit()
    new_lead(session, profile, now, days=2, customer_email="bo@example.com")
    assert h.events(session, provider="attribution") == []
    assert len(h.leads_of(session, profile.id, source="campaign")) == 1  # the reply's lead, and only it


def test_another_business_and_leads_of_a_campaign_are_not_new_leads(session, reached, now):
    profile, cid = reached
    other = h.business(session, name="Elsewhere")
    session.commit()
    new_lead(session, other, now, days=1, customer_email="ann@example.com")
    add_lead(session, profile_id=profile.id, customer_email="ann@example.com", campaign_id=cid, source="campaign",
             created_at=now + timedelta(days=1))
    session.commit()
    assert not h.recipient(session, cid, "ann@example.com").converted


@pytest.mark.parametrize("batch", [100_000, 1], ids=["one batch", "a batch per row"])
def test_an_import_attributes_in_one_statement(session, reached, now, monkeypatch, batch):
    monkeypatch.setattr(leads_module, "_LOAD_BATCH", batch)
    profile, cid = reached
    day = (now + timedelta(days=2)).date().isoformat()
    # the customer's later lead comes first in the file: the earlier one still wins, whatever the batches
    csv = ("customer_name,customer_phone,customer_email,status,service_type,created_at,notes\n"
           f"Ann Lee,,ann@example.com,New,Cut,{day}T13:00:00,second lead same customer\n"
           f"Ann Lee,,ann@example.com,New,Color,{day}T12:00:00,booked online\n"
           f"Cy Park,212-555-0103,,New,Cut,{(now + timedelta(days=30)).date().isoformat()},too late\n"
           f"Dee New,,dee@example.com,New,Cut,{day},never contacted\n")
    report = import_leads(session, profile_id=profile.id, source=io.StringIO(csv), now=now + timedelta(days=31))
    session.commit()
    assert report.imported == 4
    converted = {r.contact_key for r in h.recipients(session, cid) if r.converted}
    assert converted == {"ann@example.com"}
    (event,) = h.events(session, provider="attribution")
    first = session.scalars(select(Lead).where(Lead.id == uuid.UUID(event.payload["lead_id"]))).one()
    assert first.notes == "booked online" and first.campaign_id == cid
    session.commit()
    # the same file again: duplicates, nothing new
    again = import_leads(session, profile_id=profile.id, source=io.StringIO(csv), now=now + timedelta(days=31))
    session.commit()
    assert (again.imported, again.duplicates) == (0, 4)
    assert len(h.events(session, provider="attribution")) == 1
    assert h.results_match(session, cid)["converted_count"] == 1
