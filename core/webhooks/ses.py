"""Amazon SES bounces, complaints and deliveries, through Amazon SNS: ``POST /webhooks/ses``.

SNS posts each message as JSON (with ``Content-Type: text/plain``).  Before anything else the
message is verified (:func:`verify`):

- its ``TopicArn`` is one of ``SES_TOPIC_ARNS`` — required: SNS signs the messages of *every*
  topic, an attacker's too, so without the list anyone could post a signed message of their own
  topic here;
- ``SigningCertURL`` is ``https``, ends in ``.pem`` and its host is
  ``sns.<region>.amazonaws.com`` (``.com.cn`` in China); the certificate is fetched once per URL
  and kept (:class:`SnsClient`), and must be valid now;
- ``Signature`` (base64) is SHA1withRSA (``SignatureVersion`` 1) or SHA256withRSA (2) of the
  canonical string: ``Key\\nValue\\n`` for ``Message, MessageId, Subject`` (only when present)
  ``, Timestamp, TopicArn, Type`` of a notification, and ``Message, MessageId, SubscribeURL,
  Timestamp, Token, TopicArn, Type`` of a (un)subscription confirmation;
- its ``Timestamp`` is at most two hours old (SNS gives up redelivering within one hour) and not
  in the future: a captured message cannot be replayed later.

A ``SubscriptionConfirmation`` of an allowed topic is confirmed by a GET of its ``SubscribeURL``
(same host rule).  A ``Notification`` carries SES's JSON in ``Message``: ``notificationType``
(identity notifications) or ``eventType`` (configuration-set event publishing) —

- ``Bounce`` → bounced, one event per bounced recipient, with ``bounceType`` (``Permanent``
  opts the address out, source ``bounce``; ``Transient`` and ``Undetermined`` fail this e-mail
  only);
- ``Complaint`` → complained (opt-out, source ``complaint``); feedback type ``not-spam`` is only
  kept on the timeline;
- ``Delivery`` → delivered; ``Open`` → opened; ``Click`` → clicked, with the link;
- ``Reject`` and ``Rendering Failure`` → failed; ``DeliveryDelay`` → delivery delayed;
- ``Subscription`` with ``unsubscribeAll`` → opted out; ``Send`` → timeline.

The event id is ``ses:<SNS MessageId>:<n>`` (SNS redelivers a message under the same id: a
replay changes nothing).  The e-mail is matched through the attempt that sent it: SES's
``mail.messageId`` (the id of its ``250 Ok <id>`` reply, stored as the provider message id),
else our ``Message-ID`` (``mail.commonHeaders.messageId``), else the ``recipient_id`` and
``step`` of the message tags (``mail.tags``, with event publishing).

Its events are the ``smtp`` provider's, as the attempts that sent the e-mails are
(:mod:`core.webhooks.smtp_events`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import as_uuid, utcnow
from core.errors import DomainError
from core.webhooks import Incoming, Ingested, SignatureError, as_int
from core.webhooks.smtp_events import PROVIDER, bare_id, ingest_matched, iso_time

log = logging.getLogger(__name__)

SERVICE = "ses"
SNS_HOST = re.compile(r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$")
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
MAX_AGE = timedelta(hours=2)
MAX_AHEAD = timedelta(minutes=5)
FETCH_TIMEOUT = 10.0  # SNS waits 15 s for an answer


class SnsUnavailable(DomainError):
    """SNS could not be reached to fetch a certificate or confirm a subscription: SNS will retry."""

    status_code = 503


# --- verification -----------------------------------------------------------------------------------------


def trusted_sns_url(url: Any, *, pem: bool) -> bool:
    """Whether ``url`` is an https URL of SNS itself (and, for a certificate, a ``.pem``)."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    return (parts.scheme == "https" and not parts.username and not parts.password and bool(SNS_HOST.match(host))
            and (not pem or parts.path.endswith(".pem")))


class SnsClient:
    """How this service talks to SNS: signing certificates (fetched once per URL and kept) and
    subscription confirmations.  Tests give one that answers from a local server."""

    def __init__(self, *, timeout: float = FETCH_TIMEOUT) -> None:
        self.timeout = timeout
        self._certificates: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> bytes:
        """GET ``url`` (an https URL of SNS, checked by the caller); raises on any failure."""
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            response = client.get(url)
            response.raise_for_status()
            return response.content

    def certificate(self, url: str) -> x509.Certificate:
        cached = self._certificates.get(url)
        if cached is not None:
            return cached
        try:
            pem = self.get(url)
        except Exception as exc:  # any failure to fetch: SNS retries the message later
            raise SnsUnavailable(f"The SNS signing certificate could not be fetched from {url} ({exc}); the "
                                 "message is refused for now and SNS will deliver it again.") from None
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise SignatureError(f"{url} does not hold a PEM certificate.") from None
        with self._lock:
            if len(self._certificates) > 64:
                self._certificates.clear()
            self._certificates[url] = certificate
        return certificate

    def confirm(self, url: str) -> None:
        """Confirm a subscription (GET its ``SubscribeURL``)."""
        try:
            self.get(url)
        except Exception as exc:
            raise SnsUnavailable(f"The SNS subscription could not be confirmed at {url} ({exc}); SNS will ask "
                                 "again.") from None


