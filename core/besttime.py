"""Best time to reach (DESIGN §11): ``send_time: "best"`` schedules each customer's first step at the
local hour they are most likely to answer (calls) or respond (texts, e-mails).

**The model, for an analyst to check.**  For one business and one channel, every
accepted try of the last :data:`HISTORY_DAYS` days is an observation at the local
hour it was made in the customer's time zone (their phone's zone, else the
campaign's).  It *succeeded* when the customer answered the call within
:data:`CALL_SUCCESS` of it, or, for a text or an e-mail, responded within
:data:`RESPONSE_SUCCESS`.  With ``n_h`` tries and ``s_h`` successes at hour ``h``:

- the prior: ``m_h = p₀ · shape_h / s̄``, where ``p₀`` is the business's overall success
  rate on that channel once it has :data:`MIN_HISTORY` tries (before that, a typical
  rate: :data:`DEFAULT_RATE`, and ``s̄ = 1``), ``shape_h`` a typical hour-of-day profile
  of the channel (:data:`SHAPE`: late morning and early evening are better for calls),
  and ``s̄ = Σ n_h·shape_h / Σ n_h`` the shape's average over the hours the tries were
  made — so the prior, weighted like the data, gives back ``p₀``, and an hour without
  data never looks better than the business's record only for lack of it;
- the business's rate at hour ``h``: ``p_h = (s_h + K·m_h) / (n_h + K)`` with
  ``K`` = :data:`PRIOR_WEIGHT` pseudo-tries — a Beta prior, so it works from zero data
  (``p_h = m_h``) and follows the business's own history as it grows;
- a customer with :data:`MIN_OWN` or more past tries on the channel gets their own
  rate, shrunk toward the business's: ``p_ch = (s_ch + M·p_h) / (n_ch + M)`` with
  ``M`` = :data:`OWN_WEIGHT`.

The customer's best hour is the allowed local hour (inside the campaign's window
and the legal calling hours) with the highest rate (on a tie: the one with more
tries, then the earliest); the
first step is planned for the next time that hour comes (at a minute spread by the
customer's id, so a campaign does not ring everyone at the top of the hour), and
never re-planned: a send the limits push past the hour still goes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.orm import Session

from core import compliance
from core.db import time_bucket
from core.eligibility import Step
from core.models import Campaign, CampaignRecipient, Customer, OutreachAttempt
from core.windows import QUIET_CHANNELS, effective_window, next_opening, recipient_zones

if TYPE_CHECKING:  # pandas only for analytics' curves: the scheduler never loads it
    import pandas as pd

HISTORY_DAYS = 365
HISTORY_LIMIT = 50_000
MIN_HISTORY = 50
PRIOR_WEIGHT = 20.0
MIN_OWN = 3
OWN_WEIGHT = 5.0
CALL_SUCCESS = timedelta(hours=2)
RESPONSE_SUCCESS = timedelta(days=3)
DEFAULT_RATE = {"call": 0.30, "sms": 0.10, "email": 0.05}
_LATE_MORNING = {10: 1.2, 11: 1.2, 12: 1.1}
SHAPE: dict[str, dict[int, float]] = {
    "call": {8: 0.8, 9: 0.9, **_LATE_MORNING, 13: 1.0, 14: 0.9, 15: 1.0, 16: 1.1, 17: 1.2, 18: 1.2, 19: 1.0, 20: 0.8},
    "sms": {9: 0.9, **_LATE_MORNING, 13: 1.15, 17: 1.2, 18: 1.2, 19: 1.1, 20: 0.9},
    "email": {7: 1.0, 8: 1.1, 9: 1.15, 10: 1.15, 11: 1.1, 19: 1.1, 20: 1.15, 21: 1.1},
}


def shape(channel: str, hour: int) -> float:
    return SHAPE.get(channel, {}).get(hour, 1.0 if 8 <= hour < 21 else 0.6)


@dataclass(frozen=True)
class Observation:
    """One accepted try: whose, at which local hour, and whether it succeeded."""

    contact_key: str
    hour: int
    success: bool


@dataclass
class Model:
    """A business's success rate by local hour on one channel, and its customers' own histories."""

    channel: str
    tries: list[int] = field(default_factory=lambda: [0] * 24)
    successes: list[int] = field(default_factory=lambda: [0] * 24)
    own: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)

    @classmethod
    def from_observations(cls, channel: str, observations: Iterable[Observation]) -> Model:
        model = cls(channel)
        for o in observations:
            model.tries[o.hour] += 1
            model.successes[o.hour] += int(o.success)
            n, s = model.own.setdefault(o.contact_key, ([0] * 24, [0] * 24))
            n[o.hour] += 1
            s[o.hour] += int(o.success)
        return model

    @property
    def overall(self) -> float:
        n = sum(self.tries)
        return sum(self.successes) / n if n >= MIN_HISTORY else DEFAULT_RATE.get(self.channel, 0.1)

    @property
    def _level(self) -> float:
        """``p₀ / s̄``: the prior's level, so that the prior rates, weighted by where the tries were made,
        give back the business's overall rate (no hour looks better than the data only for lack of it)."""
        n = sum(self.tries)
        if n < MIN_HISTORY:
            return self.overall
        mean_shape = sum(t * shape(self.channel, h) for h, t in enumerate(self.tries)) / n
        return self.overall / mean_shape

    def prior(self, hour: int) -> float:
        """The prior rate at ``hour`` (``m_h``)."""
        return self._level * shape(self.channel, hour)

    def rate(self, hour: int) -> float:
        """The business's smoothed success rate at ``hour``."""
        return (self.successes[hour] + PRIOR_WEIGHT * self.prior(hour)) / (self.tries[hour] + PRIOR_WEIGHT)

    def rate_for(self, contact_key: str, hour: int) -> float:
        """A customer's rate at ``hour``: their own once they have enough history, else the business's."""
        base = self.rate(hour)
        own = self.own.get(contact_key)
        if own is None or sum(own[0]) < MIN_OWN:
            return base
        return (own[1][hour] + OWN_WEIGHT * base) / (own[0][hour] + OWN_WEIGHT)

    def best_hour(self, contact_key: str, allowed: Sequence[int]) -> int | None:
        """The allowed local hour with the highest rate; on a tie the one with more evidence (tries), then
        the earliest."""
        if not allowed:
            return None
        return max(sorted(allowed), key=lambda h: (round(self.rate_for(contact_key, h), 9), self.tries[h], -h))

    def curve(self) -> pd.DataFrame:
        """The hour-of-day curve: tries, successes and the smoothed rate per local hour."""
        import pandas as pd

        return pd.DataFrame({"hour": list(range(24)), "tries": self.tries, "successes": self.successes,
                             "rate": [round(self.rate(h), 4) for h in range(24)]})


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def observations(session: Session, *, profile_id: uuid.UUID, channel: str, now: datetime,
                 contact_keys: Sequence[str] | None = None) -> list[Observation]:
    """The business's accepted tries on ``channel`` of the last year (or those of ``contact_keys``)."""
    a, r, c, k = OutreachAttempt, CampaignRecipient, Campaign, Customer
    stmt = (select(r.contact_key, a.started_at, r.answered_at, r.responded_at, k.timezone, c.timezone)
            .join(r, r.id == a.recipient_id).join(c, c.id == a.campaign_id).outerjoin(k, k.id == r.customer_id)
            .where(a.profile_id == profile_id, a.channel == channel, a.outcome == "accepted",
                   a.started_at > now - timedelta(days=HISTORY_DAYS))
            .order_by(a.started_at.desc()).limit(HISTORY_LIMIT))
    if contact_keys is not None:
        stmt = stmt.where(r.contact_key.in_(list(contact_keys)))
    window = CALL_SUCCESS if channel == "call" else RESPONSE_SUCCESS
    out = []
    for key, started, answered, responded, customer_zone, campaign_zone in session.execute(stmt):
        hit = answered if channel == "call" else responded
        local = started.astimezone(_zone(customer_zone or campaign_zone))
        out.append(Observation(key, local.hour, hit is not None and started <= hit <= started + window))
    return out


