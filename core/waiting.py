"""Why nothing is being sent right now, in words (DESIGN §14).

"Running, 0 of 196" for hours is not an explanation.  :func:`why_waiting` reads a campaign
and its recipients and says what holds sending back and until when — not started,
scheduled, paused (and why), the send window or the legal calling hours in the
recipients' own time zones, a state's cap, the rate limit or a provider's back-off, calls
at the concurrency limit, an A/B test waiting for its winner, a best-time plan, a later
step's delay, retries after a temporary problem — or that it is sending, at what pace.

The engine does not store why it put a recipient off (it stores *until when*); the reason
is worked out here from the same facts it decides on: the campaign's window
(:mod:`core.windows`), the state hours (:mod:`core.compliance`), the limiter rows
(:mod:`core.ratelimit`) and the recipients' work-queue columns.  Recipients are grouped
in SQL by what decides their time zone and state — the first digits of their number —
so the answer costs a few grouped queries whatever the size of the campaign.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from core import compliance, ratelimit
from core.campaigns import get_campaign
from core.config import Settings, get_settings
from core.db import utcnow
from core.models import Campaign, CampaignRecipient, OutreachAttempt, Profile, RateLimit
from core.outbound import steps_of
from core.senders import account_key, settings_for
from core.windows import DAYS, QUIET_CHANNELS, effective_window, hhmm, next_opening, recipient_zones

R = CampaignRecipient
# due for this long with nothing sent and nothing in flight: the scheduler is probably not running
STALLED_AFTER = timedelta(minutes=2)
CHANNEL_NOUNS = {"call": ("call", "calls"), "email": ("e-mail", "e-mails"), "sms": ("text", "texts")}
# recipients still in the work queue (not done, not given up on, not kept back)
_IN_QUEUE = and_(R.next_attempt_at.is_not(None), R.status.not_in(("failed", "opted_out", "holdout")))


@dataclass(frozen=True)
class Waiting:
    """What holds a campaign's sending back (or that it is sending), said two ways.

    ``kind`` names the reason: ``draft``, ``scheduled``, ``paused``, ``window``, ``calling_hours``,
    ``state_cap``, ``rate_limit``, ``provider``, ``calls``, ``winner``, ``best_time``, ``step_delay``,
    ``retry``, ``stalled``, ``always_on``, ``finishing``, ``due`` (something is due later) or
    ``sending``.  ``sentence`` is for the campaign page, ``short`` for the campaign list ("next send
    09:00"), ``at`` when the next send can happen (when known)."""

    kind: str
    sentence: str
    short: str
    at: datetime | None = None

    @property
    def sending(self) -> bool:
        return self.kind == "sending"


# --- words for times --------------------------------------------------------------------------------------


def place(zone: str) -> str:
    """``America/New_York`` → ``New York`` (how people name a time zone)."""
    return zone.rsplit("/", 1)[-1].replace("_", " ")


def duration(delta: timedelta) -> str:
    """``2 h 35 min``, ``35 min``, ``3 days 4 h``, ``less than a minute``."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 1:
        return "less than a minute"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    return f"{mins} min"


def moment(at: datetime, zone: str, now: datetime) -> str:
    """``at 09:00``, ``tomorrow at 09:00``, ``on Monday, Mar 9 at 09:00`` — in ``zone``'s local time."""
    local, today = at.astimezone(ZoneInfo(zone)), now.astimezone(ZoneInfo(zone)).date()
    clock = local.strftime("%H:%M")
    if local.date() == today:
        return f"at {clock}"
    if local.date() == today + timedelta(days=1):
        return f"tomorrow at {clock}"
    return f"on {local.strftime('%A')}, {local.strftime('%b')} {local.day} at {clock}"


def short_moment(at: datetime, zone: str, now: datetime) -> str:
    """``09:00``, ``Mon 09:00`` or ``Mar 9 09:00`` in ``zone`` (for the campaign list)."""
    local, today = at.astimezone(ZoneInfo(zone)), now.astimezone(ZoneInfo(zone)).date()
    if local.date() == today:
        return local.strftime("%H:%M")
    if local.date() < today + timedelta(days=7):
        return local.strftime("%a %H:%M")
    return f"{local.strftime('%b')} {local.day} {local.strftime('%H:%M')}"


def _window_text(send_window: Mapping[str, Any]) -> str:
    window = effective_window(send_window, quiet_hours=False)
    days = [d for d in DAYS if d in (send_window.get("days") or DAYS)]
    when = "every day" if len(days) == 7 else ("Mon–Fri" if days == list(DAYS[:5]) else
                                               ", ".join(d.capitalize() for d in days))
    return f"{hhmm(window.start)}–{hhmm(window.end)}, {when}"


# --- the recipients due, grouped by what decides their local time -------------------------------------------


@dataclass(frozen=True)
class Group:
    """Recipients whose next step is on ``channel`` and whose numbers share time zones and state rules."""

    zones: tuple[str, ...]
    channel: str
    count: int
    state: compliance.StateRule | None = None

    @property
    def quiet(self) -> bool:
        return self.channel in QUIET_CHANNELS

    @property
    def hours(self) -> tuple[int, int] | None:
        return self.state.hours if self.state is not None and self.quiet else None


@lru_cache(maxsize=4096)
def _zones(phone: str | None, fallback: str) -> tuple[str, ...]:
    return recipient_zones(phone, fallback)


def _prefix() -> Any:
    # the digits that decide a number's zones: +1 and the area code and exchange in North America
    # (phonenumbers maps some exchanges of one area code to different zones), ten characters elsewhere
    phone = R.customer_phone
    return case((phone.like("+1%"), func.substr(phone, 1, 8)), else_=func.substr(phone, 1, 10))


def due_groups(session: Session, *, campaign: Campaign, conditions: Sequence[Any]) -> list[Group]:
    """The recipients matching ``conditions``, grouped (one grouped query)."""
    steps = steps_of(campaign)
    prefix = _prefix().label("prefix")
    rows = session.execute(select(prefix, R.step, func.count().label("n"), func.min(R.customer_phone).label("phone"))
                           .where(R.campaign_id == campaign.id, *conditions).group_by(prefix, R.step)).all()
    groups = []
    for row in rows:
        if row.step >= len(steps):
            continue
        phone = row.phone
        groups.append(Group(zones=_zones(phone, campaign.timezone), channel=steps[row.step].channel,
                            count=int(row.n), state=compliance.state_rule(phone) if phone else None))
    return groups


def opening(group: Group, send_window: Mapping[str, Any], now: datetime) -> datetime | None:
    """When the group's recipients may next be contacted (``now`` when they may be now)."""
    return next_opening(now, zones=group.zones, send_window=send_window, quiet_hours=group.quiet, hours=group.hours)


def _minute_of_day(at: datetime, zone: str) -> int:
    local = at.astimezone(ZoneInfo(zone))
    return local.hour * 60 + local.minute


def _window_wait(groups: Sequence[Group], send_window: Mapping[str, Any], now: datetime,
                 due: int) -> Waiting | None:
    """When no due group may be contacted now: the earliest opening, said with the zone it opens in."""
    openings = [(at, g) for g in groups if (at := opening(g, send_window, now)) is not None]
    if not openings:
        return None
    at, group = min(openings, key=lambda pair: pair[0])
    if at <= now:
        return None
    window = effective_window(send_window, quiet_hours=group.quiet, hours=group.hours)
    # name the zone where the window opens at that moment (a number may ring in several)
    zone = next((z for z in group.zones if _minute_of_day(at, z) == window.start), group.zones[0])
    noun = CHANNEL_NOUNS[group.channel][1]
    first = f"the first {noun} go out {moment(at, zone, now)} in {place(zone)}, in {duration(at - now)}"
    # the legal hours hold them back when the campaign's own window would let them go now
    campaign_allows = next_opening(now, zones=group.zones, send_window=send_window, quiet_hours=False) == now
    waiting = f"{due:,} customer{'s' if due != 1 else ''} due"
    if campaign_allows and group.quiet:
        if group.state is not None:
            law = (f"{group.state.name}'s calling hours ({group.state.hours_text} local time, "
                   f"{group.state.citation})")
        else:
            law = "the legal calling hours (calls and texts only 08:00–21:00 in the customer's time zone)"
        return Waiting("calling_hours", f"Waiting for {law}: {first} ({waiting}).", "", at)
    return Waiting("window", f"Waiting for the send window ({_window_text(send_window)}, the customer's local "
                             f"time): {first} ({waiting}).", "", at)


# --- the campaign -----------------------------------------------------------------------------------------


def why_waiting(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID, now: datetime | None = None,
                settings: Settings | None = None, timezone: str | None = None) -> Waiting | None:
    """What holds the campaign's sending back right now, or that it is sending; ``None`` once it is over
    (completed or stopped).  ``timezone`` is the one the short form's times are in (default the
    campaign's)."""
    now = now or utcnow()
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id)
    zone = timezone or campaign.timezone
    return _with_short(_why(session, campaign, now, settings or get_settings(), zone), zone, now)


