"""What the dashboard's tables and charts show, counted in SQL.

Every function is scoped to one profile and aggregates in the database
(``GROUP BY``, ``COUNT … FILTER``-style sums, time buckets); only aggregated
rows or one page of rows travel to Python.  Results are pandas DataFrames (for
tables and Plotly) or small dataclasses.

Counting is ``core.results.count_columns``, the one counting function:
*customers* are the recipients a campaign contacts (its holdout group is counted
apart), *sent* = with ``sent_at``, *delivered* = ever delivered, *responded* =
with ``responded_at``, *converted* = converted; every rate is out of the
customers sent to, on the funnel as in the tables.  The status breakdown says
where every customer is *now* (a delivered e-mail whose customer then replied is
"Answered"/"Delivered" by its latest status), the funnel what *ever* happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import ColumnElement, and_, case, func, literal_column, or_, select
from sqlalchemy.orm import Session

from core import waiting
from core.campaigns import get_campaign, get_recipient, list_campaigns, list_recipients
from core.db import time_bucket, utcnow
from core.lift import two_proportion_z_test
from core.models import (
    EVENT_TYPES,
    RECIPIENT_STATUSES,
    Campaign,
    CampaignRecipient,
    OutreachAttempt,
    OutreachEvent,
)
from core.results import count_columns
from core.targeting import channels_of

R = CampaignRecipient
E = OutreachEvent
A = OutreachAttempt

STATUS_LABELS: dict[str, str] = {
    "draft": "Draft", "scheduled": "Scheduled", "active": "Running", "paused": "Paused",
    "completed": "Completed", "cancelled": "Stopped",
}
RECIPIENT_STATUS_LABELS: dict[str, str] = {
    "pending": "Waiting", "queued": "Queued", "sent": "Sent", "delivered": "Delivered", "answered": "Answered",
    "failed": "Failed", "opted_out": "Opted out", "holdout": "Holdout",
}
# what each status means, where a label alone would leave people guessing
RECIPIENT_STATUS_MEANINGS: dict[str, str] = {
    "pending": "Waiting (nothing sent yet)", "queued": "Being sent", "sent": "Sent (no delivery report yet)",
    "delivered": "Delivered", "answered": "Answered the call", "failed": "Failed (bounced or could not be reached)",
    "opted_out": "Opted out (asked to stop or marked as spam)",
    "holdout": "Holdout (kept back on purpose, never contacted)",
}
# statuses of customers a campaign contacts (the holdout group is shown apart)
CONTACTED_STATUSES = tuple(s for s in RECIPIENT_STATUSES if s != "holdout")
EVENT_LABELS: dict[str, str] = {
    "sent": "Sent", "delivered": "Delivered", "delivery_delayed": "Delivery delayed", "opened": "Opened",
    "clicked": "Clicked", "answered": "Answered", "not_answered": "Not answered", "replied": "Replied",
    "converted": "Converted", "bounced": "Bounced", "complained": "Marked as spam", "failed": "Failed",
    "opted_out": "Opted out", "opted_in": "Opted back in", "status": "Status update",
}
CHANNEL_LABELS: dict[str, str] = {"call": "Call", "email": "E-mail", "sms": "SMS", "multi": "Multi-channel"}
TYPE_LABELS: dict[str, str] = {"winback": "Win-back", "followup": "Follow-up", "promotional": "Promotion",
                               "feedback": "Feedback"}
SIGNIFICANCE_LEVEL = 0.05


# --- SQL helpers -------------------------------------------------------------------------------


def _sum_if(cond: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


_STAT_LABELS = ("recipients", "sent", "delivered", "answered", "responded", "converted", "failed", "opted_out",
                "holdout", "customers")
_STAT_FIELDS = ("total_recipients", "sent_count", "delivered_count", "answered_count", "responded_count",
                "converted_count", "failed_count", "opted_out_count", "holdout_count", "customers")


def _counter_columns(*, customers: bool = False) -> list[ColumnElement[Any]]:
    """The recipient counters (``core.results.count_columns``), plus how many are done; ``customers``
    (different customers, a DISTINCT) only when asked."""
    n = len(_STAT_LABELS) if customers else len(_STAT_LABELS) - 1
    return [
        *count_columns(_STAT_FIELDS[:n], labels=_STAT_LABELS[:n]),
        # a contacted recipient with nothing left to do (the work queue's definition) or given up on
        _sum_if(and_(R.status != "holdout", or_(R.next_attempt_at.is_(None),
                                                 R.status.in_(("failed", "opted_out"))))).label("done"),
    ]


def _rate(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def _scope(profile_id: uuid.UUID, campaign_id: uuid.UUID | None) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [R.profile_id == profile_id]
    if campaign_id is not None:
        conds.append(R.campaign_id == campaign_id)
    return conds


def _event_scope(profile_id: uuid.UUID, campaign_id: uuid.UUID | None, now: datetime) -> list[ColumnElement[bool]]:
    # an event in the future is a simulated sandbox outcome that has not happened yet
    conds: list[ColumnElement[bool]] = [E.profile_id == profile_id, E.occurred_at <= now,
                                        E.campaign_id.is_not(None)]
    if campaign_id is not None:
        conds.append(E.campaign_id == campaign_id)
    return conds


# --- the campaign list -------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignStats:
    """Counters of one campaign's recipients (``recipients``: the customers it contacts; ``holdout``: those
    kept back; ``customers``: different customers, when counted — across campaigns one counts once)."""

    recipients: int = 0
    sent: int = 0
    delivered: int = 0
    answered: int = 0
    responded: int = 0
    converted: int = 0
    failed: int = 0
    opted_out: int = 0
    holdout: int = 0
    done: int = 0
    customers: int = 0

    @property
    def progress(self) -> float:
        """Share of recipients with nothing left to do (0–1)."""
        return _rate(self.done, self.recipients)

    @property
    def response_rate(self) -> float:
        return _rate(self.responded, self.sent)

    @property
    def conversion_rate(self) -> float:
        return _rate(self.converted, self.sent)


def campaign_stats(session: Session, *, profile_id: uuid.UUID,
                   campaign_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, CampaignStats]:
    """Counters of several campaigns in one grouped query (missing campaigns: all zero)."""
    ids = list(campaign_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(R.campaign_id, *_counter_columns())
        .where(R.profile_id == profile_id, R.campaign_id.in_(ids)).group_by(R.campaign_id)
    ).all()
    out = {cid: CampaignStats() for cid in ids}
    for row in rows:
        out[row.campaign_id] = _stats(row)
    return out


def _stats(row: Any) -> CampaignStats:
    values = row._mapping
    stats = {k: int(values.get(k) or 0) for k in CampaignStats.__dataclass_fields__}
    if "customers" not in values:  # within one campaign a customer is one recipient (re-enrolments aside)
        stats["customers"] = stats["recipients"]
    return CampaignStats(**stats)


def campaign_table(
    session: Session, *, profile_id: uuid.UUID, status: str | None = None, campaign_type: str | None = None,
    created_after: datetime | None = None, created_before: datetime | None = None, limit: int = 50,
    offset: int = 0, timezone: str = "UTC", now: datetime | None = None,
) -> tuple[pd.DataFrame, int]:
    """A page of campaigns with their progress, key rates and what they wait for ("next send 09:00"), and the
    total matching (times in the schedule and next-send columns are in ``timezone``)."""
    rows, total = list_campaigns(session, profile_id=profile_id, status=status, campaign_type=campaign_type,
                                 created_after=created_after, created_before=created_before, limit=limit,
                                 offset=offset)
    stats = campaign_stats(session, profile_id=profile_id, campaign_ids=[c.id for c in rows])
    waits = waiting.many(session, profile_id=profile_id, campaigns=rows, now=now, timezone=timezone)
    per_day = enrolments_per_day(session, campaign_ids=[c.id for c in rows if c.always_on], now=now or utcnow())
    records = []
    for c in rows:
        s = stats[c.id]
        wait = waits.get(c.id)
        always = bool(c.always_on) and c.status == "active"
        records.append({
            "id": str(c.id),
            "name": c.name,
            "status": c.status,
            "status_label": ALWAYS_ON_LABEL if always else STATUS_LABELS.get(c.status, c.status),
            "type": TYPE_LABELS.get(c.campaign_type, c.campaign_type),
            "channel": _channel_text(c.outreach_method, c.steps),
            "schedule": (f"Enrols {per_day.get(c.id, 0.0):g} a day (last {ENROLMENT_DAYS} days)" if always
                         else _schedule_text(c, timezone)),
            "recipients": s.recipients,
            "done": s.done,
            "progress": s.progress,
            "progress_text": f"{s.done:,} of {s.recipients:,}",
            "response_rate": s.response_rate,
            "conversion_rate": s.conversion_rate,
            "created_at": c.created_at,
            "status_reason": c.status_reason,
            "next_send": wait.short if wait is not None else None,
            "waiting": wait.sentence if wait is not None else None,
            "open": f"campaign?id={c.id}",
        })
    columns = ["id", "name", "status", "status_label", "type", "channel", "schedule", "recipients", "done",
               "progress", "progress_text", "response_rate", "conversion_rate", "created_at", "status_reason",
               "next_send", "waiting", "open"]
    return pd.DataFrame.from_records(records, columns=columns), total


ALWAYS_ON_LABEL = "Always on"
ENROLMENT_DAYS = 7


def enrolments_per_day(session: Session, *, campaign_ids: Sequence[uuid.UUID], now: datetime,
                       days: int = ENROLMENT_DAYS) -> dict[uuid.UUID, float]:
    """How many customers each always-on campaign enrolled per day, on average over the last ``days``
    (holdout enrolments included: they joined too)."""
    if not campaign_ids:
        return {}
    rows = session.execute(select(R.campaign_id, func.count()).where(
        R.campaign_id.in_(list(campaign_ids)), R.created_at > now - timedelta(days=days))
        .group_by(R.campaign_id)).all()
    return {cid: round(int(n) / days, 1) for cid, n in rows}


def _channel_text(method: str, steps: Sequence[dict[str, Any]] | None) -> str:
    if method == "multi":
        return " → ".join(CHANNEL_LABELS.get(s.get("channel", ""), "?") for s in steps or []) or "Multi-channel"
    return CHANNEL_LABELS.get(method, method)


def _schedule_text(c: Campaign, timezone: str) -> str:
    if c.completed_at is not None:
        return ("Stopped " if c.status == "cancelled" else "Finished ") + _short(c.completed_at, timezone)
    if c.started_at is not None:
        return "Started " + _short(c.started_at, timezone)
    if c.scheduled_at is not None:
        return "Starts " + _short(c.scheduled_at, timezone)
    return "Not scheduled"


def _short(when: datetime, timezone: str) -> str:
    local = when.astimezone(ZoneInfo(timezone))
    return f"{local.strftime('%b')} {local.day}, {local.strftime('%H:%M')}"


# --- one campaign's progress ---------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a campaign stands right now."""

    stats: CampaignStats
    by_status: dict[str, int]
    due_now: int
    in_flight: int
    next_due_at: datetime | None
    last_event_at: datetime | None


