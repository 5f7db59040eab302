"""Twilio's webhooks: message status callbacks and inbound texts.

Both are form POSTs signed with ``X-Twilio-Signature`` (HMAC-SHA1 of the URL
Twilio called plus every parameter, keyed with ``TWILIO_AUTH_TOKEN``), checked
with the SDK's ``RequestValidator`` over the URL rebuilt from
``PUBLIC_BASE_URL`` + path (+ query) — never the request's Host header, which
a proxy in front of the API rewrites.  Every parameter Twilio sent takes part,
whatever it is (Twilio adds fields over time).

``POST /webhooks/twilio/status`` (``MessageSid``, ``MessageStatus``,
``ErrorCode``): ``delivered`` → delivered; ``undelivered``/``failed`` → failed
with Twilio's reason (21610 → the number opted out of texts);
``queued``/``sending``/``sent``/… → kept on the timeline.  Event id:
``<MessageSid>:<status>``.

``POST /webhooks/twilio/inbound`` (``From``, ``To``, ``Body``, ``MessageSid``,
``MessagingServiceSid``, ``OptOutType`` with Advanced Opt-Out) is read into a
:class:`core.inbound_sms.InboundText` and handled by :mod:`core.inbound_sms`, the
policy every SMS provider shares: STOP and any plain request to stop opt the
number out of texts with the businesses that texted it from the number it wrote
to (Twilio itself also stops that sender from texting the number again);
START/UNSTOP (YES once opted out) opt back in; HELP/INFO name the business;
anything else is a response, a positive one a conversion.  The reply, if any,
is the TwiML answer.  The inbound ``MessageSid`` is the id of the first event
the text records, so a replayed webhook changes nothing (not even an opt-in).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.twiml.messaging_response import MessagingResponse

from core import inbound_sms
from core.config import Settings
from core.db import utcnow
from core.inbound_sms import InboundText
from core.webhooks import BadPayload, Incoming, Ingested, SignatureError, ingest

PROVIDER = "twilio"
# the two URLs to configure at Twilio, under PUBLIC_BASE_URL (the adapter sends the first with every text)
STATUS_PATH = "/webhooks/twilio/status"
INBOUND_PATH = "/webhooks/twilio/inbound"
SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

ERRORS = {
    "21610": "the number replied STOP to this sender",
    "21614": "the number is not a mobile number",
    "21211": "the number is not a valid phone number",
    "30001": "Twilio's queue was full",
    "30002": "the Twilio account is suspended",
    "30003": "the phone is unreachable (off or out of coverage)",
    "30004": "the message was blocked by the recipient or the carrier",
    "30005": "the number does not exist",
    "30006": "the number is a landline or its carrier cannot take texts",
    "30007": "the carrier filtered the message as spam",
    "30008": "the carrier gave no reason",
    "30032": "the toll-free sender is not verified",
    "30034": "the sender is not registered for A2P 10DLC",
}


class FormParams(dict[str, str]):
    """Form parameters as Twilio sent them: the first value by name, and every value for the
    signature (``getlist``, as ``RequestValidator`` asks for repeated names)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self._lists: dict[str, list[str]] = {}
        for name, value in pairs:
            self._lists.setdefault(name, []).append(value)
            self.setdefault(name, value)

    def getlist(self, name: str) -> list[str]:
        return list(self._lists.get(name, []))