def _with_short(found: Waiting | None, zone: str, now: datetime) -> Waiting | None:
    """The reason with its short form for the campaign list ("next send 09:00") when it has none of its own."""
    if found is None or found.short:
        return found
    short = f"next send {short_moment(found.at, zone, now)}" if found.at is not None else found.kind
    return Waiting(found.kind, found.sentence, short, found.at)


def _why(session: Session, campaign: Campaign, now: datetime, settings: Settings, zone: str) -> Waiting | None:
    status = campaign.status
    if status in ("completed", "cancelled"):
        return None
    if status == "draft":
        return Waiting("draft", "This is a draft: nothing is sent until you start it.", "not started")
    if status == "scheduled":
        if campaign.scheduled_at is None:
            return Waiting("scheduled", "Scheduled, without a start time: start it when you are ready.", "scheduled")
        at = campaign.scheduled_at
        when = (f"{moment(at, zone, now)} ({place(zone)} time), in {duration(at - now)}" if at > now else
                "as soon as the scheduler next looks (any moment now)")
        return Waiting("scheduled", f"Scheduled: starts {when}. The customers who match then are chosen at "
                                    "that moment.", f"starts {short_moment(at, zone, now)}", at)
    if status == "paused":
        reason = (campaign.status_reason or "").strip()
        why = reason.rstrip(".") if reason else "paused by hand (here or through the API)"
        short = "paused: " + (_short_reason(reason) if reason else "by hand")
        return Waiting("paused", f"Paused: {why}. Nothing is sent until you resume it.", short)
    return _active(session, campaign, now, settings, zone)


