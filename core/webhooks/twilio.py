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

``POST /webhooks/twilio/inbound`` (``From``, ``Body``, ``MessageSid``),
answered with TwiML:

- STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT (the whole
  message, any case, trailing punctuation ignored — plus a few plain-English
  variants such as "stop texting me") → an SMS opt-out (source ``sms_stop``)
  of that number with **every business that has texted it**: all businesses
  share the platform's Twilio sender, and Twilio itself stops that sender from
  texting the number again, so every one of them must stop too;
- START, UNSTOP, and YES *when the number is opted out* → the SMS opt-outs
  that came from STOP are removed (opt-outs recorded by staff stay), with a
  confirmation;
- HELP, INFO → the name and phone of the business that texted the number last;
- anything else → a reply to the most recent text sent to that number
  (``replied``: a response); a positive one (YES, Y, SURE, OK, BOOK, 👍, "book
  me in" …, with no "no"/"not"/"later" in it) also converts.

The inbound ``MessageSid`` is the id of the first event an inbound text
records, so a replayed webhook changes nothing (not even an opt-in).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import desc, func, select
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.twiml.messaging_response import MessagingResponse

from core.config import Settings
from core.contacts import ContactError, normalize_phone
from core.db import utcnow
from core.models import CampaignRecipient, OptOut, OutreachAttempt, Profile
from core.optouts import opt_back_in
from core.webhooks import BadPayload, Incoming, Ingested, SignatureError, ingest

PROVIDER = "twilio"
# the two URLs to configure at Twilio, under PUBLIC_BASE_URL (the adapter sends the first with every text)
STATUS_PATH = "/webhooks/twilio/status"
INBOUND_PATH = "/webhooks/twilio/inbound"
SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
# said in plain words: honoured like the keywords (Twilio itself only knows the keywords)
OPT_OUT_PHRASES = frozenset({"STOP PLEASE", "PLEASE STOP", "STOP TEXTING", "STOP TEXTING ME", "STOP MESSAGING ME",
                             "STOP SENDING", "STOP SENDING ME TEXTS", "OPT OUT", "UNSUBSCRIBE ME", "REMOVE ME",
                             "STOP ALL", "STOP IT"})
OPT_IN_WORDS = frozenset({"START", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
POSITIVE_WORDS = frozenset({"yes", "y", "yeah", "yep", "yup", "ya", "yea", "sure", "ok", "okay", "k", "book",
                            "absolutely", "definitely", "certainly", "please", "perfect", "great", "deal"})
POSITIVE_PHRASES = ("book me", "sign me up", "count me in", "i'm in", "im in", "see you", "i'd love", "id love",
                    "let's do it", "lets do it", "sounds good", "sounds great", "i would love", "works for me")
POSITIVE_EMOJI = ("👍", "👌", "🙌", "✅", "😍")
NEGATIVE_WORDS = frozenset({"no", "not", "don't", "dont", "never", "later", "busy", "maybe", "cancel", "can't",
                            "cant", "won't", "wont", "nope", "stop", "unsubscribe"})
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


def keyword(text: str) -> str:
    """The whole message as a keyword: trimmed, upper-cased, trailing punctuation dropped."""
    return re.sub(r"[\s.!?,;:'\"]+", " ", text).strip().upper()


def is_opt_out(text: str) -> bool:
    word = keyword(text)
    return word in OPT_OUT_WORDS or word in OPT_OUT_PHRASES


def is_positive(text: str) -> bool:
    """Whether a reply says yes (a booking, an agreement), not just anything."""
    lowered = text.strip().lower()
    words = re.findall(r"[a-z']+", lowered)
    if any(w in NEGATIVE_WORDS for w in words):
        return False
    if any(e in text for e in POSITIVE_EMOJI):
        return True
    if words and words[0] in POSITIVE_WORDS:
        return True
    return any(phrase in lowered for phrase in POSITIVE_PHRASES)


def _latest_by_business(session: Session, phone: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``(profile_id, recipient_id)`` of the most recent text each business sent to ``phone``,
    the most recent first."""
    a, r = OutreachAttempt, CampaignRecipient
    last = func.max(a.started_at).label("last")
    rows = session.execute(
        select(r.profile_id, r.id, last).join(a, a.recipient_id == r.id)
        .where(r.contact_key == phone, r.customer_phone == phone, a.channel == "sms", a.outcome == "accepted")
        .group_by(r.profile_id, r.id).order_by(desc(last)).limit(500)).all()
    latest: dict[uuid.UUID, uuid.UUID] = {}
    for profile_id, recipient_id, _ in rows:
        latest.setdefault(profile_id, recipient_id)
    return list(latest.items())


def _stopped_by(session: Session, phone: str) -> list[uuid.UUID]:
    """Businesses for which ``phone`` has opted out of texts by replying STOP."""
    return list(session.scalars(select(OptOut.profile_id).where(
        OptOut.contact == phone, OptOut.channel == "sms", OptOut.source == "sms_stop")))


def _names(session: Session, profile_ids: list[uuid.UUID]) -> list[str]:
    if not profile_ids:
        return []
    found = dict(session.execute(select(Profile.id, Profile.business_name).where(Profile.id.in_(profile_ids))).all())
    return [found[p] for p in profile_ids if p in found]


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return names[0] if names else ""
    return ", ".join(names[:-1]) + " and " + names[-1]


def _twiml(text: str | None) -> str:
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)


def handle_inbound(session: Session, *, params: Mapping[str, str], now: datetime | None = None) -> str:
    """Act on one (already verified) inbound text; returns the TwiML answer."""
    now = now or utcnow()
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    raw_from = (params.get("From") or "").strip()
    body = params.get("Body") or ""
    if not sid or not raw_from:
        return _twiml(None)
    try:
        phone = normalize_phone(raw_from)
    except ContactError:
        return _twiml(None)  # not a phone number (a short code, a channel address): nothing of ours
    latest = _latest_by_business(session, phone)
    profiles = [p for p, _ in latest]
    word = keyword(body)
    advanced = (params.get("OptOutType") or "").strip().upper()  # Twilio Advanced Opt-Out, when enabled
    common: dict[str, Any] = {"provider": PROVIDER, "channel": "sms", "occurred_at": now}
    payload = {"text": body[:1600], "from": phone}

    def first(kind: str, extra: dict[str, object] | None = None) -> bool:
        """Record the message's own event (id: its MessageSid); False when it is a replay."""
        rid = latest[0][1] if latest else None
        item = Incoming(event_id=sid, type=kind, recipient_id=rid, payload={**payload, **(extra or {})}, **common)
        return ingest(session, [item], now=now).replayed == 0

    if advanced == "STOP" or is_opt_out(body):
        if first("opted_out", {"reason": f"replied {word or 'STOP'}"}):
            ingest(session, [Incoming(event_id=f"{sid}:{profile_id}", type="opted_out", recipient_id=rid,
                                      payload={**payload, "reason": f"replied {word or 'STOP'}"}, **common)
                             for profile_id, rid in latest[1:]], now=now)
        names = _join(_names(session, profiles))
        return _twiml(f"You're unsubscribed{' from ' + names if names else ''} and will get no more texts. "
                      f"Reply START to resubscribe.")

    stopped = _stopped_by(session, phone)
    if advanced == "START" or word in OPT_IN_WORDS or (word in ("YES", "Y") and stopped):
        if first("opted_in") and stopped:
            opt_back_in(session, profile_ids=stopped, contact=phone, channel="sms", source="sms_stop")
            ingest(session, [Incoming(event_id=f"{sid}:{profile_id}", type="opted_in", recipient_id=rid,
                                      payload=payload, **common)
                             for profile_id, rid in latest[1:] if profile_id in stopped], now=now)
        names = _join(_names(session, stopped or profiles))
        return _twiml(f"You're subscribed again{' to texts from ' + names if names else ''}. "
                      f"Reply STOP to opt out.")

    if advanced == "HELP" or word in HELP_WORDS:
        first("status", {"keyword": word or "HELP"})
        profile = session.get(Profile, latest[0][0]) if latest else None
        if profile is None:
            return _twiml("Reply STOP to opt out of these texts.")
        contact = f" Call us at {profile.phone}." if profile.phone else ""
        return _twiml(f"{profile.business_name}.{contact} Reply STOP to opt out.")

    if first("replied") and latest and is_positive(body):
        ingest(session, [Incoming(event_id=f"{sid}:converted", type="converted", recipient_id=latest[0][1],
                                  payload={**payload, "source": "positive SMS reply"}, **common)], now=now)
    return _twiml(None)
