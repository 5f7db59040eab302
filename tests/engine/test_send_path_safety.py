"""The send path's rules where they are easy to break (DESIGN §13): settling never sends what is no
longer wanted, a provider that does not answer holds nobody else up, calling hours are checked at the
moment of sending, and a per-minute limit is a ceiling over any sliding minute, for all processes
together — the real dispatcher on an injected clock that only the test moves."""

from __future__ import annotations

import time
from bisect import bisect_right
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core import optouts
from core.channels.base import RetryableError
from core.channels.resend_email import ResendChannel
from core.clock import ManualClock
from core.dispatch import Dispatcher, run_campaign_pass
from core.scheduling import tick
from tests.engine import helpers as h
from tests.engine.test_crash import LEASE, Dying, crash, live, setup

NEW_YORK = ZoneInfo("America/New_York")

# --- finding 2: settling a try replays it only while it is still wanted ------------------------------------


@pytest.mark.parametrize("after", [True, False], ids=["provider-got-it", "provider-never-got-it"])
def test_an_unsettled_try_to_a_customer_who_opted_out_meanwhile_is_not_replayed(session, factory, fake_resend,
                                                                                  now, after):
    """Finding 2: the process died around the Resend request; before the next scheduler settles the try,
    the customer unsubscribes.  Replaying the stored request would send (or re-confirm) an e-mail to a
    customer who said no: the try is settled as unknown and the recipient as opted out, nothing sent."""
    profile, cid = setup(session, now)
    s = live(fake_resend)
    crash(factory, profile, cid, now, s, Dying(ResendChannel(s), after=after))
    optouts.record_opt_out(session, profile_id=profile.id, contact="customer0@example.com", channel="email",
                           source="unsubscribe_link", now=now + timedelta(seconds=30))
    session.commit()
    posts = sum(fake_resend.posts_per_key().values())
    assert tick(factory, now=now + LEASE + timedelta(seconds=1), worker="next", settings=s).reconciled == 1
    assert sum(fake_resend.posts_per_key().values()) == posts  # no replay
    (attempt,) = h.attempts(session, cid)
    assert attempt.outcome == "unknown" and "opted out" in attempt.error_message
    (r,) = h.recipients(session, cid)
    assert r.status == "opted_out" and r.claimed_by is None and r.next_attempt_at is None


