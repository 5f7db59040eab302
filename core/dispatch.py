"""The dispatcher: sends each campaign step to each recipient exactly once.

A pass works in *waves*.  Each wave of a campaign

1. claims a batch of due recipients (:mod:`core.claims`, a lease per row);
2. settles first any try of theirs whose outcome was never recorded (the
   process died mid-send, or a call/SMS provider without idempotency keys timed
   out): :meth:`Channel.reconcile` asks the provider, and only a provider that
   confirms nothing went out allows another try;
3. in one transaction re-checks that the campaign is still active, the step's
   condition, opt-outs (a late opt-out wins), the send window and calling
   hours (:mod:`core.windows`), reserves rate-limit permits
   (:mod:`core.ratelimit`), and records one ``outreach_attempts`` row per
   message with its rendered content — committed *before* any provider is
   called;
4. sends concurrently (a thread pool; each send waits for its permit's
   moment), never starting a send its lease might not outlive;
5. records every outcome in one transaction, only for rows this process still
   holds: accepted → a "sent" event and the next step (or done); transient
   failure → exponential backoff with jitter until ``max_attempts``;
   permanent → failed (a multi-channel recipient moves on to the next step);
   opted out → recorded; quota → the campaign is paused with the reason.

Waves of several campaigns interleave, and the next wave is prepared while
the previous one is being sent.  With an injected clock (tests) nothing
waits: a pass does what is allowed at that instant.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Column, Table, and_, exists, func, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import ratelimit
from core.bulk import insert_rows
from core.campaigns import get_campaign, transition
from core.channels import get_channel, send_timeout
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
from core.claims import Claimed, claim_due, release
from core.config import Settings, get_settings
from core.db import in_values, utcnow
from core.errors import Conflict, DomainError
from core.models import Agent, Campaign, CampaignRecipient, Lead, OutreachAttempt, Profile
from core.optouts import opted_out_among
from core.outbound import (
    Customer,
    MessageBuilder,
    Step,
    attempt_detail,
    message_from_detail,
    steps_of,
    with_metadata,
)
from core.outcomes import Writes, new_id
from core.results import refresh_campaign_results
from core.windows import QUIET_CHANNELS, describe, next_opening, recipient_zones

log = logging.getLogger(__name__)

# 429s and "request still running" say nothing about the recipient: they do not use up max_attempts
THROTTLE_CODES = frozenset({"rate_limit_exceeded", "concurrent_idempotent_requests", "rate_limited",
                            "concurrency_limited"})
# a connection that could not even be opened: nothing reached the provider, so nothing to reconcile
NOT_SENT_CODES = frozenset({"not_sent"})
MAX_THROTTLED_TRIES = 25
BACKOFF_BASE = 30.0
BACKOFF_CAP = 3600.0
# a reconciliation the provider could not answer is asked again this much later
RECONCILE_AGAIN = timedelta(seconds=30)
WAVE_HORIZON = 1.0  # seconds ahead a wave may reserve permits and wait for them
MAX_IN_FLIGHT = 3  # waves being sent while the next one is prepared
# sending threads: a send is mostly CPU (HTTP framing) under one interpreter lock, so a few suffice
SEND_THREADS = 4
DEFAULT_BUDGET = 5.0
STATUS_POLL = 0.5
_STATUS_WORDS = {"draft": "a draft", "scheduled": "scheduled", "paused": "paused", "completed": "completed",
                 "cancelled": "cancelled", "active": "active"}


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


class Clock:
    """The dispatcher's time: real, or fixed at an injected instant (then nothing waits)."""

    def __init__(self, fixed: datetime | None = None) -> None:
        self.fixed = fixed

    def now(self) -> datetime:
        return self.fixed or utcnow()


def needs_reconcile(adapter: Channel) -> bool:
    """Whether a transient failure of ``adapter`` must be settled with the provider before a retry:
    true for providers that take no idempotency key (calls, SMS) unless the adapter says otherwise."""
    return bool(getattr(adapter, "retry_needs_reconcile", adapter.channel in ("call", "sms")))


