"""What the dispatcher knows about a batch of claimed recipients before deciding anything.

:func:`gather` reads, in a handful of set-based queries for the whole batch, every
fact :func:`core.eligibility.decide` looks at: the tries made so far, opt-outs,
the business's do-not-call list, consent records (under its consent policy), the
state rules of each number and this business's recent calls and texts to it,
whether a call of an earlier step is still going, the A/B winner.  Nothing here
decides; :mod:`core.eligibility` does, without a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from core import compliance, consents, dnc
from core.claims import Claimed
from core.db import in_values
from core.eligibility import Facts, Step, Try
from core.models import CampaignRecipient, OutreachAttempt, Profile
from core.optouts import opted_out_among
from core.ratelimit import CALL_TIMEOUT
from core.windows import QUIET_CHANNELS, recipient_zones

_a = cast(Table, OutreachAttempt.__table__)
_r = cast(Table, CampaignRecipient.__table__)


@dataclass(frozen=True)
class AttemptRow:
    """One recorded try of some step of a recipient."""

    id: uuid.UUID
    recipient_id: uuid.UUID
    step: int
    attempt_no: int
    channel: str
    provider: str
    outcome: str | None
    error_code: str | None
    error_message: str | None
    provider_message_id: str | None
    started_at: datetime
    completed_at: datetime | None
    handed_at: datetime | None = None

    def as_try(self) -> Try:
        return Try(id=self.id, attempt_no=self.attempt_no, outcome=self.outcome, error_code=self.error_code,
                   error_message=self.error_message, provider=self.provider, started_at=self.started_at,
                   provider_message_id=self.provider_message_id)


def attempts_of(session: Session, recipient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[AttemptRow]]:
    """Every try of the given recipients, by recipient."""
    if not recipient_ids:
        return {}
    a = _a.c
    found: dict[uuid.UUID, list[AttemptRow]] = {}
    for item in session.execute(select(a.id, a.recipient_id, a.step, a.attempt_no, a.channel, a.provider, a.outcome,
                                       a.error_code, a.error_message, a.provider_message_id, a.started_at,
                                       a.completed_at, a.handed_at)
                                .where(in_values(session, a.recipient_id, list(recipient_ids)))):
        found.setdefault(item.recipient_id, []).append(AttemptRow(**item._mapping))
    return found


@dataclass(frozen=True)
class CampaignFacts:
    """What a batch shares: the campaign's rules as they are now."""

    profile_id: uuid.UUID
    campaign_type: str
    consent_policy: str
    timezone: str
    send_window: dict[str, Any]
    max_attempts: int
    winner_variant: str | None
    variant_mode: str


def contact_for(row: Claimed, channel: str) -> str | None:
    return row.customer_email if channel == "email" else row.customer_phone


def _previous_call_open(history: Sequence[AttemptRow], step: int, now: datetime) -> bool:
    return any(h.channel == "call" and h.step < step and h.outcome == "accepted" and h.completed_at is None
               and h.started_at > now - CALL_TIMEOUT for h in history)