def test_a_replay_waits_for_the_send_window_and_takes_a_permit(session, factory, fake_resend, now):
    """Finding 2: a replay is a send — outside the campaign's window it waits for the window to open, and
    it uses the campaign's rate limit like any other send."""
    window = {"start": "09:00", "end": "17:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
    profile, cid = setup(session, now, send_window=window)
    s = live(fake_resend)
    crash(factory, profile, cid, now, s, Dying(ResendChannel(s), after=False))
    evening = datetime(2026, 6, 15, 18, 30, tzinfo=NEW_YORK)  # the same Monday, after the window
    assert tick(factory, now=evening, worker="next", settings=s).reconciled == 0
    assert fake_resend.posts_per_key() == {}
    (r,) = h.recipients(session, cid)
    assert r.next_attempt_at == datetime(2026, 6, 16, 9, 0, tzinfo=NEW_YORK)
    assert tick(factory, now=datetime(2026, 6, 16, 9, 0, 5, tzinfo=NEW_YORK), worker="next",
                settings=s).reconciled == 1
    assert fake_resend.emails_per_address() == {"customer0@example.com": 1}
    assert h.recipients(session, cid)[0].status == "sent"


# --- finding 3: a provider that does not answer holds nobody up -----------------------------------------------


class Degraded(h.Scripted):
    """Vapi on a bad day: a call's answer times out, and asking about the call takes a while and fails."""

    def __init__(self, pause: float) -> None:
        super().__init__("call", provider="vapi")
        self.pause = pause
        self.lookups: list[float] = []
        self.down = False

    def send(self, message):
        super().send(message)  # the call was placed …
        raise RetryableError("timed out waiting for Vapi", code="timeout")  # … but its answer was lost

    def reconcile(self, message, *, started_at):
        self.lookups.append(time.monotonic())
        if self.down:
            time.sleep(self.pause)
            raise RetryableError("Vapi did not answer", code="timeout")
        return super().reconcile(message, started_at=started_at)


def test_a_degraded_provider_is_asked_once_per_round_with_back_off(session, factory, now):
    """Finding 3: eight calls whose answers were lost, Vapi not answering look-ups.  A round of settling
    asks once and postpones the rest instead of waiting on each; the next rounds honour the back-off;
    another business's e-mails go out in the same tick."""
    calls_shop = h.business(session)
    h.add_leads(session, calls_shop, [{"phone": f"+1212555{n:04d}", "name": f"Pat{n} Doe"} for n in range(8)],
                now=now)
    calls = h.campaign(session, calls_shop, method="call", now=now, max_concurrent_calls=10)
    mail_shop = h.business(session, name="Corner Bakery")
    h.add_leads(session, mail_shop, h.emails(20), now=now)
    session.commit()
    vapi = Degraded(pause=1.0)
    email = h.Scripted("email")
    adapters = {"call": vapi, "email": email}
    tick(factory, now=now, worker="w", settings=h.settings(), adapters=adapters)
    assert len(vapi.sent) == 8 and all(a.outcome is None for a in h.attempts(session, calls))

    mail = h.campaign(session, mail_shop, method="email", now=now)
    session.commit()
    vapi.down = True
    started = time.monotonic()
    report = tick(factory, now=now + timedelta(minutes=1), worker="w", settings=h.settings(), adapters=adapters)
    assert time.monotonic() - started < 6  # one slow look-up, not eight
    assert len(vapi.lookups) == 1 and report.reconciled == 0
    assert h.statuses(session, mail) == {"sent": 20} and len(email.sent) == 20
    # none is asked again before its back-off runs out …
    tick(factory, now=now + timedelta(minutes=1, seconds=10), worker="w", settings=h.settings(), adapters=adapters)
    assert len(vapi.lookups) == 1
    # … and once Vapi answers again, every call is settled (placed once: nothing called again)
    vapi.down = False
    report = tick(factory, now=now + timedelta(minutes=12), worker="w", settings=h.settings(), adapters=adapters)
    assert report.reconciled == 8 and len(vapi.sent) == 8
    assert {a.outcome for a in h.attempts(session, calls)} == {"accepted"}


# --- finding 5: calling hours at the moment of sending ----------------------------------------------------------


def test_calling_hours_are_checked_when_the_text_goes_out_not_when_the_wave_is_prepared(session, factory):
    """Finding 5: three texts prepared at 20:59:58 in New York, Twilio paced at one a second.  The first two
    go out before 21:00; the third would go out at 21:00:00 — after the legal calling hours — and waits for
    08:00 instead."""
    start = datetime(2026, 6, 15, 20, 59, 58, tzinfo=NEW_YORK)
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": f"+1212555010{n}", "name": f"Pat{n} Doe"} for n in range(3)],
                now=start)
    cid = h.campaign(session, profile, method="sms", now=start)
    session.commit()
    clock = ManualClock(start)
    twilio = h.Scripted("sms", provider="twilio")
    sent_at = h.handed_over_at(twilio)
    run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, clock=clock, worker="w", budget_seconds=5,
                      settings=h.settings(twilio_max_per_second=1.0), adapters={"sms": twilio})
    assert len(sent_at) == 2 and all(t.astimezone(NEW_YORK).hour == 20 for t in sent_at), sent_at
    rows = h.recipients(session, cid)
    assert sorted(r.status for r in rows) == ["queued", "sent", "sent"]
    (waiting,) = [r for r in rows if r.status == "queued"]
    assert waiting.next_attempt_at == datetime(2026, 6, 16, 8, 0, tzinfo=NEW_YORK)
    (skipped,) = [a for a in h.attempts(session, cid) if a.recipient_id == waiting.id]
    assert skipped.outcome == "skipped" and "calling hours" in skipped.error_message, skipped.error_message
    morning = ManualClock(datetime(2026, 6, 16, 8, 0, 1, tzinfo=NEW_YORK))
    run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, clock=morning, worker="w",
                      settings=h.settings(twilio_max_per_second=1.0), adapters={"sms": twilio})
    assert len(sent_at) == 3 and h.statuses(session, cid) == {"sent": 3}
    assert [a.outcome for a in h.attempts(session, cid) if a.recipient_id == waiting.id] == ["skipped", "accepted"]


# --- finding 10: the per-minute limit is a ceiling over any sliding minute, across processes -------------------


def _max_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    return max((bisect_right(times, t + width - 1e-9) - i for i, t in enumerate(times)), default=0)


def test_three_schedulers_never_exceed_the_limit_in_any_sliding_minute(session, factory, now):
    """Finding 10: a campaign limited to 120 e-mails a minute, three schedulers taking turns on one
    database (as three processes do), for four minutes: no sliding 60 s holds more than 120 sends —
    the burst is taken from the first minute's allowance, not added to it."""
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(600), now=now)
    cid = h.campaign(session, profile, now=now, rate_limit_per_minute=120)
    session.commit()
    clock = ManualClock(now)
    moments: list[float] = []

    class Timed(h.Scripted):
        def send(self, message: Any):
            moments.append(clock.time())
            return super().send(message)

    email = Timed("email")
    end = now + timedelta(minutes=4)
    while clock.now() < end:
        for n in range(3):  # each turn is one short pass of that scheduler
            Dispatcher(factory, worker=f"scheduler-{n}", settings=h.settings(), clock=clock, budget=1.0,
                       adapters={"email": email}, concurrency=2).run([cid])
        clock.advance(0.7)
    assert len(moments) >= 4 * 120 - 5  # the limit is used …
    assert _max_in_window(moments, 60.0) <= 120  # … and never exceeded
    assert len(set(e.idempotency_key for e in email.sent)) == len(email.sent)  # nobody twice


def test_the_ceiling_survives_a_restart(session, factory, now):
    """A scheduler that restarts inside a minute does not get a fresh burst on top of what was sent."""
    profile = h.business(session)
    h.add_leads(session, profile, h.emails(100), now=now)
    cid = h.campaign(session, profile, now=now, rate_limit_per_minute=30)
    session.commit()
    clock = ManualClock(now)
    email = h.Scripted("email")
    for worker in ("first", "restarted", "restarted-again"):
        run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, clock=clock, worker=worker,
                          budget_seconds=15, settings=h.settings(), adapters={"email": email})
    assert clock.now() - now < timedelta(seconds=60)
    assert len(email.sent) <= 30
