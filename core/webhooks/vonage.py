"""Vonage's webhooks (SMS API format): delivery receipts and inbound texts.

Vonage calls ``PUBLIC_BASE_URL/webhooks/vonage/status`` and ``…/inbound`` by GET (parameters in
the query) or POST (a form or a JSON body), as set in its dashboard.  Every request must be
signed: with signed webhooks on, Vonage adds ``timestamp``, ``nonce`` and ``sig`` to the
parameters, ``sig`` being, over every other parameter sorted by name and written
``&name=value`` (``&`` and ``=`` in values replaced by ``_``), either ``md5(string + secret)``
(``VONAGE_SIGNATURE_METHOD=md5hash``, the dashboard's "MD5 hash") or the hex HMAC of the string
keyed with the secret (``md5``, ``sha1``, ``sha256``, ``sha512``) — :func:`signature`, checked
against the official SDK in the tests.  A request without a valid ``sig``, or whose
``timestamp`` is more than five minutes off, is refused (401) before anything changes; so is
every request while no secret is configured.  The secret is ``VONAGE_SIGNATURE_SECRET``, or,
for a business with its own Vonage account, the signature secret it stored (found by the
sender the request names, ``to``).

**Delivery receipts** (``messageId``, ``status``, ``err-code``, ``client-ref``,
``message-timestamp``, …): ``delivered`` → delivered; ``expired``, ``failed``, ``rejected``,
``undelivered`` → failed with the reason in words (err-code 3, the number is no longer in service,
and 4, the customer bars texts, are permanent failures, not opt-outs: only the customer's own
request is one); ``accepted``, ``buffered``, ``unknown`` → kept on the timeline.  The
``client-ref`` names the recipient and step (:func:`core.channels.vonage_sms.client_ref`), so a
receipt that overtakes the dispatcher's record of the message is matched anyway — and it is
what settles a try whose answer was lost.  Event id: ``<messageId>:<status>``; a replay changes
nothing.  A long text has one receipt per part.

**Inbound texts** (``msisdn``, ``to``, ``text``, ``messageId``, ``concat*``): the parts of a long
text are gathered (under a lock, whatever order they come in) and the whole text is handled by
:mod:`core.inbound_sms`, the policy every SMS provider shares.  Vonage has no reply in the
webhook's answer, so the one reply (a STOP confirmation, HELP, START) is sent through the SMS API
from the number the customer wrote to, after the answer — once: a replayed webhook sends none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import inbound_sms, senders
from core.channels import vonage_sms
from core.channels.base import ChannelError
from core.channels.vonage_sms import VonageChannel, parse_client_ref
from core.config import Settings
from core.db import utcnow
from core.events import record_event
from core.models import OutreachEvent, Profile
from core.vault import VaultError
from core.webhooks import BadPayload, Incoming, Ingested, SignatureError, ingest

log = logging.getLogger(__name__)

PROVIDER = "vonage"
# the two URLs to configure at Vonage, under PUBLIC_BASE_URL (the adapter sends the first with every text)
STATUS_PATH = vonage_sms.STATUS_PATH
INBOUND_PATH = "/webhooks/vonage/inbound"
TOLERANCE_SECONDS = 300
DELIVERED = ("delivered",)
FAILED = ("expired", "failed", "rejected", "undelivered")
STATUS_TEXT = {"expired": "expired before it could be delivered", "failed": "could not be delivered",
               "rejected": "was rejected", "undelivered": "could not be delivered"}
# delivery-receipt err-codes (Vonage's delivery-receipt guide), in words
RECEIPT_ERRORS = {
    "1": "unknown error", "2": "the phone is off or out of coverage (temporary)",
    "3": "the number is no longer in service (permanent)", "4": "the customer bars texts on this number",
    "5": "the number was ported and could not be routed", "6": "the carrier rejected it as spam",
    "7": "the phone was busy", "8": "a network error", "9": "the number is not valid",
    "10": "the carrier refused the message", "11": "the number cannot be reached by text",
    "12": "the destination is unreachable", "13": "the subscriber is under an age restriction",
    "14": "the carrier blocks this number", "15": "the prepaid subscriber has no credit",
    "16": "the gateway's quota is exceeded", "50": "the sender's registration (entity) filter blocked it",
    "51": "the sender-ID filter blocked it", "52": "the carrier's content filter blocked it",
    "53": "the carrier's consent filter blocked it", "54": "a regulation blocked it", "99": "a general error",
}
CONCAT_PREFIX = "concat:"


# --- reading and checking a request ---------------------------------------------------------------------


def read_params(*, query: str, body: bytes, content_type: str | None) -> dict[str, Any]:
    """The parameters of a Vonage webhook: the query's, then the body's (a form, or a JSON object)."""
    try:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        if body.strip():
            if "json" in (content_type or "").lower() or body.lstrip()[:1] == b"{":
                data = json.loads(body.decode("utf-8"))
                if not isinstance(data, dict):
                    raise ValueError("not an object")
                params.update(data)
            else:
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise BadPayload("The body is neither a form nor a JSON object of Vonage's parameters in UTF-8.") from None
    return params


def _value(value: Any) -> str:
    # as Vonage's SDK writes a value into the signed string: "&" and "=" in text become "_"
    return value.replace("&", "_").replace("=", "_") if isinstance(value, str) else f"{value}"


def signature(params: Mapping[str, Any], *, secret: str, method: str) -> str:
    """The ``sig`` of ``params`` (every parameter but ``sig``) with ``secret`` by ``method`` (``md5hash`` or
    an HMAC digest: ``md5``, ``sha1``, ``sha256``, ``sha512``)."""
    text = "".join(f"&{name}={_value(params[name])}" for name in sorted(params) if name != "sig")
    if method == "md5hash":
        return hashlib.md5((text + secret).encode("utf-8")).hexdigest()
    if method not in ("md5", "sha1", "sha256", "sha512"):
        raise ValueError(f"unknown Vonage signature method {method!r}")
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), getattr(hashlib, method)).hexdigest()


def verify(params: Mapping[str, Any], *, settings: Settings, business_secrets: Callable[[], list[str]] | None = None,
           now: float | None = None) -> None:
    """Refuse (401) a request that Vonage did not sign with a secret of ours, or signed too long ago."""
    platform = settings.vonage_signature_secret.get_secret_value() if settings.vonage_signature_secret else None
    given = str(params.get("sig") or "").strip().lower()
    if not given:
        if platform is None:
            raise SignatureError("VONAGE_SIGNATURE_SECRET is not set, so requests claiming to come from Vonage "
                                 "cannot be checked.")
        raise SignatureError("The request carries no sig: turn on signed webhooks for the Vonage account.")
    try:
        stamp = int(str(params.get("timestamp")).strip())  # epoch seconds
    except ValueError:
        raise SignatureError("The signed request carries no valid timestamp.") from None
    if abs((time.time() if now is None else now) - stamp) > TOLERANCE_SECONDS:
        raise SignatureError("The request's timestamp is more than five minutes off: refused as a possible replay.")
    method = settings.vonage_signature_method

    def matches(secret: str) -> bool:
        return hmac.compare_digest(given, signature(params, secret=secret, method=method))

    if platform is not None and matches(platform):
        return
    others = business_secrets() if business_secrets is not None else []
    if any(matches(secret) for secret in others):
        return
    if platform is None and not others:
        raise SignatureError("VONAGE_SIGNATURE_SECRET is not set, so requests claiming to come from Vonage cannot "
                             "be checked.")
    raise SignatureError("The sig does not match this request; check VONAGE_SIGNATURE_SECRET and "
                         "VONAGE_SIGNATURE_METHOD (the dashboard's signature method).")


def business_secrets(session: Session, *, params: Mapping[str, Any], settings: Settings) -> list[str]:
    """The signature secrets of the businesses with their own Vonage account whose own sender the request
    names (``to``) — and, when it names one, whose API key it is (``api-key``)."""
    numbers = inbound_sms.sender_variants(str(params.get("to") or ""))
    if not numbers:
        return []
    api_key = str(params.get("api-key") or "").strip()
    found = []
    for profile in session.scalars(select(Profile).where(Profile.sms_from.in_(numbers),
                                                         Profile.encrypted_secrets.is_not(None))):
        try:
            stored = senders.stored_secrets(profile, settings)
        except VaultError:
            continue
        if stored.get("vonage_signature_secret") and (not api_key or stored.get("vonage_api_key") in (None, api_key)):
            found.append(stored["vonage_signature_secret"])
    return found


def verify_request(*, params: Mapping[str, Any], settings: Settings, factory: sessionmaker[Session],
                   now: float | None = None) -> None:
    """:func:`verify`, looking up a business's own secret (a read, nothing written) only when the platform's
    does not sign the request."""

    def lookup() -> list[str]:
        with factory() as session:
            return business_secrets(session, params=params, settings=settings)

    verify(params, settings=settings, business_secrets=lookup, now=now)


# --- delivery receipts ----------------------------------------------------------------------------------------


def _text(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value).strip()


def _when(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def describe_error(code: str | None) -> str:
    """What a delivery-receipt err-code means, in words."""
    if not code:
        return "no error code"
    return RECEIPT_ERRORS.get(code, f"error {code}")


def parse_status(params: Mapping[str, Any], *, now: datetime) -> list[Incoming]:
    """The event of one delivery receipt."""
    message_id = _text(params, "messageId") or _text(params, "message-id")
    status = _text(params, "status").lower()
    if not message_id or not status:
        return []
    ref = _text(params, "client-ref") or None
    target = parse_client_ref(ref)
    code = _text(params, "err-code") or None
    payload: dict[str, Any] = {"status": status, "err_code": code, "client_ref": ref}
    for name, key in (("msisdn", "to"), ("network-code", "network"), ("price", "price"), ("scts", "scts")):
        if _text(params, name):
            payload[key] = _text(params, name)
    common: dict[str, Any] = {
        "provider": PROVIDER, "channel": "sms", "message_id": message_id[:100], "event_id": f"{message_id}:{status}",
        "occurred_at": min(_when(_text(params, "message-timestamp")) or now, now),
        "recipient_id": target[0] if target else None, "step": target[1] if target else None}
    if status in DELIVERED:
        return [Incoming(type="delivered", payload=payload, **common)]
    if status in FAILED:
        reason = f"Vonage: the text {STATUS_TEXT[status]}"
        if code and code != "0":
            reason += f" (error {code}: {describe_error(code)})"
        return [Incoming(type="failed", payload={**payload, "error": reason}, **common)]
    return [Incoming(type="status", payload=payload, **common)]


def handle_status(session: Session, *, params: Mapping[str, Any], now: datetime | None = None) -> Ingested:
    """Store and apply one (already verified) delivery receipt."""
    now = now or utcnow()
    return ingest(session, parse_status(params, now=now), now=now)


# --- inbound texts ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A text to send back to a customer after answering Vonage."""

    settings: Settings
    to: str
    sender: str | None
    text: str


