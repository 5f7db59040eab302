"""The dispatcher with an injected clock: what is sent, when, and what happens to each
recipient — against the fake Resend (live adapter), the sandbox, and channel doubles."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from core import campaigns
from core.channels.base import OptedOutError
from core.dispatch import run_campaign_pass
from core.errors import Conflict, NotFound
from core.models import Campaign, OptOut, OutreachAttempt
from core.optouts import record_opt_out
from core.ratelimit import burst_of
from core.scheduling import tick
from core.tokens import read_unsubscribe_token
from tests.engine import helpers as h
from tests.fakes.resend import DEFAULT_KEY, FakeResend


def live(fake: FakeResend, **overrides):
    return h.settings(resend_api_key=DEFAULT_KEY, resend_from="hello@bellavista.example",
                      resend_base_url=fake.url, **overrides)


def email_campaign(session, n: int, now, **fields):
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(n), now=now)
    cid = h.campaign(session, profile, now=now, **fields)
    session.commit()
    return profile, cid


def run(factory, profile, cid, now, settings, **kw):
    return run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=now, settings=settings,
                             worker=kw.pop("worker", "test-worker"), **kw)


def test_every_recipient_gets_one_email_and_the_campaign_completes(session, factory, fake_resend, now):
    profile, cid = email_campaign(session, 40, now)
    report = run(factory, profile, cid, now, live(fake_resend, scheduler_batch_size=15))
    assert report.as_dict() == {"processed": 40, "sent": 40, "failed": 0, "opted_out": 0, "deferred": 0,
                                "skipped": 0, "remaining": 0}
    assert len(fake_resend.emails) == 40 and set(fake_resend.emails_per_address().values()) == {1}
    assert set(fake_resend.posts_per_key().values()) == {1}
    rs = h.recipients(session, cid)
    # sends start at their paced moments on the dispatcher's clock, within the second the limits allow
    assert {r.status for r in rs} == {"sent"} and all(now <= r.sent_at < now + timedelta(seconds=1) for r in rs)
    assert all(r.provider_message_id in fake_resend.emails and r.last_channel == "email" for r in rs)
    assert all(r.claimed_by is None and r.next_attempt_at is None for r in rs)
    attempts = h.attempts(session, cid)
    assert len(attempts) == 40 and {(a.outcome, a.attempt_no) for a in attempts} == {("accepted", 1)}
    assert all(now <= a.completed_at < now + timedelta(seconds=1) for a in attempts)
    assert all(a.idempotency_key == f"reengage/{a.recipient_id}/0" for a in attempts)
    assert len(h.events(session, cid, kind="sent")) == 40
    assert session.get(Campaign, cid, populate_existing=True).status == "completed"
    h.assert_results_match(session, cid)


def test_a_pass_is_refused_for_other_businesses_and_inactive_campaigns(session, factory, now):
    profile, cid = email_campaign(session, 2, now)
    other = h.business(session, name="Studio Nine")
    draft = h.campaign(session, profile, now=now, start=False)
    session.commit()
    with pytest.raises(NotFound):
        run(factory, other, cid, now, h.settings())
    with pytest.raises(Conflict) as err:
        run(factory, profile, draft, now, h.settings())
    assert err.value.message == "This campaign is a draft; start it before running it."


def test_email_content_footer_and_unsubscribe_link(session, factory, fake_resend, now):
    profile, cid = email_campaign(session, 6, now, variants=[
        {"name": "A", "weight": 1}, {"name": "B", "weight": 1, "email_subject": "A treat for {first_name}"}])
    s = live(fake_resend)
    run(factory, profile, cid, now, s)
    by_address = {e.to[0]: e.payload for e in fake_resend.emails.values()}
    for r in h.recipients(session, cid):
        p = by_address[r.customer_email]
        first = r.customer_name.split()[0]
        assert p["subject"] == (f"A treat for {first}" if r.variant == "B" else f"We miss you, {first}")
        assert p["text"].startswith(f"Hi {first},\n\nCome back to Bella Vista: 20% off.")
        link = p["headers"]["List-Unsubscribe"].strip("<>")
        assert link.startswith("https://shop.example/unsubscribe/") and link in p["text"] and link in p["html"]
        assert read_unsubscribe_token(link.rsplit("/", 1)[1], s) == r.id
        assert "Unsubscribe</a>" in p["html"]


def test_pause_stops_sending_resume_continues_stop_ends(session, factory, fake_resend, now):
    profile, cid = email_campaign(session, 30, now, rate_limit_per_minute=60)
    s = live(fake_resend)
    first = run(factory, profile, cid, now, s)
    # the burst at once, plus what is due within the next second
    assert first.sent == burst_of(60) + 1 and len(fake_resend.emails) == first.sent
    campaigns.pause_campaign(session, profile_id=profile.id, campaign_id=cid, now=now)
    session.commit()
    with pytest.raises(Conflict):
        run(factory, profile, cid, now + timedelta(minutes=5), s)
    tick(factory, now=now + timedelta(minutes=6), worker="w", settings=s)
    assert len(fake_resend.emails) == first.sent  # nothing while paused
    campaigns.start_campaign(session, profile_id=profile.id, campaign_id=cid, now=now + timedelta(minutes=7))
    session.commit()
    second = run(factory, profile, cid, now + timedelta(minutes=7), s)
    assert second.sent > 0 and second.remaining == 30 - first.sent - second.sent
    campaigns.stop_campaign(session, profile_id=profile.id, campaign_id=cid, now=now + timedelta(minutes=8))
    session.commit()
    tick(factory, now=now + timedelta(minutes=30), worker="w", settings=s)
    # resume sent only those not reached before, stop ended it: nobody twice, nobody after the stop
    assert len(fake_resend.emails) == first.sent + second.sent
    assert set(fake_resend.emails_per_address().values()) == {1}
    statuses = h.statuses(session, cid)
    assert statuses.pop("sent") == first.sent + second.sent
    assert sum(statuses.values()) == 30 - first.sent - second.sent and set(statuses) <= {"pending", "queued"}


def test_transient_failures_back_off_then_fail(session, factory, fake_resend, now):
    profile, cid = email_campaign(session, 3, now, max_attempts=3)
    fake_resend.fail_address("customer1@example.com", status=500, name="internal_server_error",
                             message="Something went wrong")
    s = live(fake_resend)
    report = run(factory, profile, cid, now, s)
    assert (report.sent, report.deferred) == (2, 1)
    r = next(x for x in h.recipients(session, cid) if x.customer_email == "customer1@example.com")
    assert r.status == "queued" and r.attempts == 1 and "500" in r.error_message
    assert now + timedelta(seconds=1) <= r.next_attempt_at <= now + timedelta(seconds=30)
    t = now
    for tries in (2, 3):
        t += timedelta(hours=1)
        run(factory, profile, cid, t, s)
        r = next(x for x in h.recipients(session, cid) if x.customer_email == "customer1@example.com")
        assert r.attempts == tries
    assert r.status == "failed" and r.next_attempt_at is None
    assert r.error_message.startswith("gave up after 3 tries: Resend 500 internal_server_error")
    # every try of the step carried the same idempotency key
    assert fake_resend.posts_per_key()[f"reengage/{r.id}/0"] == 3
    outcomes = [a.outcome for a in h.attempts(session, cid) if a.recipient_id == r.id]
    assert outcomes == ["retryable", "retryable", "retryable"]
    assert session.get(Campaign, cid, populate_existing=True).status == "completed"
    h.assert_results_match(session, cid)


def test_retry_after_is_honoured_and_does_not_use_up_attempts(session, factory, fake_resend, now):
    profile, cid = email_campaign(session, 1, now, max_attempts=1)
    fake_resend.rate_limit_next(1, retry_after=30)
    s = live(fake_resend)
    run(factory, profile, cid, now, s)
    r = h.recipients(session, cid)[0]
    assert r.status == "queued" and r.next_attempt_at >= now + timedelta(seconds=30)
    # the provider is held for everybody until then
    assert run(factory, profile, cid, now + timedelta(seconds=29), s).sent == 0
    assert run(factory, profile, cid, r.next_attempt_at, s).sent == 1
    assert h.recipients(session, cid)[0].status == "sent"  # a 429 is not the recipient's failure


def test_permanent_failure_fails_at_once(session, factory, fake_resend, now):
    profile, cid = email_campaign(session, 2, now)
    fake_resend.fail_address("customer0@example.com", status=422, name="validation_error",
                             message="Invalid `to` field.")
    report = run(factory, profile, cid, now, live(fake_resend))
    assert (report.sent, report.failed) == (1, 1)
    r = next(x for x in h.recipients(session, cid) if x.customer_email == "customer0@example.com")
    assert r.status == "failed" and r.error_message == "Resend 422 validation_error: Invalid `to` field."
    assert fake_resend.posts_per_key()[f"reengage/{r.id}/0"] == 1


def test_quota_pauses_the_campaign_and_leaves_the_recipient_for_later(session, factory, fake_resend, now):
    profile, cid = email_campaign(session, 8, now)
    fake_resend.set_quota(5)
    s = live(fake_resend, scheduler_batch_size=8)
    report = run(factory, profile, cid, now, s)
    campaign = session.get(Campaign, cid, populate_existing=True)
    assert campaign.status == "paused" and "quota" in campaign.status_reason
    assert "resume" in campaign.status_reason and report.sent == 5
    session.commit()
    left = [r for r in h.recipients(session, cid) if r.status != "sent"]
    assert len(left) == 3 and all(r.next_attempt_at == now and r.claimed_by is None for r in left)
    fake_resend.set_quota(None)
    campaigns.start_campaign(session, profile_id=profile.id, campaign_id=cid, now=now + timedelta(days=1))
    session.commit()
    run(factory, profile, cid, now + timedelta(days=1), s)
    assert h.statuses(session, cid) == {"sent": 8} and set(fake_resend.emails_per_address().values()) == {1}


def test_a_late_opt_out_wins(session, factory, fake_resend, now):
    profile, cid = email_campaign(session, 3, now)
    # the customer unsubscribed (another campaign's link) after being selected for this one
    record_opt_out(session, profile_id=profile.id, contact="customer2@example.com", channel="email",
                   source="unsubscribe_link", now=now)
    session.commit()
    report = run(factory, profile, cid, now, live(fake_resend))
    assert (report.sent, report.opted_out) == (2, 1)
    r = next(x for x in h.recipients(session, cid) if x.customer_email == "customer2@example.com")
    assert r.status == "opted_out" and r.next_attempt_at is None
    assert "customer2@example.com" not in fake_resend.emails_per_address()
    h.assert_results_match(session, cid)


def test_provider_says_opted_out(session, factory, now):
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": "+12125550101", "name": "Ann Lee"},
                                   {"phone": "+12125550102", "name": "Bo Kim"}], now=now)
    cid = h.campaign(session, profile, method="sms", now=now)
    session.commit()
    sms = h.Scripted("sms", provider="twilio")
    sms.fail["+12125550101"] = OptedOutError("21610 the recipient replied STOP", code="21610")
    report = run(factory, profile, cid, now, h.settings(), adapters={"sms": sms})
    assert (report.sent, report.opted_out) == (1, 1)
    opt_out = session.scalars(select(OptOut).where(OptOut.contact == "+12125550101")).one()
    assert (opt_out.channel, opt_out.source, opt_out.campaign_id) == ("sms", "sms_stop", cid)
    session.commit()
    statuses = {r.customer_phone: r.status for r in h.recipients(session, cid)}
    assert statuses == {"+12125550101": "opted_out", "+12125550102": "sent"}


def test_first_sms_to_a_number_says_how_to_opt_out(session, factory, now):
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": "+12125550101", "name": "Ann Lee"}], now=now)
    first = h.campaign(session, profile, method="sms", now=now)
    session.commit()
    sms = h.Scripted("sms")
    run(factory, profile, first, now, h.settings(), adapters={"sms": sms})
    second = h.campaign(session, profile, method="sms", now=now + timedelta(days=30))
    session.commit()
    run(factory, profile, second, now + timedelta(days=30), h.settings(), adapters={"sms": sms})
    texts = [m.text for m in sms.sent]
    assert texts[0] == "Hi Ann, Bella Vista misses you! 20% off\nReply STOP to opt out"
    assert texts[1] == "Hi Ann, Bella Vista misses you! 20% off"


def test_send_window_defers_and_impossible_windows_fail(session, factory, now):
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": "+12125550101", "name": "NY"}, {"phone": "+13105550101", "name": "LA"},
                                   {"phone": "+18005550123", "name": "Toll free"}], now=now)
    cid = h.campaign(session, profile, method="sms", now=now,
                     send_window={"start": "09:00", "end": "20:00", "days": ["mon", "tue", "wed", "thu", "fri"]})
    session.commit()
    sms = h.Scripted("sms")
    report = run(factory, profile, cid, now, h.settings(), adapters={"sms": sms})  # 11:00 NY, 08:00 LA
    assert (report.sent, report.deferred, report.failed) == (1, 1, 1)
    rs = {r.customer_name: r for r in h.recipients(session, cid)}
    assert rs["LA"].next_attempt_at == now + timedelta(hours=1)  # 09:00 in Los Angeles
    assert rs["Toll free"].status == "failed" and "every time zone" in rs["Toll free"].error_message
    assert run(factory, profile, cid, now + timedelta(minutes=59), h.settings(), adapters={"sms": sms}).sent == 0
    assert run(factory, profile, cid, now + timedelta(hours=1), h.settings(), adapters={"sms": sms}).sent == 1
    assert [m.to for m in sms.sent] == ["+12125550101", "+13105550101"]


def test_multi_channel_steps_with_delays_and_conditions(session, factory, engine, now):
    from core.events import apply_event, record_event
    from core.models import OutreachEvent

    profile = h.business(session)
    people = [{"phone": f"+1212555010{i}", "email": f"p{i}@example.com", "name": f"P{i} Doe"} for i in range(3)]
    h.add_leads(session, profile, people, now=now)
    cid = h.campaign(session, profile, method="multi", now=now, **h.EMAIL, sms_template="Hi from {business_name}",
                     call_script="Hello {first_name}", steps=[
                         {"channel": "email", "delay_hours": 0},
                         {"channel": "sms", "delay_hours": 48, "condition": "no_response"},
                         {"channel": "call", "delay_hours": 24, "condition": "not_answered"},
                         {"channel": "email", "delay_hours": 1, "condition": "not_answered"}])
    session.commit()
    doubles = {ch: h.Scripted(ch) for ch in ("email", "sms", "call")}
    s = h.settings()

    def at(hours: float):
        # a little after the hour: each step is timed from when the previous one went out, a moment after its
        # pass started (sends are paced on the dispatcher's clock), so the passes drift a little later too
        return run(factory, profile, cid, now + timedelta(hours=hours * 1.001), s, adapters=doubles)

    def happened(kind: str, person: int, hours: float, channel: str) -> None:
        r = next(x for x in h.recipients(session, cid) if x.customer_email == f"p{person}@example.com")
        record_event(session, provider="scripted", provider_event_id=f"{kind}-{person}-{hours}", type=kind,
                     occurred_at=now + timedelta(hours=hours), recipient_id=r.id, channel=channel)
        session.flush()
        apply_event(session, session.scalars(select(OutreachEvent).where(
            OutreachEvent.provider_event_id == f"{kind}-{person}-{hours}")).one())
        session.commit()

    assert at(0).sent == 3 and len(doubles["email"].sent) == 3
    happened("clicked", 0, 1, "email")                   # P0 responded to the e-mail
    assert at(47).processed == 0                         # the SMS waits 48 hours
    report = at(48)
    assert (report.sent, report.skipped) == (2, 1)       # P0 has responded: no SMS for P0
    assert sorted(m.to for m in doubles["sms"].sent) == ["+12125550101", "+12125550102"]
    assert at(71).processed == 0
    assert at(72).sent == 3                              # the call step runs 24 h after each one's previous step
    happened("answered", 1, 72.2, "call")                 # P1 picked up
    report = at(73)
    assert (report.sent, report.skipped) == (2, 1)       # the follow-up e-mail skips P1, who answered
    assert len(doubles["email"].sent) == 5
    rs = {r.customer_email: r for r in h.recipients(session, cid)}
    assert all(r.next_attempt_at is None for r in rs.values())
    assert rs["p1@example.com"].status == "answered" and rs["p0@example.com"].responded_at is not None
    keys = [(m.to, m.idempotency_key) for m in doubles["email"].sent]
    assert len({k for _, k in keys}) == 5 and all(k.endswith(("/0", "/3")) for _, k in keys)
    # the calls' ends were never reported, but after half an hour they no longer hold the campaign open
    assert session.get(Campaign, cid, populate_existing=True).status == "completed"
    session.commit()


def test_a_step_that_fails_moves_on_and_only_fails_the_recipient_if_nothing_got_through(session, factory, now):
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": "+12125550101", "email": "a@example.com", "name": "A"},
                                   {"phone": "+12125550102", "email": "b@example.com", "name": "B"}], now=now)
    cid = h.campaign(session, profile, method="multi", now=now, **h.EMAIL, sms_template="Hi",
                     steps=[{"channel": "email"}, {"channel": "sms", "delay_hours": 1}])
    session.commit()
    from core.channels.base import PermanentError

    email, sms = h.Scripted("email"), h.Scripted("sms")
    email.fail["a@example.com"] = PermanentError("mailbox unavailable")
    sms.fail["+12125550101"] = PermanentError("21211 invalid 'To' number")
    sms.fail["+12125550102"] = PermanentError("21211 invalid 'To' number")
    adapters = {"email": email, "sms": sms}
    run(factory, profile, cid, now, h.settings(), adapters=adapters)
    run(factory, profile, cid, now + timedelta(hours=1, seconds=5), h.settings(), adapters=adapters)
    rs = {r.customer_email: r for r in h.recipients(session, cid)}
    assert rs["a@example.com"].status == "failed" and "21211" in rs["a@example.com"].error_message
    assert rs["b@example.com"].status == "sent"  # the e-mail got through; the SMS did not
    h.assert_results_match(session, cid)


def test_sandbox_campaign_runs_to_completion_through_events(session, factory, now):
    _profile, cid = email_campaign(session, 25, now)
    s = h.settings()
    first = tick(factory, now=now, worker="w", settings=s)
    assert first.sent + first.campaigns[str(cid)].failed + first.campaigns[str(cid)].deferred == 25
    # transient sandbox failures are retried; events come in over the next minutes
    for minutes in (1, 5, 30, 60, 180, 600):
        tick(factory, now=now + timedelta(minutes=minutes), worker="w", settings=s)
    rs = h.recipients(session, cid)
    assert all(r.next_attempt_at is None for r in rs)
    assert all(r.status in ("delivered", "failed", "opted_out") for r in rs)
    assert sum(r.status == "delivered" for r in rs) >= 15
    sandbox_events = [e for e in h.events(session, cid) if e.provider == "sandbox"]
    assert sandbox_events and all(e.processed_at is not None for e in sandbox_events)
    assert session.get(Campaign, cid, populate_existing=True).status == "completed"
    h.assert_results_match(session, cid)
    session.commit()


def test_call_concurrency_limits(session, factory, now):
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": f"+121255501{i:02d}", "name": f"C{i}"} for i in range(6)], now=now)
    cid = h.campaign(session, profile, method="call", now=now, max_concurrent_calls=2)
    session.commit()
    s = h.settings()

    def in_progress() -> int:
        return sum(1 for a in h.attempts(session, cid) if a.outcome == "accepted" and a.completed_at is None)

    placed = 0
    t = now
    for _ in range(40):
        tick(factory, now=t, worker="w", settings=s)
        assert in_progress() <= 2
        if in_progress():  # a call under way keeps the campaign open
            assert session.get(Campaign, cid, populate_existing=True).status == "active"
            session.commit()
        placed = sum(1 for a in h.attempts(session, cid) if a.outcome == "accepted")
        if session.get(Campaign, cid, populate_existing=True).status == "completed":
            break
        session.commit()
        t += timedelta(seconds=30)
    refused = sum(1 for a in h.attempts(session, cid) if a.outcome == "permanent")
    assert placed + refused == 6  # every call placed, but for the odd number the sandbox calls invalid
    assert session.get(Campaign, cid, populate_existing=True).status == "completed"
    session.commit()
    # the account-wide limit holds across campaigns
    other = h.campaign(session, profile, method="call", now=t, max_concurrent_calls=5)
    session.commit()
    tight = h.settings(vapi_max_concurrent_calls=1)

    def calls_under_way() -> int:
        rows = session.scalars(select(OutreachAttempt).where(OutreachAttempt.channel == "call",
                                                             OutreachAttempt.outcome == "accepted",
                                                             OutreachAttempt.completed_at.is_(None))).all()
        session.commit()
        return len(rows)

    # a provider that takes every call (the sandbox refuses a few numbers at random: not the point here)
    lines = {"call": h.Scripted("call", provider="vapi")}
    first = run(factory, profile, other, t, tight, adapters=lines)
    assert first.sent == 1 and calls_under_way() == 1  # one line for the whole account
    assert run(factory, profile, other, t + timedelta(seconds=5), tight, adapters=lines).sent == 0


def test_attempts_are_recorded_before_the_provider_is_called(session, factory, now):
    profile, cid = email_campaign(session, 1, now)
    seen = []

    class Peeking(h.Scripted):
        def send(self, message):
            with factory() as s:  # another connection: the attempt must already be committed
                seen.extend(s.scalars(select(OutreachAttempt.outcome).where(
                    OutreachAttempt.idempotency_key == message.idempotency_key)))
            return super().send(message)

    run(factory, profile, cid, now, h.settings(), adapters={"email": Peeking("email")})
    assert seen == [None]


def test_claimed_recipients_are_left_alone_until_their_lease_expires(session, factory, fake_resend, now):
    from core.claims import claim_due

    profile, cid = email_campaign(session, 30, now)
    with factory() as s, s.begin():  # another scheduler holds ten of them
        held = claim_due(s, campaign_id=cid, worker="other", now=now, lease=timedelta(seconds=120), limit=10)
    settings = live(fake_resend, scheduler_batch_size=7)
    assert run(factory, profile, cid, now, settings).sent == 20
    assert run(factory, profile, cid, now + timedelta(seconds=119), settings).sent == 0
    # the other process died: once its lease is over, its recipients are anybody's
    assert run(factory, profile, cid, now + timedelta(seconds=121), settings).sent == 10
    assert len(fake_resend.emails) == 30 and set(fake_resend.posts_per_key().values()) == {1}
    assert {r.id for r in held} <= {r.id for r in h.recipients(session, cid) if r.status == "sent"}


def test_unknown_worker_ids_do_not_matter(session, factory, now):
    profile, cid = email_campaign(session, 2, now)
    r = run(factory, profile, cid, now, h.settings(), worker=str(uuid.uuid4()))
    assert r.processed == 2


def test_pausing_holds_back_messages_already_waiting_for_their_moment(session, factory, fake_resend):
    """Real clock: the provider allows 20 a second, so a batch waits to go out; a pause stops it."""
    import threading
    import time

    from core.db import utcnow

    start = utcnow()
    profile, cid = email_campaign(session, 200, start)
    s = live(fake_resend, resend_max_per_second=20.0, scheduler_batch_size=100)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("report", run_campaign_pass(
        factory, profile_id=profile.id, campaign_id=cid, settings=s, worker="real", budget_seconds=20)))
    thread.start()
    # paused while the first wave (twenty moments over one second) is still going out
    while len(fake_resend.emails) < 5:
        time.sleep(0.01)
    with factory() as other, other.begin():
        campaigns.pause_campaign(other, profile_id=profile.id, campaign_id=cid)
    at_pause = len(fake_resend.emails)
    thread.join(20)
    assert not thread.is_alive()
    # the pass notices within half a second; allow a whole second of sends (20) on a busy machine
    assert len(fake_resend.emails) <= at_pause + 20
    assert result["report"].sent == len(fake_resend.emails) < 200
    rows = h.recipients(session, cid)
    assert all(r.claimed_by is None for r in rows)
    assert sum(r.status == "sent" for r in rows) == len(fake_resend.emails)
    held = [a for a in h.attempts(session, cid) if a.outcome == "skipped"]
    assert held and all("paused or stopped" in a.error_message for a in held)


def test_live_credentials_without_their_adapter_pause_the_campaign(session, factory, now):
    import importlib.util

    if importlib.util.find_spec("core.channels.twilio_sms") is not None:
        pytest.skip("the live SMS adapter is installed")
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": "+12125550101", "name": "Ann Lee"}], now=now)
    cid = h.campaign(session, profile, method="sms", now=now)
    session.commit()
    s = h.settings(twilio_account_sid="AC123", twilio_auth_token="token", twilio_from_number="+12125550199")
    report = run(factory, profile, cid, now, s)
    assert report.sent == 0
    campaign = session.get(Campaign, cid, populate_existing=True)
    assert campaign.status == "paused" and "not installed" in campaign.status_reason
    assert h.recipients(session, cid)[0].claimed_by is None