def form(body: bytes) -> FormParams:
    """The parameters of a form-encoded body (blank values kept: Twilio signs them too)."""
    try:
        return FormParams(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except (UnicodeDecodeError, ValueError):
        raise BadPayload("The body is not a form (application/x-www-form-urlencoded) in UTF-8.") from None


def public_url(settings: Settings, path: str, query: str = "") -> str:
    """The URL Twilio called: ``PUBLIC_BASE_URL`` + path (+ query)."""
    return settings.public_base_url.rstrip("/") + path + (f"?{query}" if query else "")


def verified_form(*, settings: Settings, path: str, query: str, body: bytes,
                  headers: Mapping[str, str]) -> FormParams:
    """The parameters of a request to ``path`` of ours, once its signature is checked (else 401)."""
    params = form(body)
    verify(settings=settings, url=public_url(settings, path, query), params=params, headers=headers)
    return params


def verify(*, settings: Settings, url: str, params: FormParams, headers: Mapping[str, str]) -> None:
    """Refuse (401) a request whose ``X-Twilio-Signature`` does not sign ``url`` and ``params``."""
    if settings.twilio_auth_token is None:
        raise SignatureError("TWILIO_AUTH_TOKEN is not set, so requests claiming to come from Twilio cannot be "
                             "checked.")
    signature = headers.get(SIGNATURE_HEADER) or ""
    if not signature:
        raise SignatureError("The X-Twilio-Signature header is missing.")
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    algorithm = get_signature_algorithm(headers.get(SETTINGS_HEADER))
    if not validator.validate(url, params, signature, algorithm=algorithm):
        raise SignatureError("The X-Twilio-Signature does not match this request; check TWILIO_AUTH_TOKEN and that "
                             "PUBLIC_BASE_URL is the address configured in Twilio.")


# --- status callbacks ---------------------------------------------------------------------------


def describe_error(code: str | None) -> str:
    """What a Twilio error code means, in words."""
    if not code:
        return "no error code"
    return ERRORS.get(code, f"see https://www.twilio.com/docs/errors/{code}")


def parse_status(params: Mapping[str, str], *, now: datetime) -> list[Incoming]:
    """The event of one message status callback."""
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not sid or not status:
        return []
    code = (params.get("ErrorCode") or "").strip() or None
    common: dict[str, Any] = {"provider": PROVIDER, "channel": "sms", "message_id": sid[:100], "occurred_at": now,
              "event_id": f"{sid}:{status}"}
    if status == "delivered":
        return [Incoming(type="delivered", payload={"status": status}, **common)]
    if status in ("undelivered", "failed", "canceled"):
        if code == "21610":
            return [Incoming(type="opted_out", payload={"error": f"Twilio {status}: {describe_error(code)}",
                                                        "error_code": code}, **common)]
        reason = (f"Twilio {status}: error {code} — {describe_error(code)}" if code
                  else f"Twilio {status} the message")
        return [Incoming(type="failed", payload={"error": reason, "error_code": code, "status": status}, **common)]
    return [Incoming(type="status", payload={"status": status}, **common)]


def handle_status(session: Session, *, params: Mapping[str, str], now: datetime | None = None) -> Ingested:
    """Store and apply one (already verified) status callback."""
    now = now or utcnow()
    return ingest(session, parse_status(params, now=now), now=now)


# --- inbound texts ----------------------------------------------------------------------------------


def _twiml(text: str | None) -> str:
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)


def inbound_text(params: Mapping[str, str]) -> InboundText | None:
    """The provider-neutral form of one inbound-text webhook (``None`` when it carries no text of a customer)."""
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    sender = (params.get("From") or "").strip()
    if not sid or not sender:
        return None
    return InboundText(provider=PROVIDER, message_id=sid, sender=sender, to=(params.get("To") or "").strip() or None,
                       text=params.get("Body") or "", service=(params.get("MessagingServiceSid") or "").strip() or None,
                       hint=(params.get("OptOutType") or "").strip() or None)


def handle_inbound(session: Session, *, params: Mapping[str, str], now: datetime | None = None) -> str:
    """Act on one (already verified) inbound text (:func:`core.inbound_sms.handle`); returns the TwiML
    answer, which carries the reply (a replayed webhook is answered alike: Twilio only retries a text whose
    answer it never got)."""
    text = inbound_text(params)
    if text is None:
        return _twiml(None)
    return _twiml(inbound_sms.handle(session, text, now=now).reply)
