"""Tracked links in e-mails: ``PUBLIC_BASE_URL/c/<token>``.

Every web link of an e-mail's HTML part (a booking link, the business's site)
is sent as a tracked link whose token (:func:`core.tokens.click_token`, signed
with ``SECRET_KEY``) names the recipient and the original address.  Opening it
records a "clicked" event — a response — through :mod:`core.events`, and
redirects to the original address; the plain-text part keeps the original
links, and the unsubscribe link is never tracked (it is not a response).  A
token that was altered reads as nothing and gets a 404.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import utcnow
from core.events import apply_event, record_event
from core.models import CampaignRecipient, OutreachEvent
from core.tokens import click_token, read_click_token

PROVIDER = "link"


def tracked_url(recipient_id: uuid.UUID, url: str, settings: Settings) -> str:
    """The tracked form of ``url`` for one recipient."""
    return f"{settings.public_base_url.rstrip('/')}/c/{click_token(recipient_id, url, settings)}"


def link_rewriter(recipient_id: uuid.UUID, settings: Settings, *,
                  keep: tuple[str, ...] = ()) -> Callable[[str], str]:
    """A function for :func:`core.templates.render_html` that tracks every web link but those in ``keep``."""

    def rewrite(url: str) -> str:
        if url in keep or not url.lower().startswith(("http://", "https://")):
            return url
        return tracked_url(recipient_id, url, settings)

    return rewrite


def follow(session: Session, *, token: str, settings: Settings, now: datetime | None = None) -> str | None:
    """Record the click a token stands for (once per recipient and link) and return where it leads;
    ``None`` when the token is not one of ours."""
    read = read_click_token(token, settings)
    if read is None:
        return None
    recipient_id, url = read
    if not url.lower().startswith(("http://", "https://")):
        return None
    now = now or utcnow()
    known = session.scalar(select(CampaignRecipient.id).where(CampaignRecipient.id == recipient_id))
    if known is None:
        return url  # the campaign was deleted: the link still works, nothing is recorded
    event_id = f"click:{recipient_id}:{hashlib.sha1(url.encode('utf-8')).hexdigest()[:20]}"
    if record_event(session, provider=PROVIDER, provider_event_id=event_id, type="clicked", occurred_at=now,
                    recipient_id=recipient_id, channel="email", payload={"url": url[:2000]}, received_at=now):
        event = session.scalars(select(OutreachEvent).where(OutreachEvent.provider == PROVIDER,
                                                            OutreachEvent.provider_event_id == event_id)).one()
        apply_event(session, event, now=now)
    return url
