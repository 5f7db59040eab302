"""SMS through Vonage's SMS API (``POST {VONAGE_BASE_URL}/sms/json``) with httpx.

A text is one form-encoded request: ``api_key``/``api_secret``, ``from`` (``VONAGE_FROM``, or the
business's own sender), ``to`` (E.164 without the ``+``), ``text``, ``type=unicode`` when the text
cannot be written in GSM-7 (:func:`core.templates.sms_length`), ``client-ref`` naming the
recipient and step (:func:`client_ref`, at most 40 characters, echoed in every delivery receipt),
``callback`` (``PUBLIC_BASE_URL/webhooks/vonage/status``, when it fits Vonage's 100 characters —
otherwise the account's default delivery-receipt URL applies) and ``status-report-req=1``.

Vonage always answers HTTP 200 with one entry per part of the text (a long text is split), each
with its own ``status``.  The text was taken only when every part says ``0``; its id is the first
part's, and ``SendResult.detail["segments"]`` counts the parts.  Otherwise (status codes per
Vonage's API specification):

- 1 throttled → retry later, after the wait its ``error-text`` names (milliseconds), without
  using up a try; 10 (too many binds) likewise;
- 5 internal error, every part refused → an ordinary retry: Vonage said it took nothing;
- 9 no credit → pause the campaign ("top up");
- 4, 8, 11, 14, 15, 23, 32 — the credentials, the account, the sender or the callback refused →
  pause the campaign with a sentence saying what to fix (every text would fail the same way);
- 2, 3, 6, 7 (number barred), 12, 22, 29, 33 and anything else → permanent for this recipient;
- some parts taken and others not → permanent: part of the text reached the customer, and
  sending it again would repeat that part.

An answer that is not HTTP 200 (5xx, a timeout, a lost answer) may hide a text that went out.
Vonage takes no idempotency key and its SMS API cannot look a message up, so before any retry
:meth:`VonageChannel.reconcile` looks for a delivery receipt this service has already stored for
the step's ``client-ref`` (:mod:`core.webhooks.vonage`): one means the text went out; none yet
while the try is younger than :data:`SETTLE_AFTER` means "ask again later"; none after that means
the outcome is unknown (the recipient fails rather than risk a second text).  A connection that
could not even be opened is an ordinary retry (nothing was sent).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.channels import shared_http_client
from core.channels.base import (
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
    SendResult,
)
from core.config import Settings, get_settings
from core.models import OutreachEvent
from core.templates import sms_length

log = logging.getLogger(__name__)

PROVIDER = "vonage"
STATUS_PATH = "/webhooks/vonage/status"
# the dispatcher's codes: "rate_limited" is a throttle (no try used up), "not_sent" needs no reconciliation
THROTTLED = "rate_limited"
NOT_SENT = "not_sent"
CLIENT_REF_MAX = 40  # the delivery-receipt guide's limit (the API itself allows 100)
CALLBACK_MAX = 100
# a delivery receipt usually comes within seconds; after this long without one the outcome is unknown
SETTLE_AFTER = timedelta(minutes=10)
# Vonage's SMS API status codes
THROTTLE_STATUSES = frozenset({"1", "10"})
REFUSED_STATUSES = frozenset({"5"})  # "internal error": the part was not taken; try again
NO_CREDIT_STATUSES = frozenset({"9"})
SETUP_STATUSES = {
    "4": "check VONAGE_API_KEY and VONAGE_API_SECRET (or the business's own Vonage credentials)",
    "8": "the Vonage account is barred; contact Vonage support",
    "11": "the Vonage account is not enabled for the SMS API over HTTP; ask Vonage support to enable it",
    "14": "Vonage expected a signed request; turn off 'signed requests only' in the Vonage dashboard",
    "15": "check the sender (VONAGE_FROM or the business's SMS sender): Vonage does not let this account send "
          "from it",
    "23": "check PUBLIC_BASE_URL: Vonage refuses the delivery-receipt address built from it",
    "32": "Vonage expected a signed request; turn off 'signed requests only' in the Vonage dashboard",
}
STATUS_WORDS = {
    "1": "throttled", "2": "a parameter is missing", "3": "a parameter is invalid", "4": "invalid credentials",
    "5": "internal error", "6": "the message is invalid", "7": "the number is barred (it may have replied STOP "
    "to this sender)", "8": "the account is barred", "9": "the account has no credit left", "10": "too many binds",
    "11": "the account is not enabled for HTTP", "12": "the message is too long", "14": "invalid signature",
    "15": "invalid sender address", "22": "invalid network code", "23": "invalid callback URL",
    "29": "the destination is not on the trial account's whitelist", "32": "signature and api_secret both sent",
    "33": "the number is de-activated",
}
_WAIT = re.compile(r"wait\s*\[\s*(\d+)\s*\]", re.IGNORECASE)
_REF = re.compile(r"^([0-9a-f]{32})-(\d{1,6})$")
# delivery-receipt events of core.webhooks.vonage (an inbound text is recorded under other types)
RECEIPT_TYPES = ("delivered", "failed", "status")


def client_ref(message: OutboundMessage) -> str:
    """The ``client-ref`` of every try of ``message``'s step: ``<recipient id hex>-<step>`` (at most 40
    characters), or for a test send a digest of its key."""
    if message.recipient_id is not None:
        return f"{message.recipient_id.hex}-{message.step}"[:CLIENT_REF_MAX]
    return "t-" + hashlib.sha256(message.idempotency_key.encode("utf-8")).hexdigest()[:32]


def parse_client_ref(ref: str | None) -> tuple[uuid.UUID, int] | None:
    """``(recipient id, step)`` of a ``client-ref`` made by :func:`client_ref` (``None`` for any other)."""
    found = _REF.match((ref or "").strip().lower())
    if found is None:
        return None
    return uuid.UUID(hex=found.group(1)), int(found.group(2))


def status_callback_url(settings: Settings) -> str | None:
    """``PUBLIC_BASE_URL/webhooks/vonage/status``, or ``None`` when it is longer than Vonage accepts."""
    url = settings.public_base_url.rstrip("/") + STATUS_PATH
    return url if len(url) <= CALLBACK_MAX else None


def _digits(number: str) -> str:
    return number.strip().removeprefix("+")


def _now() -> datetime:
    return datetime.now(UTC)


class VonageChannel:
    """Live SMS through Vonage's SMS API."""

    channel = "sms"
    provider = PROVIDER
    live = True
    # Vonage takes no idempotency key: a try that may have gone through is settled before any retry
    retry_needs_reconcile = True
    # cannot be asked afterwards whether a message went out: the hand-over is recorded right before it, so a
    # try never handed over is sent again after a crash and only one that was is "outcome unknown"
    handoff_marked = True

    def __init__(self, settings: Settings | None = None, *, factory: sessionmaker[Session] | None = None) -> None:
        self.settings = settings or get_settings()
        s = self.settings
        if not (s.vonage_api_key and s.vonage_api_secret and s.vonage_from):
            raise ValueError("VONAGE_API_KEY, VONAGE_API_SECRET and VONAGE_FROM are needed for live SMS")
        self._credentials = {"api_key": s.vonage_api_key, "api_secret": s.vonage_api_secret.get_secret_value()}
        self.sender = s.vonage_from.strip()
        self.client = shared_http_client(s.vonage_base_url, s)
        # where delivery receipts are stored (reconciliation reads them); default: DATABASE_URL
        self._factory = factory
        self.callback = status_callback_url(s)
        if self.callback is None:
            log.warning("vonage: PUBLIC_BASE_URL%s is longer than Vonage's %d characters; texts carry no callback "
                        "and the account's default delivery-receipt URL applies", STATUS_PATH, CALLBACK_MAX)

    # --- the request -----------------------------------------------------------------------------------

    def request_payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The form of ``POST /sms/json`` for ``message``, without the credentials (stored with the try)."""
        form: dict[str, Any] = {"from": _digits(self.sender) if self.sender.startswith("+") else self.sender,
                                "to": _digits(message.to), "text": message.text,
                                "type": "unicode" if sms_length(message.text).encoding != "GSM-7" else "text",
                                "client-ref": client_ref(message), "status-report-req": "1"}
        if self.callback:
            form["callback"] = self.callback
        return form

    def _post(self, path: str, form: dict[str, Any]) -> httpx.Response:
        try:
            return self.client.post(path, data={**form, **self._credentials})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # the connection was never made: nothing reached Vonage
            raise RetryableError(f"could not reach Vonage ({type(exc).__name__})", code=NOT_SENT) from None
        except httpx.TimeoutException as exc:
            raise RetryableError(f"Vonage did not answer in time ({type(exc).__name__})", code="timeout") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"the connection to Vonage failed ({type(exc).__name__})", code="network") from None

    # --- sending -----------------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """Send one text; raises what the dispatcher should do when Vonage did not take all of it."""
        return self._result(self._post("/sms/json", self.request_payload(message)))

    def reply(self, *, to: str, text: str, sender: str | None = None) -> str:
        """Send a one-off answer to a customer's text (a STOP confirmation, HELP) from ``sender`` — the number
        the customer wrote to — and return its id.  No delivery receipt is asked for."""
        origin = (sender or self.sender).strip()
        form = {"from": _digits(origin) if origin.startswith("+") else origin, "to": _digits(to), "text": text,
                "type": "unicode" if sms_length(text).encoding != "GSM-7" else "text"}
        return self._result(self._post("/sms/json", form)).provider_message_id

    def _result(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        if status != 200:
            raise self._http_error(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        parts = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
            # a 200 we cannot read may still stand for a text that went out
            raise RetryableError("Vonage answered without the status of the message", code="bad_body")
        codes = [str(p.get("status", "")).strip() for p in parts]
        taken = [p for p, c in zip(parts, codes, strict=True) if c == "0"]
        if len(taken) == len(parts) and taken[0].get("message-id"):
            detail: dict[str, Any] = {"segments": len(parts),
                                      "message_ids": [str(p.get("message-id")) for p in parts]}
            with contextlib.suppress(TypeError, ValueError):
                detail["price"] = round(sum(float(p.get("message-price") or 0) for p in parts), 6)
            if parts[-1].get("remaining-balance") is not None:
                detail["remaining_balance"] = str(parts[-1]["remaining-balance"])
            return SendResult(provider_message_id=str(taken[0]["message-id"]), status="accepted", detail=detail)
        refused = next(p for p, c in zip(parts, codes, strict=True) if c != "0")
        code = str(refused.get("status", "")).strip()
        text = str(refused.get("error-text") or STATUS_WORDS.get(code) or "no details").strip()
        reason = f"Vonage {code}: {text}"
        if taken:
            raise PermanentError(f"Vonage took {len(taken)} of the {len(parts)} parts of the text and refused the "
                                 f"rest ({reason}); it is not sent again, so no part arrives twice", code="partial")
        if code in THROTTLE_STATUSES:
            wait = _WAIT.search(text)
            retry_after = max(0.1, int(wait.group(1)) / 1000) if wait else 1.0
            raise RetryableError(reason, code=THROTTLED, retry_after=retry_after)
        if code in REFUSED_STATUSES:
            raise RetryableError(f"{reason} (Vonage took nothing; it is tried again)", code=NOT_SENT)
        if code in NO_CREDIT_STATUSES:
            raise QuotaExceededError(f"Vonage refused the text because the account has no credit left ({reason}) — "
                                     f"top up the Vonage account, then resume the campaign", code=f"vonage_{code}")
        if code in SETUP_STATUSES:
            raise QuotaExceededError(f"Vonage refused to send for this account ({reason}) — {SETUP_STATUSES[code]}, "
                                     f"then resume the campaign", code=f"vonage_{code}")
        raise PermanentError(reason, code=f"vonage_{code or 'unknown'}")

    @staticmethod
    def _http_error(response: httpx.Response) -> Exception:
        status = response.status_code
        reason = f"Vonage answered HTTP {status}"
        if status in (401, 403):
            return QuotaExceededError(f"Vonage refused the credentials ({reason}) — check VONAGE_API_KEY and "
                                      f"VONAGE_API_SECRET, then resume the campaign", code="unauthorized")
        if status == 429:
            try:
                retry_after = max(0.1, float(response.headers.get("retry-after") or 1.0))
            except ValueError:
                retry_after = 1.0
            return RetryableError(reason, code=THROTTLED, retry_after=retry_after)
        if status >= 500 or status in (408, 425):
            # the text may have gone out before the failure: settled before any retry
            return RetryableError(reason, code=f"http_{status}")
        if status in (404, 405):
            return QuotaExceededError(f"Vonage's SMS API is not at {response.request.url} ({reason}) — check "
                                      f"VONAGE_BASE_URL, then resume the campaign", code=f"http_{status}")
        return PermanentError(reason, code=f"http_{status}")

    # --- after a lost answer -----------------------------------------------------------------------------

    def _sessions(self) -> sessionmaker[Session]:
        if self._factory is None:
            from core.db import get_engine, session_factory

            self._factory = session_factory(get_engine(self.settings.database_url))
        return self._factory

    def receipt(self, ref: str) -> OutreachEvent | None:
        """The first delivery receipt stored for ``client-ref`` ``ref`` (``None`` when none came yet)."""
        target = parse_client_ref(ref)
        if target is None:
            return None
        recipient_id, step = target
        with self._sessions()() as session:
            rows = session.scalars(select(OutreachEvent).where(
                OutreachEvent.provider == PROVIDER, OutreachEvent.recipient_id == recipient_id,
                OutreachEvent.step == step, OutreachEvent.type.in_(RECEIPT_TYPES))
                .order_by(OutreachEvent.received_at, OutreachEvent.id)).all()
            session.expunge_all()
        return next((e for e in rows if (e.payload or {}).get("client_ref") == ref and e.provider_message_id), None)

    def reconcile(self, message: OutboundMessage, *, started_at: datetime,
                  request: dict[str, Any] | None = None) -> SendResult | None:
        """Did an earlier try of this text go out?  The delivery receipt's message when Vonage sent one for
        the step's ``client-ref``; "ask again later" while the try is young; :class:`OutcomeUnknown` after
        :data:`SETTLE_AFTER` (the SMS API has no look-up that could prove nothing was sent)."""
        ref = str((request or {}).get("client-ref") or client_ref(message))
        found = self.receipt(ref)
        if found is not None:
            status = str((found.payload or {}).get("status") or found.type)
            return SendResult(provider_message_id=str(found.provider_message_id), status=status,
                              detail={"reconciled": True, "receipt": status})
        if parse_client_ref(ref) is None:
            raise OutcomeUnknown("Vonage cannot be asked about this text (it names no recipient)", code="no_ref")
        if _now() - started_at < SETTLE_AFTER:
            raise RetryableError("no delivery receipt from Vonage yet for this try; asked again later",
                                 code="too_early")
        raise OutcomeUnknown(f"Vonage sent no delivery receipt for this text within "
                             f"{int(SETTLE_AFTER.total_seconds() // 60)} minutes, and its SMS API cannot look a "
                             f"message up", code="no_receipt")

    # --- the Settings page's "Test connection" -----------------------------------------------------------

    def check(self) -> str:
        """Ask Vonage for the account's balance (nothing is sent); a sentence, or the reason it failed."""
        try:
            response = self.client.get("/account/get-balance", params=self._credentials)
        except httpx.HTTPError as exc:
            raise RetryableError(f"could not reach Vonage at {self.settings.vonage_base_url} "
                                 f"({type(exc).__name__})", code=NOT_SENT) from None
        if response.status_code in (401, 403):
            raise QuotaExceededError("Vonage refused the API key and secret — check VONAGE_API_KEY and "
                                     "VONAGE_API_SECRET", code="unauthorized")
        if response.status_code != 200:
            raise RetryableError(f"Vonage answered HTTP {response.status_code} when asked for the balance",
                                 code=f"http_{response.status_code}")
        try:
            value = float(response.json()["value"])
        except (ValueError, KeyError, TypeError):
            raise RetryableError("Vonage's answer carries no balance", code="bad_body") from None
        return (f"Connected to Vonage with API key {self.settings.vonage_api_key}: the balance is {value:.2f}, "
                f"and texts go out from {self.sender}.")
