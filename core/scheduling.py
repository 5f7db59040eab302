"""What the scheduler does on each tick.

One :func:`tick`:

1. starts scheduled campaigns whose time has come (selecting recipients if none);
2. reconciles tries left without an outcome by a process that died (their lease
   expired) and closes calls whose end was never reported;
3. applies provider events that are due (webhooks, simulated sandbox outcomes);
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

from core.campaigns import transition
from core.channels.base import Channel
from core.config import Settings, get_settings
from core.db import utcnow
from core.dispatch import Dispatcher, DispatchReport, close_stale_calls, complete_finished, settle_unsettled
from core.events import process_due_events
from core.models import Campaign

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    """What one tick did."""

    started: int = 0
    reconciled: int = 0
    calls_closed: int = 0
    events: int = 0
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


def active_campaigns(factory: sessionmaker[Session]) -> list[uuid.UUID]:
    """Ids of the active campaigns, oldest start first."""
    with factory() as session:
        return list(session.scalars(select(Campaign.id).where(Campaign.status == "active")
                                    .order_by(Campaign.started_at, Campaign.id)))


def tick(factory: sessionmaker[Session], *, now: datetime | None = None, worker: str,
         settings: Settings | None = None, stop: threading.Event | None = None, budget: float | None = None,
         concurrency: int | None = None, adapters: Mapping[str, Channel] | None = None) -> TickReport:
    """One scheduler tick (see the module docstring).  ``now`` fixes the clock (tests, simulations)."""
    settings = settings or get_settings()
    report = TickReport()
    report.started = start_due_campaigns(factory, now=now)
    dispatcher = Dispatcher(factory, worker=worker, settings=settings, now=now, budget=budget, stop=stop,
                            concurrency=concurrency, adapters=adapters)
    report.reconciled = settle_unsettled(dispatcher)
    report.calls_closed = close_stale_calls(dispatcher)
    report.events = process_due_events(factory, now=now or utcnow())
    if stop is None or not stop.is_set():
        reports = dispatcher.run(active_campaigns(factory))
        report.campaigns = {str(k): v for k, v in reports.items()}
    report.events += process_due_events(factory, now=now or utcnow())
    report.completed = len(complete_finished(factory, now=now))
    if report.started or report.reconciled or report.completed or report.sent:
        log.info("tick: %s", {k: v for k, v in report.as_dict().items() if k != "campaigns" and v}
                 | {"sent": report.sent})
    return report
