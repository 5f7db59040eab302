"""Settling tries whose outcome was never recorded, calls whose end was never reported, and
outcomes read back from providers.

A try is recorded before its provider is called; when the process dies in between, or
a provider without idempotency keys answers with a timeout or a 5xx, the try stays
*open*.  Nothing is sent again for that step until the try is settled here
(DESIGN §5, §13):

- a provider that can be **asked** (Vapi lists its calls, Twilio its messages, the
  sandbox remembers) is asked; while it cannot tell yet, it is asked again later, with
  back-off (``next_attempt_at``), before the outcome is ever declared unknown;
- a provider whose answer is **a replay of the request** (Resend answers a repeated
  idempotency key with the original e-mail, or sends it now) is only replayed while
  the campaign is active, the customer has not opted out since, the send window is
  open and a rate-limit permit is free — otherwise the try is settled as unknown
  without sending anything (a stopped campaign, an opt-out) or later (a paused
  campaign, a closed window, no permit);
- a provider that cannot be asked at all (SMTP, SNS) settles a try it was never handed
  (the hand-over is recorded right before it, :mod:`core.sender`) as not sent, so it
  goes out again, and a try it was handed as "outcome unknown": the recipient fails
  with an error that says so, rather than risk a second message.

Settling runs in its own scheduler job, a few look-ups at a time, and postpones
the other tries of a provider that does not answer, so a degraded provider never
holds up sending for any campaign.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select, update

from core import ratelimit
from core.channels.base import OutcomeUnknown, RetryableError, SendResult
from core.claims import Claimed, claim_unsettled
from core.db import in_values, utcnow
from core.eligibility import THROTTLE_CODES
from core.engine import Runtime
from core.facts import AttemptRow, attempts_of, contact_for
from core.models import Campaign, OutreachAttempt
from core.optouts import opted_out_among
from core.outbound import message_from_detail
from core.outcome_mapping import CampaignRun
from core.outcomes import Writes
from core.windows import QUIET_CHANNELS, next_opening, recipient_zones

log = logging.getLogger("core.dispatch")
_a = cast(Table, OutreachAttempt.__table__)
LOOKUP_THREADS = 4
ASK_AGAIN_MIN = timedelta(seconds=30)
ASK_AGAIN_MAX = timedelta(minutes=10)
PAUSED_RECHECK = timedelta(minutes=5)


def ask_again(started_at: datetime, now: datetime) -> datetime:
    """When to ask a provider again about a try it could not settle: soon for a young try, rarely for
    an old one (a quarter of its age, between 30 s and 10 min)."""
    wait = min(ASK_AGAIN_MAX, max(ASK_AGAIN_MIN, (now - started_at) / 4))
    return now + wait


@dataclass
class _Open:
    row: Claimed
    attempt: AttemptRow
    detail: dict[str, Any]
    current: bool  # the try belongs to the recipient's current step


def reconcile_one(runtime: Runtime, run: CampaignRun, attempt: AttemptRow | Any, detail: dict[str, Any],
                  now: datetime) -> SendResult | None:
    """Ask the try's provider whether it went out (see :meth:`Channel.reconcile`)."""
    message = message_from_detail(detail)
    if message is None:
        raise OutcomeUnknown("the try was recorded without its message", code="no_message")
    adapter = runtime.adapter_for(run.profile, attempt.channel)
    if adapter.provider != attempt.provider:
        raise OutcomeUnknown(f"the try went to {attempt.provider}, which this scheduler is no longer set up "
                             f"to ask (now {adapter.provider})", code="provider_changed")
    # providers measure age on the real clock: keep the try's age as the engine's clock sees it
    started_at = utcnow() - (now - attempt.started_at)
    pmid = getattr(attempt, "provider_message_id", None)
    if pmid and getattr(adapter, "reconciles_by_id", False):
        return adapter.reconcile(message, started_at=started_at,  # type: ignore[call-arg]
                                 provider_message_id=pmid)
    if "request" in detail and hasattr(adapter, "request_payload"):
        return adapter.reconcile(message, started_at=started_at,  # type: ignore[call-arg]
                                 request=detail["request"])
    return adapter.reconcile(message, started_at=started_at)


