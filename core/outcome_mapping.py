"""What each decision and each provider answer writes, for one campaign in a dispatch pass.

:class:`CampaignRun` is a campaign as a pass sees it (its steps, its message
builder, its limits, its adapters, its counters).  Its methods turn a
:class:`core.eligibility.Decision` (before sending) or a send's outcome (after)
into :class:`core.outcomes.Writes`:

- accepted → a "sent" event, the try's cost, and the next step (or done);
- a transient failure → exponential back-off with jitter until ``max_attempts`` —
  or, for a provider without idempotency keys that may have taken it, the try stays
  open and is settled with the provider before any retry (:mod:`core.reconcile`);
- permanent → this step is over (a multi-channel recipient moves on to the next);
- opted out → an opt-out is recorded; quota or a refused set-up → the campaign pauses
  with the reason.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

from core import ratelimit
from core.besttime import Model
from core.channels.base import (
    Channel,
    ChannelError,
    OptedOutError,
    OutboundMessage,
    OutcomeUnknown,
    QuotaExceededError,
    RetryableError,
    SendResult,
)
from core.claims import Claimed
from core.eligibility import THROTTLE_CODES, Decision, Facts, Step
from core.facts import CampaignFacts
from core.models import Campaign, Profile
from core.outbound import MessageBuilder
from core.outcomes import Writes
from core.templates import sms_length

log = logging.getLogger("core.dispatch")

# a connection that could not even be opened: nothing reached the provider, so nothing to reconcile
NOT_SENT_CODES = frozenset({"not_sent"})
MAX_THROTTLED_TRIES = 25
BACKOFF_BASE = 30.0
BACKOFF_CAP = 3600.0


@dataclass
class DispatchReport:
    """What one pass did for one campaign."""

    processed: int = 0
    sent: int = 0
    failed: int = 0
    opted_out: int = 0
    deferred: int = 0
    skipped: int = 0
    remaining: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def count(self, what: str, n: int = 1) -> None:
        setattr(self, what, getattr(self, what) + n)
        self.processed += n


def needs_reconcile(adapter: Channel) -> bool:
    """Whether a transient failure of ``adapter`` must be settled with the provider before a retry:
    true for providers that take no idempotency key (calls, SMS) unless the adapter says otherwise."""
    return bool(getattr(adapter, "retry_needs_reconcile", adapter.channel in ("call", "sms")))


def backoff(tries: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before try ``tries + 1``: 30 s·2^(n-1) with full jitter, capped at an hour,
    and never sooner than the provider asked."""
    cap = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, tries - 1))
    return max(retry_after or 0.0, 1.0, rng.uniform(0, cap))


@dataclass
class Send:
    """One message of a wave, from its recorded try to the provider's answer."""

    row: Claimed
    step: Step
    attempt_id: uuid.UUID
    attempt_no: int
    failures: int
    throttled: int
    message: OutboundMessage
    adapter: Channel
    at: float = 0.0  # the moment the limits gave it (epoch seconds)
    result: SendResult | None = None
    error: ChannelError | None = None
    crashed: BaseException | None = None
    not_sent: str | None = None
    refused: Decision | None = None  # the check at the moment of sending said no
    facts: Facts | None = None  # what the decision to send was based on