def campaign_progress(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                      now: datetime | None = None) -> Progress:
    """Counters, status breakdown, what is due and what is in flight (two grouped queries)."""
    now = now or utcnow()
    get_campaign(session, profile_id=profile_id, campaign_id=campaign_id)
    conds = _scope(profile_id, campaign_id)
    row = session.execute(select(
        *_counter_columns(),
        _sum_if(and_(R.next_attempt_at.is_not(None), R.next_attempt_at <= now,
                     R.status.not_in(("failed", "opted_out")))).label("due_now"),
        _sum_if(and_(R.claimed_by.is_not(None), R.claim_expires_at > now)).label("in_flight"),
        func.min(case((R.status.not_in(("failed", "opted_out")), R.next_attempt_at))).label("next_due_at"),
    ).where(*conds)).one()
    by_status = dict.fromkeys(RECIPIENT_STATUSES, 0)
    for status, n in session.execute(select(R.status, func.count()).where(*conds).group_by(R.status)):
        by_status[status] = int(n)
    last_event = session.scalar(select(func.max(E.occurred_at)).where(*_event_scope(profile_id, campaign_id, now)))
    next_due = row.next_due_at
    if isinstance(next_due, str):  # SQLite's MIN over a CASE loses the column type
        next_due = pd.Timestamp(next_due, tz="UTC").to_pydatetime()
    return Progress(stats=_stats(row), by_status=by_status, due_now=int(row.due_now or 0),
                    in_flight=int(row.in_flight or 0), next_due_at=next_due, last_event_at=last_event)


