"""Provider events: the one path by which what a provider tells us changes a recipient.

Webhooks (Vapi, Twilio, Resend), the sandbox's simulated outcomes and the
dispatcher's own "sent" records all go through here:

1. :func:`record_event` stores the event in ``outreach_events``
   (``INSERT … ON CONFLICT DO NOTHING`` on ``(provider, provider_event_id)``, so
   a replayed webhook is stored once and changes nothing the second time);
2. :func:`apply_event` applies it to its recipient and marks it processed;
3. :func:`process_due_events` applies stored events whose time has come,
   oldest first, each in its own short transaction (the scheduler calls it every
   tick; a sandbox outcome dated in the future waits for its time).

Normalized payload keys (the parsers of each provider's webhook fill them):
``error`` (why it failed), ``bounce_type`` (``Permanent``/``Transient``),
``text`` (an SMS reply), ``url`` (a clicked link), ``source`` (opt-out source
for e-mail), and for calls ``ended_reason``, ``transcript``, ``summary``,
``recording_url``, ``structured_data``, ``cost``, ``duration_seconds``; ``lead_id``
(a "converted" event about a lead that already exists: attribution links it
instead of creating one) and ``retry`` (a "failed" call that never started for
a reason that passes, such as the provider's concurrency limit: its step is
tried again).

Recipient status only moves forward, ``pending < queued < sent < delivered <
answered``; ``failed`` and ``opted_out`` are terminal outcomes.  Timestamps
are set the first time only.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import outbox
from core.customers_sync import sync_customers
from core.db import as_uuid, dialect_insert, utcnow
from core.errors import Invalid
from core.models import EVENT_TYPES, Campaign, CampaignRecipient, Lead, OutreachAttempt, OutreachEvent, Profile
from core.optouts import record_opt_out
from core.results import refresh_campaign_results

log = logging.getLogger(__name__)

RANK = {"pending": 0, "queued": 1, "sent": 2, "delivered": 3, "answered": 4}
TERMINAL = ("failed", "opted_out")
# events that end a call (it stops counting against the concurrency limits)
CALL_END = ("answered", "not_answered", "delivered", "failed")
CALL_ARTEFACTS = ("transcript", "summary", "recording_url", "structured_data", "ended_reason", "cost",
                  "duration_seconds", "success")
# transient database conditions: leave the event for the next round instead of marking it failed
_RETRY_LATER_CODES = {"40001", "40P01", "55P03"}


def record_event(
    session: Session, *, provider: str, provider_event_id: str, type: str, occurred_at: datetime,
    provider_message_id: str | None = None, recipient_id: uuid.UUID | None = None,
    campaign_id: uuid.UUID | None = None, profile_id: uuid.UUID | None = None, step: int | None = None,
    channel: str | None = None, payload: dict[str, Any] | None = None, received_at: datetime | None = None,
) -> bool:
    """Store one provider event; ``False`` when it was already stored (a replay)."""
    if type not in EVENT_TYPES:
        raise Invalid(f"unknown event type '{type}'; allowed: {', '.join(EVENT_TYPES)}", field="type")
    if occurred_at.tzinfo is None:
        raise Invalid("the event time needs a time zone", field="occurred_at")
    table = OutreachEvent.__table__
    stmt = dialect_insert(session, table).values(
        id=uuid.uuid4(), provider=provider, provider_event_id=provider_event_id[:200], type=type,
        occurred_at=occurred_at, received_at=received_at or utcnow(), provider_message_id=provider_message_id,
        recipient_id=recipient_id, campaign_id=campaign_id, profile_id=profile_id, step=step, channel=channel,
        payload=payload or {},
    ).on_conflict_do_nothing(index_elements=["provider", "provider_event_id"]).returning(table.c.id)
    return session.execute(stmt).first() is not None


def _resolve(session: Session, event: OutreachEvent) -> CampaignRecipient | None:
    """The recipient an event is about (locked), filling in what the event did not say."""
    if event.recipient_id is None and event.provider_message_id:
        row = session.execute(
            select(OutreachAttempt.recipient_id, OutreachAttempt.campaign_id, OutreachAttempt.profile_id,
                   OutreachAttempt.step, OutreachAttempt.channel)
            .where(OutreachAttempt.provider == event.provider,
                   OutreachAttempt.provider_message_id == event.provider_message_id)
            .order_by(OutreachAttempt.started_at.desc()).limit(1)
        ).first()
        if row is not None:
            event.recipient_id, event.campaign_id, event.profile_id = row[0], row[1], row[2]
            event.step = row[3] if event.step is None else event.step
            event.channel = event.channel or row[4]
    if event.recipient_id is None:
        return None
    recipient = session.get(CampaignRecipient, event.recipient_id, with_for_update=True, populate_existing=True)
    if recipient is not None:
        event.campaign_id = event.campaign_id or recipient.campaign_id
        event.profile_id = event.profile_id or recipient.profile_id
        if event.step is None:
            event.step = recipient.step
    return recipient


def _advance(recipient: CampaignRecipient, status: str) -> None:
    if recipient.status in RANK and RANK[status] > RANK[recipient.status]:
        recipient.status = status


def _merge(recipient: CampaignRecipient, values: dict[str, Any]) -> None:
    if values:
        # a new dict, so the JSON column is seen as changed
        recipient.response_data = {**(recipient.response_data or {}), **values}


def _reason(payload: dict[str, Any], default: str) -> str:
    for key in ("error", "reason", "message", "ended_reason"):
        value = payload.get(key)
        if value:
            return str(value)[:2000]
    return default


def _got_through_elsewhere(session: Session, recipient: CampaignRecipient, step: int | None) -> bool:
    """Whether another step of this recipient was accepted by its provider."""
    return bool(session.scalar(select(exists().where(
        OutreachAttempt.recipient_id == recipient.id, OutreachAttempt.outcome == "accepted",
        OutreachAttempt.step != (step if step is not None else -1)))))


def _fail(session: Session, recipient: CampaignRecipient, event: OutreachEvent, reason: str) -> None:
    recipient.error_message = reason
    if recipient.status in TERMINAL:
        return
    # a multi-channel recipient still has steps to go, or another step got through: not a failure yet
    if recipient.next_attempt_at is not None or _got_through_elsewhere(session, recipient, event.step):
        return
    recipient.status = "failed"


def _opt_out(session: Session, recipient: CampaignRecipient, *, channel: str, source: str, reason: str,
             now: datetime) -> None:
    contact = recipient.customer_email if channel == "email" else recipient.customer_phone
    if contact:
        record_opt_out(session, profile_id=recipient.profile_id, contact=contact, channel=channel, source=source,
                       reason=reason, campaign_id=recipient.campaign_id, now=now)


def _conversion_lead(session: Session, recipient: CampaignRecipient, event: OutreachEvent) -> None:
    """The new lead a conversion creates: one per recipient, however often it is reported."""
    campaign = session.get(Campaign, recipient.campaign_id)
    service = event.payload.get("service_type")
    if not service and recipient.lead_id is not None:
        service = session.scalar(select(Lead.service_type).where(Lead.id == recipient.lead_id))
    when = event.occurred_at
    name = campaign.name if campaign else "a campaign"
    fingerprint = hashlib.sha1(f"campaign-conversion\x1f{recipient.id}".encode()).hexdigest()
    session.execute(dialect_insert(session, Lead).values(
        id=uuid.uuid4(), profile_id=recipient.profile_id, agent_id=campaign.agent_id if campaign else None,
        campaign_id=recipient.campaign_id, contact_key=recipient.contact_key, customer_name=recipient.customer_name,
        customer_phone=recipient.customer_phone, customer_email=recipient.customer_email, status="New",
        service_type=service, notes=f"Won back by the campaign '{name}'"[:10_000],
        call_summary=event.payload.get("summary"), call_transcript=event.payload.get("transcript"),
        recording_url=event.payload.get("recording_url"), structured_data=event.payload.get("structured_data") or {},
        extra={"recipient_id": str(recipient.id)}, source="campaign", fingerprint=fingerprint,
        created_at=when, updated_at=when,
    ).on_conflict_do_nothing(index_elements=["profile_id", "fingerprint"]))
    # the customer, in the same transaction (after the recipient's changes, which the score counts)
    session.flush()
    sync_customers(session, profile_id=recipient.profile_id, keys=[recipient.contact_key],
                   now=event.processed_at or utcnow())


def _link_lead(session: Session, recipient: CampaignRecipient, lead_id: uuid.UUID) -> None:
    """A conversion that is a lead already recorded (a customer who came back on their own within the
    attribution window): the lead is linked to the campaign; no second lead is created."""
    session.execute(update(Lead).where(Lead.id == lead_id, Lead.profile_id == recipient.profile_id,
                                       Lead.campaign_id.is_(None)).values(campaign_id=recipient.campaign_id))


CALL_RETRY_DELAY = timedelta(seconds=60)
# a click this soon after the send is a mail scanner opening the links as the e-mail arrives
SCANNER_SECONDS = 10
SCANNER_WINDOW = timedelta(seconds=SCANNER_SECONDS)


def _retry_call(session: Session, recipient: CampaignRecipient, event: OutreachEvent, *, now: datetime) -> bool:
    """A call the provider accepted but could not start for a reason that passes (every line of the
    account busy): its try becomes an ordinary retryable one that does not count against the tries,
    and the step is due again.  The one case where a recipient goes back (``sent`` → ``queued``): the
    call never rang.  ``False`` when there is nothing to undo (the try is already settled, the
    recipient has moved on, or the campaign is over)."""
    a = OutreachAttempt
    if not event.provider_message_id:
        return False
    attempt = session.scalars(select(a).where(a.provider == event.provider, a.channel == "call",
                                              a.provider_message_id == event.provider_message_id)
                              .with_for_update()).first()
    if attempt is None or attempt.outcome != "accepted" or attempt.recipient_id != recipient.id:
        return False
    campaign_status = session.scalar(select(Campaign.status).where(Campaign.id == recipient.campaign_id))
    moved_on = session.scalar(select(exists().where(
        a.recipient_id == recipient.id, a.id != attempt.id,
        or_(a.step > attempt.step, a.outcome.is_(None), a.outcome == "accepted"))))
    if (moved_on or campaign_status not in ("active", "paused") or recipient.status in TERMINAL
            or recipient.delivered_at is not None or recipient.claimed_by is not None):
        return False
    reason = _reason(event.payload or {}, "the provider could not start the call")
    attempt.outcome = "retryable"
    attempt.error_code = "concurrency_limited"
    attempt.error_message = f"the call never started: {reason}"[:2000]
    attempt.completed_at = attempt.completed_at or event.occurred_at
    recipient.step = attempt.step
    recipient.attempts = max(recipient.attempts, attempt.attempt_no)
    recipient.next_attempt_at = max(now, event.occurred_at) + CALL_RETRY_DELAY
    recipient.error_message = attempt.error_message
    other_sends = session.scalar(select(exists().where(a.recipient_id == recipient.id, a.id != attempt.id,
                                                       a.outcome == "accepted")))
    if not other_sends:
        recipient.sent_at = None
        if recipient.status == "sent":
            recipient.status = "queued"
    return True


def _end_call(session: Session, event: OutreachEvent, when: datetime) -> None:
    """The call this event reports the end of no longer counts as in progress — also when the report
    overtook the dispatcher's record of the call id (a short call): the try of that recipient and step
    still in flight is found by the metadata the call carried, and the dispatcher's later record keeps
    the end."""
    a = OutreachAttempt
    done = 0
    if event.provider_message_id:
        done = _rows_changed(session.execute(update(a).where(
            a.provider == event.provider, a.provider_message_id == event.provider_message_id, a.channel == "call",
            a.completed_at.is_(None)).values(completed_at=when)))
        known = session.scalar(select(exists().where(a.provider == event.provider,
                                                     a.provider_message_id == event.provider_message_id)))
        if done or known:
            return
    if event.recipient_id is not None and event.step is not None:
        session.execute(update(a).where(
            a.recipient_id == event.recipient_id, a.step == event.step, a.channel == "call",
            a.provider == event.provider, a.completed_at.is_(None), a.provider_message_id.is_(None))
            .values(completed_at=when))


def _call_cost(session: Session, event: OutreachEvent, payload: dict[str, Any]) -> None:
    """What an ended call cost: its minutes (from the end-of-call report) at the business's price."""
    seconds = payload.get("duration_seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not event.provider_message_id:
        return
    price = session.scalar(select(Profile.price_per_call_minute).where(Profile.id == event.profile_id))
    if price is None:
        return
    a = OutreachAttempt
    cost = round(max(0.0, float(seconds)) / 60 * price, 6)
    done = session.execute(update(a).where(a.provider == event.provider, a.channel == "call",
                                           a.provider_message_id == event.provider_message_id).values(cost=cost))
    if not _rows_changed(done) and event.recipient_id is not None and event.step is not None:
        # the report overtook the dispatcher's record of the call id: the try in flight is that call
        session.execute(update(a).where(
            a.recipient_id == event.recipient_id, a.step == event.step, a.channel == "call",
            a.provider == event.provider, a.provider_message_id.is_(None), a.outcome.is_(None)).values(cost=cost))


def _rows_changed(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _scanner_click(recipient: CampaignRecipient, payload: dict[str, Any], when: datetime) -> bool:
    """A click by a link scanner: said so (a scanner's user agent), or within seconds of the send —
    faster than a person opens an e-mail."""
    if payload.get("scanner"):
        return True
    return recipient.sent_at is not None and timedelta(0) <= when - recipient.sent_at < SCANNER_WINDOW


def _announce(session: Session, recipient: CampaignRecipient, before: tuple[bool, bool, bool],
              event: OutreachEvent, channel: str | None) -> None:
    """Tell other systems (the outbox) what this event changed, in the same transaction."""
    after = (recipient.responded_at is not None, bool(recipient.converted), recipient.status == "opted_out")
    names = ("recipient.responded", "recipient.converted", "recipient.opted_out")
    found = [outbox.Event(recipient.profile_id, name, outbox.recipient_data(
        recipient, channel=channel, at=event.occurred_at.isoformat(), event=event.type))
        for name, was, now_is in zip(names, before, after, strict=True) if now_is and not was]
    outbox.emit_many(session, found)


def apply_event(session: Session, event: OutreachEvent, *, now: datetime | None = None,
                refresh: bool = True) -> None:
    """Apply a stored event to its recipient and mark it processed.

    An event about a message we do not know is marked processed with no effect.
    With ``refresh`` the campaign's stored results are recounted afterwards.
    """
    now = now or utcnow()
    if event.processed_at is not None:
        return
    recipient = _resolve(session, event)
    event.processed_at = now
    if recipient is None:
        event.error_message = "no recipient for this message: ignored"
        return
    p = event.payload or {}
    when = event.occurred_at
    kind = event.type
    channel = event.channel or recipient.last_channel
    before = (recipient.responded_at is not None, bool(recipient.converted), recipient.status == "opted_out")

    if channel == "call" and kind in CALL_END:
        _end_call(session, event, when)
        if not (kind == "failed" and p.get("retry")):
            # how the last call ended: the next step's condition (voicemail, answered) reads it
            recipient.last_call_outcome = {"answered": "answered", "delivered": "voicemail",
                                           "not_answered": "not_answered"}.get(kind, "failed")
            _call_cost(session, event, p)
    artefacts = {k: p[k] for k in CALL_ARTEFACTS if p.get(k) not in (None, "", {}, [])}

    if kind == "sent":
        recipient.sent_at = recipient.sent_at or when
        _advance(recipient, "sent")
    elif kind == "delivered":
        recipient.sent_at = recipient.sent_at or when
        recipient.delivered_at = recipient.delivered_at or when
        _advance(recipient, "delivered")
        _merge(recipient, artefacts)
    elif kind == "answered":
        recipient.sent_at = recipient.sent_at or when
        recipient.delivered_at = recipient.delivered_at or when
        recipient.answered_at = recipient.answered_at or when
        _advance(recipient, "answered")
        _merge(recipient, artefacts)
    elif kind == "not_answered":
        _merge(recipient, {**artefacts, "ended_reason": p.get("ended_reason") or "not answered"})
    elif kind == "opened":
        if not (recipient.response_data or {}).get("opened_at"):
            _merge(recipient, {"opened_at": when.isoformat()})
    elif kind == "clicked":
        if _scanner_click(recipient, p, when):
            # a mail scanner opened the link as the e-mail arrived: kept on the timeline, not a response
            event.error_message = "a link scanner's click, not the customer's: not counted as a response"
        else:
            recipient.responded_at = recipient.responded_at or when
            if p.get("url") and not (recipient.response_data or {}).get("clicked_url"):
                _merge(recipient, {"clicked_url": p["url"]})
    elif kind == "replied":
        recipient.responded_at = recipient.responded_at or when
        replies = list((recipient.response_data or {}).get("replies") or [])
        if p.get("text"):
            replies.append({"text": str(p["text"])[:1600], "at": when.isoformat()})
        _merge(recipient, {"reply": p.get("text"), "replies": replies[-20:]} if p.get("text") else {})
    elif kind == "converted":
        recipient.responded_at = recipient.responded_at or when
        if not recipient.converted:
            recipient.converted = True
            recipient.converted_at = when
        _merge(recipient, artefacts)
        existing = as_uuid(p.get("lead_id"))
        if existing is not None:
            _link_lead(session, recipient, existing)
        else:
            _conversion_lead(session, recipient, event)
    elif kind == "failed" and channel == "call" and p.get("retry"):
        # never a failure of the recipient: the step is due again, or another try already placed the call
        if not _retry_call(session, recipient, event, now=now):
            _merge(recipient, {"ended_reason": p.get("ended_reason")} if p.get("ended_reason") else {})
    elif kind in ("bounced", "failed", "complained"):
        default = {"bounced": "the e-mail bounced", "failed": "the provider could not deliver it",
                   "complained": "the customer marked the e-mail as spam"}[kind]
        reason = _reason(p, default)
        _merge(recipient, artefacts)
        if kind == "bounced" and str(p.get("bounce_type", "")).lower() == "permanent":
            _opt_out(session, recipient, channel="email", source="bounce", reason=reason, now=when)
        if kind == "complained":
            # marking an e-mail as spam is the customer's way of saying stop: an opt-out, counted as one
            _opt_out(session, recipient, channel="email", source="complaint", reason=reason, now=when)
            recipient.status = "opted_out"
            recipient.error_message = reason
            recipient.next_attempt_at = None
        else:
            _fail(session, recipient, event, reason)
    elif kind == "opted_out":
        ch = channel or "all"
        source = {"sms": "sms_stop", "call": "call_request"}.get(ch) or p.get("source") or "unsubscribe_link"
        reason = _reason(p, "the customer asked not to be contacted again")
        _merge(recipient, artefacts)
        _opt_out(session, recipient, channel=ch if ch in ("call", "email", "sms") else "all", source=source,
                 reason=reason, now=when)
        recipient.status = "opted_out"
        recipient.next_attempt_at = None  # nothing more for this customer in this campaign
    elif kind == "delivery_delayed":
        _merge(recipient, {"delivery_delayed_at": when.isoformat()})
    # "opted_in" and "status" are kept for the timeline only
    recipient.updated_at = now
    _announce(session, recipient, before, event, channel)
    if refresh:
        session.flush()
        refresh_campaign_results(session, campaign_id=recipient.campaign_id)


def _retry_later(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError):
        return True
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, DBAPIError) and code in _RETRY_LATER_CODES


def process_due_events(factory: sessionmaker[Session], *, now: datetime | None = None, limit: int = 2000) -> int:
    """Apply stored events whose time has come (oldest first), each in its own
    transaction; returns how many were processed.  Safe with several processes:
    an event is claimed with ``FOR UPDATE SKIP LOCKED``."""
    now = now or utcnow()
    done = 0
    campaigns: set[uuid.UUID] = set()
    e = OutreachEvent
    while done < limit:
        with factory() as session:
            try:
                with session.begin():
                    event = session.scalars(
                        select(e).where(e.processed_at.is_(None), e.occurred_at <= now)
                        .order_by(e.occurred_at, e.id).limit(1).with_for_update(skip_locked=True)
                    ).first()
                    if event is None:
                        break
                    try:
                        with session.begin_nested():
                            apply_event(session, event, now=now, refresh=False)
                    except Exception as exc:
                        if _retry_later(exc):
                            raise
                        log.exception("event %s (%s %s): could not be applied", event.id, event.provider,
                                      event.type)
                        event.processed_at = now
                        event.error_message = f"could not be applied: {exc}"[:2000]
                    if event.campaign_id is not None:
                        campaigns.add(event.campaign_id)
                    log.debug("event %s %s applied to recipient %s of campaign %s", event.provider, event.type,
                              event.recipient_id, event.campaign_id)
            except Exception as exc:
                if not _retry_later(exc):
                    raise
                log.warning("events: the database asked to retry (%s); the rest waits for the next tick", exc)
                break
        done += 1
    for campaign_id in campaigns:
        with factory() as session, session.begin():
            refresh_campaign_results(session, campaign_id=campaign_id)
    return done
