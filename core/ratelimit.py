"""Rate limits that hold across every scheduler process, with their state in
the ``rate_limits`` table.

Each limit is a GCRA (generic cell rate algorithm) meter: a row keeps the
*theoretical arrival time* (``tat``) of the next permitted action in epoch
seconds.  A permit is granted at ``t`` when ``tat - tolerance <= t``, and then
``tat = max(tat, t) + interval``.  That spaces actions evenly and lets a burst go
early.  A campaign's ``rate_limit_per_minute`` is also a **ceiling** a shop owner
can read literally (DESIGN §13): at most that many permits in any sliding 60 s,
across all processes together.  GCRA alone would admit the limit *plus* the burst
in a minute, so a per-minute meter also keeps the permits of the last minute in
``recent`` (counts per half-second bucket) and grants a permit only while fewer
than the limit fall in the minute before it.  The check is conservative by a
bucket and by :data:`LATE_TOLERANCE` — the latest a send may start after its
permit (the sender gives up a permit it could not use in time) — so what reaches
the provider keeps under the ceiling even when a send starts a little late; the
price is that a steady campaign runs about 2.5 % under its limit.  Because the
state lives in the database, a restarted scheduler does not get a fresh burst.

Permits are reserved for a whole batch in one short transaction that locks
the rows involved (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` serializes writers anyway).  A reservation may be for a
moment a little in the future: the caller waits until then before sending.
``blocked_until`` holds a provider back-off (a 429's ``retry-after``) for
everybody.

Calls are also limited by how many are in progress at once; that count comes
from ``outreach_attempts`` (an accepted call stays open until its end is
reported), taken under the lock of the :data:`CALLS_KEY` row so two processes
cannot both take the last free line.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import dialect_insert, utcnow
from core.models import OutreachAttempt, RateLimit

CALLS_KEY = "calls:in-progress"
WINDOW = 60.0  # seconds of the ceiling's sliding window
BUCKET = 0.5  # seconds per bucket of ``recent``
# the latest a send may start after its permit's moment; a later one gives the permit up
LATE_TOLERANCE = 1.0
# a call whose end was never reported stops counting after this long (and is reconciled)
CALL_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Rate:
    """One meter: at most one action every ``interval`` seconds, ``tolerance`` seconds early
    (GCRA), and — when ``ceiling`` is set — at most ``ceiling`` actions in any sliding minute."""

    key: str
    interval: float
    tolerance: float = 0.0
    ceiling: int = 0


def burst_of(per_minute: int) -> int:
    """How many actions of a minute's allowance may go at once: max(2, 10 % of the limit)."""
    return max(2, per_minute // 10)


def per_minute(key: str, limit: int) -> Rate:
    """At most ``limit`` actions in any sliding 60 s, a burst of :func:`burst_of` ``(limit)`` early."""
    interval = 60.0 / limit
    return Rate(key, interval, (burst_of(limit) - 1) * interval, ceiling=limit)


def per_second(key: str, rate: float) -> Rate:
    """Evenly spaced actions, ``rate`` per second, no burst (providers count per second)."""
    return Rate(key, 1.0 / rate, 0.0)


def campaign_key(campaign_id: uuid.UUID) -> str:
    return f"campaign:{campaign_id}"


def provider_key(channel: str, account: str = "") -> str:
    """The limiter row of the provider account behind ``channel`` (shared by every campaign that sends
    through that account; ``account`` from :func:`core.senders.account_key`)."""
    return f"provider:{channel}:{account}" if account else f"provider:{channel}"


def campaign_rate(campaign_id: uuid.UUID, limit_per_minute: int) -> Rate:
    return per_minute(campaign_key(campaign_id), limit_per_minute)


PER_SECOND_SETTINGS = {"resend": "resend_max_per_second", "smtp": "smtp_max_per_second",
                       "twilio": "twilio_max_per_second", "vonage": "vonage_max_per_second",
                       "sns": "sns_max_per_second"}


def provider_rate(channel: str, settings: Settings, account: str = "") -> Rate | None:
    """The provider's per-second cap for ``channel`` (calls are capped by concurrency instead); the
    sandbox is as fast as the provider it stands for."""
    if channel == "call":
        return None
    provider = settings.provider_for(channel)
    return per_second(provider_key(channel, account), float(getattr(settings, PER_SECOND_SETTINGS[provider])))


@dataclass
class _State:
    tat: float
    blocked_until: float
    recent: list[list[float]] = field(default_factory=list)  # [bucket start, count], oldest first
    dirty: bool = False

    def in_window(self, at: float) -> tuple[int, list[list[float]]]:
        """How many permits count against a permit at ``at`` (conservatively), and those buckets."""
        since = at - WINDOW - LATE_TOLERANCE - BUCKET
        live = [b for b in self.recent if b[0] > since]
        return int(sum(b[1] for b in live)), live


def _bucket(at: float) -> float:
    return math.floor(at / BUCKET) * BUCKET


def _recent(raw: object) -> list[list[float]]:
    if not isinstance(raw, list):
        return []
    return sorted([float(b[0]), float(b[1])] for b in raw if isinstance(b, list | tuple) and len(b) == 2)


def lock(session: Session, keys: Iterable[str]) -> dict[str, _State]:
    """Lock (creating when missing) the limiter rows of ``keys``, in key order."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}

    def fetch() -> dict[str, _State]:
        rows = session.execute(select(RateLimit.key, RateLimit.tat, RateLimit.blocked_until, RateLimit.recent)
                               .where(RateLimit.key.in_(wanted)).order_by(RateLimit.key).with_for_update()).all()
        return {k: _State(float(t or 0.0), float(b or 0.0), _recent(r)) for k, t, b, r in rows}

    states = fetch()
    missing = [k for k in wanted if k not in states]
    if missing:
        now = utcnow()
        session.execute(dialect_insert(session, RateLimit).values(
            [{"key": k, "tat": 0.0, "blocked_until": 0.0, "recent": [], "updated_at": now} for k in missing]
        ).on_conflict_do_nothing(index_elements=["key"]))
        states = fetch()
    return states


def save(session: Session, states: dict[str, _State]) -> None:
    """Write back the rows :func:`reserve` changed."""
    changed = [{"k": k, "tat": s.tat, "blocked_until": s.blocked_until, "recent": s.recent}
               for k, s in states.items() if s.dirty]
    if not changed:
        return
    table = cast(Table, RateLimit.__table__)
    session.execute(
        update(table).where(table.c.key == bindparam("k"))
        .values(tat=bindparam("tat"), blocked_until=bindparam("blocked_until"),
                recent=bindparam("recent", type_=table.c.recent.type), updated_at=utcnow()),
        changed,
    )
    for s in states.values():
        s.dirty = False


def _ceiling_allows(rate: Rate, state: _State, at: float) -> float:
    """The earliest moment at or after ``at`` when the sliding minute has room for one more permit."""
    if not rate.ceiling:
        return at
    count, live = state.in_window(at)
    if count < rate.ceiling:
        return at
    # the oldest buckets must leave the window until fewer than the ceiling remain in it
    excess = count - rate.ceiling + 1
    for start, n in live:
        excess -= int(n)
        if excess <= 0:
            return max(at, start + WINDOW + LATE_TOLERANCE + BUCKET)
    return at


def earliest(rates: Sequence[Rate], states: dict[str, _State], now: float) -> float:
    """The earliest moment a permit of every meter in ``rates`` could be granted."""
    t = now
    for _ in range(4):  # each constraint can only push the moment later; settles at once in practice
        before = t
        for rate in rates:
            state = states[rate.key]
            t = max(t, state.tat - rate.tolerance, state.blocked_until)
            t = _ceiling_allows(rate, state, t)
        if t == before:
            break
    return t


def take(rates: Sequence[Rate], states: dict[str, _State], at: float) -> None:
    """Consume one permit of every meter in ``rates`` at ``at``."""
    for rate in rates:
        state = states[rate.key]
        state.tat = max(state.tat, at) + rate.interval
        if rate.ceiling:
            _, live = state.in_window(at)
            bucket = _bucket(at)
            if live and live[-1][0] == bucket:
                live[-1][1] += 1
            else:
                live.append([bucket, 1.0])
                live.sort()
            state.recent = live
        state.dirty = True


def reserve(session: Session, demands: Sequence[Sequence[Rate]], *, now: float, horizon: float,
            states: dict[str, _State] | None = None) -> list[float | None]:
    """Reserve one permit per demand (each demand names the meters it needs), in order.

    Returns, per demand, the epoch second at which it may go (``now`` or a little
    later, at most ``now + horizon``), or ``None`` when no permit is free that soon.
    The caller's transaction holds the rows' locks; commit it promptly.
    """
    if states is None:
        states = lock(session, (r.key for d in demands for r in d))
        own = True
    else:
        own = False
    out: list[float | None] = []
    for rates in demands:
        at = earliest(rates, states, now)
        if at > now + horizon:
            out.append(None)
            continue
        take(rates, states, at)
        out.append(at)
    if own:
        save(session, states)
    return out


def peek(session: Session, rates: Sequence[Rate], *, now: float) -> float:
    """Without locking: the earliest moment a permit of all ``rates`` could be granted."""
    return earliest(rates, read_states(session, [r.key for r in rates]), now)


def capacity(rates: Sequence[Rate], *, now: float, horizon: float, states: dict[str, _State]) -> int:
    """How many permits of all ``rates`` fit before ``now + horizon`` (read-only estimate)."""
    n = math.inf
    for rate in rates:
        state = states.get(rate.key, _State(0.0, 0.0))
        start = _ceiling_allows(rate, state, max(now, state.tat - rate.tolerance, state.blocked_until))
        if start > now + horizon:
            return 0
        # permits at start, start + interval, … while tat - tolerance stays before the horizon
        tat = max(state.tat, start)
        n = min(n, int((now + horizon + rate.tolerance - tat) / rate.interval) + 1)
        if rate.ceiling:
            n = min(n, rate.ceiling - state.in_window(now + horizon)[0])
    return 0 if n is math.inf else max(0, int(n))


def read_states(session: Session, keys: Iterable[str]) -> dict[str, _State]:
    """Without locking: the current state of ``keys`` (a key never used yet is idle)."""
    wanted = sorted(set(keys))
    rows = session.execute(select(RateLimit.key, RateLimit.tat, RateLimit.blocked_until, RateLimit.recent)
                           .where(RateLimit.key.in_(wanted))).all()
    states = {k: _State(float(t or 0.0), float(b or 0.0), _recent(r)) for k, t, b, r in rows}
    for k in wanted:
        states.setdefault(k, _State(0.0, 0.0))
    return states


def block(session: Session, key: str, *, until: float, reason: str | None = None) -> None:
    """Hold every permit of ``key`` until ``until`` (a provider asked us to back off)."""
    states = lock(session, [key])
    state = states[key]
    if until > state.blocked_until:
        session.execute(update(RateLimit).where(RateLimit.key == key)
                        .values(blocked_until=until, reason=reason, updated_at=utcnow()))


def calls_in_progress(session: Session, *, campaign_id: uuid.UUID, now: datetime) -> tuple[int, int]:
    """``(everywhere, this campaign)``: calls placed whose end has not been reported yet
    (including tries in flight), ignoring calls older than :data:`CALL_TIMEOUT`."""
    a = OutreachAttempt
    since = now - CALL_TIMEOUT
    total, mine = session.execute(
        select(func.count(), func.count().filter(a.campaign_id == campaign_id))
        .where(a.channel == "call", a.completed_at.is_(None), a.started_at > since)
    ).one()
    return int(total or 0), int(mine or 0)


class Pacer:
    """Keeps the moments this process *starts* sends under one provider limit at least an
    interval apart.

    The database reservations space the planned moments; a sending thread that picks
    up its message late (busy with the previous one) would otherwise start right
    before the next one and bunch the requests up at the provider.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def turn(self, rate: Rate, at: float, now: float) -> float:
        """The moment to start a send reserved for ``at`` (epoch seconds)."""
        with self._lock:
            start = max(at, now, self._last.get(rate.key, 0.0) + rate.interval)
            self._last[rate.key] = start
        return start