# --- recipients -----------------------------------------------------------------------------------


RECIPIENT_COLUMNS = ["id", "customer_id", "customer", "phone", "email", "variant", "status", "status_label", "step",
                     "attempts", "channel", "sent_at", "delivered_at", "answered_at", "responded_at", "converted",
                     "error", "next_attempt_at", "waiting_reason"]


def recipients_page(
    session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID, status: str | None = None,
    search: str | None = None, limit: int = 50, offset: int = 0,
) -> tuple[pd.DataFrame, int]:
    """One page of a campaign's recipients as a table (LIMIT/OFFSET in SQL), and the total matching."""
    rows, total = list_recipients(session, profile_id=profile_id, campaign_id=campaign_id, status=status,
                                  search=search, limit=limit, offset=offset)
    records = [{
        "id": str(r.id), "customer_id": str(r.customer_id) if r.customer_id else None,
        "customer": r.customer_name or "—", "phone": r.customer_phone, "email": r.customer_email,
        "variant": r.variant, "status": r.status, "status_label": RECIPIENT_STATUS_LABELS.get(r.status, r.status),
        "step": r.step + 1, "attempts": r.attempts, "channel": CHANNEL_LABELS.get(r.last_channel or ""),
        "sent_at": r.sent_at, "delivered_at": r.delivered_at, "answered_at": r.answered_at,
        "responded_at": r.responded_at, "converted": bool(r.converted), "error": r.error_message,
        "next_attempt_at": r.next_attempt_at,
        "waiting_reason": r.waits_because,
    } for r in rows]
    return pd.DataFrame.from_records(records, columns=RECIPIENT_COLUMNS), total


