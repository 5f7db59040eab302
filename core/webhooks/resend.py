"""Resend's webhooks (delivered by Svix): ``POST /webhooks/resend``.

Signature (Svix): headers ``svix-id``, ``svix-timestamp`` and ``svix-signature``
(space-separated ``v1,<base64>`` entries), checked with the ``svix`` package's
verifier: the signed content is ``"{svix-id}.{svix-timestamp}.{raw body}"``,
HMAC-SHA256 keyed with the base64-decoded ``RESEND_WEBHOOK_SECRET``
(``whsec_…``); a request is accepted when any entry matches, and refused when
its timestamp is more than five minutes away from now (a captured request
cannot be replayed later).

Events (``{type, created_at, data: {email_id, to, tags, …}}``):

- ``email.sent``: kept on the timeline (the dispatcher recorded the send);
- ``email.delivered`` → delivered; ``email.delivery_delayed`` → noted;
- ``email.bounced`` → failed; a ``Permanent`` bounce also opts the address out
  (source ``bounce``), while a ``Transient`` (or undetermined) one fails this
  e-mail only and the address stays usable for later campaigns;
- ``email.complained`` → opt-out (source ``complaint``);
- ``email.opened`` → opened (not a response: mail clients open e-mails by themselves);
- ``email.clicked`` → clicked (a response), with the link;
- ``email.failed`` → failed, with Resend's reason;
- ``email.suppressed`` (Resend refused an address on its suppression list) →
  opt-out (source ``bounce``).

The event id is the ``svix-id`` (the same for every delivery of one message,
so a retried or replayed webhook is a no-op).  The e-mail is matched through
the attempt that sent it (provider ``resend``, ``data.email_id``), else the
``recipient_id`` tag; ``tags`` arrive as an object ``{name: value}`` or as a list
of ``{name, value}``, and both are read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError

from core.config import Settings
from core.db import as_uuid, utcnow
from core.webhooks import BadPayload, Incoming, Ingested, SignatureError, as_int, ingest
from core.webhooks.smtp_events import iso_time

PROVIDER = "resend"
TOLERANCE_SECONDS = 300


def _header(headers: Mapping[str, str], name: str) -> str:
    # Svix also sends the Standard Webhooks spelling (webhook-*) of each header
    return (headers.get(f"svix-{name}") or headers.get(f"webhook-{name}") or "").strip()


def verify(*, settings: Settings, headers: Mapping[str, str], body: bytes, now: datetime | None = None) -> str:
    """Refuse (401) a request Svix did not sign for ``RESEND_WEBHOOK_SECRET``; returns the ``svix-id``.

    The signature is checked by the ``svix`` package's own verifier; the checks before it only make
    the refusal say what is wrong."""
    if settings.resend_webhook_secret is None:
        raise SignatureError("RESEND_WEBHOOK_SECRET is not set, so requests claiming to come from Resend cannot be "
                             "checked; copy the signing secret from the webhook's page in Resend.")
    msg_id, timestamp, signatures = _header(headers, "id"), _header(headers, "timestamp"), _header(headers, "signature")
    if not (msg_id and timestamp and signatures):
        raise SignatureError("The svix-id, svix-timestamp and svix-signature headers are required.")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError("The svix-timestamp header is not a number of seconds.") from None
    current = (now or utcnow()).timestamp()
    if abs(current - sent) > TOLERANCE_SECONDS:
        raise SignatureError("The svix-timestamp is more than five minutes away from now; the request is refused "
                             "as too old (or the server clock is wrong).")
    secret = settings.resend_webhook_secret.get_secret_value()
    try:
        verifier = SvixWebhook(secret)
    except Exception:
        raise SignatureError("RESEND_WEBHOOK_SECRET is not a valid signing secret (whsec_ followed by base64); "
                             "copy it again from the webhook's page in Resend.") from None
    try:
        verifier.verify(body, {"svix-id": msg_id, "svix-timestamp": timestamp, "svix-signature": signatures})
    except WebhookVerificationError:
        raise SignatureError("The svix-signature does not match this request; check RESEND_WEBHOOK_SECRET.") from None
    return msg_id


def tags_of(data: Mapping[str, Any]) -> dict[str, str]:
    """The e-mail's tags, whether Resend sent ``{name: value}`` or ``[{name, value}]``."""
    tags = data.get("tags")
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items() if v is not None}
    if isinstance(tags, list):
        return {str(t["name"]): str(t.get("value")) for t in tags if isinstance(t, dict) and t.get("name")}
    return {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse(body: bytes, *, event_id: str, now: datetime | None = None) -> list[Incoming]:
    """The event of one Resend webhook (none for event types that are not about our e-mails)."""
    now = now or utcnow()
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("The body is not JSON; Resend sends {\"type\", \"created_at\", \"data\"}.") from None
    if not isinstance(envelope, dict):
        raise BadPayload("The body is not a JSON object; Resend sends {\"type\", \"created_at\", \"data\"}.")
    kind = str(envelope.get("type") or "")
    data = _dict(envelope.get("data"))
    email_id = str(data.get("email_id") or "").strip()
    if not kind.startswith("email.") or not email_id:
        return []
    tags = tags_of(data)
    when = iso_time(envelope.get("created_at")) or iso_time(data.get("created_at")) or now
    common: dict[str, Any] = {"provider": PROVIDER, "event_id": event_id, "channel": "email",
                              "message_id": email_id[:100], "occurred_at": when,
                              "recipient_id": as_uuid(tags.get("recipient_id")), "step": as_int(tags.get("step"))}
    to = data.get("to")
    address = to[0] if isinstance(to, list) and to else to if isinstance(to, str) else None
    base: dict[str, Any] = {"resend_event": kind}
    if address:
        base["to"] = str(address)

    if kind == "email.delivered":
        return [Incoming(type="delivered", payload=base, **common)]
    if kind == "email.delivery_delayed":
        return [Incoming(type="delivery_delayed", payload=base, **common)]
    if kind == "email.opened":
        return [Incoming(type="opened", payload=base, **common)]
    if kind == "email.clicked":
        click = _dict(data.get("click"))
        link = click.get("link") or click.get("url")
        return [Incoming(type="clicked", payload={**base, "url": str(link)} if link else base, **common)]
    if kind == "email.bounced":
        bounce = _dict(data.get("bounce"))
        bounce_type = str(bounce.get("type") or "Undetermined")
        detail = bounce.get("message") or bounce.get("subType") or "the receiving server refused it"
        return [Incoming(type="bounced", payload={**base, "bounce_type": bounce_type,
                                                  "error": f"{bounce_type} bounce: {detail}"}, **common)]
    if kind == "email.complained":
        return [Incoming(type="complained", payload={**base, "error": "the customer marked the e-mail as spam"},
                         **common)]
    if kind == "email.failed":
        failed = _dict(data.get("failed"))
        reason = failed.get("reason") or data.get("reason") or "Resend could not send it"
        return [Incoming(type="failed", payload={**base, "error": f"Resend failed to send: {reason}"}, **common)]
    if kind == "email.suppressed":
        reason = "Resend suppressed the address: it bounced or complained before"
        return [Incoming(type="opted_out", payload={**base, "source": "bounce", "reason": reason}, **common)]
    return [Incoming(type="status", payload=base, **common)]


def handle(session: Session, *, body: bytes, event_id: str, now: datetime | None = None) -> Ingested:
    """Store and apply the event of one (already verified) Resend webhook."""
    return ingest(session, parse(body, event_id=event_id, now=now), now=now)