def _short_reason(reason: str) -> str:
    text = reason.split(":")[0].split(";")[0].split(".")[0].strip()
    return text if len(text) <= 40 else text[:39].rstrip() + "…"


def _active(session: Session, campaign: Campaign, now: datetime, settings: Settings, zone: str) -> Waiting:
    r = R
    row = session.execute(select(
        func.count().label("queued"),
        func.count().filter(r.next_attempt_at <= now).label("due"),
        func.count().filter(and_(r.claimed_by.is_not(None), r.claim_expires_at > now)).label("in_flight"),
        func.min(r.next_attempt_at).label("next_at"),
    ).where(r.campaign_id == campaign.id, _IN_QUEUE)).one()
    queued, due, in_flight = int(row.queued or 0), int(row.due or 0), int(row.in_flight or 0)
    if queued == 0:
        if campaign.always_on:
            return Waiting("always_on", "Everyone selected so far has been dealt with. This campaign runs "
                                        "always: customers who newly match are added every day.", "always on")
        return Waiting("finishing", "Every customer has been dealt with: the campaign completes in a moment.",
                       "finishing")
    if due:
        return _due_now(session, campaign, now, settings, due, in_flight)
    next_at = row.next_at
    if isinstance(next_at, str):  # SQLite's MIN loses the column type
        next_at = datetime.fromisoformat(next_at).replace(tzinfo=now.tzinfo)
    return _later(session, campaign, now, next_at, queued, zone)


