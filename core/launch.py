"""Before a launch: what a campaign will cost, and when its first message can actually go out.

The wizard's review step shows both, so nobody starts a campaign at 06:00 and wonders for three hours
why nothing happens, or learns the bill afterwards.

- :func:`estimate_cost`: per step, the customers it reaches (the audience less the holdout share) times
  the price of one message — an e-mail at the profile's price; an SMS at the segments of its **final**
  text (footer included, from the one message builder, :mod:`core.outbound`) averaged over the sample
  customers; a call at the business's average call length (:func:`average_call_minutes`, else 1.5
  minutes).  Every step is counted for everyone, so conditions that skip a step make the real figure
  lower, never higher.
- :func:`first_send` / :func:`waiting_sentence`: the earliest moment any of the sample customers is
  inside the send window (and, for calls and texts, inside 08:00–21:00) in their own time zone
  (:func:`core.windows.next_opening`), and a sentence when that is a while away.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.config import Settings
from core.models import Agent, Campaign, OutreachEvent, Profile
from core.outbound import Sample, message_cost, preview, steps_of
from core.windows import DAYS, QUIET_CHANNELS, next_opening, recipient_zones

DEFAULT_CALL_MINUTES = 1.5
CALL_HISTORY = 500  # the business's most recent ended calls an average is taken over
# a launch whose first send is at most this far away is "now"
SOON = timedelta(minutes=15)
CHANNEL_WORDS = {"call": "calls", "email": "e-mails", "sms": "texts"}
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def average_call_minutes(session: Session, *, profile_id: uuid.UUID) -> float | None:
    """How long this business's recent calls lasted on average (end-of-call reports), or ``None`` before
    it has any."""
    e = OutreachEvent
    seconds = e.payload["duration_seconds"].as_float()
    recent = (select(seconds.label("seconds"))
              .where(e.profile_id == profile_id, e.channel == "call",
                     e.type.in_(("answered", "delivered", "not_answered", "failed")), seconds.is_not(None))
              .order_by(e.occurred_at.desc()).limit(CALL_HISTORY).subquery())
    average = session.scalar(select(func.avg(recent.c.seconds)))
    return None if average is None else round(float(average) / 60, 2)


@dataclass(frozen=True)
class CostLine:
    """One step's share of the estimate."""

    step: int
    channel: str
    messages: int
    unit: float
    basis: str  # what the unit price rests on, in words

    @property
    def total(self) -> float:
        return round(self.messages * self.unit, 4)


@dataclass(frozen=True)
class CostEstimate:
    """The estimated cost of reaching the audience once through every step."""

    lines: list[CostLine]
    contacted: int

    @property
    def total(self) -> float:
        return round(sum(line.total for line in self.lines), 4)


def estimate_cost(*, campaign: Campaign, profile: Profile, agent: Agent | None, settings: Settings, audience: int,
                  samples: Sequence[Sample] = (), call_minutes: float | None = None,
                  contacted: int | None = None) -> CostEstimate:
    """What sending ``campaign`` to ``audience`` matching customers should cost at the profile's prices
    (``contacted``: how many of them it contacts, once known; else the audience less the holdout share)."""
    if contacted is None:
        holdout = int(campaign.holdout_percent or 0)
        contacted = audience - round(audience * holdout / 100)
    minutes = call_minutes if call_minutes and call_minutes > 0 else DEFAULT_CALL_MINUTES
    people = list(samples) or [Sample()]
    lines: list[CostLine] = []
    first_sms = True
    for step in steps_of(campaign):
        if step.channel == "email":
            unit, basis = float(profile.price_per_email), "per e-mail"
        elif step.channel == "call":
            unit = round(minutes * float(profile.price_per_call_minute), 6)
            basis = f"{minutes:g} min per call at {money(profile.price_per_call_minute)} a minute"
        else:
            segments = [message_cost(preview(campaign=campaign, profile=profile, agent=agent, settings=settings,
                                             channel="sms", sample=person, step=step.index, first_sms=first_sms),
                                     profile).sms for person in people]
            average = sum(s.segments for s in segments if s is not None) / len(people)
            unit = round(average * float(profile.price_per_sms_segment), 6)
            basis = (f"{average:.2g} segment{'s' if average != 1 else ''} per text at "
                     f"{money(profile.price_per_sms_segment)} a segment")
            first_sms = False
        lines.append(CostLine(step.index, step.channel, contacted, unit, basis))
    return CostEstimate(lines, contacted)


