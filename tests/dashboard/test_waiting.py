"""Why nothing is sent yet, in words (core.waiting), on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from core import campaigns, ratelimit, waiting
from core.models import Campaign, CampaignRecipient, RateLimit
from core.schemas import DAYS
from tests import factories as f
from tests.dashboard import helpers as h

ALL_DAY = {"start": "00:00", "end": "24:00", "days": list(DAYS)}
# 06:18 in New York on a Monday (June: UTC-4)
EARLY = datetime(2026, 6, 15, 10, 18, tzinfo=UTC)


def _started(session, *, method="sms", at=EARLY, phones=("+12015550100",), emails=(), **fields):
    p = f.make_profile(session)
    for i, phone in enumerate(phones):
        f.lead(session, p, phone=phone, name=f"Phone {i}", now=at)
    for i, email in enumerate(emails):
        f.lead(session, p, email=email, name=f"Mail {i}", now=at)
    c = f.campaign(session, p, method=method, now=at, **fields)
    campaigns.start_campaign(session, profile_id=p.id, campaign_id=c.id, now=at)
    session.flush()
    return p, c


def _why(session, p, c, at):
    return waiting.why_waiting(session, profile_id=p.id, campaign_id=c.id, now=at)


def test_a_text_campaign_started_before_the_window_says_when_it_sends(session):
    p, c = _started(session, send_window={"start": "09:00", "end": "19:00", "days": list(DAYS)})
    w = _why(session, p, c, EARLY)
    assert w is not None and w.kind == "window"
    assert w.sentence == ("Waiting for the send window (09:00–19:00, every day, the customer's local time): the "
                          "first texts go out at 09:00 in New York, in 2 h 42 min (1 customer due).")
    assert w.short == "next send 09:00" and w.at == datetime(2026, 6, 15, 13, 0, tzinfo=UTC)
    # once the engine has put them off until the opening, the sentence stays the same
    session.execute(update(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)
                    .values(next_attempt_at=w.at))
    later = _why(session, p, c, EARLY + timedelta(minutes=30))
    assert later.kind == "window" and "at 09:00 in New York, in 2 h 12 min" in later.sentence


def test_the_legal_calling_hours_and_a_states_stricter_ones(session):
    p, c = _started(session, send_window=ALL_DAY)
    w = _why(session, p, c, EARLY)
    assert w.kind == "calling_hours"
    assert w.sentence.startswith("Waiting for the legal calling hours (calls and texts only 08:00–21:00 in the "
                                 "customer's time zone): the first texts go out at 08:00 in New York, in 1 h 42 min")
    # 20:30 in Miami: Florida allows 08:00–20:00 only; e-mail is not bound by calling hours
    evening = datetime(2026, 6, 16, 0, 30, tzinfo=UTC)
    p, c = _started(session, send_window=ALL_DAY, at=evening, phones=("+13055550100",))
    w = _why(session, p, c, evening)
    assert w.kind == "calling_hours" and "Florida's calling hours (08:00–20:00 local time" in w.sentence
    assert "tomorrow at 08:00 in New York" in w.sentence
    p, c = _started(session, method="email", send_window=ALL_DAY, at=evening, phones=(),
                    emails=("a@example.com",))
    assert _why(session, p, c, evening).kind == "sending"


def test_sending_and_its_pace_and_a_scheduler_that_does_not_run(session):
    p, c = _started(session, method="email", phones=(), emails=[f"c{i}@example.com" for i in range(5)],
                    send_window=ALL_DAY, rate_limit_per_minute=2)
    w = _why(session, p, c, EARLY)
    assert w.kind == "sending" and w.short == "sending now"
    assert w.sentence == "Sending now: 5 customers due, at up to 2 per minute (the campaign's pace), about 2 min to go."
    stalled = _why(session, p, c, EARLY + timedelta(minutes=10))
    assert stalled.kind == "stalled" and "check that the scheduler is running" in stalled.sentence


def test_draft_scheduled_paused_and_finished(session, now):
    p = f.make_profile(session)
    f.lead(session, p, email="a@example.com", now=now)
    c = f.campaign(session, p, method="email", now=now)
    w = _why(session, p, c, now)
    assert (w.kind, w.short) == ("draft", "not started")
    session.execute(update(Campaign).where(Campaign.id == c.id).values(
        status="scheduled", scheduled_at=now + timedelta(hours=2, minutes=35)))
    session.expire_all()
    w = _why(session, p, c, now)
    assert w.kind == "scheduled"
    assert w.sentence.startswith("Scheduled: starts at 13:35 (New York time), in 2 h 35 min.")
    assert w.short == "starts 13:35"
    session.execute(update(Campaign).where(Campaign.id == c.id).values(
        status="paused", status_reason="Resend says the daily quota is used up; resume tomorrow."))
    session.expire_all()
    w = _why(session, p, c, now)
    assert w.sentence == ("Paused: Resend says the daily quota is used up; resume tomorrow. Nothing is sent until "
                          "you resume it.")
    assert w.short == "paused: Resend says the daily quota is used up"
    session.execute(update(Campaign).where(Campaign.id == c.id).values(status="completed"))
    session.expire_all()
    assert _why(session, p, c, now) is None


def test_later_steps_retries_best_time_and_the_ab_winner(session, now):
    p, c = _started(session, method="email", at=now, phones=(), emails=("a@example.com", "b@example.com"),
                    send_window=ALL_DAY)
    later = now + timedelta(hours=3)
    session.execute(update(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)
                    .values(next_attempt_at=later, attempts=1, error_message="Resend answered 503"))
    w = _why(session, p, c, now)
    assert w.kind == "retry"
    assert w.sentence == ("Trying again after a temporary problem (Resend answered 503): the next try is at 14:00 "
                          "(New York time), in 3 h.")
    session.execute(update(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)
                    .values(attempts=0, error_message=None, planned_at=later))
    assert _why(session, p, c, now).kind == "best_time"

    p2, multi = _started(session, method="multi", at=now, phones=("+12015550111",), send_window=ALL_DAY,
                         steps=[{"channel": "sms", "delay_hours": 0, "condition": "always"},
                                {"channel": "email", "delay_hours": 48, "condition": "no_response"}])
    session.execute(update(CampaignRecipient).where(CampaignRecipient.campaign_id == multi.id)
                    .values(step=1, next_attempt_at=now + timedelta(hours=48), sent_at=now))
    w = _why(session, p2, multi, now)
    assert w.kind == "step_delay" and "step 2 (e-mails) waits 48 hours after the one before" in w.sentence

    emails = [f"ab{i}@example.com" for i in range(10)]
    p3, ab = _started(session, method="email", at=now, phones=(), emails=emails, send_window=ALL_DAY,
                      variants=[{"name": "A"}, {"name": "B", "email_subject": "Hi {first_name|there}"}],
                      variant_mode="test_then_winner", test_percent=20, test_hours=24)
    session.execute(update(CampaignRecipient).where(CampaignRecipient.campaign_id == ab.id,
                                                    CampaignRecipient.ab_group == "test")
                    .values(next_attempt_at=None, status="sent", sent_at=now))
    w = _why(session, p3, ab, now + timedelta(hours=1))
    assert w.kind == "winner" and "then get the winning version" in w.sentence and "in 23 h" in w.sentence


def test_a_provider_back_off_and_calls_at_the_limit(session, now):
    p, c = _started(session, method="email", at=now, phones=(), emails=("a@example.com",), send_window=ALL_DAY)
    from core.config import get_settings
    from core.senders import account_key, settings_for

    business = settings_for(p, get_settings())
    key = ratelimit.provider_rate("email", business, account_key(business, "email")).key
    session.add(RateLimit(key=key, tat=0.0, blocked_until=(now + timedelta(seconds=90)).timestamp(), recent=[],
                          reason="Resend answered 429 Too Many Requests"))
    session.flush()
    w = _why(session, p, c, now)
    assert w.kind == "provider"
    assert "The provider asked us to slow down (Resend answered 429 Too Many Requests)" in w.sentence

    p2, calls = _started(session, method="call", at=now, phones=("+12015550122", "+12015550123"),
                         send_window=ALL_DAY, max_concurrent_calls=1)
    rid = h.recipients(session, session.get(Campaign, calls.id), now=now)[0]
    h.attempt(session, rid, at=now - timedelta(minutes=1), channel="call")  # accepted, still going on
    w = _why(session, p2, calls, now)
    assert w.kind == "calls" and w.sentence.startswith("1 call in progress, this campaign's limit")