def _due_now(session: Session, campaign: Campaign, now: datetime, settings: Settings, due: int,
             in_flight: int) -> Waiting:
    groups = due_groups(session, campaign=campaign, conditions=[_IN_QUEUE, R.next_attempt_at <= now])
    window = dict(campaign.send_window or {})
    if groups and all(opening(g, window, now) != now for g in groups):
        waiting = _window_wait(groups, window, now, due)
        if waiting is not None:
            return waiting
    free = [g for g in groups if opening(g, window, now) == now]
    channels = {g.channel for g in free}
    profile = session.get(Profile, campaign.profile_id)
    business = settings_for(profile, settings)
    epoch = now.timestamp()
    provider_keys = [rate.key for ch in channels if (rate := ratelimit.provider_rate(ch, business, account_key(
        business, ch))) is not None]
    if provider_keys:
        blocked = session.execute(select(RateLimit.blocked_until, RateLimit.reason).where(
            RateLimit.key.in_(provider_keys), RateLimit.blocked_until > epoch)
            .order_by(RateLimit.blocked_until.desc()).limit(1)).one_or_none()
        if blocked is not None:
            at = datetime.fromtimestamp(float(blocked.blocked_until), tz=now.tzinfo)
            why = f" ({blocked.reason.rstrip('.')})" if blocked.reason else ""
            return Waiting("provider", f"The provider asked us to slow down{why}: sending goes on "
                                       f"{moment(at, campaign.timezone, now)}, in {duration(at - now)}.", "", at)
    if "call" in channels:
        total, mine = ratelimit.calls_in_progress(session, campaign_id=campaign.id, now=now)
        if mine >= campaign.max_concurrent_calls or total >= settings.vapi_max_concurrent_calls:
            limit = ("this campaign's limit" if mine >= campaign.max_concurrent_calls
                     else "the most the voice account allows at once")
            return Waiting("calls", f"{mine:,} call{'s' if mine != 1 else ''} in progress, {limit}: the next call "
                                    f"starts as soon as one ends ({due:,} customers due).", "calls in progress")
    if campaign.variant_mode == "test_then_winner" and campaign.winner_variant is None:
        waiting_rest = session.scalar(select(func.count()).where(
            R.campaign_id == campaign.id, _IN_QUEUE, R.next_attempt_at <= now, R.ab_group == "rest",
            R.variant.is_(None))) or 0
        if waiting_rest and waiting_rest >= due:
            return _winner(campaign, now, waiting_rest)
    if in_flight == 0:
        stalled = _stalled(session, campaign, now)
        if stalled is not None:
            return stalled
    pace = campaign.rate_limit_per_minute
    left = duration(timedelta(minutes=due / pace)) if due > pace else ""
    sentence = (f"Sending now: {due:,} customer{'s' if due != 1 else ''} due, at up to {pace:,} per minute "
                "(the campaign's pace)" + (f", about {left} to go." if left else "."))
    if in_flight:
        sentence += f" {in_flight:,} being sent at this moment."
    return Waiting("sending", sentence, "sending now", now)


def _winner(campaign: Campaign, now: datetime, waiting: int) -> Waiting:
    deadline = campaign.started_at + timedelta(hours=campaign.test_hours) if campaign.started_at else None
    when = (f"; it is picked once one version is clearly ahead, {moment(deadline, campaign.timezone, now)} at the "
            f"latest (in {duration(deadline - now)})" if deadline is not None and deadline > now else
            "; it is picked any moment now")
    return Waiting("winner", f"Waiting for the A/B test to pick a winner: {waiting:,} customer"
                             f"{'s' if waiting != 1 else ''} then get the winning version{when}.",
                   "waiting for the A/B winner", deadline)