def load(session: Session, *, profile_id: uuid.UUID, channel: str, now: datetime) -> Model:
    """The business's model for ``channel`` from its history."""
    return Model.from_observations(channel, observations(session, profile_id=profile_id, channel=channel, now=now))


def allowed_hours(send_window: Mapping[str, Any] | None, *, quiet_hours: bool,
                  hours: tuple[int, int] | None = None) -> list[int]:
    """Local hours wholly inside the window (and the calling hours)."""
    w = effective_window(send_window, quiet_hours=quiet_hours, hours=hours)
    return [h for h in range(24) if h * 60 >= w.start and (h + 1) * 60 <= w.end]


def spread_minute(recipient_id: uuid.UUID) -> int:
    """A minute within the hour, fixed per recipient (so a campaign does not ring everyone at :00)."""
    return int(hashlib.sha1(recipient_id.bytes).hexdigest()[:4], 16) % 50


def planned_moment(model: Model, *, contact_key: str, recipient_id: uuid.UUID, zones: Sequence[str],
                   send_window: Mapping[str, Any] | None, quiet_hours: bool, hours: tuple[int, int] | None,
                   now: datetime) -> datetime | None:
    """When to make a customer's first try: the next time their best hour comes, within the window."""
    best = model.best_hour(contact_key, allowed_hours(send_window, quiet_hours=quiet_hours, hours=hours))
    if best is None:
        return None
    minute = best * 60 + spread_minute(recipient_id)
    narrowed = {**(send_window or {}), "start": f"{minute // 60:02d}:{minute % 60:02d}",
                "end": f"{best + 1:02d}:00" if best < 23 else "24:00"}
    return next_opening(now, zones=zones, send_window=narrowed, quiet_hours=quiet_hours, hours=hours)


