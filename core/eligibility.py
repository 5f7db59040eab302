"""What may be sent to whom, now: a pure decision over facts (no database, no clock, no I/O).

The dispatcher gathers the facts of a claimed recipient's next step
(:mod:`core.facts`) — the step and its condition, what happened on earlier tries,
opt-outs, the do-not-call list, consent, the send window, the legal calling hours
of the number's state and that state's cap, the A/B test, the best hour — and
calls :func:`decide`; it then performs the :class:`Decision`.  Right before a call
or text is handed to the provider, :func:`still_allowed` checks the window and the
hours again at that moment, with fresh opt-out, do-not-call and consent facts.

The order of the checks is the order of the law and of good manners: a step that
no longer applies is skipped; a customer who opted out, is on the do-not-call list
or lacks the consent the channel needs is never contacted (and says so); then the
window and the hours; then the caps; then our own plans (the A/B winner, the best
hour).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.compliance import StateRule, cap_applies
from core.consents import satisfies
from core.windows import QUIET_CHANNELS, QUIET_END, QUIET_START, describe, hhmm_range, next_opening

# retries that say nothing about the recipient (429s, "request still running", busy lines)
THROTTLE_CODES = frozenset({"rate_limit_exceeded", "concurrent_idempotent_requests", "rate_limited",
                            "concurrency_limited"})
# a step whose condition looks at a call's outcome waits this long between looks while the call goes on
CALL_OUTCOME_WAIT = timedelta(seconds=60)
WINNER_WAIT = timedelta(seconds=60)
CAP_PERIOD = timedelta(hours=24)
CONSENT_WORDS = {"express": "express consent", "express_written": "express written consent"}
CHANNEL_WORDS = {"call": "calls", "sms": "texts", "email": "e-mails"}


@dataclass(frozen=True)
class Step:
    """One step of a campaign (single-channel campaigns have one)."""

    index: int
    channel: str
    delay_hours: float
    condition: str


@dataclass(frozen=True)
class Try:
    """One earlier try of the step being decided."""

    id: uuid.UUID
    attempt_no: int
    outcome: str | None
    error_code: str | None
    error_message: str | None
    provider: str
    started_at: datetime
    provider_message_id: str | None = None


@dataclass(frozen=True)
class Facts:
    """Everything :func:`decide` looks at for one recipient's next step."""

    step: Step | None  # None: no step left
    channel_contact: str | None
    tries: Sequence[Try] = ()
    attempts_so_far: int = 0  # the recipient's try counter for this step
    responded: bool = False
    answered: bool = False
    last_call_outcome: str | None = None
    previous_call_open: bool = False  # a call of an earlier step has not reported how it ended
    opted_out: bool = False
    dnc: bool = False
    consent: str | None = None  # the best unrevoked consent level on this channel
    consent_needed: str | None = None  # what the policy asks for on this channel (None: nothing)
    zones: tuple[str, ...] = ()
    send_window: Mapping[str, Any] = field(default_factory=dict)
    state: StateRule | None = None  # the stricter rule of the number's state (core.compliance)
    recent_contacts: Sequence[datetime] = ()  # this business's calls (and texts, where they count) in 24 h
    awaiting_winner: bool = False
    best_moment: datetime | None = None  # send_time "best": the planned moment, if one is still ahead
    idempotency_window: timedelta | None = None
    max_attempts: int = 3


@dataclass(frozen=True)
class Decision:
    """What to do with a recipient's next step.

    ``kind``: ``send`` (try ``attempt_no``), ``sent`` (an earlier try went through: ``accepted`` is it),
    ``skip`` (the step's condition is not met: on to the next step), ``opted_out`` (may not be
    contacted on this channel: opt-out, do-not-call, no consent), ``defer`` (try again at ``until``),
    ``fail`` (this step can never go through), ``done`` (no step left).
    """

    kind: str
    reason: str | None = None
    until: datetime | None = None
    attempt_no: int = 0
    failures: int = 0
    throttled: int = 0
    accepted: Try | None = None
    planned: bool = False  # the deferral is the best-time plan (recorded once)


def _condition(facts: Facts, step: Step, now: datetime) -> Decision | None:
    c = step.condition
    if c == "no_response" and facts.responded:
        return Decision("skip", reason="the customer already responded")
    outcome_based = c in ("not_answered", "voicemail", "answered")
    if outcome_based and facts.previous_call_open:
        return Decision("defer", until=now + CALL_OUTCOME_WAIT, reason="waiting to hear how the call ended")
    if c == "not_answered" and facts.answered:
        return Decision("skip", reason="a call was answered")
    if c == "answered" and not facts.answered:
        return Decision("skip", reason="no call was answered")
    if c == "voicemail" and facts.last_call_outcome != "voicemail":
        return Decision("skip", reason="the last call did not reach voicemail")
    return None


def _compliance(facts: Facts, step: Step) -> Decision | None:
    if facts.opted_out:
        return Decision("opted_out", reason=f"opted out of {CHANNEL_WORDS[step.channel]} before the send")
    if step.channel in QUIET_CHANNELS and facts.dnc:
        return Decision("opted_out", reason="on the business's do-not-call list")
    if facts.consent_needed and not satisfies(facts.consent, facts.consent_needed):
        have = f" (only {CONSENT_WORDS[facts.consent]} is on record)" if facts.consent else ""
        return Decision("opted_out", reason=f"no {CONSENT_WORDS[facts.consent_needed]} for "
                                            f"{CHANNEL_WORDS[step.channel]}{have}")
    return None