def _replay_gate(runtime: Runtime, run: CampaignRun, item: _Open, now: datetime, status: str | None,
                 opted: set[str]) -> tuple[str, Any] | None:
    """For a provider whose reconciliation may send (a replayed request): ``None`` when it may go now,
    else ``("unknown", reason)`` (settle without sending) or ``("later", when)``."""
    if status in ("completed", "cancelled") or status is None:
        return "unknown", ("outcome unknown: the campaign ended before the provider confirmed this try, and it "
                           "is not replayed")
    if status != "active":
        return "later", now + PAUSED_RECHECK
    contact = contact_for(item.row, item.attempt.channel)
    if contact and contact in opted:
        return "unknown", ("outcome unknown: the customer opted out before the provider confirmed this try, and "
                           "it is not replayed")
    quiet = item.attempt.channel in QUIET_CHANNELS
    zones = recipient_zones(item.row.customer_phone, run.facts.timezone)
    opening = next_opening(now, zones=zones, send_window=run.facts.send_window, quiet_hours=quiet)
    if opening is None and not quiet:
        opening = next_opening(now, zones=(run.facts.timezone,), send_window=run.facts.send_window,
                               quiet_hours=False)
    if opening is None:
        return "unknown", "outcome unknown: no time is left in the send window to confirm this try"
    if opening > now:
        return "later", opening
    return None


def _take_permits(runtime: Runtime, run: CampaignRun, items: list[_Open]) -> tuple[list[_Open], list[_Open]]:
    """Rate-limit permits for replays that send (in one short transaction); ``(granted, not now)``."""
    if not items:
        return [], []
    epoch = runtime.clock.time()
    with runtime.factory() as session, session.begin():
        rates = {i.attempt.channel: run.rates(i.attempt.channel) for i in items}
        states = ratelimit.lock(session, {r.key for rs in rates.values() for r in rs})
        granted, later = [], []
        for item in items:
            at = ratelimit.earliest(rates[item.attempt.channel], states, epoch)
            if at > epoch + 1.0:
                later.append(item)
                continue
            ratelimit.take(rates[item.attempt.channel], states, at)
            granted.append(item)
        ratelimit.save(session, states)
    return granted, later


def settle(runtime: Runtime, run: CampaignRun, rows: Sequence[Claimed], history: dict[uuid.UUID, list[AttemptRow]],
           now: datetime) -> int:
    """Settle the open tries of claimed ``rows`` with their providers, before anything is retried.

    Returns how many were settled (the others are asked again later)."""
    def first_open(row: Claimed) -> AttemptRow:
        # the open try of the current step comes first; an open try of another step is settled too
        return min((h for h in history[row.id] if h.outcome is None), key=lambda h: (h.step != row.step, h.attempt_no))

    opens = {r.id: first_open(r) for r in rows}
    with runtime.factory() as session:
        details = dict(session.execute(select(_a.c.id, _a.c.detail)
                                       .where(in_values(session, _a.c.id, [h.id for h in opens.values()]))).all())
        status = session.scalar(select(Campaign.status).where(Campaign.id == run.id))
        emails = [r.customer_email for r in rows if r.customer_email]
        phones = [r.customer_phone for r in rows if r.customer_phone]
        opted = {ch: opted_out_among(session, profile_id=run.campaign.profile_id,
                                     contacts=emails if ch == "email" else phones, channel=ch)
                 for ch in ("email", "sms", "call")}
    items = [_Open(row=r, attempt=opens[r.id], detail=details.get(opens[r.id].id) or {},
                   current=opens[r.id].step == r.step) for r in rows]
    writes = Writes(runtime.worker, now)
    replays: list[_Open] = []
    lookups: list[_Open] = []
    settled = 0
    for item in items:
        adapter = runtime.adapter_for(run.profile, item.attempt.channel)
        if (getattr(adapter, "handoff_marked", False) and adapter.provider == item.attempt.provider
                and item.attempt.handed_at is None):
            # recorded before the hand-over, which never came: nothing went out, it can be sent again
            _settled(run, writes, item, None, history, now, never_handed=True)
            settled += 1
        elif getattr(adapter, "reconcile_sends", False) and adapter.provider == item.attempt.provider:
            gate = _replay_gate(runtime, run, item, now, status, opted[item.attempt.channel])
            if gate is None:
                replays.append(item)
            elif gate[0] == "unknown":
                _unknown(run, writes, item, gate[1], now,
                         opted=contact_for(item.row, item.attempt.channel) in opted[item.attempt.channel])
                settled += 1
            else:
                writes.recipient("move", item.row.id, step=item.row.step, attempts=item.row.attempts,
                                 next_at=gate[1])
        else:
            lookups.append(item)
    granted, not_now = _take_permits(runtime, run, replays)
    for item in not_now:
        writes.recipient("move", item.row.id, step=item.row.step, attempts=item.row.attempts,
                         next_at=now + ASK_AGAIN_MIN)
    finished: list[tuple[str, SendResult]] = []
    for item, outcome in _ask(runtime, run, [*granted, *lookups], now):
        if isinstance(outcome, OutcomeUnknown):
            _unknown(run, writes, item, f"outcome unknown: {outcome.reason}", now, code=outcome.code)
            settled += 1
        elif isinstance(outcome, Exception):
            writes.recipient("move", item.row.id, step=item.row.step, attempts=item.row.attempts,
                             next_at=ask_again(item.attempt.started_at, now))
            log.warning("campaign %s recipient %s: could not settle try %d yet (%s)", run.id, item.row.id,
                        item.attempt.attempt_no, outcome)
        else:
            _settled(run, writes, item, outcome, history, now)
            settled += 1
            if outcome is not None and outcome.status in ("ended", "completed"):
                finished.append((item.attempt.provider, outcome))
    runtime.write(writes)
    for provider, result in finished:
        try:
            recover_outcome(runtime, provider, result)
        except Exception:
            log.exception("campaign %s: the outcome of %s could not be read from %s", run.id,
                          result.provider_message_id, provider)
    return settled