@dataclass
class RecipientDetail:
    """Everything known about one recipient's outreach."""

    id: uuid.UUID
    campaign_id: uuid.UUID
    customer_name: str | None
    customer_phone: str | None
    customer_email: str | None
    status: str
    variant: str | None
    step: int
    attempts_made: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    answered_at: datetime | None
    responded_at: datetime | None
    converted: bool
    converted_at: datetime | None
    error_message: str | None
    attempts: pd.DataFrame
    events: pd.DataFrame
    transcript: str | None = None
    summary: str | None = None
    recording_url: str | None = None
    reply: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    waiting_reason: str | None = None  # why the next try waits until next_attempt_at, when it was put off


_TRANSCRIPT_KEYS = ("transcript",)
_SUMMARY_KEYS = ("summary", "call_summary")
_RECORDING_KEYS = ("recording_url", "recordingUrl", "combinedUrl", "stereoUrl")
_REPLY_KEYS = ("reply", "Body", "body", "text")


def _find(data: Any, keys: Sequence[str], depth: int = 0) -> str | None:
    """The first non-empty text under one of ``keys`` anywhere in a nested payload."""
    if depth > 6:
        return None
    if isinstance(data, dict):
        for key in keys:
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return value
        for value in data.values():
            found = _find(value, keys, depth + 1)
            if found:
                return found
    elif isinstance(data, list):
        for value in data:
            found = _find(value, keys, depth + 1)
            if found:
                return found
    return None


_EVENT_ORDER = {kind: n for n, kind in enumerate(EVENT_TYPES)}


