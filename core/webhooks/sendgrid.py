"""SendGrid's Event Webhook: ``POST /webhooks/sendgrid``.

Signed webhook: ``X-Twilio-Email-Event-Webhook-Signature`` is the base64 of an ECDSA P-256
signature (DER) with SHA-256 over ``X-Twilio-Email-Event-Webhook-Timestamp`` followed by the raw
body; the key is ``SENDGRID_WEBHOOK_PUBLIC_KEY`` (base64 DER, as SendGrid's settings show it).
SendGrid documents no limit on the timestamp's age; a request more than ten minutes from now is
refused (each delivery, retries included, is signed when it is sent, so ten minutes leave room for
clock drift and slow networks while a captured request cannot be replayed later).

The body is a JSON array of events.  The event id is ``sendgrid:<sg_event_id>`` (a retried
delivery carries the same ids: a replay changes nothing).

- ``delivered`` → delivered; ``deferred`` → delivery delayed; ``processed`` → timeline;
- ``bounce`` → bounced: ``type`` ``bounce`` is permanent (opt-out, source ``bounce``),
  ``blocked`` transient (this e-mail fails, the address stays usable);
- ``dropped`` (SendGrid did not send it): reason "Bounced Address" → opted out (source
  ``bounce``), "Unsubscribed Address" → opted out, "Spam Reporting Address" → opted out (source
  ``complaint``) — the address is on SendGrid's suppression list; any other reason → failed;
- ``spamreport`` → complained; ``unsubscribe`` / ``group_unsubscribe`` → opted out;
- ``open`` → opened; ``click`` → clicked, with the link.

The e-mail is matched through the attempt that sent it: the id of SendGrid's ``250 Ok: queued as
<id>`` reply (the part of ``sg_message_id`` before its first dot), else our Message-ID
(``smtp-id``), else the unique arguments ``recipient_id`` and ``step`` (top-level keys of each
event).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import as_uuid, utcnow
from core.webhooks import BadPayload, Incoming, Ingested, SignatureError, as_int
from core.webhooks.smtp_events import PROVIDER, bare_id, ingest_matched

SERVICE = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
TOLERANCE_SECONDS = 600
DROPPED_AS_OPT_OUT = {"bounced address": "bounce", "unsubscribed address": "unsubscribe_link",
                      "spam reporting address": "complaint"}


@lru_cache(maxsize=8)
def public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """``SENDGRID_WEBHOOK_PUBLIC_KEY`` (base64 DER, with or without PEM armour) as a P-256 key."""
    text = "".join(line for line in encoded.strip().splitlines() if not line.startswith("-----"))
    try:
        key = load_der_public_key(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        raise SignatureError("SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key; copy the verification key "
                             "again from SendGrid (Mail Settings → Event Webhook → Signature verification).") \
            from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 key; copy the Event Webhook's "
                             "verification key again from SendGrid.")
    return key


def verify(*, settings: Settings, headers: Mapping[str, str], body: bytes, now: datetime | None = None) -> None:
    """Refuse (401) a request SendGrid did not sign with the Event Webhook's key, or signed too long ago."""
    if not settings.sendgrid_webhook_public_key:
        raise SignatureError("SENDGRID_WEBHOOK_PUBLIC_KEY is not set, so requests claiming to come from SendGrid "
                             "cannot be checked; turn on the Event Webhook's signature and copy its key.")
    signature, timestamp = headers.get(SIGNATURE_HEADER, "").strip(), headers.get(TIMESTAMP_HEADER, "").strip()
    if not signature or not timestamp:
        raise SignatureError(f"The {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} headers are required.")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError(f"The {TIMESTAMP_HEADER} header is not a number of seconds.") from None
    if abs((now or utcnow()).timestamp() - sent) > TOLERANCE_SECONDS:
        raise SignatureError(f"The {TIMESTAMP_HEADER} is more than ten minutes away from now; the request is refused "
                             "as too old (or the server clock is wrong).")
    key = public_key(settings.sendgrid_webhook_public_key)
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode("ascii") + body,
                   ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise SignatureError(f"The {SIGNATURE_HEADER} does not match this request; check "
                             "SENDGRID_WEBHOOK_PUBLIC_KEY.") from None


def _event_id(event: dict[str, Any]) -> str:
    if event.get("sg_event_id"):
        return f"{SERVICE}:{event['sg_event_id']}"
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()[:40]
    return f"{SERVICE}:{digest}"


def _incoming(event: dict[str, Any], *, now: datetime) -> tuple[Incoming, list[str | None]] | None:
    kind = str(event.get("event") or "")
    queued = bare_id(str(event.get("sg_message_id") or "").split(".", 1)[0])
    ours = bare_id(event.get("smtp-id"))
    if not kind or not (queued or ours or event.get("recipient_id")):
        return None
    try:
        when = datetime.fromtimestamp(int(event["timestamp"]), UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        when = now
    payload: dict[str, Any] = {"service": SERVICE, "sendgrid_event": kind, "to": event.get("email")}
    reason = str(event.get("reason") or event.get("response") or "").strip()
    type = "status"
    if kind == "delivered":
        type = "delivered"
    elif kind == "deferred":
        type = "delivery_delayed"
        payload["response"] = reason
    elif kind == "bounce":
        bounce_type = "Transient" if event.get("type") == "blocked" else "Permanent"
        detail = " ".join(x for x in (str(event.get("status") or ""), reason) if x) or "the receiving server refused it"
        type = "bounced"
        payload.update(bounce_type=bounce_type, error=f"{bounce_type} bounce: {detail}")
    elif kind == "dropped":
        source = DROPPED_AS_OPT_OUT.get(reason.lower())
        if source:
            type = "opted_out"
            payload.update(source=source, reason=f"SendGrid did not send it: the address is suppressed ({reason})")
        else:
            type = "failed"
            payload["error"] = f"SendGrid did not send the e-mail: {reason or 'dropped'}"
    elif kind == "spamreport":
        type = "complained"
        payload["error"] = "the customer marked the e-mail as spam"
    elif kind in ("unsubscribe", "group_unsubscribe"):
        type = "opted_out"
        payload.update(source="unsubscribe_link", reason="the customer unsubscribed through SendGrid")
    elif kind == "open":
        type = "opened"
    elif kind == "click":
        type = "clicked"
        payload["url"] = event.get("url")
    item = Incoming(provider=PROVIDER, event_id=_event_id(event), type=type, occurred_at=when, channel="email",
                    message_id=queued or ours, recipient_id=as_uuid(event.get("recipient_id")),
                    step=as_int(event.get("step")), payload={k: v for k, v in payload.items() if v not in (None, "")})
    return item, [queued, ours]


def parse(body: bytes, *, now: datetime | None = None) -> list[tuple[Incoming, list[str | None]]]:
    """The events of one (verified) Event Webhook request, each with its candidate message ids."""
    now = now or utcnow()
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("The body is not JSON; SendGrid sends a JSON array of events.") from None
    if not isinstance(events, list):
        raise BadPayload("The body is not a JSON array; SendGrid sends a JSON array of events.")
    found = (_incoming(e, now=now) for e in events if isinstance(e, dict))
    return [f for f in found if f is not None]


def handle(session: Session, *, body: bytes, now: datetime | None = None) -> Ingested:
    """Store and apply the events of one (already verified) Event Webhook request."""
    return ingest_matched(session, parse(body, now=now), now=now)
