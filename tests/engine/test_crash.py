"""Crash safety, deterministically: a process dies between recording a try and recording
its outcome; the next one reconciles with the provider before anything is retried."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core import campaigns
from core.channels.resend_email import ResendChannel
from core.channels.sandbox import SandboxChannel
from core.dispatch import run_campaign_pass
from core.models import OutreachAttempt
from core.scheduling import tick
from tests.engine import helpers as h
from tests.fakes.resend import DEFAULT_KEY, FakeResend

LEASE = timedelta(seconds=120)


class Crash(BaseException):
    """The process dies (kill -9): nothing after this point is recorded."""


class Dying:
    """Wraps a real adapter; the process dies before, or right after, the provider is called."""

    def __init__(self, inner: Any, *, after: bool) -> None:
        self.inner, self.after = inner, after
        self.channel, self.provider, self.live = inner.channel, inner.provider, inner.live

    def __getattr__(self, name: str) -> Any:  # request_payload, reconcile, …
        return getattr(self.inner, name)

    def send(self, message):
        if self.after:
            self.inner.send(message)
        raise Crash()


def live(fake: FakeResend, **kw):
    return h.settings(resend_api_key=DEFAULT_KEY, resend_from="hello@bellavista.example", resend_base_url=fake.url,
                      **kw)


def setup(session, now, n=1, **fields):
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(n), now=now)
    cid = h.campaign(session, profile, now=now, **fields)
    session.commit()
    return profile, cid


def crash(factory, profile, cid, now, settings, adapter) -> None:
    with pytest.raises(Crash):
        run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=now, settings=settings,
                          worker="dead", adapters={"email": adapter}, concurrency=1)


@pytest.mark.parametrize("after", [True, False], ids=["provider-got-it", "provider-never-got-it"])
def test_resend_try_is_replayed_with_its_key_never_sent_twice(session, factory, fake_resend, now, after):
    profile, cid = setup(session, now)
    s = live(fake_resend)
    crash(factory, profile, cid, now, s, Dying(ResendChannel(s), after=after))
    (attempt,) = h.attempts(session, cid)
    assert attempt.outcome is None and attempt.detail["request"]["to"] == ["customer0@example.com"]
    r = h.recipients(session, cid)[0]
    assert r.claimed_by == "dead" and r.claim_expires_at == now + LEASE
    # while the dead process's lease runs, nobody touches its recipient
    assert tick(factory, now=now + timedelta(seconds=60), worker="next", settings=s).reconciled == 0
    assert len(fake_resend.posts_per_key()) == (1 if after else 0)
    report = tick(factory, now=now + LEASE + timedelta(seconds=1), worker="next", settings=s)
    assert report.reconciled == 1
    assert fake_resend.emails_per_address() == {"customer0@example.com": 1}
    (attempt,) = h.attempts(session, cid)  # settled, not retried
    assert attempt.outcome == "accepted" and attempt.provider_message_id in fake_resend.emails
    r = h.recipients(session, cid)[0]
    assert r.status == "sent" and r.claimed_by is None and r.next_attempt_at is None
    assert len(h.events(session, cid, kind="sent")) == 1


def test_sandbox_try_that_never_went_out_is_sent_again(session, factory, now):
    profile, cid = setup(session, now)
    s = h.settings()
    crash(factory, profile, cid, now, s, Dying(SandboxChannel("email", s, factory=factory), after=False))
    later = now + LEASE + timedelta(seconds=1)
    for _ in range(5):  # the sandbox refuses a few tries on purpose: give it a few ticks
        tick(factory, now=later, worker="next", settings=s)
        later += timedelta(hours=2)
    attempts = h.attempts(session, cid)
    assert attempts[0].outcome == "skipped" and "never got" in attempts[0].error_message
    assert attempts[-1].outcome in ("accepted", "permanent") and attempts[-1].attempt_no == len(attempts)
    assert {a.idempotency_key for a in attempts} == {f"reengage/{attempts[0].recipient_id}/0"}


def test_sandbox_try_that_went_out_is_recorded_not_repeated(session, factory, now):
    profile, cid = setup(session, now, n=6)
    s = h.settings()
    sandbox = SandboxChannel("email", s, factory=factory)
    # keep the recipients whose step the sandbox accepts on a first try
    crash(factory, profile, cid, now, s, Dying(sandbox, after=True))
    opened = [a for a in h.attempts(session, cid) if a.outcome is None]
    assert opened  # the crash left at least one try open
    tick(factory, now=now + LEASE + timedelta(seconds=1), worker="next", settings=s)
    for a in opened:
        tries = [x for x in h.attempts(session, cid) if x.recipient_id == a.recipient_id]
        assert tries[0].outcome in ("accepted", "permanent", "retryable", "skipped")
        if tries[0].outcome == "accepted":
            assert len(tries) == 1  # no second try of a step that went out


def test_outcome_unknown_fails_the_recipient(session, factory, fake_resend, now):
    profile, cid = setup(session, now, n=2)
    s = live(fake_resend)
    crash(factory, profile, cid, now, s, Dying(ResendChannel(s), after=True))
    # two days later the idempotency key is forgotten: a replay could send a second e-mail
    tick(factory, now=now + timedelta(days=2), worker="next", settings=s)
    rs = h.recipients(session, cid)
    crashed = [r for r in rs if r.error_message and r.error_message.startswith("outcome unknown")]
    assert crashed and all(r.status == "failed" for r in crashed)
    assert "no longer recognizes" in crashed[0].error_message
    assert set(fake_resend.emails_per_address().values()) == {1}  # never twice
    outcomes = {a.outcome for a in h.attempts(session, cid) if a.recipient_id in {r.id for r in crashed}}
    assert outcomes == {"unknown"}
    h.assert_results_match(session, cid)


def test_provider_no_longer_configured_means_outcome_unknown(session, factory, fake_resend, now):
    profile, cid = setup(session, now)
    s = live(fake_resend)
    crash(factory, profile, cid, now, s, Dying(ResendChannel(s), after=False))
    # restarted without Resend credentials: the sandbox cannot know what Resend did
    tick(factory, now=now + LEASE + timedelta(seconds=1), worker="next", settings=h.settings())
    r = h.recipients(session, cid)[0]
    assert r.status == "failed" and r.error_message.startswith("outcome unknown: the try went to resend")


def test_a_call_is_never_placed_twice(session, factory, now):
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": "+12125550101", "name": "Ann Lee"}], now=now)
    cid = h.campaign(session, profile, method="call", now=now)
    session.commit()
    vapi = h.Scripted("call", provider="vapi")
    with pytest.raises(Crash):
        run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=now, settings=h.settings(),
                          worker="dead", adapters={"call": Dying(vapi, after=True)}, concurrency=1)
    tick(factory, now=now + LEASE + timedelta(seconds=1), worker="next", settings=h.settings(),
         adapters={"call": vapi})
    assert len(vapi.sent) == 1
    (attempt,) = h.attempts(session, cid)
    assert attempt.outcome == "accepted" and attempt.completed_at is None  # in progress until its end is reported


def test_a_slow_process_that_lost_its_lease_cannot_double_send(session, factory, fake_resend, now):
    """A process stalls mid-send past its lease; another one settles the try; the first one
    wakes up, its request is answered from Resend's memory, and its late outcome is ignored."""
    profile, cid = setup(session, now)
    s = live(fake_resend)
    resume = threading.Event()

    class Stalling(ResendChannel):
        def send(self, message):
            resume.wait(30)
            return super().send(message)

    slow_result: dict[str, Any] = {}

    def slow() -> None:
        slow_result["report"] = run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=now,
                                                  settings=s, worker="slow", adapters={"email": Stalling(s)})

    thread = threading.Thread(target=slow)
    thread.start()
    for _ in range(200):  # until the slow process has recorded its try
        with factory() as check:
            if check.scalar(select(OutreachAttempt.id).where(OutreachAttempt.campaign_id == cid)):
                break
        time.sleep(0.05)
    tick(factory, now=now + LEASE + timedelta(seconds=1), worker="fast", settings=s)
    r = h.recipients(session, cid)[0]
    assert r.status == "sent" and fake_resend.emails_per_address() == {"customer0@example.com": 1}
    resume.set()
    thread.join(30)
    assert fake_resend.emails_per_address() == {"customer0@example.com": 1}
    assert fake_resend.posts_per_key()[f"reengage/{r.id}/0"] == 2  # the replay and the slow original
    (attempt,) = h.attempts(session, cid)
    assert attempt.outcome == "accepted" and attempt.provider_message_id == r.provider_message_id
    assert len(h.events(session, cid, kind="sent")) == 1
    after = h.recipients(session, cid)[0]
    assert (after.status, after.sent_at, after.claimed_by) == ("sent", r.sent_at, None)