def recipient_detail(session: Session, *, profile_id: uuid.UUID, recipient_id: uuid.UUID,
                     now: datetime | None = None) -> RecipientDetail:
    """One recipient with their attempts, events, and the call transcript/summary or reply when there is one."""
    now = now or utcnow()
    r = get_recipient(session, profile_id=profile_id, recipient_id=recipient_id)
    attempts = session.execute(
        select(A.step, A.attempt_no, A.channel, A.provider, A.outcome, A.provider_message_id, A.error_code,
               A.error_message, A.started_at, A.finished_at)
        .where(A.recipient_id == r.id, A.profile_id == profile_id).order_by(A.started_at, A.step, A.attempt_no)
    ).all()
    attempts_df = pd.DataFrame.from_records([{
        "step": a.step + 1, "try": a.attempt_no, "channel": CHANNEL_LABELS.get(a.channel, a.channel),
        "provider": a.provider, "outcome": a.outcome or "in progress", "message id": a.provider_message_id,
        "error": " ".join(x for x in (a.error_code, a.error_message) if x) or None,
        "started": a.started_at, "finished": a.finished_at,
    } for a in attempts], columns=["step", "try", "channel", "provider", "outcome", "message id", "error", "started",
                                   "finished"])
    events = session.execute(
        select(E.type, E.channel, E.provider, E.occurred_at, E.payload, E.error_message)
        .where(E.recipient_id == r.id, E.profile_id == profile_id, E.occurred_at <= now)
        .order_by(E.occurred_at, E.received_at)
    ).all()
    # events of one moment in the order they happen in (sent before delivered before opened)
    events = sorted(events, key=lambda e: (e.occurred_at, _EVENT_ORDER.get(e.type, len(_EVENT_ORDER))))
    events_df = pd.DataFrame.from_records([{
        "time": e.occurred_at, "event": EVENT_LABELS.get(e.type, e.type),
        "channel": CHANNEL_LABELS.get(e.channel or "", e.channel), "provider": e.provider,
        "note": e.error_message or _find(e.payload, ("reason", "endedReason", "ErrorCode", "error", "status")),
    } for e in events], columns=["time", "event", "channel", "provider", "note"])
    sources: list[Any] = [r.response_data or {}]
    sources += [e.payload for e in reversed(events) if e.payload]
    detail = RecipientDetail(
        id=r.id, campaign_id=r.campaign_id, customer_name=r.customer_name, customer_phone=r.customer_phone,
        customer_email=r.customer_email, status=r.status, variant=r.variant, step=r.step, attempts_made=r.attempts,
        next_attempt_at=r.next_attempt_at, sent_at=r.sent_at, delivered_at=r.delivered_at,
        answered_at=r.answered_at, responded_at=r.responded_at, converted=bool(r.converted),
        converted_at=r.converted_at, error_message=r.error_message, attempts=attempts_df, events=events_df,
        waiting_reason=r.waits_because,
        outcome=dict(r.response_data or {}),
    )
    for source in sources:
        detail.transcript = detail.transcript or _find(source, _TRANSCRIPT_KEYS)
        detail.summary = detail.summary or _find(source, _SUMMARY_KEYS)
        detail.recording_url = detail.recording_url or _find(source, _RECORDING_KEYS)
    replies = [e.payload for e in reversed(events) if e.type == "replied" and e.payload]
    detail.reply = _find(r.response_data or {}, ("reply",)) or next(
        (text for text in (_find(p, _REPLY_KEYS) for p in replies) if text), None)
    return detail


# --- charts ------------------------------------------------------------------------------------------


def _channels_for(session: Session, profile_id: uuid.UUID, campaign_id: uuid.UUID | None) -> list[str]:
    if campaign_id is None:
        return ["call", "email", "sms"]
    c = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id)
    return channels_of(c.outreach_method, c.steps)


