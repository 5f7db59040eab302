"""Postmark's webhooks: ``POST /webhooks/postmark``.

Postmark signs nothing; the webhook URL carries HTTP basic credentials
(``https://user:password@host/webhooks/postmark``) and every request must present
``POSTMARK_WEBHOOK_USER`` / ``POSTMARK_WEBHOOK_PASSWORD`` (compared in constant time).  A refused
request is answered 401 with a ``WWW-Authenticate: Basic`` challenge, so a client that only sends
credentials when asked sends them.

Each request is one JSON object; its ``RecordType`` says what happened (keys are read whatever
their case: Postmark writes ``MessageID`` in some records and ``MessageId`` in others):

- ``Bounce``: ``HardBounce`` (1) and ``BadEmailAddress`` (100000) — and any bounce after which
  Postmark deactivated the address (``Inactive``) — are permanent (opt-out, source ``bounce``);
  ``SpamComplaint`` (100001) → complained; ``Unsubscribe`` (16) → opted out; an auto-responder,
  address change or subscribe notice only goes on the timeline; every other type
  (``Transient``, ``SoftBounce``, ``DnsError``, ``Blocked``, ``SpamNotification`` …) fails this
  e-mail and leaves the address usable;
- ``SpamComplaint`` → complained; ``Delivery`` → delivered; ``Open`` → opened; ``Click`` →
  clicked, with ``OriginalLink``;
- ``SubscriptionChange`` with ``SuppressSending`` → opted out (source from
  ``SuppressionReason``: ``HardBounce`` → bounce, ``SpamComplaint`` → complaint, else the
  customer unsubscribed); a reactivation only goes on the timeline (a new consent is not implied).

The event id is ``postmark:<ID or MessageID>:<RecordType>`` (plus ``ChangedAt`` for subscription
changes).  The e-mail is matched through the attempt that sent it (Postmark's ``MessageID``),
else the ``Metadata`` the e-mail carried (``X-PM-Metadata-recipient_id`` and ``-step``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.config import Settings
from core.db import as_uuid, utcnow
from core.webhooks import BadPayload, Incoming, Ingested, SignatureError, as_int
from core.webhooks.smtp_events import PROVIDER, bare_id, ingest_matched, iso_time

SERVICE = "postmark"
CHALLENGE = {"WWW-Authenticate": 'Basic realm="webhooks", charset="UTF-8"'}
PERMANENT_BOUNCES = {1, 100000}  # HardBounce, BadEmailAddress
NOTICES = {32, 64, 128, 1024, 16384}  # Subscribe, AutoResponder, AddressChange, OpenRelayTest, ChallengeVerification
SPAM_COMPLAINT = 100001
UNSUBSCRIBE = 16
SUPPRESSION_SOURCES = {"hardbounce": "bounce", "spamcomplaint": "complaint"}


def verify(*, settings: Settings, headers: Mapping[str, str]) -> None:
    """Refuse (401) a request without the webhook's basic credentials."""
    if not settings.postmark_webhook_user or settings.postmark_webhook_password is None:
        raise SignatureError("POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD are not set, so requests "
                             "claiming to come from Postmark cannot be checked; set them and give Postmark the URL "
                             "https://user:password@your-host/webhooks/postmark.")
    scheme, _, encoded = (headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise SignatureError("Postmark's webhook requests must carry the user and password of "
                             "POSTMARK_WEBHOOK_USER/POSTMARK_WEBHOOK_PASSWORD (basic authentication).")
    try:
        user, colon, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        user, colon, password = b"", b"", b""
    wanted_user = settings.postmark_webhook_user.encode("utf-8")
    wanted_password = settings.postmark_webhook_password.get_secret_value().encode("utf-8")
    # both compared whatever the first says: the time taken tells nothing
    same_user = hmac.compare_digest(user, wanted_user)
    same_password = hmac.compare_digest(password, wanted_password)
    if not (colon and same_user and same_password):
        raise SignatureError("The user or password of this request is not POSTMARK_WEBHOOK_USER/"
                             "POSTMARK_WEBHOOK_PASSWORD.")


def _lower(record: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in record.items()}


def _incoming(r: dict[str, Any], *, now: datetime) -> tuple[Incoming, list[str | None]] | None:
    kind = str(r.get("recordtype") or "")
    message_id = bare_id(r.get("messageid"))
    metadata = _lower(r["metadata"]) if isinstance(r.get("metadata"), dict) else {}
    if not kind or not (message_id or metadata.get("recipient_id")):
        return None
    to = r.get("email") or r.get("recipient")
    payload: dict[str, Any] = {"service": SERVICE, "postmark_record": kind, "to": to, "tag": r.get("tag")}
    when = r.get("bouncedat") or r.get("deliveredat") or r.get("receivedat") or r.get("changedat")
    key = str(r.get("id") or message_id or "")
    type = "status"
    if kind == "Bounce":
        code = as_int(r.get("typecode"))
        name = str(r.get("type") or r.get("name") or "Bounce")
        detail = r.get("details") or r.get("description") or name
        if code == SPAM_COMPLAINT:
            type = "complained"
            payload["error"] = "the customer marked the e-mail as spam"
        elif code == UNSUBSCRIBE:
            type = "opted_out"
            payload.update(source="unsubscribe_link", reason="the customer asked to be unsubscribed (Postmark)")
        elif code in NOTICES:
            payload["bounce_name"] = name
        else:
            permanent = code in PERMANENT_BOUNCES or r.get("inactive") is True
            bounce_type = "Permanent" if permanent else "Transient"
            type = "bounced"
            payload.update(bounce_type=bounce_type, bounce_name=name, error=f"{bounce_type} bounce ({name}): {detail}")
    elif kind == "SpamComplaint":
        type = "complained"
        payload["error"] = "the customer marked the e-mail as spam"
    elif kind == "Delivery":
        type = "delivered"
    elif kind == "Open":
        type = "opened"
    elif kind == "Click":
        type = "clicked"
        payload["url"] = r.get("originallink")
    elif kind == "SubscriptionChange":
        key = f"{key}:{r.get('changedat') or ''}"
        if r.get("suppresssending") is True:
            reason = str(r.get("suppressionreason") or "ManualSuppression")
            type = "opted_out"
            payload.update(source=SUPPRESSION_SOURCES.get(reason.lower(), "unsubscribe_link"),
                           reason=f"Postmark suppressed the address ({reason})")
    item = Incoming(provider=PROVIDER, event_id=f"{SERVICE}:{key}:{kind}", type=type,
                    occurred_at=iso_time(when) or now, channel="email", message_id=message_id,
                    recipient_id=as_uuid(metadata.get("recipient_id")), step=as_int(metadata.get("step")),
                    payload={k: v for k, v in payload.items() if v not in (None, "")})
    return item, [message_id]


def parse(body: bytes, *, now: datetime | None = None) -> list[tuple[Incoming, list[str | None]]]:
    """The event of one (authenticated) Postmark webhook, with its candidate message ids."""
    try:
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("The body is not JSON; Postmark sends one JSON object with a RecordType.") from None
    if not isinstance(record, dict):
        raise BadPayload("The body is not a JSON object; Postmark sends one JSON object with a RecordType.")
    found = _incoming(_lower(record), now=now or utcnow())
    return [found] if found is not None else []


def handle(session: Session, *, body: bytes, now: datetime | None = None) -> Ingested:
    """Store and apply the event of one (already authenticated) Postmark webhook."""
    return ingest_matched(session, parse(body, now=now), now=now)
