"""The unsubscribe link: ``PUBLIC_BASE_URL/unsubscribe/<token>``.

The token (:mod:`core.tokens`) names one campaign recipient and is signed with
``SECRET_KEY``; it carries no name, address or number.  ``GET`` shows a small
page with the business's name, the address and a button (a link scanner that
opens the page unsubscribes nobody); ``POST`` — the button, or a mail
provider's RFC 8058 one-click request (body ``List-Unsubscribe=One-Click``, no
cookies, no login) — records at once an e-mail opt-out of that address for that
business (source ``unsubscribe_link``) and answers with a short page.  Doing it
again changes nothing.  A token that was altered, or signed with another key,
gets a "link not valid" page.

The opt-out goes through :mod:`core.events` like every provider event, so the
recipient is marked opted out in its campaign and the campaign's results
follow.  A recipient without an e-mail address (the link came in a text) is
opted out of the channel that reached them.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import utcnow
from core.events import apply_event, record_event
from core.models import CampaignRecipient, OutreachEvent, Profile
from core.optouts import is_opted_out
from core.tokens import read_unsubscribe_token

PROVIDER = "unsubscribe"


@dataclass(frozen=True)
class Target:
    """Whom an unsubscribe link is about."""

    recipient_id: uuid.UUID
    business_name: str
    contact: str
    channel: str
    unsubscribed: bool


def find(session: Session, *, token: str, settings: Settings) -> Target | None:
    """The recipient a token names and whether they are already unsubscribed (``None``: not a valid link)."""
    recipient_id = read_unsubscribe_token(token, settings)
    if recipient_id is None:
        return None
    row = session.execute(
        select(CampaignRecipient.profile_id, CampaignRecipient.customer_email, CampaignRecipient.customer_phone,
               CampaignRecipient.last_channel, Profile.business_name)
        .join(Profile, Profile.id == CampaignRecipient.profile_id).where(CampaignRecipient.id == recipient_id)
    ).first()
    if row is None:
        return None
    if row.customer_email:
        channel, contact = "email", row.customer_email
    elif row.customer_phone:
        channel, contact = (row.last_channel if row.last_channel in ("sms", "call") else "sms"), row.customer_phone
    else:
        return None  # erased: nothing left to unsubscribe
    done = is_opted_out(session, profile_id=row.profile_id, contact=contact, channel=channel)
    return Target(recipient_id=recipient_id, business_name=row.business_name, contact=contact, channel=channel,
                  unsubscribed=done)


def unsubscribe(session: Session, *, token: str, settings: Settings, now: datetime | None = None) -> Target | None:
    """Opt the recipient a token names out, at once (idempotent); ``None`` for a link that is not valid."""
    now = now or utcnow()
    target = find(session, token=token, settings=settings)
    if target is None or target.unsubscribed:
        return target
    # a new event each time the address is (again) subscribed: staff may have removed an earlier opt-out
    event_id = f"unsubscribe:{target.recipient_id}:{uuid.uuid4().hex}"
    record_event(session, provider=PROVIDER, provider_event_id=event_id, type="opted_out", occurred_at=now,
                 recipient_id=target.recipient_id, channel=target.channel, received_at=now,
                 payload={"source": "unsubscribe_link", "reason": "used the unsubscribe link"})
    event = session.scalars(select(OutreachEvent).where(OutreachEvent.provider == PROVIDER,
                                                        OutreachEvent.provider_event_id == event_id)).one()
    apply_event(session, event, now=now)
    session.flush()
    return Target(recipient_id=target.recipient_id, business_name=target.business_name, contact=target.contact,
                  channel=target.channel, unsubscribed=True)


# --- the pages -------------------------------------------------------------------------------------

_STYLE = ("body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f6f7f9;color:#1f2328;"
          "margin:0;padding:48px 16px}main{max-width:460px;margin:0 auto;background:#fff;border-radius:12px;"
          "padding:32px;box-shadow:0 1px 3px rgba(0,0,0,.08)}h1{font-size:1.4rem;margin:0 0 12px}"
          "p{line-height:1.5}button{font:inherit;background:#1f6feb;color:#fff;border:0;border-radius:8px;"
          "padding:10px 18px;cursor:pointer}.muted{color:#59636e;font-size:.9rem}")


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><meta name="robots" content="noindex">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><main>{body}</main></body></html>")


def _what(target: Target) -> str:
    return {"email": "e-mails", "sms": "text messages", "call": "calls"}.get(target.channel, "messages")


def confirm_page(target: Target, *, action: str = "") -> str:
    """The page a customer sees when opening the link: who, which address, and a button (posting to
    ``action``, by default the page's own address — whatever prefix a proxy gives it)."""
    business, contact = html.escape(target.business_name), html.escape(target.contact)
    if target.unsubscribed:
        return done_page(target)
    form = f'<form method="post" action="{html.escape(action, quote=True)}">' if action else '<form method="post">'
    return _page(f"Unsubscribe from {target.business_name}", (
        f"<h1>Unsubscribe from {business}?</h1>"
        f"<p>{contact} will no longer get {_what(target)} from {business}.</p>"
        f'{form}<input type="hidden" name="confirm" value="yes"><button type="submit">Unsubscribe</button></form>'
        f'<p class="muted">Changed your mind? Just close this page.</p>'))


def done_page(target: Target) -> str:
    """The answer once the address is unsubscribed."""
    business, contact = html.escape(target.business_name), html.escape(target.contact)
    return _page("You are unsubscribed", (
        f"<h1>You're unsubscribed</h1>"
        f"<p>{contact} will get no more {_what(target)} from {business}.</p>"
        f'<p class="muted">If this was a mistake, contact {business} and ask to hear from them again.</p>'))


def invalid_page() -> str:
    """The answer to a link that is not (or no longer) valid."""
    return _page("Link not valid", (
        "<h1>This link is not valid</h1>"
        "<p>The unsubscribe link may have been cut short when it was copied. Open it again from the e-mail, "
        "or reply to the e-mail and ask to be removed.</p>"))