def funnel(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID | None = None,
           now: datetime | None = None) -> pd.DataFrame:
    """Customers → sent → delivered → answered/opened → responded → converted: how many *ever* got
    that far (counted by ``core.results.count_columns``), and each stage's share **of sent** — the
    base of every rate the dashboard shows (``None`` for the first stage, which comes before sending).

    Stages that cannot happen on the campaign's channels are left out (a call
    is not "delivered", an SMS is not "opened").
    """
    now = now or utcnow()
    channels = _channels_for(session, profile_id, campaign_id)
    engaged_events = (select(E.recipient_id).where(*_event_scope(profile_id, campaign_id, now),
                                                    E.type.in_(("opened", "clicked", "answered")),
                                                    E.recipient_id.is_not(None)))
    row = session.execute(select(
        *_counter_columns(),
        _sum_if(or_(R.answered_at.is_not(None), R.id.in_(engaged_events))).label("engaged"),
    ).where(*_scope(profile_id, campaign_id))).one()
    engaged_labels: dict[tuple[str, ...], str] = {("call",): "Answered", ("email",): "Opened"}
    engaged_label = engaged_labels.get(tuple(sorted(set(channels) - {"sms"})), "Answered or opened")
    stages = [("Customers", row.recipients), ("Sent", row.sent)]
    if set(channels) & {"email", "sms"}:
        stages.append(("Delivered", row.delivered))
    if set(channels) & {"email", "call"}:
        stages.append((engaged_label, row.engaged))
    stages += [("Responded", row.responded), ("Converted", row.converted)]
    sent = int(row.sent or 0)
    return pd.DataFrame({
        "stage": [s for s, _ in stages],
        "count": [int(n or 0) for _, n in stages],
        "share_of_sent": [None if i == 0 else _rate(int(n or 0), sent) for i, (_, n) in enumerate(stages)],
    })


def summary(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID | None = None) -> CampaignStats:
    """The counters of one campaign, or of every campaign of the profile (then ``customers`` counts each
    customer once, however many campaigns reached them)."""
    row = session.execute(select(*_counter_columns(customers=campaign_id is None))
                          .where(*_scope(profile_id, campaign_id))).one()
    return _stats(row)


def status_breakdown(session: Session, *, profile_id: uuid.UUID,
                     campaign_id: uuid.UUID | None = None) -> pd.DataFrame:
    """Where every contacted customer is *now*: how many recipients are in each status (every status
    listed, in lifecycle order; the holdout group is not contacted and not listed).  ``meaning`` says
    what a status covers ("Opted out (asked to stop or marked as spam)")."""
    counts = dict.fromkeys(CONTACTED_STATUSES, 0)
    for status, n in session.execute(select(R.status, func.count()).where(*_scope(profile_id, campaign_id))
                                     .group_by(R.status)):
        if status in counts:
            counts[status] = int(n)
    return pd.DataFrame({
        "status": list(counts), "label": [RECIPIENT_STATUS_LABELS[s] for s in counts],
        "meaning": [RECIPIENT_STATUS_MEANINGS[s] for s in counts], "count": list(counts.values()),
    })


def failure_reasons(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID | None = None,
                    limit: int = 5) -> pd.DataFrame:
    """Why customers failed (bounced, invalid number, …): the most common reasons and how many each."""
    reason = func.coalesce(R.error_message, "no reason recorded").label("reason")
    rows = session.execute(select(reason, func.count().label("customers"))
                           .where(*_scope(profile_id, campaign_id), R.status == "failed")
                           .group_by(reason).order_by(func.count().desc(), reason).limit(limit)).all()
    return pd.DataFrame.from_records([(r.reason, int(r.customers)) for r in rows], columns=["reason", "customers"])


# (longest span, bucket seconds, what a bar is): a 5-minute campaign gets minutes, a month gets days
TIMELINE_BINS: tuple[tuple[pd.Timedelta, int, str], ...] = (
    (pd.Timedelta(hours=1), 60, "minute"),
    (pd.Timedelta(hours=5), 300, "5 minutes"),
    (pd.Timedelta(hours=15), 900, "15 minutes"),
    (pd.Timedelta(days=3), 3600, "hour"),
)