def load_all(session: Session, *, profile_id: uuid.UUID, channels: Iterable[str], now: datetime) -> dict[str, Model]:
    """The business's model of each of ``channels``."""
    return {ch: load(session, profile_id=profile_id, channel=ch, now=now) for ch in set(channels)}


# when a claimed recipient's step is planned for (None: no plan): what the dispatcher's facts ask
Planner = Callable[[Any, Step], "datetime | None"]


def planner(models: Mapping[str, Model], *, timezone: str, send_window: Mapping[str, Any] | None,
            now: datetime) -> Planner:
    """The best-time plan of a campaign's recipients: their first step at their best local hour."""
    def moment(row: Any, step: Step) -> datetime | None:
        if step.index != 0 or step.channel not in models:
            return None
        quiet = step.channel in QUIET_CHANNELS
        rule = compliance.state_rule(row.customer_phone) if quiet and row.customer_phone else None
        return planned_moment(models[step.channel], contact_key=row.contact_key, recipient_id=row.id,
                              zones=recipient_zones(row.customer_phone, timezone), send_window=send_window,
                              quiet_hours=quiet, hours=rule.hours if rule is not None else None, now=now)

    return moment


def business_model(session: Session, *, profile_id: uuid.UUID, channel: str, now: datetime) -> Model:
    """The business's model for ``channel`` without its customers' own histories (what analytics draws):
    the same tries and successes as :func:`load`, counted in SQL per quarter hour and time zone, so a history of
    tens of thousands of tries is a few hundred rows here."""
    a, r, c, k = OutreachAttempt, CampaignRecipient, Campaign, Customer
    hit = r.answered_at if channel == "call" else r.responded_at
    window = int((CALL_SUCCESS if channel == "call" else RESPONSE_SUCCESS).total_seconds())
    recent = (select(a.started_at.label("started"), hit.label("hit"),
                     func.coalesce(k.timezone, c.timezone).label("zone"))
              .join(r, r.id == a.recipient_id).join(c, c.id == a.campaign_id).outerjoin(k, k.id == r.customer_id)
              .where(a.profile_id == profile_id, a.channel == channel, a.outcome == "accepted",
                     a.started_at > now - timedelta(days=HISTORY_DAYS))
              .order_by(a.started_at.desc()).limit(HISTORY_LIMIT).subquery())
    second = literal_column("1")
    lag = time_bucket(recent.c.hit, second) - time_bucket(recent.c.started, second)
    # quarter hours: every time zone's offset is a whole number of them, so each bucket is one local hour
    hour = time_bucket(recent.c.started, literal_column("900")).label("hour")
    rows = session.execute(select(recent.c.zone, hour, func.count(),
                                  func.coalesce(func.sum(case((lag.between(0, window), 1), else_=0)), 0))
                           .group_by(recent.c.zone, hour))
    model = Model(channel)
    for zone, epoch_hour, tries, successes in rows:
        local = datetime.fromtimestamp(int(epoch_hour), _zone(zone)).hour
        model.tries[local] += int(tries)
        model.successes[local] += int(successes)
    return model


def curves(session: Session, *, profile_id: uuid.UUID, now: datetime) -> pd.DataFrame:
    """The hour-of-day curves of every channel (for analytics): channel, hour, tries, successes, rate."""
    frames = []
    for channel in ("call", "sms", "email"):
        frame = business_model(session, profile_id=profile_id, channel=channel, now=now).curve()
        frame.insert(0, "channel", channel)
        frames.append(frame)
    import pandas as pd

    return pd.concat(frames, ignore_index=True)