def test_a_paused_campaigns_unfinished_try_waits_for_the_resume_and_a_stopped_ones_is_not_replayed(
        session, factory, fake_resend, now):
    """Settling a Resend try replays its request (DESIGN §13): while the campaign is paused nothing is
    replayed; once it runs again the replay settles it (Resend answers from memory: still one e-mail);
    for a campaign stopped meanwhile it is settled as unknown without sending anything."""
    profile, cid = setup(session, now)
    s = live(fake_resend)
    crash(factory, profile, cid, now, s, Dying(ResendChannel(s), after=True))
    campaigns.pause_campaign(session, profile_id=profile.id, campaign_id=cid, now=now)
    session.commit()
    posts = sum(fake_resend.posts_per_key().values())
    assert tick(factory, now=now + LEASE + timedelta(seconds=1), worker="next", settings=s).reconciled == 0
    assert sum(fake_resend.posts_per_key().values()) == posts  # nothing replayed while paused
    (attempt,) = h.attempts(session, cid)
    assert attempt.outcome is None
    later = now + LEASE + timedelta(minutes=10)
    campaigns.start_campaign(session, profile_id=profile.id, campaign_id=cid, now=later)
    session.commit()
    tick(factory, now=later, worker="next", settings=s)
    r = h.recipients(session, cid)[0]
    assert r.status == "sent" and fake_resend.emails_per_address() == {"customer0@example.com": 1}

    now = later + timedelta(hours=1)  # the provider's limiter remembers the sends above: later, on one clock
    profile, cid = setup(session, now)
    crash(factory, profile, cid, now, s, Dying(ResendChannel(s), after=False))  # died before Resend got it
    campaigns.stop_campaign(session, profile_id=profile.id, campaign_id=cid, now=now)
    session.commit()
    posts = sum(fake_resend.posts_per_key().values())
    assert tick(factory, now=now + LEASE + timedelta(seconds=1), worker="next", settings=s).reconciled == 1
    assert sum(fake_resend.posts_per_key().values()) == posts  # not replayed: the campaign was stopped
    (attempt,) = h.attempts(session, cid)
    assert attempt.outcome == "unknown" and "campaign ended" in attempt.error_message
    assert h.recipients(session, cid)[0].error_message.startswith("outcome unknown")