@dataclass
class InboundDone:
    """What an inbound webhook did, and the reply still to send."""

    ack: Ingested = field(default_factory=Ingested)
    reply: Reply | None = None
    kind: str | None = None


def _part(params: Mapping[str, Any]) -> tuple[str, int, int] | None:
    """``(concat-ref, part, total)`` of one part of a long text (``None`` for a text of one part)."""
    if _text(params, "concat").lower() not in ("true", "1"):
        return None
    try:
        part, total = int(_text(params, "concat-part")), int(_text(params, "concat-total"))
    except ValueError:
        return None
    ref = _text(params, "concat-ref")
    if not ref or not 1 <= part <= total or total > 255:
        return None
    return ref, part, total


def _gather(session: Session, params: Mapping[str, Any], part: tuple[str, int, int], *, text: str,
            message_id: str, now: datetime) -> tuple[str, str] | None:
    """Keep one part of a long text; once every part is in, ``(whole text, id of the first part)``.

    The parts are kept on one event row per text, locked while a part is added, so parts arriving
    at once (on PostgreSQL) are all seen by the last of them; once complete, the row's id is
    freed, since the handset reuses its reference numbers."""
    ref, number, total = part
    key = f"{CONCAT_PREFIX}{_text(params, 'to')}:{_text(params, 'msisdn')}:{ref}:{total}"[:200]
    record_event(session, provider=PROVIDER, provider_event_id=key, type="status", occurred_at=now, channel="sms",
                 payload={"parts": {}, "concat_ref": ref, "total": total}, received_at=now)
    head = session.scalars(select(OutreachEvent).where(
        OutreachEvent.provider == PROVIDER, OutreachEvent.provider_event_id == key)
        .with_for_update().execution_options(populate_existing=True)).one()
    parts = dict((head.payload or {}).get("parts") or {})
    parts[str(number)] = {"text": text, "message_id": message_id}
    head.payload = {**(head.payload or {}), "parts": parts}
    head.processed_at = head.processed_at or now
    head.error_message = "a part of a long inbound text"
    if any(str(i) not in parts for i in range(1, total + 1)):
        session.flush()
        return None
    first = str(parts["1"]["message_id"])
    head.provider_event_id = f"{CONCAT_PREFIX}done:{first}:{uuid.uuid4().hex}"[:200]
    session.flush()
    return "".join(str(parts[str(i)]["text"]) for i in range(1, total + 1)), first