def money(value: float | None) -> str:
    """An amount as the dashboard writes it: cents, or more decimals below a cent; "—" for none."""
    if value is None:
        return "—"
    return f"${value:,.4f}".rstrip("0") if 0 < value < 0.01 else f"${value:,.2f}"


# --- when the first message can go ----------------------------------------------------------------------


@dataclass(frozen=True)
class FirstSend:
    """The earliest moment the campaign can reach any of the customers looked at, and where."""

    at: datetime | None
    zone: str
    channel: str


def first_send(*, start: datetime, campaign: Campaign, phones: Iterable[str | None]) -> FirstSend:
    """When the first step can first go out to one of the customers with these ``phones`` (``None``: no
    phone, so the campaign's time zone), starting at ``start``."""
    first = steps_of(campaign)[0]
    earliest = start + timedelta(hours=first.delay_hours)
    found: tuple[datetime, str] | None = None
    for zones in {recipient_zones(p, campaign.timezone) for p in phones} or {(campaign.timezone,)}:
        opening = next_opening(earliest, zones=zones, send_window=campaign.send_window,
                               quiet_hours=first.channel in QUIET_CHANNELS)
        if opening is not None and (found is None or opening < found[0]):
            found = (opening, zones[0])
    return FirstSend(found[0] if found else None, found[1] if found else campaign.timezone, first.channel)


def place(zone: str) -> str:
    """``America/New_York`` → ``New York``."""
    return zone.rsplit("/", 1)[-1].replace("_", " ")


def _when(moment: datetime, zone: str, start: datetime) -> str:
    local, today = moment.astimezone(ZoneInfo(zone)), start.astimezone(ZoneInfo(zone)).date()
    days = (local.date() - today).days
    day = ("today" if days == 0 else "tomorrow" if days == 1 else f"on {DAY_NAMES[local.weekday()]}" if days < 7
           else f"on {local.strftime('%B')} {local.day}")
    return f"{local:%H:%M} {day}"


def _wait(delta: timedelta) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{round(minutes / 1440)} days"


def waiting_sentence(found: FirstSend, *, start: datetime, send_window: Mapping[str, Any] | None,
                     starting_now: bool = True) -> str | None:
    """Why nothing will go out for a while after ``start``, in words ("Nothing goes out until 09:00 tomorrow
    in New York, in 14 h 20 min: …"), or ``None`` when the first message can go within minutes."""
    window = dict(send_window or {})
    days = [d for d in DAYS if d in (window.get("days") or DAYS)]
    first, last = DAYS.index(days[0]), DAYS.index(days[-1])
    if len(days) == 7:
        day_text = "every day"
    elif len(days) > 2 and last - first + 1 == len(days):
        day_text = f"{days[0].capitalize()}–{days[-1].capitalize()}"
    else:
        day_text = ", ".join(d.capitalize() for d in days)
    hours = f"{window.get('start') or '00:00'}–{window.get('end') or '24:00'}"
    why = f"the send window is {hours}, {day_text}, in each customer's own time zone"
    if found.channel in QUIET_CHANNELS:
        why += ", and calls and texts only go out between 08:00 and 21:00 there"
    if found.at is None:
        return (f"Nothing can go out in the next two weeks: {why}. Widen the send window (hours or days) so it "
                "overlaps with the customers' daytime.")
    if found.at - start <= SOON:
        return None
    moment = "after you start it" if starting_now else "after its start"
    return (f"Nothing goes out until {_when(found.at, found.zone, start)} in {place(found.zone)} "
            f"({_wait(found.at - start)} {moment}): {why}. The first {CHANNEL_WORDS[found.channel]} go out then.")