default_client = SnsClient()


def allowed_topics(settings: Settings) -> set[str]:
    return {t.strip() for t in (settings.ses_topic_arns or "").split(",") if t.strip()}


def canonical(message: dict[str, Any]) -> bytes:
    """The string SNS signed: ``Key\\nValue\\n`` for each signed key present, in SNS's order."""
    keys = NOTIFICATION_KEYS if message.get("Type") == "Notification" else SUBSCRIPTION_KEYS
    return "".join(f"{k}\n{message[k]}\n" for k in keys if message.get(k) is not None).encode("utf-8")


def verify(*, settings: Settings, body: bytes, client: SnsClient | None = None,
           now: datetime | None = None) -> dict[str, Any]:
    """The SNS message of ``body`` once its signature, signer and topic are checked (else 401)."""
    client = client or default_client
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("The body is not an SNS message (JSON with Type, Signature and SigningCertURL).") \
            from None
    if not isinstance(message, dict) or message.get("Type") not in TYPES:
        raise SignatureError("The body is not an SNS notification or subscription confirmation.")
    topics = allowed_topics(settings)
    if not topics:
        raise SignatureError("SES_TOPIC_ARNS is not set, so SNS messages cannot be accepted (SNS signs any "
                             "topic's messages); set it to the ARN of the topic SES notifies.")
    if message.get("TopicArn") not in topics:
        raise SignatureError(f"The topic {message.get('TopicArn')!r} is not in SES_TOPIC_ARNS.")
    keys = NOTIFICATION_KEYS if message["Type"] == "Notification" else SUBSCRIPTION_KEYS
    missing = [k for k in keys if k != "Subject" and not isinstance(message.get(k), str)]
    if missing:
        raise SignatureError(f"The SNS message lacks {', '.join(missing)}.")
    algorithm: hashes.HashAlgorithm
    version = str(message.get("SignatureVersion") or "")
    if version == "1":
        algorithm = hashes.SHA1()
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise SignatureError("The SNS message's SignatureVersion is neither 1 nor 2.")
    url = message.get("SigningCertURL")
    if not trusted_sns_url(url, pem=True):
        raise SignatureError("The SigningCertURL is not an https .pem URL of sns.<region>.amazonaws.com.")
    current = now or utcnow()
    sent = iso_time(message.get("Timestamp"))
    if sent is None or sent < current - MAX_AGE or sent > current + MAX_AHEAD:
        raise SignatureError("The SNS message's Timestamp is more than two hours old or in the future; it is "
                             "refused as a replay (or the server clock is wrong).")
    try:
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("The SNS Signature is not base64.") from None
    certificate = client.certificate(str(url))
    if not certificate.not_valid_before_utc <= current <= certificate.not_valid_after_utc:
        raise SignatureError("The SNS signing certificate is not valid now.")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("The SNS signing certificate does not hold an RSA key.")
    try:
        key.verify(signature, canonical(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise SignatureError("The SNS signature does not match this message.") from None
    return message


def confirm_subscription(message: dict[str, Any], *, client: SnsClient | None = None) -> bool:
    """Confirm a verified ``SubscriptionConfirmation``; ``False`` for a message that is not one."""
    if message.get("Type") != "SubscriptionConfirmation":
        if message.get("Type") == "UnsubscribeConfirmation":
            log.warning("SNS: the subscription to %s was ended", message.get("TopicArn"))
        return False
    url = message.get("SubscribeURL")
    if not trusted_sns_url(url, pem=False):
        raise SignatureError("The SubscribeURL is not an https URL of sns.<region>.amazonaws.com.")
    (client or default_client).confirm(str(url))
    log.info("SNS: subscribed to %s", message.get("TopicArn"))
    return True


# --- SES's notifications ------------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _tags(mail: dict[str, Any]) -> dict[str, str]:
    # event publishing: {"name": ["value", …]}
    out = {}
    for name, values in _dict(mail.get("tags")).items():
        value = values[0] if isinstance(values, list) and values else values
        if isinstance(value, str | int):
            out[str(name)] = str(value)
    return out


def _our_message_id(mail: dict[str, Any]) -> str | None:
    common = _dict(mail.get("commonHeaders"))
    if common.get("messageId"):
        return bare_id(common["messageId"])
    for header in _list(mail.get("headers")):
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return bare_id(header.get("value"))
    return None


def parse(message: dict[str, Any], *, now: datetime | None = None) -> list[tuple[Incoming, list[str | None]]]:
    """The events of one verified SNS notification, each with its candidate message ids."""
    now = now or utcnow()
    try:
        ses = json.loads(str(message.get("Message") or ""))
    except ValueError:
        return []  # not SES's JSON (a test message published to the topic)
    if not isinstance(ses, dict):
        return []
    kind = str(ses.get("notificationType") or ses.get("eventType") or "")
    mail = _dict(ses.get("mail"))
    ses_id = bare_id(mail.get("messageId"))
    ours = _our_message_id(mail)
    if not kind or not (ses_id or ours):
        return []
    tags = _tags(mail)
    sns_id = str(message.get("MessageId"))
    candidates: list[str | None] = [ses_id, ours]
    sent_at = iso_time(mail.get("timestamp")) or iso_time(message.get("Timestamp")) or now
    found: list[tuple[Incoming, list[str | None]]] = []

    def add(n: int, type: str, when: Any, payload: dict[str, Any]) -> None:
        event = Incoming(provider=PROVIDER, event_id=f"{SERVICE}:{sns_id}:{n}", type=type,
                         occurred_at=iso_time(when) or sent_at, channel="email", message_id=ses_id or ours,
                         recipient_id=as_uuid(tags.get("recipient_id")), step=as_int(tags.get("step")),
                         payload={"service": SERVICE, "ses_event": kind, **payload})
        found.append((event, candidates))

    destination = [str(a) for a in _list(mail.get("destination"))]
    if kind == "Bounce":
        bounce = _dict(ses.get("bounce"))
        bounce_type = str(bounce.get("bounceType") or "Undetermined")
        subtype = str(bounce.get("bounceSubType") or "General")
        for n, r in enumerate(_list(bounce.get("bouncedRecipients"))):
            r = _dict(r)
            detail = r.get("diagnosticCode") or r.get("status") or "the receiving server refused it"
            add(n, "bounced", bounce.get("timestamp"), {
                "to": r.get("emailAddress"), "bounce_type": bounce_type, "bounce_subtype": subtype,
                "error": f"{bounce_type} bounce ({subtype}): {detail}"})
    elif kind == "Complaint":
        complaint = _dict(ses.get("complaint"))
        feedback = complaint.get("complaintFeedbackType")
        for n, r in enumerate(_list(complaint.get("complainedRecipients"))):
            to = _dict(r).get("emailAddress")
            if feedback == "not-spam":
                add(n, "status", complaint.get("timestamp"), {"to": to, "feedback": feedback})
            else:
                what = f" ({feedback})" if feedback else ""
                add(n, "complained", complaint.get("timestamp"), {
                    "to": to, "error": f"the customer marked the e-mail as spam{what}"})
    elif kind == "Delivery":
        delivery = _dict(ses.get("delivery"))
        for n, to in enumerate(_list(delivery.get("recipients")) or destination):
            add(n, "delivered", delivery.get("timestamp"), {"to": to, "smtp_response": delivery.get("smtpResponse")})
    elif kind == "Open":
        opened = _dict(ses.get("open"))
        add(0, "opened", opened.get("timestamp"), {"user_agent": opened.get("userAgent")})
    elif kind == "Click":
        click = _dict(ses.get("click"))
        add(0, "clicked", click.get("timestamp"), {"url": click.get("link"), "user_agent": click.get("userAgent")})
    elif kind in ("Reject", "Rendering Failure"):
        detail = _dict(ses.get("reject")).get("reason") or _dict(ses.get("failure")).get("errorMessage") or kind
        add(0, "failed", None, {"error": f"Amazon SES did not send the e-mail: {detail}"})
    elif kind == "DeliveryDelay":
        delay = _dict(ses.get("deliveryDelay"))
        for n, r in enumerate(_list(delay.get("delayedRecipients"))):
            add(n, "delivery_delayed", delay.get("timestamp"), {"to": _dict(r).get("emailAddress"),
                                                                "delay_type": delay.get("delayType")})
    elif kind == "Subscription":
        subscription = _dict(ses.get("subscription"))
        if _dict(subscription.get("newTopicPreferences")).get("unsubscribeAll"):
            add(0, "opted_out", subscription.get("timestamp"), {
                "source": "unsubscribe_link", "reason": "the customer unsubscribed through Amazon SES"})
        else:
            add(0, "status", subscription.get("timestamp"), {})
    else:
        add(0, "status", None, {})
    return found


def handle(session: Session, *, message: dict[str, Any], now: datetime | None = None) -> Ingested:
    """Store and apply the events of one verified SNS notification."""
    return ingest_matched(session, parse(message, now=now), now=now)
