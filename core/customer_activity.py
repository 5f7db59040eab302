"""What a customer's messages led to, for the customer page: each e-mail's HTML part exactly as it was
handed to the provider, and what the providers told us afterwards — deliveries, clicks with the URL,
replies, call summaries, transcripts and recordings, bounces and opt-outs — in the order they happened.

:func:`core.customers.customer_detail` gives the customer, their leads and campaigns and the text of
every try (from the attempt log); this adds the rendered e-mail and the events, read from the same
attempt log and from ``outreach_events`` (only events that have happened: a sandbox outcome dated in
the future is not shown before its time).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import OutreachAttempt, OutreachEvent
from core.outbound import message_from_detail

# what each provider event means to a person reading a customer's story
EVENT_WORDS = {
    "sent": "Sent", "delivered": "Delivered", "opened": "Opened", "clicked": "Clicked a link", "replied": "Replied",
    "answered": "Answered the call", "not_answered": "Did not answer", "bounced": "Bounced", "failed": "Failed",
    "complained": "Marked as spam", "opted_out": "Opted out", "opted_in": "Opted back in", "converted": "Booked",
    "delivery_delayed": "Delivery delayed", "status": "Status update",
}


@dataclass(frozen=True)
class Activity:
    """One thing a provider (or a tracked link) reported about a recipient's messages."""

    recipient_id: uuid.UUID
    at: datetime
    type: str
    channel: str | None
    step: int | None
    url: str | None = None  # a clicked link
    text: str | None = None  # a reply
    summary: str | None = None  # a call's summary
    transcript: str | None = None
    recording_url: str | None = None
    ended_reason: str | None = None
    note: str | None = None  # why it did not count (a link scanner's click) or what failed

    @property
    def words(self) -> str:
        if self.type == "delivered" and self.channel == "call":
            return "Reached voicemail"  # a call "delivered" without being answered (core.events)
        return EVENT_WORDS.get(self.type, self.type.replace("_", " ").capitalize())


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, (str, int, float)) and str(value).strip() else None


def recipient_activity(session: Session, *, profile_id: uuid.UUID, recipient_ids: Sequence[uuid.UUID],
                       now: datetime | None = None) -> dict[uuid.UUID, list[Activity]]:
    """The events of the business's ``recipient_ids`` that have happened by ``now``, oldest first."""
    if not recipient_ids:
        return {}
    e = OutreachEvent
    out: dict[uuid.UUID, list[Activity]] = {}
    for row in session.scalars(select(e).where(e.profile_id == profile_id, e.recipient_id.in_(list(recipient_ids)),
                                               e.occurred_at <= (now or utcnow()))
                               .order_by(e.occurred_at, e.received_at, e.id)):
        p = row.payload or {}
        assert row.recipient_id is not None
        out.setdefault(row.recipient_id, []).append(Activity(
            recipient_id=row.recipient_id, at=row.occurred_at, type=row.type, channel=row.channel, step=row.step,
            url=_text(p.get("url")), text=_text(p.get("text")), summary=_text(p.get("summary")),
            transcript=_text(p.get("transcript")), recording_url=_text(p.get("recording_url")),
            ended_reason=_text(p.get("ended_reason")),
            # a text's reading, when it decided something or looked like a request: why it was (not) an opt-out
            note=row.error_message or _text(p.get("error")) or (_text(p.get("why")) if p.get("rule") else None)))
    return out


def sent_html(session: Session, *, profile_id: uuid.UUID,
              recipient_ids: Sequence[uuid.UUID]) -> dict[tuple[uuid.UUID, int, datetime], str]:
    """The HTML part of every e-mail try of the business's ``recipient_ids``, by (recipient, step, try's
    start) — the keys :class:`core.customers.SentMessage` carries as ``at`` and ``step``."""
    if not recipient_ids:
        return {}
    a = OutreachAttempt
    found: dict[tuple[uuid.UUID, int, datetime], str] = {}
    for attempt in session.scalars(select(a).where(a.profile_id == profile_id, a.channel == "email",
                                                   a.recipient_id.in_(list(recipient_ids)))):
        message = message_from_detail(attempt.detail or {})
        if message is not None and message.html:
            found[(attempt.recipient_id, attempt.step, attempt.started_at)] = message.html
    return found