class LostAnswer(h.Scripted):
    """A provider without idempotency keys whose first answer is lost: the call was placed."""

    def __init__(self, channel: str, *, placed: bool) -> None:
        super().__init__(channel, provider="vapi" if channel == "call" else "twilio")
        self.placed = placed

    def send(self, message):
        if self.placed and not self.accepted:
            super().send(message)
        else:
            self.sent.append(message)
        from core.channels.base import RetryableError

        raise RetryableError("timed out waiting for the provider", code="timeout")


def phone_campaign(session, now, method, **fields):
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": "+12125550101", "name": "Ann Lee"}], now=now)
    cid = h.campaign(session, profile, method=method, now=now, **fields)
    session.commit()
    return profile, cid


def test_a_call_whose_answer_was_lost_is_asked_about_not_placed_again(session, factory, now):
    _profile, cid = phone_campaign(session, now, "call")
    vapi = LostAnswer("call", placed=True)
    t = now
    for _ in range(6):  # ticks over the next minutes
        tick(factory, now=t, worker="w", settings=h.settings(), adapters={"call": vapi})
        t += timedelta(minutes=2)
    assert len(vapi.sent) == 1  # placed once; the provider confirmed it when asked
    (attempt,) = h.attempts(session, cid)
    assert attempt.outcome == "accepted" and attempt.error_code == "timeout"
    assert h.recipients(session, cid)[0].status == "sent"


def test_an_sms_that_never_went_out_is_retried_only_after_asking(session, factory, now):
    _profile, cid = phone_campaign(session, now, "sms", max_attempts=2)
    twilio = LostAnswer("sms", placed=False)
    t = now
    for _ in range(12):
        tick(factory, now=t, worker="w", settings=h.settings(), adapters={"sms": twilio})
        t += timedelta(minutes=5)
    attempts = h.attempts(session, cid)
    assert [a.outcome for a in attempts] == ["retryable", "retryable"] and len(twilio.sent) == 2
    r = h.recipients(session, cid)[0]
    assert r.status == "failed" and r.error_message.startswith("gave up after 2 tries: timed out")


def test_no_retry_once_the_provider_has_forgotten_the_key(session, factory, fake_resend, now):
    profile, cid = setup(session, now)
    s = live(fake_resend)
    fake_resend.fail_next(status=500, after_accept=True)  # it went out; the answer said otherwise
    run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=now, settings=s, worker="w")
    # the campaign was paused for two days; the retry now could send a second e-mail
    run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=now + timedelta(days=2), settings=s,
                      worker="w")
    r = h.recipients(session, cid)[0]
    assert r.status == "failed" and r.error_message.startswith("outcome unknown: try 1")
    assert fake_resend.emails_per_address() == {"customer0@example.com": 1}
    assert fake_resend.posts_per_key()[f"reengage/{r.id}/0"] == 1
