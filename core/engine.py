"""What the dispatcher and the reconciler share: the database, the clock, this process's name,
the adapters each business sends through, and a campaign as a pass sees it.

A :class:`Runtime` belongs to one scheduler process (or one API request running a
pass).  It writes a batch's outcomes in one transaction, retrying transient database
errors, pauses a campaign with a reason, and builds :class:`CampaignRun` objects:
the campaign, its business, the steps, the message builder, and the adapters and
rate limits of the provider accounts that business sends through
(:func:`core.senders.settings_for`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import ratelimit
from core.campaigns import transition
from core.channels import get_channel
from core.channels.base import Channel
from core.claims import release
from core.clock import Clock
from core.config import Settings
from core.facts import CampaignFacts
from core.models import Agent, Campaign, Profile
from core.outbound import MessageBuilder, steps_of
from core.outcome_mapping import CampaignRun
from core.outcomes import Writes
from core.senders import account_key, settings_for

log = logging.getLogger("core.dispatch")


def transient(exc: BaseException) -> bool:
    """A database error worth retrying (deadlock, serialization failure, lock timeout, lost connection)."""
    if isinstance(exc, OperationalError):
        return True
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, DBAPIError) and code in ("40001", "40P01", "55P03")


@dataclass
class Runtime:
    """One process's view of the engine's surroundings."""

    factory: sessionmaker[Session]
    settings: Settings
    clock: Clock
    worker: str
    stop: threading.Event = field(default_factory=threading.Event)
    # adapters given by the caller take the place of the registry's (another provider, a test double)
    overrides: Mapping[str, Channel] = field(default_factory=dict)
    _adapters: dict[tuple[str, str, str], Channel] = field(default_factory=dict)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.scheduler_lease_seconds)

    def business_settings(self, profile: Profile | None) -> Settings:
        return settings_for(profile, self.settings)

    def adapter(self, channel: str, settings: Settings) -> Channel:
        """The adapter ``channel`` sends through with ``settings`` (a business's), one per provider account."""
        if channel in self.overrides:
            return self.overrides[channel]
        key = (channel, settings.provider_for(channel) if settings.channel_live(channel) else "sandbox",
               account_key(settings, channel))
        if key not in self._adapters:
            self._adapters[key] = get_channel(channel, settings, factory=self.factory)
        return self._adapters[key]

    def adapter_for(self, profile: Profile | None, channel: str) -> Channel:
        return self.adapter(channel, self.business_settings(profile))

    # --- writing ---------------------------------------------------------------------------------------

    def write(self, writes: Writes) -> None:
        """Record a batch's outcomes in one transaction (transient database errors are retried)."""
        if writes.empty():
            return
        for attempt in range(5):
            try:
                with self.factory() as session, session.begin():
                    writes.flush(session)
                break
            except Exception as exc:
                if not transient(exc) or attempt == 4:
                    raise
                log.warning("dispatch: retrying a write after a transient database error (%s)", type(exc).__name__)
                time.sleep(0.05 * (attempt + 1))
        if writes.pause is not None:
            self.pause(*writes.pause)

    def pause(self, profile_id: uuid.UUID, campaign_id: uuid.UUID, reason: str) -> None:
        """Pause an active campaign with the reason in words (a quota, a refused set-up, a failure spike)."""
        with self.factory() as session, session.begin():
            campaign = session.get(Campaign, campaign_id, with_for_update=True)
            if campaign is not None and campaign.status == "active":
                transition(session, profile_id=profile_id, campaign_id=campaign_id, target="paused",
                           now=self.clock.now(), reason=reason, by_system=True)
                log.warning("campaign %s: paused by the scheduler: %s", campaign_id, reason)

    def release(self, ids: Sequence[uuid.UUID], *, later: datetime | None = None) -> None:
        if ids:
            with self.factory() as session, session.begin():
                release(session, ids, worker=self.worker, now=self.clock.now(), next_attempt_at=later)

    # --- a campaign as a pass sees it ----------------------------------------------------------------------

    def load_run(self, session: Session, campaign_id: uuid.UUID) -> CampaignRun:
        """The campaign, its business and everything a pass needs to send for it; ``LookupError`` when gone."""
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
        settings = self.business_settings(profile)
        channels = {s.channel for s in steps}
        adapters = {ch: self.adapter(ch, settings) for ch in channels}
        facts = CampaignFacts(
            profile_id=campaign.profile_id, campaign_type=campaign.campaign_type,
            consent_policy=profile.consent_policy, timezone=campaign.timezone,
            send_window=dict(campaign.send_window or {}), max_attempts=campaign.max_attempts,
            winner_variant=campaign.winner_variant, variant_mode=campaign.variant_mode)
        return CampaignRun(
            campaign=campaign, profile=profile, facts=facts, steps=steps,
            builder=MessageBuilder(campaign=campaign, profile=profile, agent=agent, settings=self.settings),
            rate=ratelimit.campaign_rate(campaign.id, campaign.rate_limit_per_minute), adapters=adapters,
            provider_rates={ch: ratelimit.provider_rate(ch, settings, account_key(settings, ch)) for ch in channels},
        )
