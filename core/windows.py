"""When a recipient may be contacted: the campaign's send window and, for calls
and SMS, the legal calling hours, both in the recipient's local time.

A recipient's local time comes from their phone number
(:func:`core.contacts.phone_timezones`); a number that may ring in several zones
(+1 208 → Boise and Los Angeles; toll-free → every NANP zone) is inside a window
only when it is inside it in *every* zone.  A North American number rings in
every zone its area code spans, not only the one its exchange is listed in:
a number moves with its owner inside the area code, and an overlay's exchanges
(Florida's 448 over the 850 panhandle) are not listed at all — so a Pensacola
customer is never called at 08:00 Eastern, 07:00 their time.  Without a usable
zone the campaign's time zone is used.

:func:`next_opening` answers "now, or the earliest instant after now when all
zones are inside the window" — or ``None`` when no such instant exists (e.g. a
toll-free number and a narrow window), which the dispatcher turns into a
failure that says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from core.contacts import phone_timezones

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# US TCPA calling hours (47 CFR 64.1200(c)(1)), applied to calls and SMS everywhere
QUIET_START = 8 * 60
QUIET_END = 21 * 60
QUIET_CHANNELS = frozenset({"call", "sms"})
# a weekly window repeats; two weeks also cover zones whose DST changes on different dates
_HORIZON_DAYS = 15


@dataclass(frozen=True)
class Window:
    """Allowed local minutes ``[start, end)`` on ``days`` (0 = Monday)."""

    start: int
    end: int
    days: frozenset[int]

    @property
    def empty(self) -> bool:
        return self.start >= self.end or not self.days


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


@lru_cache(maxsize=1024)
def _window(start: str, end: str, days: tuple[str, ...], hours: tuple[int, int] | None) -> Window:
    lo, hi = _minutes(start), _minutes(end)
    if hours is not None:
        lo, hi = max(lo, hours[0]), min(hi, hours[1])
    return Window(lo, hi, frozenset(DAYS.index(d) for d in days if d in DAYS))


def calling_hours(quiet_hours: bool, hours: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The legal hours (minutes after local midnight) a channel is bound by: a state's stricter hours
    when given, else the federal 08:00–21:00 for calls and texts, else none (e-mail)."""
    if hours is not None:
        return hours
    return (QUIET_START, QUIET_END) if quiet_hours else None


def effective_window(send_window: Mapping[str, Any] | None, *, quiet_hours: bool,
                     hours: tuple[int, int] | None = None) -> Window:
    """The campaign's window (default every day, 00:00–24:00), narrowed to the calling hours when asked
    (``hours``: a state's own, stricter ones)."""
    sw = send_window or {}
    return _window(str(sw.get("start") or "00:00"), str(sw.get("end") or "24:00"),
                   tuple(sw.get("days") or DAYS), calling_hours(quiet_hours, hours))


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def inside(moment: datetime, zone: str, window: Window) -> bool:
    """Whether ``moment`` falls inside ``window`` in ``zone``'s local time."""
    local = moment.astimezone(_zone(zone))
    if local.weekday() not in window.days:
        return False
    minute = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 60_000_000
    return window.start <= minute < window.end


def _local_to_utc(day: date, minute: int, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which ``zone`` shows ``minute`` on ``day``, including, for a
    time skipped by a DST change, the instant of the change itself."""
    local = datetime.combine(day, time(minute // 60, minute % 60), zone)
    early = local.replace(fold=0).astimezone(UTC)
    late = local.replace(fold=1).astimezone(UTC)
    out = [early, late]
    if early > late:  # a gap: the clock jumped over this time; the jump is the first instant past it
        lo, hi = late, early
        while hi - lo > timedelta(seconds=1):
            mid = lo + (hi - lo) / 2
            if mid.astimezone(zone).utcoffset() == hi.astimezone(zone).utcoffset():
                hi = mid
            else:
                lo = mid
        out.append(hi)
    return out


def next_opening(now: datetime, *, zones: Iterable[str], send_window: Mapping[str, Any] | None,
                 quiet_hours: bool, hours: tuple[int, int] | None = None) -> datetime | None:
    """``now`` when every zone is inside the window, else the earliest later instant
    when they all are, else ``None`` (no such instant in the coming two weeks)."""
    return _next_opening(now, tuple(sorted(set(zones))),
                         effective_window(send_window, quiet_hours=quiet_hours, hours=hours))


def _next_opening(now: datetime, zones: tuple[str, ...], window: Window) -> datetime | None:
    if window.empty or not zones:
        return None
    if all(inside(now, z, window) for z in zones):
        return now
    # the earliest instant inside every zone's window is the opening of one of them
    candidates: set[datetime] = set()
    for name in zones:
        zone = _zone(name)
        first = now.astimezone(zone).date() - timedelta(days=1)
        for offset in range(_HORIZON_DAYS + 1):
            day = first + timedelta(days=offset)
            if day.weekday() in window.days:
                candidates.update(_local_to_utc(day, window.start, zone))
    horizon = now + timedelta(days=_HORIZON_DAYS)
    for moment in sorted(c for c in candidates if now < c <= horizon):
        if all(inside(moment, z, window) for z in zones):
            return moment
    return None


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def hhmm_range(start: int, end: int) -> str:
    return f"{hhmm(start)}–{hhmm(end)}"


# overlays that share their area's zones but whose exchanges the time-zone data does not list yet
_OVERLAYS = {"448": "850", "930": "812", "729": "423", "364": "270"}


@lru_cache(maxsize=1)
def _split_area_codes() -> dict[str, tuple[str, ...]]:
    """North American area codes whose exchanges lie in more than one zone, with all of them (from the
    time-zone data ``phonenumbers`` ships, which :func:`phone_timezones` has loaded already)."""
    from phonenumbers.tzdata import TIMEZONE_DATA

    spans: dict[str, set[str]] = {}
    for prefix, zones in TIMEZONE_DATA.items():
        if prefix.startswith("1") and len(prefix) >= 4:
            spans.setdefault(prefix[1:4], set()).update(zones)
    split = {code: tuple(sorted(zones)) for code, zones in spans.items() if len(zones) > 1}
    for overlay, area in _OVERLAYS.items():
        if area in split:
            split[overlay] = split[area]
    return split


def recipient_zones(phone: str | None, fallback: str) -> tuple[str, ...]:
    """The zones a recipient may be in: their phone's (for a North American number, every zone of its
    area code), else ``fallback`` (the campaign's)."""
    zones = phone_timezones(phone) if phone else ()
    if zones and phone and phone.startswith("+1") and len(phone) == 12:
        extra = _split_area_codes().get(phone[2:5], ())
        zones = zones + tuple(z for z in extra if z not in zones)
    return zones or (fallback,)


def describe(zones: Iterable[str], send_window: Mapping[str, Any] | None, *, quiet_hours: bool,
             hours: tuple[int, int] | None = None) -> str:
    """Why no time fits, in words a shop owner can act on."""
    window = effective_window(send_window, quiet_hours=quiet_hours, hours=hours)
    legal = calling_hours(quiet_hours, hours)
    names = sorted(set(zones))
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    hours = f"{window.start // 60:02d}:{window.start % 60:02d}–{window.end // 60:02d}:{window.end % 60:02d}"
    if window.empty:
        return (f"the send window leaves no time to reach this customer"
                f"{' within the legal calling hours ' + hhmm_range(*legal) if legal else ''}")
    return (f"no time is inside the send window ({hours} local time) in every time zone this number may "
            f"ring in ({shown})")