def event_timeline(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID | None = None,
                   timezone: str = "UTC", since: datetime | None = None, now: datetime | None = None,
                   ) -> tuple[pd.DataFrame, str]:
    """Events per time bucket and type, counted in SQL, with a bucket that fits the span.

    Returns ``(frame, granularity)``: granularity is ``"minute"``, ``"5 minutes"``, ``"15 minutes"``
    or ``"hour"`` for spans up to an hour, five hours, fifteen hours, three days — else ``"day"``
    (local days: the hourly counts summed in ``timezone``).  Columns: ``time`` (local,
    timezone-aware), ``event`` (label), ``type``, ``count``.
    """
    now = now or utcnow()
    conds = _event_scope(profile_id, campaign_id, now)
    if since is not None:
        conds.append(E.occurred_at >= since)
    columns = ["time", "event", "type", "count"]
    first, last = session.execute(select(func.min(E.occurred_at), func.max(E.occurred_at)).where(*conds)).one()
    if first is None or last is None:
        return pd.DataFrame(columns=columns), "hour"
    span = pd.Timestamp(last) - pd.Timestamp(first)
    seconds, granularity = next(((sec, name) for longest, sec, name in TIMELINE_BINS if span <= longest),
                                (3600, "day"))
    bucket = time_bucket(E.occurred_at, literal_column(str(int(seconds)))).label("bucket")
    rows = session.execute(select(bucket, E.type, func.count().label("n")).where(*conds)
                           .group_by(bucket, E.type).order_by(bucket)).all()
    frame = pd.DataFrame.from_records([(int(b), t, int(n)) for b, t, n in rows], columns=["bucket", "type", "count"])
    frame["time"] = pd.to_datetime(frame["bucket"], unit="s", utc=True).dt.tz_convert(timezone)
    if granularity == "day":
        frame["time"] = frame["time"].dt.floor("D", ambiguous=False, nonexistent="shift_forward")
        frame = frame.groupby(["time", "type"], as_index=False)["count"].sum()
    frame["event"] = frame["type"].map(lambda t: EVENT_LABELS.get(t, t))
    return frame[columns].sort_values(["time", "event"]).reset_index(drop=True), granularity


def channel_comparison(session: Session, *, profile_id: uuid.UUID,
                       campaign_id: uuid.UUID | None = None) -> pd.DataFrame:
    """Per channel that reached customers: how many, and how they responded and converted."""
    channel = func.coalesce(R.last_channel, case((Campaign.outreach_method != "multi", Campaign.outreach_method)))
    label = channel.label("channel")
    rows = session.execute(
        select(label, *_counter_columns()).join(Campaign, Campaign.id == R.campaign_id)
        .where(*_scope(profile_id, campaign_id), or_(R.sent_at.is_not(None), R.last_channel.is_not(None)),
               channel.is_not(None), R.status != "holdout")
        .group_by(channel)
    ).all()
    records = []
    for row in rows:
        s = _stats(row)
        records.append({"channel": CHANNEL_LABELS.get(row.channel, row.channel), "reached": s.recipients,
                        "sent": s.sent, "delivered": s.delivered, "answered": s.answered, "responded": s.responded,
                        "converted": s.converted, "response_rate": s.response_rate,
                        "conversion_rate": s.conversion_rate})
    columns = ["channel", "reached", "sent", "delivered", "answered", "responded", "converted", "response_rate",
               "conversion_rate"]
    return pd.DataFrame.from_records(records, columns=columns).sort_values("channel").reset_index(drop=True)


def campaigns_comparison(session: Session, *, profile_id: uuid.UUID, limit: int = 200) -> pd.DataFrame:
    """Every campaign (newest first, up to ``limit``) with its counters and rates."""
    table, _total = campaign_table(session, profile_id=profile_id, limit=limit)
    if table.empty:
        return pd.DataFrame(columns=["name", "type", "channel", "status", "recipients", "sent", "responded",
                                     "converted", "response_rate", "conversion_rate", "created_at"])
    stats = campaign_stats(session, profile_id=profile_id, campaign_ids=[uuid.UUID(i) for i in table["id"]])
    table["sent"] = [stats[uuid.UUID(i)].sent for i in table["id"]]
    table["responded"] = [stats[uuid.UUID(i)].responded for i in table["id"]]
    table["converted"] = [stats[uuid.UUID(i)].converted for i in table["id"]]
    out = table.rename(columns={"status_label": "status_text"})
    return out[["name", "type", "channel", "status_text", "recipients", "sent", "responded", "converted",
                "response_rate", "conversion_rate", "created_at"]].rename(columns={"status_text": "status"})