def _reply_settings(session: Session, owner: uuid.UUID | None, settings: Settings) -> Settings:
    profile = session.get(Profile, owner) if owner is not None else None
    return senders.settings_for(profile, settings) if profile is not None else settings


def handle_inbound(session: Session, *, params: Mapping[str, Any], settings: Settings,
                   now: datetime | None = None) -> InboundDone:
    """Act on one (already verified) inbound text, or one part of it; the reply is left to the caller
    (:func:`send_reply`, after the answer to Vonage)."""
    now = now or utcnow()
    message_id = _text(params, "messageId") or _text(params, "message-id")
    sender = _text(params, "msisdn")
    done = InboundDone(ack=Ingested(received=1))
    if not message_id or not sender or _text(params, "type").lower() == "binary":
        done.ack.ignored = 1
        return done
    text = params.get("text")
    text = "" if text is None else str(text)
    part = _part(params)
    if part is not None:
        whole = _gather(session, params, part, text=text, message_id=message_id, now=now)
        if whole is None:
            return done  # kept until the other parts come
        text, message_id = whole
    handled = inbound_sms.handle(session, inbound_sms.InboundText(
        provider=PROVIDER, message_id=message_id, sender=sender, to=_text(params, "to") or None, text=text), now=now)
    done.kind = handled.kind
    if handled.replayed:
        done.ack.replayed = 1
    elif handled.applied or handled.businesses:
        done.ack.applied = 1
    else:
        done.ack.ignored = 1
    if handled.reply and not handled.replayed and handled.phone:
        done.reply = Reply(settings=_reply_settings(session, handled.owner, settings), to=handled.phone,
                           sender=_text(params, "to") or None, text=handled.reply)
    return done


def send_reply(reply: Reply, *, adapter: Callable[[Settings], VonageChannel] = VonageChannel) -> str | None:
    """Send the reply to an inbound text through the SMS API; its id, or ``None`` when it could not go (logged:
    the customer's request itself is already recorded)."""
    try:
        return adapter(reply.settings).reply(to=reply.to, text=reply.text, sender=reply.sender)
    except ValueError as exc:
        log.warning("vonage: no reply to an inbound text: %s", exc)
    except ChannelError as exc:
        log.warning("vonage: the reply to an inbound text was not sent: %s", exc.reason)
    return None