def backoff(tries: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before try ``tries + 1``: 30 s·2^(n-1) with full jitter, capped at an hour,
    and never sooner than the provider asked."""
    cap = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, tries - 1))
    return max(retry_after or 0.0, 1.0, rng.uniform(0, cap))


# --- per-campaign context ---------------------------------------------------------------------


@dataclass
class _Run:
    """One campaign within a pass."""

    campaign: Campaign
    steps: list[Step]
    builder: MessageBuilder
    rate: ratelimit.Rate
    provider_rates: dict[str, ratelimit.Rate | None]
    report: DispatchReport = field(default_factory=DispatchReport)
    done: bool = False
    next_check: float = 0.0

    @property
    def id(self) -> uuid.UUID:
        return self.campaign.id

    def rates(self, channel: str) -> list[ratelimit.Rate]:
        extra = self.provider_rates.get(channel)
        return [self.rate, extra] if extra is not None else [self.rate]

    def channels(self) -> set[str]:
        return {s.channel for s in self.steps}


def _load_run(session: Session, campaign_id: uuid.UUID, settings: Settings) -> _Run:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise LookupError(campaign_id)
    profile = session.get(Profile, campaign.profile_id)
    agent = session.get(Agent, campaign.agent_id) if campaign.agent_id else None
    assert profile is not None
    for obj in (campaign, profile, agent):
        if obj is not None:
            session.expunge(obj)
    steps = steps_of(campaign)
    return _Run(
        campaign=campaign, steps=steps,
        builder=MessageBuilder(campaign=campaign, profile=profile, agent=agent, settings=settings),
        rate=ratelimit.campaign_rate(campaign.id, campaign.rate_limit_per_minute),
        provider_rates={s.channel: ratelimit.provider_rate(s.channel, settings) for s in steps},
    )


# --- one message being sent -------------------------------------------------------------------


@dataclass
class _Send:
    row: Claimed
    step: Step
    attempt_id: uuid.UUID
    attempt_no: int
    failures: int
    throttled: int
    message: OutboundMessage
    adapter: Channel
    at: float = 0.0
    result: SendResult | None = None
    error: ChannelError | None = None
    crashed: BaseException | None = None
    not_sent: str | None = None


@dataclass
class _Batch:
    run: _Run
    sends: list[_Send]
    deadline: float  # monotonic: no send starts after this (the lease must outlive it)
    cancel: threading.Event = field(default_factory=threading.Event)
    futures: list[Future[None]] = field(default_factory=list)

    def finished(self) -> bool:
        return all(f.done() for f in self.futures)


_r = cast(Table, CampaignRecipient.__table__)
_a = cast(Table, OutreachAttempt.__table__)


# --- the dispatcher -----------------------------------------------------------------------------------


def _transient(exc: BaseException) -> bool:
    """A database error worth retrying (deadlock, serialization failure, lock timeout, lost connection)."""
    if isinstance(exc, OperationalError):
        return True
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, DBAPIError) and code in ("40001", "40P01", "55P03")


class Dispatcher:
    """Runs passes over one or more campaigns for one scheduler process (``worker``)."""

    def __init__(self, factory: sessionmaker[Session], *, worker: str, settings: Settings | None = None,
                 now: datetime | None = None, budget: float | None = None, stop: threading.Event | None = None,
                 concurrency: int | None = None, adapters: Mapping[str, Channel] | None = None) -> None:
        self.factory = factory
        self.settings = settings or get_settings()
        self.worker = worker
        self.clock = Clock(now)
        self.budget = DEFAULT_BUDGET if budget is None else budget
        self.stop = stop or threading.Event()
        self.lease = timedelta(seconds=self.settings.scheduler_lease_seconds)
        self.batch_size = self.settings.scheduler_batch_size
        self.concurrency = concurrency if concurrency is not None else SEND_THREADS
        # with an injected clock nothing waits: permits due within the horizon count as "now"
        self.horizon = WAVE_HORIZON
        # adapters given by the caller take the place of the registry's (another provider, a test double)
        self._adapters: dict[str, Channel] = dict(adapters or {})
        self._pool: ThreadPoolExecutor | None = None
        self._rng = random.Random()
        # a send must be able to finish (timeout included) well before its lease runs out
        self._send_margin = send_timeout(self.settings) + 2.0

    # --- helpers ---------------------------------------------------------------------------------

    def adapter(self, channel: str) -> Channel:
        if channel not in self._adapters:
            self._adapters[channel] = get_channel(channel, self.settings, factory=self.factory)
        return self._adapters[channel]

    def _now(self) -> datetime:
        return self.clock.now()

    def _write(self, writes: Writes) -> None:
        if writes.empty():
            return
        for attempt in range(5):
            try:
                with self.factory() as session, session.begin():
                    writes.flush(session)
                break
            except Exception as exc:
                if not _transient(exc) or attempt == 4:
                    raise
                log.warning("dispatch: retrying a write after a transient database error (%s)", exc)
                time.sleep(0.05 * (attempt + 1))
        if writes.pause is not None:
            self._pause(*writes.pause)

    def _pause(self, profile_id: uuid.UUID, campaign_id: uuid.UUID, reason: str) -> None:
        with self.factory() as session, session.begin():
            campaign = session.get(Campaign, campaign_id, with_for_update=True)
            if campaign is not None and campaign.status == "active":
                transition(session, profile_id=profile_id, campaign_id=campaign_id, target="paused",
                           now=self._now(), reason=reason, by_system=True)
                log.warning("campaign %s: paused by the scheduler: %s", campaign_id, reason)

    def _release(self, ids: Sequence[uuid.UUID], *, later: datetime | None = None) -> None:
        if ids:
            with self.factory() as session, session.begin():
                release(session, ids, worker=self.worker, now=self._now(), next_attempt_at=later)

    # --- running passes ------------------------------------------------------------------------------

    def run(self, campaign_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DispatchReport]:
        """Dispatch every given campaign until nothing more can be done now or the budget is spent."""
        runs: list[_Run] = []
        for campaign_id in campaign_ids:
            with self.factory() as session:
                try:
                    runs.append(_load_run(session, campaign_id, self.settings))
                except LookupError:
                    continue
        try:
            self._loop(runs)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        reports = {}
        for run in runs:
            with self.factory() as session, session.begin():
                refresh_campaign_results(session, campaign_id=run.id)
                run.report.remaining = int(session.scalar(
                    select(func.count()).select_from(_r)
                    .where(_r.c.campaign_id == run.id, _r.c.next_attempt_at.is_not(None))) or 0)
            reports[run.id] = run.report
        return reports

    def _loop(self, runs: list[_Run]) -> None:
        deadline = time.monotonic() + self.budget
        in_flight: deque[_Batch] = deque()
        last_poll = time.monotonic()
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                submitted = False
                epoch = time.time()
                for run in runs:
                    if run.done or len(in_flight) >= MAX_IN_FLIGHT or self.stop.is_set():
                        continue
                    if not self.clock.fixed and run.next_check > epoch:
                        continue
                    batch, progressed = self._wave(run)
                    if batch is not None:
                        in_flight.append(batch)
                    submitted = submitted or progressed
                while in_flight and (in_flight[0].finished() or len(in_flight) >= MAX_IN_FLIGHT):
                    self._finish(in_flight.popleft())
                if all(run.done for run in runs):
                    break
                if in_flight and time.monotonic() - last_poll >= STATUS_POLL:
                    self._poll_status(in_flight)
                    last_poll = time.monotonic()
                if submitted:
                    continue
                if in_flight:
                    wait(in_flight[0].futures, timeout=STATUS_POLL, return_when=FIRST_COMPLETED)
                elif self.clock.fixed:
                    break  # nothing more is allowed at this instant
                else:
                    pending = [r.next_check for r in runs if not r.done]
                    pause = min(pending) - time.time() if pending else 0
                    self.stop.wait(max(0.01, min(pause, deadline - time.monotonic(), STATUS_POLL)))
        except Exception:
            self._drain(in_flight)
            raise
        # an interrupt or exit (BaseException) goes straight up: like a crash, and settled like one
        self._drain(in_flight)

    def _drain(self, in_flight: deque[_Batch]) -> None:
        """Record the outcome of every batch still being sent (unstarted sends are released on stop)."""
        if self.stop.is_set():
            for batch in in_flight:
                batch.cancel.set()
        while in_flight:
            self._finish(in_flight.popleft())

    def _poll_status(self, batches: Iterable[_Batch]) -> None:
        """Stop sending for campaigns paused or stopped while their messages wait for their moment."""
        by_campaign = {b.run.id: b for b in batches}
        with self.factory() as session:
            statuses = dict(session.execute(select(Campaign.id, Campaign.status)
                                            .where(Campaign.id.in_(list(by_campaign)))).all())
        for batch in batches:
            if statuses.get(batch.run.id) != "active":
                batch.cancel.set()
                batch.run.done = True

    # --- one wave ----------------------------------------------------------------------------------------

    def _wave_size(self, run: _Run, now: datetime) -> int:
        """How many recipients this wave should claim: no more than the limits let through soon."""
        epoch = self.clock.now().timestamp() if self.clock.fixed else time.time()
        channels = run.channels()
        keys = [run.rate.key] + [r.key for ch in channels for r in run.rates(ch)[1:]]
        with self.factory() as session:
            states = ratelimit.read_states(session, keys)
            calls_free = None
            if channels == {"call"}:
                total, mine = ratelimit.calls_in_progress(session, campaign_id=run.id, now=now)
                calls_free = min(self.settings.vapi_max_concurrent_calls - total,
                                 run.campaign.max_concurrent_calls - mine)
        per_channel = [ratelimit.capacity(run.rates(ch), now=epoch, horizon=self.horizon, states=states)
                       for ch in channels]
        n = min(self.batch_size, max(per_channel) if per_channel else 0)
        if calls_free is not None:
            n = min(n, max(0, calls_free))
        if n <= 0:
            if self.clock.fixed:
                run.done = True
            elif calls_free is not None and calls_free <= 0:
                run.next_check = time.time() + 1.0
            else:
                nxt = min(ratelimit.earliest(run.rates(ch), states, epoch) for ch in channels)
                run.next_check = max(time.time() + 0.02, nxt - self.horizon)
        return n

    def _wave(self, run: _Run) -> tuple[_Batch | None, bool]:
        """Claim, check and record one batch of the campaign, and start sending it.

        Returns the batch being sent (if any) and whether any recipient was worked on."""
        now = self._now()
        try:
            n = self._wave_size(run, now)
            if n <= 0:
                return None, False
            with self.factory() as session, session.begin():
                rows = claim_due(session, campaign_id=run.id, worker=self.worker, now=now, lease=self.lease,
                                 limit=n)
            claimed_at = time.monotonic()
        except Exception as exc:
            if not _transient(exc):
                raise
            log.warning("campaign %s: could not claim recipients (%s); trying again shortly", run.id, exc)
            run.next_check = time.time() + 1.0
            return None, False
        if not rows:
            run.done = True
            return None, False
        try:
            sends = self._prepare(run, rows, now)
        except DomainError as exc:
            # the set-up cannot send at all (say, live credentials without their adapter): say so and pause
            self._release([r.id for r in rows])
            self._pause(run.campaign.profile_id, run.id, exc.message)
            run.done = True
            return None, False
        except Exception:
            log.exception("campaign %s: could not prepare %d recipients; they are released", run.id, len(rows))
            self._release([r.id for r in rows])
            run.done = True
            return None, False
        if not sends:
            return None, True
        batch = _Batch(run=run, sends=sends, deadline=claimed_at + self.lease.total_seconds() - self._send_margin)
        self._submit(batch)
        return batch, True

    def _attempts_of(self, session: Session, rows: Sequence[Claimed]) -> dict[uuid.UUID, list[Any]]:
        a = _a.c
        found: dict[uuid.UUID, list[Any]] = {}
        for item in session.execute(select(a.recipient_id, a.step, a.id, a.attempt_no, a.outcome, a.error_code,
                                           a.error_message, a.provider, a.provider_message_id, a.started_at,
                                           a.channel)
                                    .where(in_values(session, a.recipient_id, [r.id for r in rows]))):
            found.setdefault(item.recipient_id, []).append(item)
        return found

    def _prepare(self, run: _Run, rows: list[Claimed], now: datetime) -> list[_Send]:
        """Steps 2–3 of a wave: settle unknown outcomes, check every rule, reserve permits
        and record the attempts.  Returns the messages to send."""
        writes = Writes(self.worker, now)
        report = run.report
        candidates: list[tuple[Claimed, Step, str, int, int, int]] = []
        window_cache: dict[tuple[tuple[str, ...], str], datetime | None] = {}
        c = run.campaign
        with self.factory() as session, session.begin():
            # the campaign row is read under a share lock: a pause commits either before
            # this (and nothing is recorded) or after (and this batch is already in flight)
            status = session.scalar(select(Campaign.status).where(Campaign.id == run.id).with_for_update(read=True))
            if status != "active":
                release(session, [r.id for r in rows], worker=self.worker, now=now)
                run.done = True
                return []
            history = self._attempts_of(session, rows)
            # a try whose outcome was never recorded is settled with its provider first (below, after
            # this transaction): nothing else happens to that recipient in this wave
            unsettled = [r for r in rows if any(h.outcome is None for h in history.get(r.id, ()))]
            if unsettled:
                skip = {r.id for r in unsettled}
                rows = [r for r in rows if r.id not in skip]
            by_channel: dict[str, list[str | None]] = {}
            for row in rows:
                step = run.steps[min(row.step, len(run.steps) - 1)]
                by_channel.setdefault(step.channel, []).append(
                    row.customer_email if step.channel == "email" else row.customer_phone)
            opted = {ch: opted_out_among(session, profile_id=c.profile_id, contacts=contacts, channel=ch)
                     for ch, contacts in by_channel.items()}

            for row in rows:
                if row.step >= len(run.steps):
                    writes.recipient("move", row.id, step=row.step, attempts=row.attempts, next_at=None)
                    continue
                step = run.steps[row.step]
                past = [h for h in history.get(row.id, ()) if h.step == row.step]
                accepted = next((h for h in past if h.outcome == "accepted"), None)
                if accepted is not None:
                    # an earlier try got through (recorded by a process that lost its lease)
                    self._accepted(run, writes, row, step, attempt_id=accepted.id, attempt_no=accepted.attempt_no,
                                   pmid=accepted.provider_message_id or "", provider=accepted.provider, now=now)
                    continue
                contact = row.customer_email if step.channel == "email" else row.customer_phone
                if not contact:
                    what = "an e-mail address" if step.channel == "email" else "a phone number"
                    self._step_over(run, writes, row, step, f"no {what} for the {step.channel} step", now,
                                    attempts=row.attempts, failed=True)
                    continue
                if (step.condition == "no_response" and row.responded_at is not None) or (
                        step.condition == "not_answered" and row.answered_at is not None):
                    self._step_over(run, writes, row, step, None, now, attempts=row.attempts, failed=False)
                    report.count("skipped")
                    log.info("campaign %s recipient %s: step %d (%s) skipped: condition %s not met", c.id, row.id,
                             step.index, step.channel, step.condition)
                    continue
                if contact in opted[step.channel]:
                    self._opted_out(run, writes, row, step, f"opted out of {step.channel} before the send", now,
                                    attempts=row.attempts)
                    continue
                opening = self._opening(run, row, step, now, window_cache)
                if opening is None:
                    zones = recipient_zones(row.customer_phone, c.timezone)
                    reason = describe(zones, c.send_window, quiet_hours=step.channel in QUIET_CHANNELS)
                    self._step_over(run, writes, row, step, reason, now, attempts=row.attempts, failed=True)
                    continue
                if opening > now:
                    writes.recipient("move", row.id, step=row.step, attempts=row.attempts, next_at=opening)
                    report.count("deferred")
                    log.info("campaign %s recipient %s: outside the send window; due again at %s", c.id, row.id,
                             opening.isoformat())
                    continue
                tries = [h for h in past if h.outcome is not None]
                forgotten = self._forgotten_try(step.channel, tries, now)
                if forgotten is not None:
                    self._step_over(run, writes, row, step, forgotten, now, attempts=row.attempts, failed=True)
                    continue
                attempt_no = max([row.attempts, *(h.attempt_no for h in past)]) + 1
                failures = sum(1 for h in tries if h.outcome == "retryable" and h.error_code not in THROTTLE_CODES)
                throttled = sum(1 for h in tries if h.outcome == "retryable" and h.error_code in THROTTLE_CODES)
                candidates.append((row, step, contact, attempt_no, failures, throttled))

            sends = self._build(session, run, candidates, history, now)
            granted = self._grant(session, run, sends, now)
            if granted:
                granted = self._record_attempts(session, run, granted, now)
            chosen = {s.attempt_id for s in granted}
            not_granted = [s.row.id for s in sends if s.attempt_id not in chosen]
            release(session, not_granted, worker=self.worker, now=now)
            if not_granted:
                # the limits allow no more right now
                if self.clock.fixed:
                    run.done = True
                else:
                    run.next_check = time.time() + 0.25
            if not writes.empty():
                writes.flush(session)
        if writes.pause is not None:
            self._pause(*writes.pause)
        if unsettled:
            self.settle(run, unsettled, history, now)
        return granted

    def _forgotten_try(self, channel: str, tries: list[Any], now: datetime) -> str | None:
        """Why retrying now could send twice, or ``None``: an earlier try failed in a way that may have
        gone through, and the provider no longer remembers its idempotency key."""
        window = getattr(self.adapter(channel), "idempotency_window", None)
        maybe = [h for h in tries if h.outcome == "retryable" and h.error_code not in THROTTLE_CODES]
        if window is None or not maybe:
            return None
        last = max(maybe, key=lambda h: h.started_at)
        if now - last.started_at <= window:
            return None
        return (f"outcome unknown: try {last.attempt_no} ({last.error_message}) may have gone through, and "
                f"{last.provider} no longer recognizes its idempotency key")

    def _opening(self, run: _Run, row: Claimed, step: Step, now: datetime,
                 cache: dict[tuple[tuple[str, ...], str], datetime | None]) -> datetime | None:
        c = run.campaign
        zones = recipient_zones(row.customer_phone, c.timezone)
        key = (zones, step.channel)
        if key not in cache:
            quiet = step.channel in QUIET_CHANNELS
            opening = next_opening(now, zones=zones, send_window=c.send_window, quiet_hours=quiet)
            if opening is None and step.channel == "email" and zones != (c.timezone,):
                # e-mail is not bound by calling hours: fall back to the campaign's zone
                opening = next_opening(now, zones=(c.timezone,), send_window=c.send_window, quiet_hours=False)
            cache[key] = opening
        return cache[key]

    def _build(self, session: Session, run: _Run, candidates: list[tuple[Claimed, Step, str, int, int, int]],
               history: dict[uuid.UUID, list[Any]], now: datetime) -> list[_Send]:
        """Render the messages (a retry re-sends exactly what the first try stored)."""
        if not candidates:
            return []
        earlier = {}
        retry_ids = [max((h for h in history.get(row.id, ()) if h.step == step.index),
                         key=lambda h: h.attempt_no).id
                     for row, step, *_ in candidates if any(h.step == step.index for h in history.get(row.id, ()))]
        if retry_ids:
            for rid, detail in session.execute(select(_a.c.recipient_id, _a.c.detail)
                                               .where(in_values(session, _a.c.id, retry_ids))):
                message = message_from_detail(detail or {})
                if message is not None:
                    earlier[rid] = message
        lead_ids = [row.lead_id for row, *_ in candidates if row.lead_id and row.id not in earlier]
        leads = {}
        if lead_ids:
            leads = {lid: (svc, created) for lid, svc, created in session.execute(
                select(Lead.id, Lead.service_type, Lead.created_at).where(in_values(session, Lead.id, lead_ids)))}
        sms_phones = [row.customer_phone for row, step, *_ in candidates if step.channel == "sms"]
        texted: set[str] = set()
        if sms_phones:
            texted = self._already_texted(session, run.campaign.profile_id, sms_phones)
        sends = []
        # an injected clock travels with the message (the sandbox dates its outcomes by it); on the real
        # clock the sandbox takes the moment it is called, which may be later than now (pacing)
        clock = {"clock": now.isoformat()} if self.clock.fixed else {}
        for row, step, _contact, attempt_no, failures, throttled in candidates:
            message = earlier.get(row.id)
            if message is None or message.step != step.index:
                service, last_visit = leads.get(row.lead_id, (None, None)) if row.lead_id else (None, None)
                customer = Customer(recipient_id=row.id, name=row.customer_name, phone=row.customer_phone,
                                    email=row.customer_email, variant=row.variant, service_type=service,
                                    last_visit=last_visit)
                message = run.builder.build(customer, step=step.index, channel=step.channel,
                                            first_sms=step.channel == "sms" and row.customer_phone not in texted)
            message = with_metadata(message, attempt=str(attempt_no), **clock)
            sends.append(_Send(row=row, step=step, attempt_id=new_id(), attempt_no=attempt_no,
                               failures=failures, throttled=throttled, message=message,
                               adapter=self.adapter(step.channel)))
        return sends

    def _already_texted(self, session: Session, profile_id: uuid.UUID, phones: list[str | None]) -> set[str]:
        """Numbers this business has already sent an SMS to (they know how to opt out)."""
        a = _a.c
        wanted = sorted({p for p in phones if p})
        rows = session.scalars(select(_r.c.customer_phone).where(
            _r.c.profile_id == profile_id, in_values(session, _r.c.contact_key, wanted), _r.c.sent_at.is_not(None),
            exists().where(a.recipient_id == _r.c.id, a.channel == "sms", a.outcome == "accepted")))
        return set(rows)

    def _grant(self, session: Session, run: _Run, sends: list[_Send], now: datetime) -> list[_Send]:
        """Reserve rate-limit permits (and free lines for calls) under the limiter rows' locks."""
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
            free_calls = min(self.settings.vapi_max_concurrent_calls - total,
                             run.campaign.max_concurrent_calls - mine)
        epoch = now.timestamp() if self.clock.fixed else time.time()
        granted = []
        for send in sends:
            if send.step.channel == "call" and free_calls <= 0:
                continue
            rates = run.rates(send.step.channel)
            at = ratelimit.earliest(rates, states, epoch)
            if at > epoch + self.horizon:
                continue
            ratelimit.take(rates, states, at)
            send.at = at
            if send.step.channel == "call":
                free_calls -= 1
            granted.append(send)
        ratelimit.save(session, states)
        return granted

    def _record_attempts(self, session: Session, run: _Run, sends: list[_Send], now: datetime) -> list[_Send]:
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
                "detail": detail, "worker": self.worker, "started_at": now})
        inserted = set(insert_rows(session, _a, rows, conflict=["recipient_id", "step", "attempt_no"],
                                   returning=cast(Column[Any], _a.c.id)))
        for s in sends:
            if s.attempt_id not in inserted:  # another process recorded this very try: leave it to that one
                log.warning("campaign %s recipient %s: try %d of step %d already recorded elsewhere; not sending",
                            run.id, s.row.id, s.attempt_no, s.step.index)
        return [s for s in sends if s.attempt_id in inserted]

    # --- sending -------------------------------------------------------------------------------------------

    def _submit(self, batch: _Batch) -> None:
        if self.concurrency <= 1:
            for send in batch.sends:
                self._send(send, batch)
            done: Future[None] = Future()
            done.set_result(None)
            batch.futures = [done]
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="send")
        batch.futures = [self._pool.submit(self._send, send, batch) for send in batch.sends]

    def _send(self, send: _Send, batch: _Batch) -> None:
        try:
            if not self.clock.fixed:
                at = send.at
                provider = batch.run.provider_rates.get(send.step.channel)
                if provider is not None:
                    at = ratelimit.PACER.turn(provider, send.at, time.time())
                while (delay := at - time.time()) > 0:
                    if batch.cancel.wait(min(delay, 0.2)):
                        break
            if batch.cancel.is_set():
                send.not_sent = "the campaign was paused or stopped"
                return
            if self.stop.is_set():
                send.not_sent = "the scheduler is shutting down"
                return
            if time.monotonic() > batch.deadline:
                send.not_sent = "its lease would run out before the provider answers"
                return
            send.result = send.adapter.send(send.message)
        except ChannelError as exc:
            send.error = exc
        except Exception as exc:
            send.crashed = exc
            log.exception("campaign %s recipient %s: the %s adapter failed unexpectedly", batch.run.id,
                          send.row.id, send.step.channel)

    # --- outcomes --------------------------------------------------------------------------------------------

    def _finish(self, batch: _Batch) -> None:
        wait(batch.futures)
        for future in batch.futures:
            died = future.exception()
            if died is not None and not isinstance(died, Exception):
                raise died  # the process is going down (interrupt, exit): record nothing, like a crash
        now = self._now()
        writes = Writes(self.worker, now)
        run = batch.run
        for s in batch.sends:
            self._outcome(run, writes, s, now)
        self._write(writes)

    def _accepted(self, run: _Run, writes: Writes, row: Claimed, step: Step, *, attempt_id: uuid.UUID,
                  attempt_no: int, pmid: str, provider: str, now: datetime) -> None:
        nxt = step.index + 1
        if nxt < len(run.steps):
            writes.recipient("accept", row.id, step=nxt, attempts=0,
                             next_at=now + timedelta(hours=run.steps[nxt].delay_hours), channel=step.channel,
                             pmid=pmid, at=now)
        else:
            writes.recipient("accept", row.id, step=step.index, attempts=attempt_no, next_at=None,
                             channel=step.channel, pmid=pmid, at=now)
        writes.sent_event(row, step=step.index, channel=step.channel, provider=provider, attempt_id=attempt_id,
                          attempt_no=attempt_no, pmid=pmid, at=now)
        run.report.count("sent")
        log.info("campaign %s recipient %s: step %d sent by %s via %s (%s)", run.id, row.id, step.index,
                 step.channel, provider, pmid)

    def _step_over(self, run: _Run, writes: Writes, row: Claimed, step: Step, reason: str | None, now: datetime,
                   *, attempts: int, failed: bool) -> None:
        """This step will not go through (or was skipped): on to the next step, or done."""
        nxt = step.index + 1
        if nxt < len(run.steps):
            writes.recipient("move", row.id, step=nxt, attempts=0,
                             next_at=now + timedelta(hours=run.steps[nxt].delay_hours), error=reason)
            if failed:
                log.info("campaign %s recipient %s: step %d failed (%s); moving on to step %d", run.id, row.id,
                         step.index, reason, nxt)
        elif failed:
            writes.recipient("fail", row.id, step=step.index, attempts=attempts, error=reason)
            run.report.count("failed")
            log.info("campaign %s recipient %s: failed: %s", run.id, row.id, reason)
        else:
            writes.recipient("move", row.id, step=step.index, attempts=attempts, next_at=None, error=reason)

    def _opted_out(self, run: _Run, writes: Writes, row: Claimed, step: Step, reason: str, now: datetime, *,
                   attempts: int) -> None:
        if step.index + 1 < len(run.steps):
            self._step_over(run, writes, row, step, reason, now, attempts=attempts, failed=False)
            run.report.count("skipped")
        else:
            writes.recipient("optout", row.id, attempts=attempts, error=reason)
            run.report.count("opted_out")
        log.info("campaign %s recipient %s: %s; not contacted on %s", run.id, row.id, reason, step.channel)

    def _outcome(self, run: _Run, writes: Writes, s: _Send, now: datetime) -> None:
        row, step, c = s.row, s.step, run.campaign
        if s.result is not None:
            writes.attempt(s.attempt_id, "accepted", pmid=s.result.provider_message_id,
                           still_open=step.channel == "call")
            # sent when its slot came (a paced batch takes a while), not when the batch is recorded: what the
            # provider reports back (delivered, …) comes after it on the timeline
            sent = now if self.clock.fixed or not s.at else min(now, datetime.fromtimestamp(s.at, UTC))
            self._accepted(run, writes, row, step, attempt_id=s.attempt_id, attempt_no=s.attempt_no,
                           pmid=s.result.provider_message_id, provider=s.adapter.provider, now=sent)
            return
        if s.not_sent is not None:
            writes.attempt(s.attempt_id, "skipped", error=f"not sent: {s.not_sent}")
            writes.recipient("release", row.id, attempts=s.attempt_no)
            log.info("campaign %s recipient %s: not sent (%s); released", run.id, row.id, s.not_sent)
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
            run.done = True
            return
        if isinstance(exc, OptedOutError):
            writes.attempt(s.attempt_id, "opted_out", code=exc.code, error=exc.reason)
            source = {"sms": "sms_stop", "call": "call_request"}.get(step.channel, "unsubscribe_link")
            contact = row.customer_email if step.channel == "email" else row.customer_phone
            if contact:
                writes.opt_outs.append({"profile_id": row.profile_id, "contact": contact, "channel": step.channel,
                                        "source": source, "reason": exc.reason, "campaign_id": row.campaign_id,
                                        "now": now})
            self._opted_out(run, writes, row, step, f"the provider says the customer opted out ({exc.reason})", now,
                            attempts=s.attempt_no)
            return
        if isinstance(exc, RetryableError):
            throttle = exc.code in THROTTLE_CODES
            if exc.retry_after:
                key = ratelimit.provider_key(step.channel)
                until = (now.timestamp() if self.clock.fixed else time.time()) + exc.retry_after
                if until > writes.blocks.get(key, (0.0, ""))[0]:
                    writes.blocks[key] = (until, exc.reason)
            failures = s.failures + (0 if throttle else 1)
            throttled = s.throttled + (1 if throttle else 0)
            if not throttle and needs_reconcile(s.adapter) and exc.code not in NOT_SENT_CODES:
                # the request may have gone through (a timeout, a lost answer) and this provider has no
                # idempotency key: the try stays open and is settled with the provider before any retry
                writes.attempt(s.attempt_id, None, code=exc.code, error=exc.reason, still_open=True)
                delay = backoff(failures, exc.retry_after, self._rng)
                writes.recipient("move", row.id, step=step.index, attempts=s.attempt_no,
                                 next_at=now + timedelta(seconds=delay), error=exc.reason)
                run.report.count("deferred")
                log.info("campaign %s recipient %s: try %d may have gone through (%s); %s is asked before any "
                         "retry", run.id, row.id, s.attempt_no, exc.reason, s.adapter.provider)
                return
            writes.attempt(s.attempt_id, "retryable", code=exc.code, error=exc.reason)
            if failures >= c.max_attempts or throttled >= MAX_THROTTLED_TRIES:
                self._step_over(run, writes, row, step, f"gave up after {s.attempt_no} tries: {exc.reason}", now,
                                attempts=s.attempt_no, failed=True)
                return
            delay = backoff(failures or 1, exc.retry_after, self._rng)
            writes.recipient("move", row.id, step=step.index, attempts=s.attempt_no,
                             next_at=now + timedelta(seconds=delay), error=exc.reason)
            run.report.count("deferred")
            log.info("campaign %s recipient %s: try %d failed (%s); next try in %.0f s", run.id, row.id,
                     s.attempt_no, exc.reason, delay)
            return
        # PermanentError, OutcomeUnknown or any other refusal: this step will never go through
        outcome = "unknown" if isinstance(exc, OutcomeUnknown) else "permanent"
        writes.attempt(s.attempt_id, outcome, code=exc.code, error=exc.reason)
        self._step_over(run, writes, row, step, exc.reason, now, attempts=s.attempt_no, failed=True)

    # --- settling tries whose outcome was never recorded ---------------------------------------------------------

    def settle(self, run: _Run, rows: list[Claimed], history: dict[uuid.UUID, list[Any]], now: datetime) -> int:
        """Reconcile the open tries of claimed ``rows`` with their providers, before anything is retried.

        Returns how many were settled (the others are asked again a little later)."""
        # the open try of the current step comes first; an open try of another step is settled too
        def first_open(row: Claimed) -> Any:
            return min((h for h in history[row.id] if h.outcome is None),
                       key=lambda h: (h.step != row.step, h.attempt_no))

        open_tries = {r.id: first_open(r) for r in rows}
        with self.factory() as session:
            wanted = [h.id for h in open_tries.values()]
            details = dict(session.execute(select(_a.c.id, _a.c.detail)
                                           .where(in_values(session, _a.c.id, wanted))).all())
        writes = Writes(self.worker, now)
        settled = 0
        finished: list[tuple[str, SendResult]] = []  # tries that went out and are already over
        for row in rows:
            h = open_tries[row.id]
            current = h.step == row.step
            step = run.steps[min(h.step, len(run.steps) - 1)]
            try:
                result = self._reconcile_one(h, details.get(h.id) or {})
            except OutcomeUnknown as exc:
                writes.attempt(h.id, "unknown", code=exc.code, error=exc.reason)
                if current:
                    self._step_over(run, writes, row, step, f"outcome unknown: {exc.reason}", now,
                                    attempts=h.attempt_no, failed=True)
                else:
                    writes.recipient("release", row.id, attempts=row.attempts)
                log.warning("campaign %s recipient %s: outcome of try %d unknown (%s)", run.id, row.id,
                            h.attempt_no, exc.reason)
                settled += 1
                continue
            except Exception as exc:
                writes.recipient("move", row.id, step=row.step, attempts=row.attempts, next_at=now + RECONCILE_AGAIN)
                log.warning("campaign %s recipient %s: could not reconcile try %d yet (%s)", run.id, row.id,
                            h.attempt_no, exc)
                continue
            settled += 1
            if result is None and h.error_code is not None:
                # a try that failed in a way that might have gone through did not: an ordinary failed try
                writes.attempt(h.id, "retryable")
                failures = 1 + sum(1 for x in history[row.id] if x.step == h.step and x.outcome == "retryable"
                                   and x.error_code not in THROTTLE_CODES)
                if not current:
                    writes.recipient("release", row.id, attempts=row.attempts)
                elif failures >= run.campaign.max_attempts:
                    self._step_over(run, writes, row, step, f"gave up after {h.attempt_no} tries: {h.error_message}",
                                    now, attempts=h.attempt_no, failed=True)
                else:
                    due = max(now, row.next_attempt_at or now)
                    writes.recipient("move", row.id, step=row.step, attempts=h.attempt_no, next_at=due)
                log.info("campaign %s recipient %s: try %d did not reach %s (%s)", run.id, row.id, h.attempt_no,
                         h.provider, h.error_message)
                continue
            if result is None:
                writes.attempt(h.id, "skipped", error="not sent: the provider confirms it never got this try")
                if current:
                    writes.recipient("move", row.id, step=row.step, attempts=h.attempt_no, next_at=now)
                else:
                    writes.recipient("release", row.id, attempts=row.attempts)
                log.info("campaign %s recipient %s: try %d never reached %s; it will be sent again", run.id, row.id,
                         h.attempt_no, h.provider)
                continue
            writes.attempt(h.id, "accepted", pmid=result.provider_message_id,
                           still_open=h.channel == "call" and result.status not in ("ended", "completed"))
            if result.status in ("ended", "completed"):
                finished.append((h.provider, result))
            if current:
                self._accepted(run, writes, row, step, attempt_id=h.id, attempt_no=h.attempt_no,
                               pmid=result.provider_message_id, provider=h.provider, now=now)
            else:  # an earlier step went out after all: on the timeline, and nothing else changes
                writes.recipient("release", row.id, attempts=row.attempts)
                writes.sent_event(row, step=h.step, channel=h.channel, provider=h.provider, attempt_id=h.id,
                                  attempt_no=h.attempt_no, pmid=result.provider_message_id, at=now)
            log.info("campaign %s recipient %s: try %d had gone out (%s); recorded, not repeated", run.id,
                     row.id, h.attempt_no, result.provider_message_id)
        self._write(writes)
        for provider, result in finished:
            try:
                self.recover_outcome(provider, result)
            except Exception:
                log.exception("campaign %s: the outcome of %s could not be read from %s", run.id,
                              result.provider_message_id, provider)
        return settled

    def recover_outcome(self, provider: str, result: SendResult) -> None:
        """Apply what the provider's record of a finished message says happened (its end-of-call
        report, say), in case the webhook that would have said so never arrived."""
        record = result.detail.get("record") if isinstance(result.detail, dict) else None
        if not isinstance(record, dict):
            return
        from core.webhooks import recover_outcome

        with self.factory() as session, session.begin():
            recover_outcome(session, provider=provider, record=record, now=self._now())

    def _reconcile_one(self, attempt: Any, detail: dict[str, Any]) -> SendResult | None:
        message = message_from_detail(detail)
        if message is None:
            raise OutcomeUnknown("the try was recorded without its message", code="no_message")
        adapter = self.adapter(attempt.channel)
        if adapter.provider != attempt.provider:
            raise OutcomeUnknown(f"the try went to {attempt.provider}, which this scheduler is no longer set up "
                                 f"to ask (now {adapter.provider})", code="provider_changed")
        # providers measure age on the real clock: keep the try's age as the dispatcher's clock sees it
        started_at = utcnow() - (self.clock.now() - attempt.started_at)
        pmid = getattr(attempt, "provider_message_id", None)
        if pmid and getattr(adapter, "reconciles_by_id", False):
            # the provider's id of the try is known (a call in progress): the adapter reads it directly
            return adapter.reconcile(message, started_at=started_at,  # type: ignore[call-arg]
                                     provider_message_id=pmid)
        if "request" in detail and hasattr(adapter, "request_payload"):
            return adapter.reconcile(message, started_at=started_at,  # type: ignore[call-arg]
                                     request=detail["request"])
        return adapter.reconcile(message, started_at=started_at)