# --- A/B variants -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantVerdict:
    """Which variant is ahead on one metric, and whether that is more than chance."""

    metric: str  # "response" | "conversion"
    leader: str | None
    runner_up: str | None
    leader_rate: float
    runner_up_rate: float
    p_value: float | None
    significant: bool
    enough_data: bool

    def sentence(self) -> str:
        """The verdict as a person reads it."""
        what = "response rate" if self.metric == "response" else "conversion rate"
        if self.leader is None or self.runner_up is None:
            return f"Not enough sends yet to compare the {what} of the versions."
        if self.leader_rate == self.runner_up_rate:
            return (f"Versions {self.leader} and {self.runner_up} have the same {what} so far "
                    f"({self.leader_rate:.1%}).")
        head = (f"Version {self.leader} is ahead on {what}: {self.leader_rate:.1%} against "
                f"{self.runner_up_rate:.1%} for version {self.runner_up}.")
        if not self.enough_data or self.p_value is None:
            return head + " Too few results yet to tell whether the difference is real."
        if self.significant:
            return head + (f" The difference is statistically significant (p = {self.p_value:.3f}): it is very "
                           "unlikely to be chance.")
        return head + (f" The difference is not statistically significant yet (p = {self.p_value:.2f}); it "
                       "could still be chance.")


def _verdict(table: pd.DataFrame, metric: str) -> VariantVerdict:
    count_col = "responded" if metric == "response" else "converted"
    rate_col = f"{metric}_rate"
    usable = table[table["sent"] > 0].sort_values([rate_col, "sent"], ascending=[False, False])
    if len(usable) < 2:
        return VariantVerdict(metric, None, None, 0.0, 0.0, None, False, False)
    a, b = usable.iloc[0], usable.iloc[1]
    test = two_proportion_z_test(int(a[count_col]), int(a["sent"]), int(b[count_col]), int(b["sent"]))
    successes = int(a[count_col]) + int(b[count_col])
    failures = int(a["sent"]) + int(b["sent"]) - successes
    # the normal approximation needs a handful of successes and failures on both sides
    enough = min(int(a["sent"]), int(b["sent"])) >= 20 and successes >= 10 and failures >= 10
    p_value = test[1] if test else None
    return VariantVerdict(metric, str(a["variant"]), str(b["variant"]), float(a[rate_col]), float(b[rate_col]),
                          p_value, bool(enough and p_value is not None and p_value < SIGNIFICANCE_LEVEL), enough)


def variant_comparison(session: Session, *, profile_id: uuid.UUID, campaign_id: uuid.UUID,
                       ) -> tuple[pd.DataFrame, list[VariantVerdict]]:
    """Per A/B variant counters and rates, and a verdict on response and on conversion."""
    campaign = get_campaign(session, profile_id=profile_id, campaign_id=campaign_id)
    names = [str(v["name"]) for v in campaign.variants or []]
    rows = session.execute(select(R.variant, *_counter_columns()).where(*_scope(profile_id, campaign_id))
                           .group_by(R.variant)).all()
    stats = {row.variant: _stats(row) for row in rows if row.variant is not None}
    records = []
    for name in names + sorted(set(stats) - set(names)):
        s = stats.get(name, CampaignStats())
        records.append({"variant": name, "recipients": s.recipients, "sent": s.sent, "delivered": s.delivered,
                        "responded": s.responded, "converted": s.converted, "response_rate": s.response_rate,
                        "conversion_rate": s.conversion_rate})
    columns = ["variant", "recipients", "sent", "delivered", "responded", "converted", "response_rate",
               "conversion_rate"]
    table = pd.DataFrame.from_records(records, columns=columns)
    if table.empty:
        return table, []
    return table, [_verdict(table, "response"), _verdict(table, "conversion")]