def _ask(runtime: Runtime, run: CampaignRun, items: list[_Open], now: datetime
         ) -> list[tuple[_Open, SendResult | Exception | None]]:
    """Ask each provider, a few at a time; once one of a provider's look-ups fails for want of an answer,
    its other tries this round are postponed rather than waited on."""
    by_provider: dict[str, list[_Open]] = defaultdict(list)
    for item in items:
        by_provider[item.attempt.provider].append(item)

    def ask_all(group: list[_Open]) -> list[tuple[_Open, SendResult | Exception | None]]:
        out: list[tuple[_Open, SendResult | Exception | None]] = []
        down: Exception | None = None
        for item in group:
            if down is not None:
                out.append((item, down))
                continue
            try:
                out.append((item, reconcile_one(runtime, run, item.attempt, item.detail, now)))
            except OutcomeUnknown as exc:
                out.append((item, exc))
            except Exception as exc:
                out.append((item, exc))
                if not (isinstance(exc, RetryableError) and exc.code == "too_early"):
                    down = exc
        return out

    groups = list(by_provider.values())
    if len(groups) <= 1:
        return [x for g in groups for x in ask_all(g)]
    with ThreadPoolExecutor(max_workers=min(LOOKUP_THREADS, len(groups)), thread_name_prefix="settle") as pool:
        return [x for chunk in pool.map(ask_all, groups) for x in chunk]


def _unknown(run: CampaignRun, writes: Writes, item: _Open, reason: str, now: datetime, *, code: str | None = None,
             opted: bool = False) -> None:
    step = run.steps[min(item.attempt.step, len(run.steps) - 1)]
    writes.attempt(item.attempt.id, "unknown", code=code, error=reason)
    if not item.current:
        writes.recipient("release", item.row.id, attempts=item.row.attempts)
    elif opted:
        run.opted_out(writes, item.row, step, reason, now, attempts=item.attempt.attempt_no)
    else:
        run.step_over(writes, item.row, step, reason, now, attempts=item.attempt.attempt_no, failed=True)
    log.warning("campaign %s recipient %s: try %d settled as unknown (%s)", run.id, item.row.id,
                item.attempt.attempt_no, reason)


def _settled(run: CampaignRun, writes: Writes, item: _Open, result: SendResult | None,
             history: dict[uuid.UUID, list[AttemptRow]], now: datetime, *, never_handed: bool = False) -> None:
    row, h = item.row, item.attempt
    step = run.steps[min(h.step, len(run.steps) - 1)]
    if result is None and h.error_code is not None and not never_handed:
        # a try that failed in a way that might have gone through did not: an ordinary failed try
        writes.attempt(h.id, "retryable")
        failures = 1 + sum(1 for x in history[row.id] if x.step == h.step and x.outcome == "retryable"
                           and x.error_code not in THROTTLE_CODES)
        if not item.current:
            writes.recipient("release", row.id, attempts=row.attempts)
        elif failures >= run.campaign.max_attempts:
            run.step_over(writes, row, step, f"gave up after {h.attempt_no} tries: {h.error_message}", now,
                          attempts=h.attempt_no, failed=True)
        else:
            writes.recipient("move", row.id, step=row.step, attempts=h.attempt_no,
                             next_at=max(now, row.next_attempt_at or now))
        log.info("campaign %s recipient %s: try %d did not reach %s (%s)", run.id, row.id, h.attempt_no,
                 h.provider, h.error_message)
        return
    if result is None:
        writes.attempt(h.id, "skipped", error="not sent: the try was never handed to the provider" if never_handed
                       else "not sent: the provider confirms it never got this try")
        if item.current:
            writes.recipient("move", row.id, step=row.step, attempts=h.attempt_no, next_at=now)
        else:
            writes.recipient("release", row.id, attempts=row.attempts)
        log.info("campaign %s recipient %s: try %d never reached %s; it will be sent again", run.id, row.id,
                 h.attempt_no, h.provider)
        return
    writes.attempt(h.id, "accepted", pmid=result.provider_message_id,
                   still_open=h.channel == "call" and result.status not in ("ended", "completed"))
    if item.current:
        run.accepted(writes, row, step, attempt_id=h.id, attempt_no=h.attempt_no, pmid=result.provider_message_id,
                     provider=h.provider, now=now)
    else:  # an earlier step went out after all: on the timeline, and nothing else changes
        writes.recipient("release", row.id, attempts=row.attempts)
        writes.sent_event(row, step=h.step, channel=h.channel, provider=h.provider, attempt_id=h.id,
                          attempt_no=h.attempt_no, pmid=result.provider_message_id, at=now)
    log.info("campaign %s recipient %s: try %d had gone out (%s); recorded, not repeated", run.id, row.id,
             h.attempt_no, result.provider_message_id)