# --- entry points -------------------------------------------------------------------------------------------------


def default_worker() -> str:
    """A name for this process's leases: host, pid and a random suffix."""

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def run_campaign_pass(factory: sessionmaker[Session], *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                      now: datetime | None = None, worker: str | None = None, settings: Settings | None = None,
                      budget_seconds: float | None = None, stop: threading.Event | None = None,
                      concurrency: int | None = None, adapters: Mapping[str, Channel] | None = None
                      ) -> DispatchReport:
    """One dispatch pass for one campaign, right now (the code the scheduler runs).

    Raises :class:`NotFound` for another profile's campaign and
    :class:`Conflict` when the campaign is not active.
    """
    with factory() as session:
        campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id)
        status = campaign.status
    if status != "active":
        raise Conflict(f"This campaign is {_STATUS_WORDS.get(status, status)}; start it before running it.",
                       field="status")
    dispatcher = Dispatcher(factory, worker=worker or default_worker(), settings=settings, now=now,
                            budget=budget_seconds, stop=stop, concurrency=concurrency, adapters=adapters)
    report = dispatcher.run([campaign_id]).get(campaign_id, DispatchReport())
    complete_finished(factory, now=now, campaign_ids=[campaign_id])
    return report


def _finished_condition(now: datetime) -> Any:
    """SQL: an active campaign with nothing left to do (nobody due, nothing in flight, no call in progress)."""
    c = Campaign
    return and_(
        c.status == "active",
        ~exists().where(_r.c.campaign_id == c.id, _r.c.next_attempt_at.is_not(None)),
        ~exists().where(_a.c.campaign_id == c.id, _a.c.completed_at.is_(None),
                        _a.c.started_at > now - ratelimit.CALL_TIMEOUT),
    )


