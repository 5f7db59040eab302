"""Builders for the dashboard tests: recipients in given states and provider
events, written the way the execution engine records them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import targeting
from core.models import Campaign, CampaignRecipient, OutreachAttempt, OutreachEvent


def recipients(session: Session, campaign: Campaign, *, now: datetime) -> list[uuid.UUID]:
    """Select the campaign's audience; the recipient ids in a stable order (by contact)."""
    targeting.select_recipients(session, campaign=campaign, now=now)
    return list(session.scalars(select(CampaignRecipient.id).where(CampaignRecipient.campaign_id == campaign.id)
                                .order_by(CampaignRecipient.contact_key)))


def set_state(session: Session, recipient_id: uuid.UUID, **values: Any) -> None:
    """Give one recipient the outcome columns a dispatch and its webhooks would have written."""
    session.execute(update(CampaignRecipient).where(CampaignRecipient.id == recipient_id).values(**values))


def event(session: Session, recipient_id: uuid.UUID, type_: str, at: datetime, *, channel: str = "email",
          payload: dict[str, Any] | None = None, provider: str = "sandbox") -> None:
    """One normalized provider event for a recipient."""
    r = session.get(CampaignRecipient, recipient_id)
    assert r is not None
    session.add(OutreachEvent(
        id=uuid.uuid4(), profile_id=r.profile_id, campaign_id=r.campaign_id, recipient_id=r.id, step=r.step,
        channel=channel, provider=provider, provider_event_id=f"evt-{uuid.uuid4()}", type=type_,
        payload=payload or {}, occurred_at=at, received_at=at, processed_at=at))
    session.flush()


def attempt(session: Session, recipient_id: uuid.UUID, *, at: datetime, outcome: str | None = "accepted",
            channel: str = "email", attempt_no: int = 1, error: str | None = None,
            detail: dict[str, Any] | None = None) -> None:
    """One delivery attempt of a recipient's current step."""
    r = session.get(CampaignRecipient, recipient_id)
    assert r is not None
    session.add(OutreachAttempt(
        id=uuid.uuid4(), profile_id=r.profile_id, campaign_id=r.campaign_id, recipient_id=r.id, step=r.step,
        attempt_no=attempt_no, channel=channel, provider="sandbox", idempotency_key=f"reengage/{r.id}/{r.step}",
        outcome=outcome, provider_message_id=f"msg-{uuid.uuid4().hex[:8]}" if outcome == "accepted" else None,
        error_message=error, detail=detail or {}, started_at=at, finished_at=at if outcome else None))
    session.flush()
