"""Provider webhooks: check the signature, turn the payload into events, store and apply them.

One module per provider (:mod:`core.webhooks.vapi`, :mod:`core.webhooks.twilio`,
:mod:`core.webhooks.resend`) verifies its signature on the raw request —
before anything else, so a forged request changes nothing — and parses the
payload into :class:`Incoming` events in our vocabulary
(:data:`core.models.EVENT_TYPES`).  :func:`ingest` then stores each one with
:func:`core.events.record_event` (unique per provider event id: a replay is
acknowledged and changes nothing) and applies it at once with
:func:`core.events.apply_event`, in the request's transaction, so the
dashboard and the API show it as soon as the provider has been answered.  An
event about a message we do not know is stored, marked processed and ignored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.errors import DomainError
from core.events import apply_event, record_event
from core.models import CampaignRecipient, OutreachAttempt, OutreachEvent


class SignatureError(DomainError):
    """The request is not signed by the provider (or the secret to check it is not configured)."""

    status_code = 401


class BadPayload(DomainError):
    """A signed request whose body cannot be read as the provider's payload."""

    status_code = 400


@dataclass(frozen=True)
class Incoming:
    """One event a provider reported, in our vocabulary, before it is stored."""

    provider: str
    event_id: str
    type: str
    occurred_at: datetime
    channel: str
    message_id: str | None = None
    recipient_id: uuid.UUID | None = None  # from metadata or tags, when the message id does not say
    step: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ingested:
    """What a webhook did: events received, applied to a recipient, replayed, or ignored."""

    received: int = 0
    applied: int = 0
    replayed: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"received": self.received, "applied": self.applied, "replayed": self.replayed,
                "ignored": self.ignored}


def as_int(value: Any) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _known_message(session: Session, provider: str, message_id: str | None) -> bool:
    if not message_id:
        return False
    return session.scalar(select(OutreachAttempt.id).where(
        OutreachAttempt.provider == provider, OutreachAttempt.provider_message_id == message_id).limit(1)) is not None


def ingest(session: Session, events: Iterable[Incoming], *, now: datetime | None = None) -> Ingested:
    """Store each event once and apply it right away (in order); a replay changes nothing."""
    now = now or utcnow()
    report = Ingested()
    for item in events:
        report.received += 1
        # the attempt that sent the message is the authority on whom it was for; metadata and tags
        # are the fallback (a webhook may overtake the dispatcher's record of the message id)
        recipient_id = None
        step = None
        if not _known_message(session, item.provider, item.message_id) and item.recipient_id is not None:
            recipient_id = session.scalar(select(CampaignRecipient.id).where(
                CampaignRecipient.id == item.recipient_id))
            step = item.step if recipient_id is not None else None
        stored = record_event(
            session, provider=item.provider, provider_event_id=item.event_id, type=item.type,
            occurred_at=min(item.occurred_at, now), provider_message_id=item.message_id,
            recipient_id=recipient_id, step=step, channel=item.channel, payload=item.payload, received_at=now)
        if not stored:
            report.replayed += 1
            continue
        event = session.scalars(select(OutreachEvent).where(
            OutreachEvent.provider == item.provider, OutreachEvent.provider_event_id == item.event_id[:200])).one()
        apply_event(session, event, now=now)
        if event.recipient_id is None:
            report.ignored += 1
        else:
            report.applied += 1
    session.flush()
    return report


def recover_outcome(session: Session, *, provider: str, record: dict[str, Any],
                    now: datetime | None = None) -> Ingested | None:
    """What a provider's own record of a message says happened to it, for a webhook that never
    arrived (Vapi does not retry its server messages): the same events, under the same ids, as
    the webhook would have brought — so a late webhook is still a no-op.  ``None`` when the
    provider's record says nothing we can use."""
    if provider == "vapi" and record.get("id"):
        from core.webhooks import vapi

        return vapi.record_call(session, call=record, now=now)
    return None
