"""Tracked links in e-mails: ``PUBLIC_BASE_URL/c/<token>``.

Every web link the business wrote into an e-mail's HTML part (a booking link,
its site — never text that came from customer data, see
:func:`core.templates.render_html`) is sent as a tracked link whose token
(:func:`core.tokens.click_token`, signed with ``SECRET_KEY``, expiring) names
the recipient and the original address.  Opening it records a "clicked" event
through :mod:`core.events` and redirects to that address, and only that one;
the plain-text part keeps the original links, and the unsubscribe link is never
tracked (it is not a response).  A token that was altered or has expired reads
as nothing and gets a 404.

Mail security scanners (Outlook Safe Links, Proofpoint, Mimecast, Barracuda …)
open every link of a message as it arrives.  Their clicks are recorded but are
not responses: a known scanner's user agent, or a click within
:data:`core.events.SCANNER_SECONDS` of the send.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import utcnow
from core.events import SCANNER_WINDOW, apply_event, record_event
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


# user agents of link scanners (lower case fragments)
SCANNER_AGENTS = ("safelinks", "microsoft office", "ms-office", "bingpreview", "proofpoint", "mimecast",
                  "barracuda", "symantec", "fortiguard", "trend micro", "cisco", "ironport", "forcepoint",
                  "google-safety", "googleimageproxy", "yahoomailproxy", "linkchecker", "appengine-google",
                  "python-requests", "go-http-client", "curl/", "wget/", "headlesschrome", "phantomjs")


def is_scanner(user_agent: str | None) -> bool:
    """Whether a user agent is a link scanner or a program rather than a person's browser."""
    agent = (user_agent or "").strip().lower()
    return not agent or any(fragment in agent for fragment in SCANNER_AGENTS)


def follow(session: Session, *, token: str, settings: Settings, now: datetime | None = None,
           user_agent: str | None = None) -> str | None:
    """Record the click a token stands for (once per recipient and link; a scanner's click apart, so a
    person's later click still counts) and return where it leads; ``None`` when the token is not one of
    ours or has expired."""
    read = read_click_token(token, settings)
    if read is None:
        return None
    recipient_id, url = read
    if not url.lower().startswith(("http://", "https://")):
        return None
    now = now or utcnow()
    known = session.execute(select(CampaignRecipient.id, CampaignRecipient.sent_at)
                            .where(CampaignRecipient.id == recipient_id)).first()
    if known is None:
        return url  # the campaign was deleted: the link still works, nothing is recorded
    sent_at = known[1]
    # a scanner by its name, or by its speed (see core.events): its click must not use up the person's
    scanner = is_scanner(user_agent) or (sent_at is not None and timedelta(0) <= now - sent_at < SCANNER_WINDOW)
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:20]
    event_id = f"click-scan:{recipient_id}:{digest}" if scanner else f"click:{recipient_id}:{digest}"
    payload: dict[str, object] = {"url": url[:2000], "user_agent": (user_agent or "")[:300]}
    if scanner:
        payload["scanner"] = True
    if record_event(session, provider=PROVIDER, provider_event_id=event_id, type="clicked", occurred_at=now,
                    recipient_id=recipient_id, channel="email", payload=payload, received_at=now):
        event = session.scalars(select(OutreachEvent).where(OutreachEvent.provider == PROVIDER,
                                                            OutreachEvent.provider_event_id == event_id)).one()
        apply_event(session, event, now=now)
    return url