def hours_for(facts: Facts, channel: str) -> tuple[int, int] | None:
    """The legal hours binding this step (a state's stricter ones for calls and texts)."""
    return facts.state.hours if facts.state is not None and channel in QUIET_CHANNELS else None


def _window(facts: Facts, step: Step, now: datetime) -> Decision | None:
    quiet = step.channel in QUIET_CHANNELS
    hours = hours_for(facts, step.channel)
    opening = next_opening(now, zones=facts.zones, send_window=facts.send_window, quiet_hours=quiet, hours=hours)
    if opening is None:
        return Decision("fail", reason=describe(facts.zones, facts.send_window, quiet_hours=quiet, hours=hours))
    if opening > now:
        why = "outside the send window"
        if quiet and next_opening(now, zones=facts.zones, send_window=facts.send_window,
                                  quiet_hours=False) == now:
            # the campaign's own window is open: the law's hours are what says no — the state's where it has
            # stricter ones (they lie inside the federal ones), else the federal ones
            if hours is not None and facts.state is not None:
                why = f"outside {facts.state.state}'s calling hours {hhmm_range(*hours)} ({facts.state.source})"
            else:
                why = (f"outside the legal calling hours {hhmm_range(QUIET_START, QUIET_END)} in the customer's "
                       f"time (TCPA, 47 CFR 64.1200(c)(1))")
        return Decision("defer", until=opening, reason=why)
    return None


def _cap(facts: Facts, step: Step, now: datetime) -> Decision | None:
    rule = facts.state
    if rule is None or not cap_applies(rule, step.channel):
        return None
    recent = sorted(t for t in facts.recent_contacts if t > now - CAP_PERIOD)
    if len(recent) < rule.cap:
        return None
    until = recent[len(recent) - rule.cap] + CAP_PERIOD
    what = "calls and texts" if rule.counts_texts else "calls"
    return Decision("defer", until=until, reason=f"{rule.cap} {what} in 24 hours already reached this "
                                                 f"{rule.state} number ({rule.source})")


def _forgotten(facts: Facts, now: datetime) -> str | None:
    """Why a retry now could send twice: an earlier try may have gone through, and the provider no longer
    remembers its idempotency key."""
    maybe = [t for t in facts.tries if t.outcome == "retryable" and t.error_code not in THROTTLE_CODES]
    if facts.idempotency_window is None or not maybe:
        return None
    last = max(maybe, key=lambda t: t.started_at)
    if now - last.started_at <= facts.idempotency_window:
        return None
    return (f"outcome unknown: try {last.attempt_no} ({last.error_message}) may have gone through, and "
            f"{last.provider} no longer recognizes its idempotency key")


def decide(facts: Facts, now: datetime) -> Decision:
    """What to do now with a recipient's next step (see :class:`Decision`)."""
    step = facts.step
    if step is None:
        return Decision("done")
    accepted = next((t for t in facts.tries if t.outcome == "accepted"), None)
    if accepted is not None:
        return Decision("sent", accepted=accepted)
    if not facts.channel_contact:
        what = "an e-mail address" if step.channel == "email" else "a phone number"
        return Decision("fail", reason=f"no {what} for the {step.channel} step")
    for check in (_condition(facts, step, now), _compliance(facts, step)):
        if check is not None:
            return check
    closed = _window(facts, step, now)
    if closed is not None:
        if (closed.kind == "defer" and closed.until is not None and facts.best_moment is not None
                and facts.best_moment >= closed.until):
            # the best-time plan lies inside the window: wait for it rather than for the window's opening
            return Decision("defer", until=facts.best_moment, reason="planned for the customer's best hour",
                            planned=True)
        return closed
    capped = _cap(facts, step, now)
    if capped is not None:
        return capped
    if facts.awaiting_winner:
        return Decision("defer", until=now + WINNER_WAIT, reason="waiting for the A/B test to pick a winner")
    if facts.best_moment is not None and facts.best_moment > now:
        return Decision("defer", until=facts.best_moment, reason="planned for the customer's best hour",
                        planned=True)
    forgotten = _forgotten(facts, now)
    if forgotten is not None:
        return Decision("fail", reason=forgotten)
    done = [t for t in facts.tries if t.outcome is not None]
    return Decision("send", attempt_no=max([facts.attempts_so_far, *(t.attempt_no for t in facts.tries)]) + 1,
                    failures=sum(1 for t in done if t.outcome == "retryable" and t.error_code not in THROTTLE_CODES),
                    throttled=sum(1 for t in done if t.outcome == "retryable" and t.error_code in THROTTLE_CODES))


def still_allowed(facts: Facts, moment: datetime) -> Decision | None:
    """At the moment of sending: ``None`` when the step may go now, else why not (and until when)."""
    step = facts.step
    if step is None:
        return Decision("done")
    return _compliance(facts, step) or _window(facts, step, moment) or _cap(facts, step, moment)