def _stalled(session: Session, campaign: Campaign, now: datetime) -> Waiting | None:
    oldest = session.scalar(select(func.min(R.next_attempt_at)).where(
        R.campaign_id == campaign.id, _IN_QUEUE, R.next_attempt_at <= now))
    if isinstance(oldest, str):
        oldest = datetime.fromisoformat(oldest).replace(tzinfo=now.tzinfo)
    if oldest is None or oldest > now - STALLED_AFTER:
        return None
    last = session.scalar(select(func.max(OutreachAttempt.started_at)).where(
        OutreachAttempt.campaign_id == campaign.id))
    if last is not None and last > now - STALLED_AFTER:
        return None
    return Waiting("stalled", f"Customers have been due for {duration(now - oldest)} but nothing has gone out: check "
                              "that the scheduler is running (`make run` starts it; on a server, "
                              "`python scheduler.py`).", "due, scheduler idle", now)


def _later(session: Session, campaign: Campaign, now: datetime, next_at: datetime, queued: int,
           zone: str) -> Waiting:
    """Nobody is due now: say why the first of them waits until ``next_at``."""
    first = session.execute(select(R.step, R.attempts, R.planned_at, R.ab_group, R.variant, R.customer_phone,
                                   R.error_message)
                            .where(R.campaign_id == campaign.id, _IN_QUEUE, R.next_attempt_at <= next_at)
                            .limit(1)).one()
    steps = steps_of(campaign)
    step = steps[min(first.step, len(steps) - 1)]
    when = f"{moment(next_at, zone, now)} ({place(zone)} time), in {duration(next_at - now)}"
    noun = CHANNEL_NOUNS[step.channel]
    if (campaign.variant_mode == "test_then_winner" and campaign.winner_variant is None
            and first.ab_group == "rest" and first.variant is None):
        rest = session.scalar(select(func.count()).where(R.campaign_id == campaign.id, _IN_QUEUE,
                                                         R.ab_group == "rest", R.variant.is_(None))) or 0
        return _winner(campaign, now, int(rest))
    planned = first.planned_at
    if planned is not None and first.attempts == 0 and first.step == 0 and abs(
            (planned - next_at).total_seconds()) < 1:
        return Waiting("best_time", f"Each customer is contacted at the hour they answer best: the next "
                                    f"{noun[0]} goes out {when} ({queued:,} still to go).", "", next_at)
    if first.attempts > 0:
        why = f" ({first.error_message.rstrip('.')})" if first.error_message else ""
        return Waiting("retry", f"Trying again after a temporary problem{why}: the next try is {when}.", "", next_at)
    group = Group(zones=_zones(first.customer_phone, campaign.timezone), channel=step.channel, count=1,
                  state=compliance.state_rule(first.customer_phone) if first.customer_phone else None)
    window = dict(campaign.send_window or {})
    if opening(group, window, now) != now:
        outside = session.scalar(select(func.count()).where(R.campaign_id == campaign.id, _IN_QUEUE,
                                                            R.next_attempt_at <= next_at + timedelta(minutes=1)))
        waiting = _window_wait([group], window, now, int(outside or 0))
        if waiting is not None:
            return waiting
    if first.step > 0:
        return Waiting("step_delay", f"Nothing is due until the next step: step {first.step + 1} "
                                     f"({noun[1]}) waits {step.delay_hours:g} hours after the one before; the "
                                     f"first {noun[0]} goes out {when}.", "", next_at)
    if group.state is not None and compliance.cap_applies(group.state, step.channel):
        return Waiting("state_cap", f"Waiting out {group.state.name}'s limit of {group.state.cap} calls a day to "
                                    f"one number ({group.state.citation}): the next {noun[0]} goes out {when}.", "",
                       next_at)
    return Waiting("due", f"Nothing is due right now: the next {noun[0]} goes out {when}.", "", next_at)


def many(session: Session, *, profile_id: uuid.UUID, campaigns: Sequence[Campaign], now: datetime | None = None,
         settings: Settings | None = None, timezone: str | None = None) -> dict[uuid.UUID, Waiting]:
    """:func:`why_waiting` for each campaign still to run or running (the campaign list)."""
    now = now or utcnow()
    settings = settings or get_settings()
    out = {}
    for c in campaigns:
        if c.profile_id != profile_id or c.status in ("completed", "cancelled"):
            continue
        zone = timezone or c.timezone
        found = _with_short(_why(session, c, now, settings, zone), zone, now)
        if found is not None:
            out[c.id] = found
    return out


