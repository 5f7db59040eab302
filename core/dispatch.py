"""The dispatcher: sends each campaign step to each recipient exactly once.

A pass works in *waves*.  Each wave of a campaign

1. claims a batch of due recipients (:mod:`core.claims`, a lease per row);
2. sends a recipient with a try whose outcome was never recorded to be settled
   first (:mod:`core.reconcile`): nothing else happens to it in this wave;
3. in one transaction reads the facts of every other recipient's next step
   (:mod:`core.facts`), decides what may be done now (:func:`core.eligibility.decide`),
   records what does not send (:mod:`core.outcome_mapping`), reserves rate-limit
   permits for the rest (:mod:`core.ratelimit`) and records one ``outreach_attempts``
   row per message with its rendered content — committed *before* any provider is called;
4. hands the messages to :class:`core.sender.Sender`, which sends each at its moment
   after a last check;
5. records every outcome in one transaction, only for rows this process still holds.

Waves of several campaigns interleave, and the next wave is prepared while earlier
ones are being sent.  The clock is injected (:mod:`core.clock`): production and tests
take the same path; a pass ends when its budget of clock time is spent or when
nothing more can happen before it ends.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, exists, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core import autopause, besttime, ratelimit, wave
from core.campaigns import get_campaign, transition
from core.channels import send_timeout
from core.channels.base import Channel
from core.claims import Claimed, claim_due, release
from core.clock import SYSTEM, Clock, ManualClock
from core.config import Settings, get_settings
from core.db import utcnow
from core.eligibility import Decision, Facts, decide, still_allowed
from core.engine import Runtime, transient
from core.errors import Conflict, DomainError
from core.facts import attempts_of, fresh_compliance, gather
from core.models import Campaign, CampaignRecipient, OutreachAttempt
from core.outcome_mapping import CampaignRun, DispatchReport, Send
from core.outcomes import Writes
from core.reconcile import settle
from core.results import refresh_campaign_results
from core.sender import Batch, Sender

__all__ = ["DispatchReport", "Dispatcher", "complete_finished", "default_worker", "run_campaign_pass"]

log = logging.getLogger(__name__)

WAVE_HORIZON = 1.0  # seconds ahead a wave may reserve permits and wait for them
MAX_IN_FLIGHT = 3  # waves being sent while the next one is prepared
# sending threads: a send is mostly CPU (HTTP framing) under one interpreter lock, so a few suffice
SEND_THREADS = 4
DEFAULT_BUDGET = 5.0
STATUS_POLL = 0.5
_r = cast(Table, CampaignRecipient.__table__)
_a = cast(Table, OutreachAttempt.__table__)
_STATUS_WORDS = {"draft": "a draft", "scheduled": "scheduled", "paused": "paused", "completed": "completed",
                 "cancelled": "cancelled", "active": "active"}


def clock_for(now: datetime | None, clock: Clock | None) -> Clock:
    """The clock of a pass: the one given, a manual one standing at ``now``, else the wall clock."""
    return clock or (ManualClock(now) if now is not None else SYSTEM)


class Dispatcher:
    """Runs passes over one or more campaigns for one scheduler process (``worker``).

    ``budget`` is clock time; with a manual clock the default is none at all: a pass then does
    exactly what is allowed at the clock's moment (and the moments the limits grant within a second)."""

    def __init__(self, factory: sessionmaker[Session], *, worker: str, settings: Settings | None = None,
                 clock: Clock | None = None, now: datetime | None = None, budget: float | None = None,
                 stop: threading.Event | None = None, concurrency: int | None = None,
                 adapters: Mapping[str, Channel] | None = None) -> None:
        self.clock = clock_for(now, clock)
        self.budget = budget if budget is not None else (0.0 if isinstance(self.clock, ManualClock) else
                                                         DEFAULT_BUDGET)
        self.runtime = Runtime(factory=factory, settings=settings or get_settings(), clock=self.clock, worker=worker,
                               stop=stop or threading.Event(), overrides=dict(adapters or {}))
        self.factory, self.settings, self.worker, self.stop = factory, self.runtime.settings, worker, self.runtime.stop
        self.sender = Sender(clock=self.clock, stop=self.stop, recheck=self._recheck, mark_handed=self._mark_handed,
                             concurrency=concurrency if concurrency is not None else SEND_THREADS)
        self.batch_size = self.settings.scheduler_batch_size
        self._deadline = self.clock.time() + self.budget
        # a send must be able to finish (timeout included) well before its lease runs out
        self._send_margin = send_timeout(self.settings) + 2.0

    def run(self, campaign_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DispatchReport]:
        """Dispatch every given campaign until nothing more can be done or the budget is spent."""
        runs: list[CampaignRun] = []
        for campaign_id in campaign_ids:
            with self.factory() as session:
                try:
                    runs.append(self.runtime.load_run(session, campaign_id))
                except LookupError:
                    continue
        try:
            self._loop(runs)
        finally:
            self.sender.close()
        reports = {}
        for run in runs:
            with self.factory() as session, session.begin():
                refresh_campaign_results(session, campaign_id=run.id)
                run.report.remaining = int(session.scalar(
                    select(func.count()).select_from(_r)
                    .where(_r.c.campaign_id == run.id, _r.c.next_attempt_at.is_not(None))) or 0)
            reports[run.id] = run.report
        return reports

    def _horizon(self) -> float:
        """How far ahead (seconds) permits may be reserved now: a second, but never past the budget's end
        by more than that."""
        return min(self.clock.time(), self._deadline) + WAVE_HORIZON - self.clock.time()

    def _loop(self, runs: list[CampaignRun]) -> None:
        deadline = self._deadline = self.clock.time() + self.budget
        in_flight: deque[Batch] = deque()
        last_poll = self.clock.time()
        try:
            # waves go on while the clock is within the budget — or within the horizon past it, which sends
            # granted at the end of the budget may have reached
            while not self.stop.is_set() and self.clock.time() <= deadline + WAVE_HORIZON:
                submitted = False
                for run in runs:
                    if run.done or len(in_flight) >= MAX_IN_FLIGHT or self.stop.is_set():
                        continue
                    if run.next_check > self.clock.time():
                        continue
                    batch, progressed = self._wave(run)
                    if batch is not None:
                        in_flight.append(batch)
                    submitted = submitted or progressed
                while in_flight and in_flight[0].finished():
                    self._finish(in_flight.popleft())
                if all(run.done for run in runs) and not in_flight:
                    break
                if in_flight and self.clock.time() - last_poll >= STATUS_POLL:
                    self._poll_status(in_flight)
                    last_poll = self.clock.time()
                if submitted and len(in_flight) < MAX_IN_FLIGHT:
                    continue
                if in_flight:
                    # wait for a send to finish, but never longer than the next look at the campaigns' status
                    pending = [f for batch in in_flight for f in batch.futures if not f.done()]
                    wait(pending, timeout=STATUS_POLL, return_when=FIRST_COMPLETED)
                    continue
                waiting = [r.next_check for r in runs if not r.done]
                if not waiting or min(waiting) > deadline:
                    break  # nothing more can happen within this pass
                self.clock.sleep_until(min(waiting), self.stop)
        except Exception:
            self._drain(in_flight)
            raise
        # an interrupt or exit (BaseException) goes straight up: like a crash, and settled like one
        self._drain(in_flight)

    def _drain(self, in_flight: deque[Batch]) -> None:
        """Record the outcome of every batch still being sent (unstarted sends are released on stop)."""
        if self.stop.is_set():
            for batch in in_flight:
                batch.cancel.set()
        while in_flight:
            self._finish(in_flight.popleft())

    def _poll_status(self, batches: Iterable[Batch]) -> None:
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

    def _wave_size(self, run: CampaignRun, now: datetime) -> int:
        """How many recipients this wave should claim: no more than the limits let through soon."""
        with self.factory() as session:
            n, run.next_check = wave.size(session, run, now=now, epoch=self.clock.time(), horizon=self._horizon(),
                                          batch=self.batch_size, max_calls=self.settings.vapi_max_concurrent_calls,
                                          lookahead=WAVE_HORIZON)
        return n

    def _wave(self, run: CampaignRun) -> tuple[Batch | None, bool]:
        """Claim, check and record one batch of the campaign, and start sending it.

        Returns the batch being sent (if any) and whether any recipient was worked on."""
        now = self.clock.now()
        try:
            n = self._wave_size(run, now)
            if n <= 0:
                return None, False
            with self.factory() as session, session.begin():
                rows = claim_due(session, campaign_id=run.id, worker=self.worker, now=now, lease=self.runtime.lease,
                                 limit=n)
            claimed_at = self.clock.time()
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("campaign %s: could not claim recipients (%s); trying again shortly", run.id,
                        type(exc).__name__)
            run.next_check = self.clock.time() + 1.0
            return None, False
        if not rows:
            run.done = True
            return None, False
        try:
            sends = self._prepare(run, rows, now)
        except DomainError as exc:
            # the set-up cannot send at all (say, live credentials without their adapter): say so and pause
            self.runtime.release([r.id for r in rows])
            self.runtime.pause(run.campaign.profile_id, run.id, exc.message)
            run.done = True
            return None, False
        except Exception:
            log.exception("campaign %s: could not prepare %d recipients; they are released", run.id, len(rows))
            self.runtime.release([r.id for r in rows])
            run.done = True
            return None, False
        if not sends:
            return None, True
        batch = Batch(run=run, sends=sends,
                      deadline=claimed_at + self.runtime.lease.total_seconds() - self._send_margin)
        self.sender.submit(batch)
        return batch, True

    def _prepare(self, run: CampaignRun, rows: list[Claimed], now: datetime) -> list[Send]:
        """Steps 2–3 of a wave: settle open tries, decide, reserve permits and record the attempts.
        Returns the messages to send."""
        writes = Writes(self.worker, now)
        with self.factory() as session, session.begin():
            # the campaign row is read under a share lock: a pause commits either before
            # this (and nothing is recorded) or after (and this batch is already in flight)
            status, winner = session.execute(select(Campaign.status, Campaign.winner_variant)
                                             .where(Campaign.id == run.id).with_for_update(read=True)).one()
            if status != "active":
                release(session, [r.id for r in rows], worker=self.worker, now=now)
                run.done = True
                return []
            if winner != run.facts.winner_variant:
                run.facts = type(run.facts)(**{**run.facts.__dict__, "winner_variant": winner})
            history = attempts_of(session, [r.id for r in rows])
            unsettled = [r for r in rows if any(h.outcome is None for h in history.get(r.id, ()))]
            rows = [r for r in rows if r not in unsettled]
            facts = gather(session, campaign=run.facts, steps=run.steps, rows=rows, history=history, now=now,
                           idempotency_window=lambda ch: getattr(run.adapters[ch], "idempotency_window", None),
                           best_moment=self._best_time(session, run, now))
            to_send: list[tuple[Claimed, Facts, Decision]] = []
            for row, fact in zip(rows, facts, strict=True):
                decision = decide(fact, now)
                if decision.kind == "send":
                    to_send.append((row, fact, decision))
                else:
                    run.apply(writes, row, fact.step, decision, now)
            sends = wave.build(session, run, to_send, history)
            granted = wave.grant(session, run, sends, now=now, epoch=self.clock.time(), horizon=self._horizon(),
                                 max_calls=self.settings.vapi_max_concurrent_calls)
            if granted:
                granted = wave.record(session, run, granted, now=now, worker=self.worker)
            chosen = {s.attempt_id for s in granted}
            not_granted = [s.row.id for s in sends if s.attempt_id not in chosen]
            release(session, not_granted, worker=self.worker, now=now)
            if not_granted:
                run.next_check = self.clock.time() + 0.25  # the limits allow no more right now
            if not writes.empty():
                writes.flush(session)
        if writes.pause is not None:
            self.runtime.pause(*writes.pause)
        if unsettled:
            settle(self.runtime, run, unsettled, history, now)
        return granted

    def _best_time(self, session: Session, run: CampaignRun, now: datetime) -> besttime.Planner | None:
        """send_time "best": when each customer's first step is planned (the model is learned once a pass)."""
        if run.campaign.send_time != "best":
            return None
        if run.best is None:
            run.best = besttime.load_all(session, profile_id=run.campaign.profile_id, channels=run.channels(), now=now)
        return besttime.planner(run.best, timezone=run.facts.timezone, send_window=run.facts.send_window, now=now)

    def _recheck(self, send: Send, run: CampaignRun, moment: datetime) -> Decision | None:
        """The last check of a call or text, at the moment it would be handed to the provider."""
        if send.facts is None:
            return None
        with self.factory() as session:
            facts = fresh_compliance(session, campaign=run.facts, facts=send.facts, now=moment,
                                     attempt_id=send.attempt_id)
        return still_allowed(facts, moment)

    def _mark_handed(self, send: Send, moment: datetime) -> None:
        with self.factory() as session, session.begin():
            session.execute(update(_a).where(_a.c.id == send.attempt_id).values(handed_at=moment))

    def _finish(self, batch: Batch) -> None:
        wait(batch.futures)
        for future in batch.futures:
            died = future.exception()
            if died is not None and not isinstance(died, Exception):
                raise died  # the process is going down (interrupt, exit): record nothing, like a crash
        now = self.clock.now()
        writes = Writes(self.worker, now)
        for s in batch.sends:
            batch.run.outcome(writes, s, now, self.clock.time())
        self.runtime.write(writes)
        with self.factory() as session:
            spike = autopause.check(session, campaign_id=batch.run.id,
                                    threshold=batch.run.campaign.auto_pause_failure_rate)
        if spike is not None:  # stop the bleeding: the owner fixes the cause, then resumes
            self.runtime.pause(batch.run.campaign.profile_id, batch.run.id, spike)
            batch.run.done = True


# --- entry points -------------------------------------------------------------------------------------------------


def default_worker() -> str:
    """A name for this process's leases: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def run_campaign_pass(factory: sessionmaker[Session], *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                      now: datetime | None = None, clock: Clock | None = None, worker: str | None = None,
                      settings: Settings | None = None, budget_seconds: float | None = None,
                      stop: threading.Event | None = None, concurrency: int | None = None,
                      adapters: Mapping[str, Channel] | None = None) -> DispatchReport:
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
    clock = clock_for(now, clock)
    dispatcher = Dispatcher(factory, worker=worker or default_worker(), settings=settings, clock=clock,
                            budget=budget_seconds, stop=stop, concurrency=concurrency, adapters=adapters)
    report = dispatcher.run([campaign_id]).get(campaign_id, DispatchReport())
    complete_finished(factory, now=clock.now(), campaign_ids=[campaign_id])
    return report


def _finished_condition(now: datetime) -> Any:
    """SQL: an active campaign with nothing left to do (nobody due, nothing in flight, no call in progress);
    an always-on campaign never finishes by itself."""
    c = Campaign
    return and_(
        c.status == "active", c.always_on.is_(False),
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
