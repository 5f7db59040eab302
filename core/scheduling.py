"""What the scheduler does on each tick.

One :func:`tick`:

1. starts scheduled campaigns whose time has come (selecting recipients if none);
2. reconciles tries left without an outcome by a process that died (their lease
   expired) and closes calls whose end was never reported;
3. applies provider events that are due (webhooks, simulated sandbox outcomes), decides the
   A/B tests that can be decided (:mod:`core.abtest`) and enrols the customers always-on
   campaigns gained since yesterday (:mod:`core.enrolment`);
4. dispatches every active campaign (:class:`core.dispatch.Dispatcher`);
5. applies the events that became due meanwhile, completes campaigns with
   nothing left to do, and refreshes their results.

Every step is safe with several scheduler processes on one PostgreSQL database.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.abtest import settle_winners
from core.campaigns import transition
from core.channels.base import Channel
from core.clock import Clock
from core.config import Settings, get_settings
from core.db import utcnow
from core.dispatch import Dispatcher, DispatchReport, clock_for, complete_finished
from core.enrolment import enrol_due
from core.events import process_due_events
from core.models import Campaign
from core.reconcile import close_stale_calls, settle_unsettled

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    """What one tick did."""

    started: int = 0
    reconciled: int = 0
    calls_closed: int = 0
    events: int = 0
    winners: int = 0
    enrolled: int = 0
    completed: int = 0
    campaigns: dict[str, DispatchReport] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["campaigns"] = {k: v.as_dict() for k, v in self.campaigns.items()}
        return out

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.campaigns.values())


def start_due_campaigns(factory: sessionmaker[Session], *, now: datetime | None = None) -> int:
    """Make every scheduled campaign whose time has come active (selecting its recipients)."""
    now = now or utcnow()
    with factory() as session:
        due = session.execute(select(Campaign.id, Campaign.profile_id).where(
            Campaign.status == "scheduled", Campaign.scheduled_at <= now)).all()
    started = 0
    for campaign_id, profile_id in due:
        with factory() as session, session.begin():
            campaign = session.get(Campaign, campaign_id, with_for_update=True)
            if campaign is None or campaign.status != "scheduled":
                continue  # another scheduler got there first
            transition(session, profile_id=profile_id, campaign_id=campaign_id, target="active", now=now)
            log.info("campaign %s: scheduled time reached, now active", campaign_id)
            started += 1
    return started


def settle_tick(dispatcher: Dispatcher) -> tuple[int, int]:
    """Settle tries whose outcome was never recorded, and close calls whose end was never reported."""
    return settle_unsettled(dispatcher.runtime), close_stale_calls(dispatcher.runtime)


def active_campaigns(factory: sessionmaker[Session]) -> list[uuid.UUID]:
    """Ids of the active campaigns, oldest start first."""
    with factory() as session:
        return list(session.scalars(select(Campaign.id).where(Campaign.status == "active")
                                    .order_by(Campaign.started_at, Campaign.id)))


def tick(factory: sessionmaker[Session], *, now: datetime | None = None, clock: Clock | None = None, worker: str,
         settings: Settings | None = None, stop: threading.Event | None = None, budget: float | None = None,
         concurrency: int | None = None, adapters: Mapping[str, Channel] | None = None,
         settle: bool = True) -> TickReport:
    """One scheduler tick (see the module docstring).  ``now`` or ``clock`` injects the clock (tests,
    simulations); ``settle=False`` leaves settling to its own job (the scheduler daemon runs it apart, so a
    provider that does not answer never holds up sending)."""
    settings = settings or get_settings()
    clock = clock_for(now, clock)
    report = TickReport()
    report.started = start_due_campaigns(factory, now=clock.now())
    dispatcher = Dispatcher(factory, worker=worker, settings=settings, clock=clock, budget=budget, stop=stop,
                            concurrency=concurrency, adapters=adapters)
    if settle:
        report.reconciled, report.calls_closed = settle_tick(dispatcher)
    report.events = process_due_events(factory, now=clock.now())
    report.winners = settle_winners(factory, now=clock.now())
    report.enrolled = enrol_due(factory, now=clock.now())
    if stop is None or not stop.is_set():
        reports = dispatcher.run(active_campaigns(factory))
        report.campaigns = {str(k): v for k, v in reports.items()}
    report.events += process_due_events(factory, now=clock.now())
    report.completed = len(complete_finished(factory, now=clock.now()))
    if report.started or report.reconciled or report.completed or report.sent:
        log.info("tick: %s", {k: v for k, v in report.as_dict().items() if k != "campaigns" and v}
                 | {"sent": report.sent})
    return report