@dataclass
class CampaignRun:
    """One campaign within a pass."""

    campaign: Campaign
    profile: Profile
    facts: CampaignFacts
    steps: list[Step]
    builder: MessageBuilder
    rate: ratelimit.Rate
    adapters: dict[str, Channel]
    provider_rates: dict[str, ratelimit.Rate | None]
    report: DispatchReport = field(default_factory=DispatchReport)
    best: dict[str, Model] | None = None  # send_time "best": the business's hour model per channel (per pass)
    done: bool = False
    next_check: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    @property
    def id(self) -> uuid.UUID:
        return self.campaign.id

    def rates(self, channel: str) -> list[ratelimit.Rate]:
        extra = self.provider_rates.get(channel)
        return [self.rate, extra] if extra is not None else [self.rate]

    def channels(self) -> set[str]:
        return {s.channel for s in self.steps}

    # --- what a decision made before sending writes ----------------------------------------------

    def apply(self, writes: Writes, row: Claimed, step: Step | None, decision: Decision, now: datetime) -> None:
        """Record a decision that sends nothing (``send`` is performed by the dispatcher)."""
        kind = decision.kind
        if kind == "done" or step is None:
            writes.recipient("move", row.id, step=row.step, attempts=row.attempts, next_at=None)
        elif kind == "sent":
            t = decision.accepted
            assert t is not None
            # an earlier try got through (recorded by a process that lost its lease)
            self.accepted(writes, row, step, attempt_id=t.id, attempt_no=t.attempt_no,
                          pmid=t.provider_message_id or "", provider=t.provider, now=now)
        elif kind == "skip":
            self.step_over(writes, row, step, None, now, attempts=row.attempts, failed=False)
            self.report.count("skipped")
            log.info("campaign %s recipient %s: step %d (%s) skipped: %s", self.id, row.id, step.index, step.channel,
                     decision.reason)
        elif kind == "opted_out":
            self.opted_out(writes, row, step, decision.reason or "may not be contacted", now, attempts=row.attempts)
        elif kind == "defer":
            assert decision.until is not None
            writes.recipient("move", row.id, step=row.step, attempts=row.attempts, next_at=decision.until,
                             error=None, wait=decision.reason)
            if decision.planned:
                writes.plan(row.id, decision.until)
            self.report.count("deferred")
            log.info("campaign %s recipient %s: %s; due again at %s", self.id, row.id, decision.reason,
                     decision.until.isoformat())
        elif kind == "fail":
            self.step_over(writes, row, step, decision.reason, now, attempts=row.attempts, failed=True)
        else:
            raise ValueError(kind)

    # --- the building blocks ------------------------------------------------------------------------

    def accepted(self, writes: Writes, row: Claimed, step: Step, *, attempt_id: uuid.UUID, attempt_no: int,
                 pmid: str, provider: str, now: datetime) -> None:
        nxt = step.index + 1
        if nxt < len(self.steps):
            writes.recipient("accept", row.id, step=nxt, attempts=0,
                             next_at=now + timedelta(hours=self.steps[nxt].delay_hours), channel=step.channel,
                             pmid=pmid, at=now)
        else:
            writes.recipient("accept", row.id, step=step.index, attempts=attempt_no, next_at=None,
                             channel=step.channel, pmid=pmid, at=now)
        writes.sent_event(row, step=step.index, channel=step.channel, provider=provider, attempt_id=attempt_id,
                          attempt_no=attempt_no, pmid=pmid, at=now)
        self.report.count("sent")
        log.info("campaign %s recipient %s: step %d sent by %s via %s (%s)", self.id, row.id, step.index,
                 step.channel, provider, pmid)

    def step_over(self, writes: Writes, row: Claimed, step: Step, reason: str | None, now: datetime, *,
                  attempts: int, failed: bool) -> None:
        """This step will not go through (or was skipped): on to the next step, or done."""
        nxt = step.index + 1
        if nxt < len(self.steps):
            writes.recipient("move", row.id, step=nxt, attempts=0,
                             next_at=now + timedelta(hours=self.steps[nxt].delay_hours), error=reason)
            if failed:
                log.info("campaign %s recipient %s: step %d failed (%s); moving on to step %d", self.id, row.id,
                         step.index, reason, nxt)
        elif failed:
            writes.recipient("fail", row.id, step=step.index, attempts=attempts, error=reason)
            self.report.count("failed")
            log.info("campaign %s recipient %s: failed: %s", self.id, row.id, reason)
        else:
            writes.recipient("move", row.id, step=step.index, attempts=attempts, next_at=None, error=reason)

    def opted_out(self, writes: Writes, row: Claimed, step: Step, reason: str, now: datetime, *,
                  attempts: int) -> None:
        if step.index + 1 < len(self.steps):
            self.step_over(writes, row, step, reason, now, attempts=attempts, failed=False)
            self.report.count("skipped")
        else:
            writes.recipient("optout", row.id, attempts=attempts, error=reason)
            self.report.count("opted_out")
        log.info("campaign %s recipient %s: %s; not contacted on %s", self.id, row.id, reason, step.channel)

    def cost_of(self, send: Send, result: SendResult) -> float | None:
        """What an accepted try cost: SMS segments of the final text, one e-mail; a call's cost comes
        with its end-of-call report."""
        if send.step.channel == "sms":
            segments = result.detail.get("segments") if isinstance(result.detail, dict) else None
            try:
                n = int(segments) if segments not in (None, "") else sms_length(send.message.text).segments
            except (TypeError, ValueError):
                n = sms_length(send.message.text).segments
            return round(n * self.profile.price_per_sms_segment, 6)
        if send.step.channel == "email":
            return self.profile.price_per_email
        return None

    # --- what a provider's answer writes --------------------------------------------------------------

    def outcome(self, writes: Writes, s: Send, now: datetime, epoch: float) -> None:
        row, step, c = s.row, s.step, self.campaign
        if s.result is not None:
            writes.attempt(s.attempt_id, "accepted", pmid=s.result.provider_message_id,
                           still_open=step.channel == "call", cost=self.cost_of(s, s.result))
            # sent when its slot came (a paced batch takes a while), not when the batch is recorded: what the
            # provider reports back (delivered, …) comes after it on the timeline
            sent = min(now, datetime.fromtimestamp(s.at, UTC)) if s.at else now
            self.accepted(writes, row, step, attempt_id=s.attempt_id, attempt_no=s.attempt_no,
                          pmid=s.result.provider_message_id, provider=s.adapter.provider, now=sent)
            return
        if s.refused is not None:
            writes.attempt(s.attempt_id, "skipped", error=f"not sent: {s.refused.reason}")
            if s.refused.kind == "defer" and s.refused.until is not None:
                writes.recipient("move", row.id, step=step.index, attempts=s.attempt_no, next_at=s.refused.until,
                                 wait=s.refused.reason)
                self.report.count("deferred")
            else:
                self.apply(writes, row, step, s.refused, now)
            log.info("campaign %s recipient %s: not sent at the last moment: %s", self.id, row.id, s.refused.reason)
            return
        if s.not_sent is not None:
            writes.attempt(s.attempt_id, "skipped", error=f"not sent: {s.not_sent}")
            writes.recipient("release", row.id, attempts=s.attempt_no)
            log.info("campaign %s recipient %s: not sent (%s); released", self.id, row.id, s.not_sent)
            return
        if s.crashed is not None:
            # whether it went out is unknown: leave the attempt open, reconciliation settles it
            writes.recipient("release", row.id, attempts=s.attempt_no)
            return
        exc = s.error
        assert exc is not None
        if isinstance(exc, QuotaExceededError):
            writes.attempt(s.attempt_id, "quota", code=exc.code, error=exc.reason)
            writes.recipient("release", row.id, attempts=s.attempt_no)
            writes.pause = (c.profile_id, c.id, exc.reason)
            self.done = True
            return
        if isinstance(exc, OptedOutError):
            writes.attempt(s.attempt_id, "opted_out", code=exc.code, error=exc.reason)
            source = {"sms": "sms_stop", "call": "call_request"}.get(step.channel, "unsubscribe_link")
            contact = row.customer_email if step.channel == "email" else row.customer_phone
            if contact:
                writes.opt_outs.append({"profile_id": row.profile_id, "contact": contact, "channel": step.channel,
                                        "source": source, "reason": exc.reason, "campaign_id": row.campaign_id,
                                        "now": now})
            self.opted_out(writes, row, step, f"the provider says the customer opted out ({exc.reason})", now,
                           attempts=s.attempt_no)
            return
        if isinstance(exc, RetryableError):
            self._retryable(writes, s, exc, now, epoch)
            return
        # PermanentError, OutcomeUnknown or any other refusal: this step will never go through
        outcome = "unknown" if isinstance(exc, OutcomeUnknown) else "permanent"
        writes.attempt(s.attempt_id, outcome, code=exc.code, error=exc.reason)
        self.step_over(writes, row, step, exc.reason, now, attempts=s.attempt_no, failed=True)

    def _retryable(self, writes: Writes, s: Send, exc: RetryableError, now: datetime, epoch: float) -> None:
        row, step = s.row, s.step
        throttle = exc.code in THROTTLE_CODES
        if exc.retry_after:
            key = self.provider_rates[step.channel].key if self.provider_rates.get(step.channel) else \
                ratelimit.provider_key(step.channel)
            until = epoch + exc.retry_after
            if until > writes.blocks.get(key, (0.0, ""))[0]:
                writes.blocks[key] = (until, exc.reason)
        failures = s.failures + (0 if throttle else 1)
        throttled = s.throttled + (1 if throttle else 0)
        if not throttle and needs_reconcile(s.adapter) and exc.code not in NOT_SENT_CODES:
            # the request may have gone through (a timeout, a lost answer) and this provider has no
            # idempotency key: the try stays open and is settled with the provider before any retry
            writes.attempt(s.attempt_id, None, code=exc.code, error=exc.reason, still_open=True)
            delay = backoff(failures, exc.retry_after, self.rng)
            writes.recipient("move", row.id, step=step.index, attempts=s.attempt_no,
                             next_at=now + timedelta(seconds=delay), error=exc.reason)
            self.report.count("deferred")
            log.info("campaign %s recipient %s: try %d may have gone through (%s); %s is asked before any "
                     "retry", self.id, row.id, s.attempt_no, exc.reason, s.adapter.provider)
            return
        writes.attempt(s.attempt_id, "retryable", code=exc.code, error=exc.reason)
        if failures >= self.campaign.max_attempts or throttled >= MAX_THROTTLED_TRIES:
            self.step_over(writes, row, step, f"gave up after {s.attempt_no} tries: {exc.reason}", now,
                           attempts=s.attempt_no, failed=True)
            return
        delay = backoff(failures or 1, exc.retry_after, self.rng)
        writes.recipient("move", row.id, step=step.index, attempts=s.attempt_no,
                         next_at=now + timedelta(seconds=delay), error=exc.reason)
        self.report.count("deferred")
        log.info("campaign %s recipient %s: try %d failed (%s); next try in %.0f s", self.id, row.id, s.attempt_no,
                 exc.reason, delay)
