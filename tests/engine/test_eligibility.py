"""`core.eligibility.decide`: what may be sent to whom, now — tables of cases, no database."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core import compliance
from core.eligibility import Facts, Step, Try, decide, still_allowed

NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)  # a Monday, 11:00 in New York
OPEN = {"start": "00:00", "end": "24:00", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}
NY = ("America/New_York",)
SMS = Step(0, "sms", 0, "always")
CALL = Step(0, "call", 0, "always")
EMAIL = Step(0, "email", 0, "always")
FLORIDA = compliance.state_rule("+13055550101")
MARYLAND = compliance.state_rule("+14105550101")


def facts(step: Step | None = SMS, **kw) -> Facts:
    base = {"step": step, "channel_contact": "a@x.example" if step and step.channel == "email" else "+12125550101",
            "zones": NY, "send_window": OPEN}
    return Facts(**{**base, **kw})


def at(hour: int, minute: int = 0, day: int = 0) -> datetime:
    """Local New York time on the test's Monday (+ days)."""
    return NOW + timedelta(days=day, hours=hour - 11, minutes=minute)


def tried(n: int, outcome: str | None = "retryable", code: str | None = "http_500", **kw) -> Try:
    return Try(id=uuid.uuid4(), attempt_no=n, outcome=outcome, error_code=code, error_message="boom",
               provider="resend", started_at=kw.get("started_at", NOW - timedelta(minutes=10)))


@pytest.mark.parametrize(("f", "kind", "words"), [
    (facts(), "send", None),
    (facts(step=None), "done", None),
    (facts(channel_contact=None), "fail", "no a phone number"),
    (facts(step=Step(1, "sms", 1, "no_response"), responded=True), "skip", "responded"),
    (facts(step=Step(1, "sms", 1, "not_answered"), answered=True), "skip", "answered"),
    (facts(step=Step(1, "sms", 1, "answered")), "skip", "no call was answered"),
    (facts(step=Step(1, "sms", 1, "answered"), answered=True), "send", None),
    (facts(step=Step(1, "sms", 1, "voicemail"), last_call_outcome="voicemail"), "send", None),
    (facts(step=Step(1, "sms", 1, "voicemail"), last_call_outcome="not_answered"), "skip", "voicemail"),
    (facts(step=Step(1, "sms", 1, "voicemail"), previous_call_open=True), "defer", "how the call ended"),
    (facts(opted_out=True), "opted_out", "opted out of texts"),
    (facts(dnc=True), "opted_out", "do-not-call"),
    (facts(step=EMAIL, dnc=True), "send", None),  # the do-not-call list is about calls and texts
    (facts(consent_needed="express_written"), "opted_out", "no express written consent for texts"),
    (facts(consent_needed="express_written", consent="express"), "opted_out", "only express consent"),
    (facts(consent_needed="express_written", consent="express_written"), "send", None),
    (facts(consent_needed="express", consent="express_written"), "send", None),
    (facts(awaiting_winner=True), "defer", "A/B test"),
    (facts(best_moment=NOW + timedelta(hours=3)), "defer", "best hour"),
    (facts(best_moment=NOW - timedelta(hours=1)), "send", None),
])
def test_the_decision_table(f, kind, words):
    decision = decide(f, NOW)
    assert decision.kind == kind, decision
    if words:
        assert words in (decision.reason or ""), decision.reason


def test_the_law_comes_before_our_own_plans():
    # an opted-out customer planned for their best hour, waiting for an A/B winner: still opted out
    d = decide(facts(opted_out=True, awaiting_winner=True, best_moment=NOW + timedelta(hours=2)), NOW)
    assert d.kind == "opted_out"
    # a condition that no longer applies wins over everything else (nothing to send at all)
    d = decide(facts(step=Step(1, "sms", 0, "no_response"), responded=True, opted_out=True), NOW)
    assert d.kind == "skip"


@pytest.mark.parametrize(("moment", "rule", "kind"), [
    (at(7, 59), None, "defer"), (at(8, 0), None, "send"), (at(20, 59), None, "send"), (at(21, 0), None, "defer"),
    (at(20, 0), FLORIDA, "defer"), (at(19, 59), FLORIDA, "send"), (at(8, 0), FLORIDA, "send"),
])
def test_calling_hours_federal_and_state(moment, rule, kind):
    d = decide(facts(state=rule), moment)
    assert d.kind == kind
    if kind == "defer":
        assert d.until is not None and d.until > moment
        if rule is not None:
            assert "Florida" in d.reason or "FL" in d.reason
            assert "501.616" in d.reason  # the statute, in words the owner can check


# the days the clocks change in 2026 (US): 2 a.m. becomes 3 a.m. on 8 March, 2 a.m. becomes 1 a.m. on 1 November
DST_DAYS = {"spring-forward": (2026, 3, 8), "fall-back": (2026, 11, 1), "summer": (2026, 6, 15)}