def recover_outcome(runtime: Runtime, provider: str, result: SendResult) -> None:
    """Apply what the provider's record of a finished message says happened (its end-of-call report,
    say), in case the webhook that would have said so never arrived."""
    record = result.detail.get("record") if isinstance(result.detail, dict) else None
    if not isinstance(record, dict):
        return
    from core.webhooks import recover_outcome as recover

    with runtime.factory() as session, session.begin():
        recover(session, provider=provider, record=record, now=runtime.clock.now())


# --- housekeeping jobs ---------------------------------------------------------------------------------


def settle_unsettled(runtime: Runtime, *, limit: int = 200) -> int:
    """Settle tries whose process died before recording their outcome, or that a provider could not
    settle yet (any campaign, active or not), once their lease has expired and their back-off passed."""
    now = runtime.clock.now()
    with runtime.factory() as session, session.begin():
        rows = claim_unsettled(session, worker=runtime.worker, now=now, lease=runtime.lease, limit=limit)
    if not rows:
        return 0
    settled = 0
    by_campaign: dict[uuid.UUID, list[Claimed]] = defaultdict(list)
    for row in rows:
        by_campaign[row.campaign_id].append(row)
    for campaign_id, group in by_campaign.items():
        if runtime.stop.is_set():
            runtime.release([r.id for r in group])
            continue
        with runtime.factory() as session:
            try:
                run = runtime.load_run(session, campaign_id)
            except LookupError:
                continue
            history = attempts_of(session, [r.id for r in group])
        ready = [r for r in group if any(h.outcome is None for h in history.get(r.id, ()))]
        runtime.release([r.id for r in group if r not in ready])
        if ready:
            settled += settle(runtime, run, ready, history, now)
    return settled


def close_stale_calls(runtime: Runtime, *, limit: int = 100) -> int:
    """Calls whose end was never reported within :data:`ratelimit.CALL_TIMEOUT` (a lost webhook): ask the
    provider, and stop counting them as in progress unless it says they are still going."""
    now = runtime.clock.now()
    a = _a.c
    with runtime.factory() as session:
        stale = session.execute(
            select(a.id, a.campaign_id, a.channel, a.provider, a.started_at, a.detail, a.provider_message_id)
            .where(a.channel == "call", a.outcome == "accepted", a.completed_at.is_(None),
                   a.started_at <= now - ratelimit.CALL_TIMEOUT)
            .order_by(a.started_at).limit(limit)).all()
        runs: dict[uuid.UUID, CampaignRun] = {}
        for campaign_id in {s.campaign_id for s in stale}:
            with contextlib.suppress(LookupError):
                runs[campaign_id] = runtime.load_run(session, campaign_id)
    closed = []
    for attempt in stale:
        still_going = False
        run = runs.get(attempt.campaign_id)
        try:
            result = reconcile_one(runtime, run, attempt, attempt.detail or {}, now) if run else None
            still_going = (result is not None and result.status in ("queued", "ringing", "in-progress", "forwarding")
                           and attempt.started_at > now - 2 * ratelimit.CALL_TIMEOUT)
            if result is not None and not still_going:
                recover_outcome(runtime, attempt.provider, result)
        except Exception as exc:
            log.info("call attempt %s: the provider could not say how it ended (%s); closing it", attempt.id, exc)
        if not still_going:
            closed.append(attempt.id)
    if closed:
        with runtime.factory() as session, session.begin():
            session.execute(update(_a).where(_a.c.id.in_(closed), _a.c.completed_at.is_(None))
                            .values(completed_at=now))
        log.info("%d calls without a reported end were closed after %s", len(closed), ratelimit.CALL_TIMEOUT)
    return len(closed)
