"""Provider events: stored once, applied once, with the documented effect on the recipient."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core.errors import Invalid
from core.events import apply_event, process_due_events, record_event
from core.models import CampaignRecipient, Lead, OptOut, OutreachAttempt, OutreachEvent
from tests.engine import helpers as h


@pytest.fixture
def world(session, now):
    """A business with an e-mail campaign of three customers (phones too), started."""
    profile = h.business(session)
    h.add_leads(session, profile, [{"email": f"c{i}@example.com", "phone": f"+1212555010{i}", "name": f"Ann{i} Lee"}
                                   for i in range(3)], now=now)
    cid = h.campaign(session, profile, now=now)
    session.commit()
    return profile, cid, h.recipients(session, cid)


def ev(session, recipient, kind, at, *, eid=None, channel="email", **payload):
    ok = record_event(session, provider="test", provider_event_id=eid or f"{kind}:{uuid.uuid4()}", type=kind,
                      occurred_at=at, recipient_id=recipient.id, campaign_id=recipient.campaign_id,
                      profile_id=recipient.profile_id, channel=channel, payload=payload)
    event = session.scalars(select(OutreachEvent).order_by(OutreachEvent.received_at.desc())).first()
    return ok, event


def apply_all(session, now):
    for event in session.scalars(select(OutreachEvent).where(OutreachEvent.processed_at.is_(None))
                                 .order_by(OutreachEvent.occurred_at)):
        apply_event(session, event, now=now)
    session.flush()
    session.expire_all()


def test_record_is_idempotent_and_checks_the_type(session, world, now):
    _, _, (r, *_) = world
    assert record_event(session, provider="resend", provider_event_id="evt_1", type="delivered", occurred_at=now,
                        recipient_id=r.id) is True
    assert record_event(session, provider="resend", provider_event_id="evt_1", type="delivered", occurred_at=now,
                        recipient_id=r.id) is False
    # the same id from another provider is another event
    assert record_event(session, provider="twilio", provider_event_id="evt_1", type="delivered", occurred_at=now,
                        recipient_id=r.id) is True
    assert session.scalar(select(func.count()).select_from(OutreachEvent)) == 2
    with pytest.raises(Invalid) as err:
        record_event(session, provider="resend", provider_event_id="evt_2", type="exploded", occurred_at=now)
    assert err.value.field == "type"


def test_status_moves_forward_only_and_times_are_set_once(session, world, now):
    _, cid, (r, *_) = world
    t1, t2, t3 = now + timedelta(minutes=1), now + timedelta(minutes=2), now + timedelta(minutes=3)
    ev(session, r, "sent", t1)
    ev(session, r, "answered", t2, channel="call", ended_reason="customer-ended-call", transcript="AI: hi",
       summary="Booked", recording_url="https://rec.example/1.wav", structured_data={"booked": True}, cost=0.12)
    ev(session, r, "delivered", t3)  # late and out of order: changes nothing
    apply_all(session, now)
    r = session.get(CampaignRecipient, r.id)
    assert r.status == "answered"
    assert (r.sent_at, r.delivered_at, r.answered_at) == (t1, t2, t2)
    assert r.response_data["transcript"] == "AI: hi" and r.response_data["structured_data"] == {"booked": True}
    assert r.response_data["recording_url"].endswith("1.wav") and r.response_data["cost"] == 0.12
    h.assert_results_match(session, cid)


def test_not_answered_opened_clicked_replied(session, world, now):
    _, _, (a, b, c) = world
    ev(session, a, "sent", now)
    ev(session, a, "not_answered", now, channel="call", ended_reason="customer-busy")
    ev(session, b, "delivered", now)
    ev(session, b, "opened", now + timedelta(minutes=1))
    ev(session, c, "clicked", now + timedelta(minutes=2), url="https://book.example")
    ev(session, c, "replied", now + timedelta(minutes=3), channel="sms", text="Yes please")
    apply_all(session, now)
    a, b, c = (session.get(CampaignRecipient, x.id) for x in (a, b, c))
    assert a.status == "sent" and a.response_data["ended_reason"] == "customer-busy" and a.responded_at is None
    assert b.status == "delivered" and b.response_data["opened_at"] and b.responded_at is None
    assert c.responded_at == now + timedelta(minutes=2)  # the first response counts
    assert c.response_data["reply"] == "Yes please" and c.response_data["clicked_url"] == "https://book.example"


def test_conversion_creates_exactly_one_lead(session, world, now):
    _profile, cid, (r, *_) = world
    before = session.scalar(select(func.count()).select_from(Lead))
    ev(session, r, "converted", now + timedelta(minutes=5), summary="Booked Saturday")
    ev(session, r, "converted", now + timedelta(minutes=9))  # reported twice (two providers, say)
    apply_all(session, now)
    r = session.get(CampaignRecipient, r.id)
    assert r.converted and r.converted_at == now + timedelta(minutes=5) and r.responded_at is not None
    leads = session.scalars(select(Lead).where(Lead.campaign_id == cid)).all()
    assert len(leads) == 1 and session.scalar(select(func.count()).select_from(Lead)) == before + 1
    lead = leads[0]
    assert (lead.status, lead.source, lead.customer_email, lead.contact_key) == (
        "New", "campaign", r.customer_email, r.contact_key)
    assert lead.call_summary == "Booked Saturday"


@pytest.mark.parametrize(("kind", "payload", "opt_out_source"), [
    ("bounced", {"bounce_type": "Permanent", "error": "550 no such user"}, "bounce"),
    ("bounced", {"bounce_type": "Transient", "error": "mailbox full"}, None),
    ("complained", {}, "complaint"),
    ("failed", {"error": "30008 unknown error"}, None),
])
def test_failures_and_suppressions(session, world, now, kind, payload, opt_out_source):
    _profile, cid, (r, *_) = world
    r.next_attempt_at = None  # its only step went out
    session.flush()
    ev(session, r, "sent", now)
    ev(session, r, kind, now + timedelta(seconds=5), **payload)
    apply_all(session, now)
    r = session.get(CampaignRecipient, r.id)
    # a complaint opts the customer out (counted as opted out, like an unsubscribe); other failures fail
    assert r.status == ("opted_out" if kind == "complained" else "failed") and r.error_message
    if "error" in payload:
        assert r.error_message == payload["error"]
    opt_out = session.scalars(select(OptOut).where(OptOut.contact == r.customer_email)).one_or_none()
    assert (opt_out.source if opt_out else None) == opt_out_source
    if opt_out:
        assert opt_out.channel == "email"
    h.assert_results_match(session, cid)


@pytest.mark.parametrize(("channel", "source", "contact_attr"), [
    ("sms", "sms_stop", "customer_phone"), ("call", "call_request", "customer_phone"),
    ("email", "unsubscribe_link", "customer_email")])
def test_opt_out_events(session, world, now, channel, source, contact_attr):
    _profile, cid, (r, *_) = world
    ev(session, r, "opted_out", now, channel=channel, text="STOP")
    apply_all(session, now)
    r = session.get(CampaignRecipient, r.id)
    assert r.status == "opted_out" and r.next_attempt_at is None
    opt_out = session.scalars(select(OptOut).where(OptOut.contact == getattr(r, contact_attr))).one()
    assert (opt_out.channel, opt_out.source, opt_out.campaign_id) == (channel, source, cid)


def test_failure_of_one_step_does_not_fail_a_recipient_with_steps_left(session, world, now):
    _, _, (r, *_) = world
    r.next_attempt_at = now + timedelta(hours=48)  # a later step is waiting
    session.flush()
    ev(session, r, "bounced", now, bounce_type="Transient", error="mailbox full")
    apply_all(session, now)
    r = session.get(CampaignRecipient, r.id)
    assert r.status != "failed" and r.error_message == "mailbox full"


def test_events_find_their_recipient_through_the_attempt(session, world, now):
    profile, cid, (r, *_) = world
    session.add(OutreachAttempt(id=uuid.uuid4(), profile_id=profile.id, campaign_id=cid, recipient_id=r.id, step=0,
                                attempt_no=1, channel="call", provider="vapi", idempotency_key=f"reengage/{r.id}/0",
                                outcome="accepted", provider_message_id="call_123", detail={}, started_at=now))
    session.flush()
    record_event(session, provider="vapi", provider_event_id="eoc_1", type="not_answered", occurred_at=now,
                 provider_message_id="call_123", payload={"ended_reason": "customer-did-not-answer"})
    record_event(session, provider="vapi", provider_event_id="eoc_2", type="answered", occurred_at=now,
                 provider_message_id="call_unknown")
    apply_all(session, now)
    events = {e.provider_event_id: e for e in session.scalars(select(OutreachEvent))}
    assert events["eoc_1"].recipient_id == r.id and events["eoc_1"].campaign_id == cid
    assert events["eoc_1"].channel == "call" and events["eoc_1"].processed_at is not None
    assert events["eoc_2"].recipient_id is None and events["eoc_2"].processed_at is not None  # ignored
    attempt = session.scalars(select(OutreachAttempt).where(OutreachAttempt.recipient_id == r.id)).one()
    assert attempt.completed_at == now  # the call has ended: it no longer counts as in progress
    assert session.get(CampaignRecipient, r.id).response_data["ended_reason"] == "customer-did-not-answer"


def test_process_due_events_applies_due_ones_oldest_first(engine, world, now, session):
    _, cid, (r, *_) = world
    ev(session, r, "delivered", now + timedelta(seconds=10), eid="d")
    ev(session, r, "sent", now, eid="s")
    ev(session, r, "opened", now + timedelta(hours=1), eid="o")  # not due yet
    session.commit()
    factory = h.factory(engine)
    assert process_due_events(factory, now=now + timedelta(minutes=1)) == 2
    assert process_due_events(factory, now=now + timedelta(minutes=1)) == 0  # nothing applies twice
    r = h.recipients(session, cid)[0]
    assert r.status == "delivered" and r.sent_at == now and "opened_at" not in r.response_data
    h.assert_results_match(session, cid)
    assert process_due_events(factory, now=now + timedelta(hours=2)) == 1
    assert h.recipients(session, cid)[0].response_data["opened_at"]
    # a replayed webhook is acknowledged and changes nothing
    assert record_event(session, provider="test", provider_event_id="o", type="opened", occurred_at=now) is False