def complete_finished(factory: sessionmaker[Session], *, now: datetime | None = None,
                      campaign_ids: Sequence[uuid.UUID] | None = None) -> list[uuid.UUID]:
    """Complete every active campaign with nothing left to do; returns their ids."""
    now = now or utcnow()
    with factory() as session:
        stmt = select(Campaign.id, Campaign.profile_id).where(_finished_condition(now))
        if campaign_ids is not None:
            stmt = stmt.where(Campaign.id.in_(list(campaign_ids)))
        due = session.execute(stmt).all()
    completed = []
    for campaign_id, profile_id in due:
        with factory() as session, session.begin():
            still = session.scalar(select(Campaign.id).where(Campaign.id == campaign_id, _finished_condition(now))
                                   .with_for_update())
            if still is None:
                continue
            transition(session, profile_id=profile_id, campaign_id=campaign_id, target="completed", now=now,
                       by_system=True)
            refresh_campaign_results(session, campaign_id=campaign_id)
        completed.append(campaign_id)
        log.info("campaign %s: every recipient is done; completed", campaign_id)
    return completed


# --- housekeeping the scheduler runs every tick ---------------------------------------------------------


def settle_unsettled(dispatcher: Dispatcher, *, limit: int = 200) -> int:
    """Reconcile tries whose process died before recording their outcome (any campaign,
    active or not), once their lease has expired.  Returns how many were settled."""
    from core.claims import claim_unsettled

    now = dispatcher.clock.now()
    with dispatcher.factory() as session, session.begin():
        rows = claim_unsettled(session, worker=dispatcher.worker, now=now, lease=dispatcher.lease, limit=limit)
    if not rows:
        return 0
    settled = 0
    by_campaign: dict[uuid.UUID, list[Claimed]] = {}
    for row in rows:
        by_campaign.setdefault(row.campaign_id, []).append(row)
    for campaign_id, group in by_campaign.items():
        with dispatcher.factory() as session:
            run = _load_run(session, campaign_id, dispatcher.settings)
            history = dispatcher._attempts_of(session, group)
        ready = [r for r in group if any(h.outcome is None for h in history.get(r.id, ()))]
        other = [r.id for r in group if r not in ready]
        dispatcher._release(other)
        if ready:
            settled += dispatcher.settle(run, ready, history, now)
    return settled


