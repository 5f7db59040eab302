"""What one wave of a campaign does: how many recipients to claim and, inside the wave's transaction
once each recipient's next step is decided, render the messages (a retry re-sends exactly what its first
try stored), reserve rate-limit permits and free lines, and record one ``outreach_attempts`` row per
message — committed before any provider is called (:mod:`core.dispatch` sends them afterwards)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Column, Table, exists, select
from sqlalchemy.orm import Session

from core import ratelimit
from core.bulk import insert_rows
from core.claims import Claimed
from core.db import in_values
from core.eligibility import Decision, Facts
from core.facts import AttemptRow
from core.models import CampaignRecipient, Lead, OutreachAttempt
from core.outbound import Customer, attempt_detail, message_from_detail, with_metadata
from core.outcome_mapping import CampaignRun, Send
from core.outcomes import new_id

log = logging.getLogger("core.dispatch")
_r = cast(Table, CampaignRecipient.__table__)
_a = cast(Table, OutreachAttempt.__table__)


def size(session: Session, run: CampaignRun, *, now: datetime, epoch: float, horizon: float, batch: int,
         max_calls: int, lookahead: float) -> tuple[int, float]:
    """How many recipients a wave should claim — no more than the limits let through within ``horizon``
    seconds — and, when none, when to look again (epoch seconds; else the run's next check stays 0)."""
    channels = run.channels()
    keys = [run.rate.key] + [r.key for ch in channels for r in run.rates(ch)[1:]]
    states = ratelimit.read_states(session, keys)
    calls_free = None
    if channels == {"call"}:
        total, mine = ratelimit.calls_in_progress(session, campaign_id=run.id, now=now)
        calls_free = min(max_calls - total, run.campaign.max_concurrent_calls - mine)
    per_channel = [ratelimit.capacity(run.rates(ch), now=epoch, horizon=horizon, states=states)
                   if horizon >= 0 else 0 for ch in channels]
    n = min(batch, max(per_channel) if per_channel else 0)
    if calls_free is not None:
        n = min(n, max(0, calls_free))
    if n > 0:
        return n, 0.0
    if calls_free is not None and calls_free <= 0:
        return 0, epoch + 1.0
    nxt = min(ratelimit.earliest(run.rates(ch), states, epoch) for ch in channels)
    return 0, max(epoch + 0.02, nxt - lookahead)


def build(session: Session, run: CampaignRun, chosen: list[tuple[Claimed, Facts, Decision]],
          history: dict[uuid.UUID, list[AttemptRow]]) -> list[Send]:
    """Render the messages (a retry re-sends exactly what the first try stored)."""
    if not chosen:
        return []
    earlier = {}
    retry_ids = [max((h for h in history.get(row.id, ()) if h.step == fact.step.index),
                     key=lambda h: h.attempt_no).id
                 for row, fact, _ in chosen if fact.step is not None
                 and any(h.step == fact.step.index for h in history.get(row.id, ()))]
    if retry_ids:
        for rid, detail in session.execute(select(_a.c.recipient_id, _a.c.detail)
                                           .where(in_values(session, _a.c.id, retry_ids))):
            message = message_from_detail(detail or {})
            if message is not None:
                earlier[rid] = message
    lead_ids = [row.lead_id for row, _, _ in chosen if row.lead_id and row.id not in earlier]
    leads = {}
    if lead_ids:
        leads = {lid: (svc, created) for lid, svc, created in session.execute(
            select(Lead.id, Lead.service_type, Lead.created_at).where(in_values(session, Lead.id, lead_ids)))}
    sms_phones = [row.customer_phone for row, f, _ in chosen if f.step and f.step.channel == "sms"]
    texted = already_texted(session, run.campaign.profile_id, sms_phones)
    sends = []
    for row, fact, decision in chosen:
        step = fact.step
        assert step is not None
        message = earlier.get(row.id)
        if message is None or message.step != step.index:
            service, last_visit = leads.get(row.lead_id, (None, None)) if row.lead_id else (None, None)
            variant = row.variant or (run.facts.winner_variant if row.ab_group == "rest" else None)
            customer = Customer(recipient_id=row.id, name=row.customer_name, phone=row.customer_phone,
                                email=row.customer_email, variant=variant, service_type=service,
                                last_visit=last_visit)
            message = run.builder.build(customer, step=step.index, channel=step.channel,
                                        first_sms=step.channel == "sms" and row.customer_phone not in texted)
        sends.append(Send(row=row, step=step, attempt_id=new_id(), attempt_no=decision.attempt_no,
                          failures=decision.failures, throttled=decision.throttled,
                          message=with_metadata(message, attempt=str(decision.attempt_no)),
                          adapter=run.adapters[step.channel], facts=fact))
    return sends

def already_texted(session: Session, profile_id: uuid.UUID, phones: Sequence[str | None]) -> set[str]:
    """Numbers this business has already sent an SMS to (they know how to opt out)."""
    wanted = sorted({p for p in phones if p})
    if not wanted:
        return set()
    a = _a.c
    return set(session.scalars(select(_r.c.customer_phone).where(
        _r.c.profile_id == profile_id, in_values(session, _r.c.contact_key, wanted), _r.c.sent_at.is_not(None),
        exists().where(a.recipient_id == _r.c.id, a.channel == "sms", a.outcome == "accepted"))))

def grant(session: Session, run: CampaignRun, sends: list[Send], *, now: datetime, epoch: float, horizon: float,
          max_calls: int) -> list[Send]:
    """Reserve rate-limit permits up to ``horizon`` seconds after ``epoch`` (and free lines for calls, at most
    ``max_calls`` in progress on the account) under the limiter rows' locks."""
    if not sends:
        return []
    keys = {r.key for s in sends for r in run.rates(s.step.channel)}
    has_calls = any(s.step.channel == "call" for s in sends)
    if has_calls:
        keys.add(ratelimit.CALLS_KEY)
    states = ratelimit.lock(session, keys)
    free_calls = 0
    if has_calls:
        total, mine = ratelimit.calls_in_progress(session, campaign_id=run.id, now=now)
        free_calls = min(max_calls - total,
                         run.campaign.max_concurrent_calls - mine)
    granted = []
    for send in sends:
        if send.step.channel == "call" and free_calls <= 0:
            continue
        rates = run.rates(send.step.channel)
        at = ratelimit.earliest(rates, states, epoch)
        if at > epoch + horizon:
            continue
        ratelimit.take(rates, states, at)
        send.at = at
        if send.step.channel == "call":
            free_calls -= 1
        granted.append(send)
    ratelimit.save(session, states)
    return granted

def record(session: Session, run: CampaignRun, sends: list[Send], *, now: datetime, worker: str) -> list[Send]:
    """Insert the attempts (outcome unknown until the provider answers); committed with the wave."""
    rows = []
    for s in sends:
        payload = getattr(s.adapter, "request_payload", None)
        detail = attempt_detail(s.message, payload(s.message) if payload is not None else None)
        detail["slot"] = s.at  # the moment the limits gave this try (epoch seconds)
        rows.append({
            "id": s.attempt_id, "profile_id": s.row.profile_id, "campaign_id": run.id, "recipient_id": s.row.id,
            "step": s.step.index, "attempt_no": s.attempt_no, "channel": s.step.channel,
            "provider": s.adapter.provider, "idempotency_key": s.message.idempotency_key, "outcome": None,
            "detail": detail, "worker": worker, "started_at": now})
    inserted = set(insert_rows(session, _a, rows, conflict=["recipient_id", "step", "attempt_no"],
                               returning=cast(Column[Any], _a.c.id)))
    for s in sends:
        if s.attempt_id not in inserted:  # another process recorded this very try: leave it to that one
            log.warning("campaign %s recipient %s: try %d of step %d already recorded elsewhere; not sending",
                        run.id, s.row.id, s.attempt_no, s.step.index)
    return [s for s in sends if s.attempt_id in inserted]
