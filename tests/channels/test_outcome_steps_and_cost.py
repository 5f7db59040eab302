"""Outcome-driven steps, the booking link, the best hour and what each try cost (DESIGN §11) — the
real dispatcher, the live adapters against the fake Vapi, Twilio and Resend, their webhooks through
the real app."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core import besttime
from core.models import Profile
from core.templates import sms_length
from tests.channels import helpers as h

NEW_YORK = ZoneInfo("America/New_York")
STARTER = [  # the wizard's starter sequence
    {"channel": "call"},
    {"channel": "sms", "delay_hours": 1, "condition": "voicemail"},
    {"channel": "email", "delay_hours": 1, "condition": "answered"},
]
SMS_TEXT = ("Hi {first_name|there}, sorry we missed you! We have a welcome-back offer waiting. Book your next "
            "visit at {business_name} here: {booking_link}. Reply STOP to opt out.")


def test_voicemail_and_answered_steps_and_what_each_try_cost(session, factory, fake_vapi, fake_twilio, fake_resend,
                                                              live, post, now):
    profile = h.business(session)
    profile.booking_url = "https://bellavista.example/book?src=sms"
    profile.price_per_call_minute, profile.price_per_sms_segment, profile.price_per_email = 0.12, 0.0079, 0.0004
    people = {"voicemail": "+12125550101", "answered": "+12125550102", "no-answer": "+12125550103"}
    h.add_leads(session, profile, [{"phone": p, "email": f"{k}@example.com", "name": f"{k.title()} Doe"}
                                   for k, p in people.items()], now=now)
    cid = h.campaign(session, profile, method="multi", now=now, steps=STARTER, sms_template=SMS_TEXT,
                     call_script="Hi {first_name|there}, this is {business_name}.",
                     email_subject="Thanks, {first_name}",
                     message_template="Good to talk to you, {first_name}. Book: {booking_link}")
    session.commit()
    assert h.run(factory, profile.id, cid, now, live).sent == 3
    ids = {c["customer"]["number"]: c["id"] for c in fake_vapi.created()}
    for who, reason, seconds in (("voicemail", "voicemail", 31), ("answered", "customer-ended-call", 95),
                                 ("no-answer", "customer-did-not-answer", 0)):
        call_id = ids[people[who]]
        transcript = "AI: Hi!\nUser: Yes, I might come in next week." if who == "answered" else None
        fake_vapi.end_call(call_id, ended_reason=reason, duration=seconds, transcript=transcript)
        assert fake_vapi.deliver(fake_vapi.end_of_call_report(call_id), post).status_code == 200

    report = h.run(factory, profile.id, cid, now + timedelta(hours=1, minutes=1), live)
    assert (report.sent, report.skipped) == (1, 2)
    (text,) = fake_twilio.sent_to(people["voicemail"])  # only the voicemail gets the text …
    assert "https://bellavista.example/book?src=sms" in text.body  # … with the business's booking link
    report = h.run(factory, profile.id, cid, now + timedelta(hours=2, minutes=2), live)
    assert report.sent == 1
    assert fake_resend.emails_per_address() == {"answered@example.com": 1}  # only who answered gets the e-mail

    # cost: call minutes at the business's price, SMS segments of the final text, one e-mail
    costs = {(a.channel, a.recipient_id): a.cost for a in h.attempts(session, cid) if a.outcome == "accepted"}
    rs = {r.customer_phone: r.id for r in h.recipients(session, cid)}
    price = session.scalar(select(Profile.price_per_call_minute).where(Profile.id == profile.id))
    assert costs[("call", rs[people["answered"]])] == round(95 / 60 * price, 6)
    assert costs[("call", rs[people["voicemail"]])] == round(31 / 60 * price, 6)
    assert costs[("call", rs[people["no-answer"]])] == 0.0
    segments = sms_length(text.body).segments
    assert segments == 2  # the final text, booking link and all, is two segments
    assert costs[("sms", rs[people["voicemail"]])] == round(segments * 0.0079, 6)
    assert costs[("email", rs[people["answered"]])] == 0.0004
    h.results_match(session, cid)


def test_the_first_step_waits_for_the_customers_best_hour(session, factory, fake_twilio, live):
    """``send_time: "best"`` with no history: texts go at the typical best hour (late morning), in the
    customer's own time zone, each at a minute of its own."""
    morning = datetime(2026, 6, 15, 8, 30, tzinfo=NEW_YORK)
    profile = h.business(session)
    people = ["+12125550101", "+13105550102"]  # New York, Los Angeles
    h.add_leads(session, profile, [{"phone": p, "name": f"Pat{i} Doe"} for i, p in enumerate(people)], now=morning)
    cid = h.campaign(session, profile, method="sms", now=morning, send_time="best")
    session.commit()
    report = h.run(factory, profile.id, cid, morning, live)
    assert report.sent == 0 and fake_twilio.sent_to(people[0]) == []
    planned = {r.customer_phone: r for r in h.recipients(session, cid)}
    ny = planned[people[0]].next_attempt_at.astimezone(NEW_YORK)
    la = planned[people[1]].next_attempt_at.astimezone(ZoneInfo("America/Los_Angeles"))
    assert (ny.date(), ny.hour) == (morning.date(), 10) and (la.date(), la.hour) == (morning.date(), 10)
    assert ny.minute == besttime.spread_minute(planned[people[0]].id)
    # at the planned moment the text goes, not re-planned
    report = h.run(factory, profile.id, cid, planned[people[0]].next_attempt_at, live)
    assert report.sent == 1 and len(fake_twilio.sent_to(people[0])) == 1
    assert h.recipient(session, cid, people[1]).status == "queued"