def close_stale_calls(dispatcher: Dispatcher, *, limit: int = 100) -> int:
    """Calls whose end was never reported within :data:`ratelimit.CALL_TIMEOUT` (a lost
    webhook): ask the provider, and stop counting them as in progress unless it says
    they are still going.  Returns how many were closed."""
    now = dispatcher.clock.now()
    a = _a.c
    with dispatcher.factory() as session:
        stale = session.execute(
            select(a.id, a.channel, a.provider, a.started_at, a.detail, a.provider_message_id)
            .where(a.channel == "call", a.outcome == "accepted", a.completed_at.is_(None),
                   a.started_at <= now - ratelimit.CALL_TIMEOUT)
            .order_by(a.started_at).limit(limit)).all()
    closed = []
    for attempt in stale:
        still_going = False
        try:
            result = dispatcher._reconcile_one(attempt, attempt.detail or {})
            still_going = (result is not None and result.status in ("queued", "ringing", "in-progress", "forwarding")
                           and attempt.started_at > now - 2 * ratelimit.CALL_TIMEOUT)
            if result is not None and not still_going:
                dispatcher.recover_outcome(attempt.provider, result)
        except Exception as exc:
            log.info("call attempt %s: the provider could not say how it ended (%s); closing it", attempt.id, exc)
        if not still_going:
            closed.append(attempt.id)
    if closed:
        with dispatcher.factory() as session, session.begin():
            session.execute(update(_a).where(_a.c.id.in_(closed), _a.c.completed_at.is_(None))
                            .values(completed_at=now))
        log.info("%d calls without a reported end were closed after %s", len(closed), ratelimit.CALL_TIMEOUT)
    return len(closed)