@pytest.mark.parametrize("day", list(DST_DAYS))
@pytest.mark.parametrize(("phone", "zone", "close"), [
    ("+13055550101", "America/New_York", 20),  # Florida
    ("+14055550101", "America/Chicago", 20),   # Oklahoma
    ("+14105550101", "America/New_York", 20),  # Maryland
    ("+12125550101", "America/New_York", 21),  # New York: no rule of its own, the federal hours
    ("+13125550101", "America/Chicago", 21),   # Illinois: the same, an hour west
], ids=["FL", "OK", "MD", "NY", "IL"])
def test_state_hours_in_local_time_on_the_days_the_clocks_change(day, phone, zone, close):
    """A text at each edge of the day, on an injected clock, in the customer's local time — also on the two
    days whose local day is 23 and 25 hours long."""
    from zoneinfo import ZoneInfo

    from core.windows import recipient_zones

    tz = ZoneInfo(zone)
    y, m, d = DST_DAYS[day]
    f = facts(channel_contact=phone, zones=recipient_zones(phone, "UTC"), state=compliance.state_rule(phone))
    assert (f.state is not None) == (close == 20)

    def local(hour: int, minute: int = 0, days: int = 0) -> datetime:
        return datetime(y, m, d + days, hour, minute, tzinfo=tz)

    for moment, kind, until in [
        (local(7, 59), "defer", local(8, 0)),
        (local(8, 0), "send", None),
        (local(close - 1, 59), "send", None),
        (local(close, 0), "defer", local(8, 0, days=1)),
        (local(23, 30), "defer", local(8, 0, days=1)),
    ]:
        decision = decide(f, moment)
        assert decision.kind == kind, (moment, decision)
        assert decision.until == until, (moment, decision)
        assert still_allowed(f, moment) == (None if kind == "send" else decision)
        if kind == "defer" and f.state is not None:
            assert f"outside {f.state.state}'s calling hours 08:00–20:00" in decision.reason


EVENINGS = {"start": "19:00", "end": "23:00", "days": OPEN["days"]}


@pytest.mark.parametrize(("phone", "zone", "hour", "minute", "why"), [
    # the campaign's own window is closed: that is the reason, though the state has rules of its own
    ("+14055550101", "America/Chicago", 18, 26, "outside the send window"),
    ("+13055550101", "America/New_York", 7, 30, "outside the send window"),
    # the window is open and the law says no: the state's hours where it has stricter ones, else the federal
    ("+14055550101", "America/Chicago", 20, 15, "outside OK's calling hours 08:00–20:00 (Oklahoma"),
    ("+13055550101", "America/New_York", 21, 30, "outside FL's calling hours 08:00–20:00 (Florida"),
    ("+12125550101", "America/New_York", 21, 30, "outside the legal calling hours 08:00–21:00 in the customer's "
                                                 "time (TCPA"),
], ids=["OK-window", "FL-window", "OK-state", "FL-state", "NY-federal"])
def test_a_put_off_text_names_what_is_closed(phone, zone, hour, minute, why):
    """The reason kept with the recipient (and shown to the shop owner) names what really says no."""
    from zoneinfo import ZoneInfo

    from core.windows import recipient_zones

    f = facts(channel_contact=phone, zones=recipient_zones(phone, "UTC"), state=compliance.state_rule(phone),
              send_window=EVENINGS)
    decision = decide(f, datetime(2026, 6, 15, hour, minute, tzinfo=ZoneInfo(zone)))
    assert decision.kind == "defer" and decision.reason.startswith(why), decision.reason


def test_email_is_not_bound_by_calling_hours():
    assert decide(facts(step=EMAIL), at(22, 30)).kind == "send"


def test_state_caps_count_calls_and_in_maryland_texts_too():
    three_calls = tuple(NOW - timedelta(hours=h) for h in (1, 5, 20))
    d = decide(facts(step=CALL, state=FLORIDA, recent_contacts=three_calls), NOW)
    assert d.kind == "defer" and d.until == three_calls[2] + timedelta(hours=24) and "3 calls" in d.reason
    # the oldest of the three is over a day old: the fourth call may go
    older = (NOW - timedelta(hours=25), *three_calls[:2])
    assert decide(facts(step=CALL, state=FLORIDA, recent_contacts=older), NOW).kind == "send"
    # Florida's cap is about calls: a text goes
    assert decide(facts(state=FLORIDA, recent_contacts=three_calls), NOW).kind == "send"
    # Maryland counts calls and texts together
    d = decide(facts(state=MARYLAND, recent_contacts=three_calls), NOW)
    assert d.kind == "defer" and "calls and texts" in d.reason


def test_a_retry_counts_failures_and_throttles_apart():
    d = decide(facts(tries=[tried(1), tried(2, code="rate_limit_exceeded"), tried(3)]), NOW)
    assert (d.kind, d.attempt_no, d.failures, d.throttled) == ("send", 4, 2, 1)
    d = decide(facts(tries=[tried(1, outcome="accepted")]), NOW)
    assert d.kind == "sent" and d.accepted is not None


def test_a_retry_after_the_provider_forgot_its_key_fails_as_unknown():
    old = tried(1, started_at=NOW - timedelta(hours=30))
    d = decide(facts(step=EMAIL, tries=[old], idempotency_window=timedelta(hours=23)), NOW)
    assert d.kind == "fail" and d.reason.startswith("outcome unknown")
    assert decide(facts(step=EMAIL, tries=[old], idempotency_window=None), NOW).kind == "send"


def test_still_allowed_at_the_moment_of_sending():
    f = facts(state=None)
    assert still_allowed(f, at(20, 59)) is None
    late = still_allowed(f, at(21, 0) + timedelta(seconds=5))
    assert late is not None and late.kind == "defer" and late.until == at(8, 0, day=1)
    assert still_allowed(replace(f, opted_out=True), at(12)).kind == "opted_out"
    assert still_allowed(replace(f, consent_needed="express_written"), at(12)).kind == "opted_out"