def gather(session: Session, *, campaign: CampaignFacts, steps: Sequence[Step], rows: Sequence[Claimed],
           history: dict[uuid.UUID, list[AttemptRow]], now: datetime,
           idempotency_window: Callable[[str], timedelta | None],
           best_moment: Callable[[Claimed, Step], datetime | None] | None = None) -> list[Facts]:
    """The facts of each row's next step, in the order of ``rows``."""
    def step_of(row: Claimed) -> Step | None:
        return steps[row.step] if row.step < len(steps) else None

    by_channel: dict[str, list[str]] = {}
    for row in rows:
        step = step_of(row)
        contact = contact_for(row, step.channel) if step else None
        if step is not None and contact:
            by_channel.setdefault(step.channel, []).append(contact)
    pid = campaign.profile_id
    opted = {ch: opted_out_among(session, profile_id=pid, contacts=contacts, channel=ch)
             for ch, contacts in by_channel.items()}
    phones = sorted({c for ch, contacts in by_channel.items() if ch in QUIET_CHANNELS for c in contacts})
    on_dnc = dnc.dnc_among(session, profile_id=pid, numbers=phones) if phones else set()
    needed = {ch: consents.required_level(campaign.consent_policy, campaign.campaign_type, ch) for ch in by_channel}
    levels = {ch: consents.consent_level(session, profile_id=pid, contacts=contacts, channel=ch)
              for ch, contacts in by_channel.items() if needed[ch]}
    rules = {p: compliance.state_rule(p) for p in phones}
    capped = [p for p, rule in rules.items() if rule is not None]
    # counted under a lock held until the wave that reserves these sends commits (two schedulers)
    compliance.hold_caps(session, profile_id=pid, contacts=[
        c for ch, contacts in by_channel.items() for c in contacts
        if (rule := rules.get(c)) is not None and compliance.cap_applies(rule, ch)])
    recent = compliance.recent_contact_times(session, profile_id=pid, contacts=capped, now=now) if capped else {}

    out = []
    for row in rows:
        step = step_of(row)
        if step is None:
            out.append(Facts(step=None, channel_contact=None))
            continue
        contact = contact_for(row, step.channel)
        past = history.get(row.id, [])
        rule = rules.get(contact) if contact and step.channel in QUIET_CHANNELS else None
        times: list[datetime] = []
        if rule is not None and contact:
            seen = recent.get(contact, {})
            times = list(seen.get("call", []))
            if rule.counts_texts:
                times += list(seen.get("sms", []))
        out.append(Facts(
            step=step, channel_contact=contact,
            tries=tuple(h.as_try() for h in past if h.step == step.index),
            attempts_so_far=row.attempts,
            responded=row.responded_at is not None, answered=row.answered_at is not None,
            last_call_outcome=row.last_call_outcome, previous_call_open=_previous_call_open(past, step.index, now),
            opted_out=bool(contact and contact in opted.get(step.channel, set())),
            dnc=bool(contact and contact in on_dnc),
            consent=levels.get(step.channel, {}).get(contact) if contact else None,
            consent_needed=needed.get(step.channel),
            zones=recipient_zones(row.customer_phone, campaign.timezone), send_window=campaign.send_window,
            state=rule, recent_contacts=tuple(times),
            awaiting_winner=(campaign.variant_mode == "test_then_winner" and row.ab_group == "rest"
                             and row.variant is None and campaign.winner_variant is None),
            best_moment=best_moment(row, step) if best_moment is not None and row.planned_at is None else None,
            idempotency_window=idempotency_window(step.channel), max_attempts=campaign.max_attempts,
        ))
    return out


def fresh_compliance(session: Session, *, campaign: CampaignFacts, facts: Facts, now: datetime,
                     attempt_id: uuid.UUID | None = None) -> Facts:
    """``facts`` with opt-out, do-not-call, the consent policy, consent and recent contacts read again (for
    the check at the moment a call or text is handed to the provider; ``attempt_id``, the try about to go
    out, is already recorded and does not count against the cap)."""
    step, contact = facts.step, facts.channel_contact
    if step is None or not contact:
        return facts
    pid = campaign.profile_id
    opted = contact in opted_out_among(session, profile_id=pid, contacts=[contact], channel=step.channel)
    on_dnc = step.channel in QUIET_CHANNELS and bool(dnc.dnc_among(session, profile_id=pid, numbers=[contact]))
    # the business may have changed its consent policy since the batch was prepared
    policy = session.scalar(select(Profile.consent_policy).where(Profile.id == pid)) or campaign.consent_policy
    needed = consents.required_level(policy, campaign.campaign_type, step.channel)
    level = facts.consent
    if needed:
        level = consents.consent_level(session, profile_id=pid, contacts=[contact], channel=step.channel).get(contact)
    times = facts.recent_contacts
    if facts.state is not None:
        seen = compliance.recent_contact_times(session, profile_id=pid, contacts=[contact], now=now,
                                               excluding=attempt_id).get(contact, {})
        times = tuple(seen.get("call", [])) + (tuple(seen.get("sms", [])) if facts.state.counts_texts else ())
    return Facts(**{**facts.__dict__, "opted_out": opted, "dnc": on_dnc, "consent": level,
                    "consent_needed": needed, "recent_contacts": times})
