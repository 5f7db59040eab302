"""What the webhooks of the SMTP services (Amazon SES, SendGrid, Postmark) share.

E-mail sent through any of them went out through the SMTP adapter, so its events belong to the
``smtp`` provider, as the attempts that sent them do; each service names the message by its own
id or by ours (the ``Message-ID`` header), and :func:`ingest_matched` finds the attempt by
whichever of them was recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import OutreachAttempt
from core.webhooks import Incoming, Ingested, ingest

PROVIDER = "smtp"  # the provider of the attempts that sent the e-mails



def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``…Z`` or with an offset) as an aware datetime, or ``None``."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace(" ", "T", 1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def bare_id(value: Any) -> str | None:
    """A message id without its angle brackets (as the SMTP adapter stores ours)."""
    text = str(value or "").strip().strip("<>").strip()
    return text[:100] or None


def ingest_matched(session: Session, found: Sequence[tuple[Incoming, Sequence[str | None]]], *,
                   now: datetime | None = None) -> Ingested:
    """Store and apply events, each under the first of its candidate message ids (the service's id,
    then our Message-ID) that an SMTP attempt recorded as its provider message id — else under its
    first candidate, and its tags name the recipient."""
    wanted = list(dict.fromkeys(c for _, candidates in found for c in candidates if c))
    known: set[str] = set()
    for start in range(0, len(wanted), 500):
        known.update(session.scalars(select(OutreachAttempt.provider_message_id).where(
            OutreachAttempt.provider == PROVIDER, OutreachAttempt.provider_message_id.in_(wanted[start:start + 500]))))
    events = [replace(item, message_id=next((c for c in candidates if c and c in known), item.message_id))
              for item, candidates in found]
    return ingest(session, events, now=now)
