"""SMS through Twilio's Messages API with the official ``twilio`` SDK.

``messages.create(to=…, from_=TWILIO_FROM_NUMBER or messaging_service_sid=…,
body=…, status_callback=PUBLIC_BASE_URL/webhooks/twilio/status)``.  With
``TWILIO_BASE_URL`` set (a test server), ``client.api.base_url`` points there
and requests go to ``{base}/2010-04-01/Accounts/{sid}/Messages.json``.  The
body is sent as rendered by :mod:`core.outbound` (which adds "Reply STOP to
opt out" to the first text a business sends to a number).

Twilio takes no idempotency key, so a try that may have gone through (a
timeout, a 5xx) is settled by :meth:`TwilioChannel.reconcile` before any
retry: it lists the messages sent to the number since the try began and looks
for this text.  Twilio creates a message before it answers and lists it within
seconds, so a try still unlisted a few minutes later never reached it and is
sent again; until then it is asked about again, with back-off — a 5xx never
loses a customer, and never texts one twice.

Errors (``TwilioRestException``): 21610 (the number replied STOP) → opted out;
20429 / HTTP 429 / 21611 (queue full) → retry later without counting against
the tries; a refused account or sender → pause the campaign with the reason;
21211, 21614, 21408 and other 4xx → permanent with Twilio's reason; 5xx and
timeouts → retry after reconciling; a connection that could not be opened →
an ordinary retry (nothing was sent).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from core.channels import send_timeout
from core.channels.base import (
    OptedOutError,
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
    SendResult,
)
from core.config import Settings, get_settings
from core.webhooks.twilio import STATUS_PATH

log = logging.getLogger(__name__)

PROVIDER = "twilio"
# the dispatcher's codes: "rate_limited" is a throttle (no try used up), "not_sent" needs no reconciliation
THROTTLED = "rate_limited"
NOT_SENT = "not_sent"
OPTED_OUT_CODES = frozenset({21610})
THROTTLE_CODES = frozenset({20429, 21611, 14107})
# the account or the sender is refused: every text of the campaign would fail the same way
SETUP_CODES = frozenset({20003, 20005, 20008, 20403, 21212, 21602, 21603, 21606, 21659, 21704, 21705, 30034})
# messages sent this long before the try started are looked at too (clocks differ a little)
LIST_SLACK = timedelta(minutes=2)
LIST_LIMIT = 100
# Twilio lists a message it created within seconds: one still missing this long after its try never reached it
SETTLE_AFTER = timedelta(minutes=3)


def status_callback_url(settings: Settings) -> str:
    """Where Twilio reports delivery: ``PUBLIC_BASE_URL/webhooks/twilio/status``."""
    return settings.public_base_url.rstrip("/") + STATUS_PATH


def _reason(exc: TwilioException) -> str:
    """Twilio's own words, without the SDK's "Unable to create record:" prefix."""
    first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
    text = str(getattr(exc, "msg", "") or getattr(exc, "detail", "") or getattr(exc, "title", "") or first)
    for prefix in ("Unable to create record: ", "Unable to fetch page: ", "Unable to fetch record: "):
        text = text.removeprefix(prefix)
    return text.strip() or "no details"


def _status(exc: TwilioException) -> int:
    """The HTTP status of a Twilio error (a failed page read carries only the response)."""
    status = getattr(exc, "status", None)
    if status is None and len(exc.args) > 1:
        status = getattr(exc.args[1], "status_code", None)
    try:
        return int(status or 0)
    except (TypeError, ValueError):
        return 0


def _never_left(exc: requests.RequestException) -> bool:
    """Whether the request failed before a connection was made (so Twilio cannot have it)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        cause = exc.args[0] if exc.args else None
        return isinstance(getattr(cause, "reason", None), NewConnectionError) or isinstance(cause, NewConnectionError)
    return False


class TwilioChannel:
    """Live SMS through Twilio."""

    channel = "sms"
    provider = PROVIDER
    live = True
    # Twilio takes no idempotency key: a try that may have gone through is looked up before any retry
    retry_needs_reconcile = True

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        s = self.settings
        if not (s.twilio_account_sid and s.twilio_auth_token
                and (s.twilio_from_number or s.twilio_messaging_service_sid)):
            raise ValueError("TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and a sender are needed for live SMS")
        http = TwilioHttpClient(timeout=send_timeout(s), pool_connections=True)
        self.client = Client(s.twilio_account_sid, s.twilio_auth_token.get_secret_value(), http_client=http)
        if s.twilio_base_url:
            self.client.api.base_url = s.twilio_base_url.rstrip("/")
            # an edge or region (TWILIO_EDGE / TWILIO_REGION) would rewrite the host of the test server's URL
            self.client.edge = None
            self.client.region = None
        self.status_callback = status_callback_url(s)

    def _sender(self) -> dict[str, str]:
        if self.settings.twilio_from_number:
            return {"from_": self.settings.twilio_from_number}
        return {"messaging_service_sid": self.settings.twilio_messaging_service_sid or ""}

    def check(self) -> str:
        """Read the account (nothing is sent): the Settings page's "Test connection"; a sentence, or the
        reason it failed."""
        sid = self.settings.twilio_account_sid or ""
        try:
            account = self.client.api.v2010.accounts(sid).fetch()
        except TwilioException as exc:
            if _status(exc) in (401, 403, 404):
                raise QuotaExceededError(f"Twilio refused the account SID and auth token ({_reason(exc)}) — check "
                                         f"TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN", code="unauthorized") from None
            raise RetryableError(f"Twilio could not read the account ({_reason(exc)})",
                                 code=f"http_{_status(exc)}") from None
        except requests.RequestException as exc:
            raise RetryableError(f"could not reach Twilio ({type(exc).__name__})", code=NOT_SENT) from None
        status = str(account.status or "unknown")
        if status != "active":
            raise QuotaExceededError(f"The Twilio account {sid} is {status}, so it cannot send texts",
                                     code=f"account_{status}")
        sender = self.settings.twilio_from_number or self.settings.twilio_messaging_service_sid
        return f"Connected to Twilio account “{account.friendly_name or sid}” ({status}); texts go out from {sender}."

    def send(self, message: OutboundMessage) -> SendResult:
        """Send one text; raises what the dispatcher should do when Twilio did not take it."""
        try:
            sent = self.client.messages.create(to=message.to, body=message.text,
                                               status_callback=self.status_callback, **self._sender())
        except TwilioException as exc:
            raise self._error(exc) from None
        except requests.exceptions.Timeout as exc:
            if _never_left(exc):
                raise RetryableError(f"could not reach Twilio ({type(exc).__name__})", code=NOT_SENT) from None
            raise RetryableError(f"Twilio did not answer in time ({type(exc).__name__})", code="timeout") from None
        except requests.RequestException as exc:
            if _never_left(exc):
                raise RetryableError(f"could not reach Twilio ({type(exc).__name__})", code=NOT_SENT) from None
            raise RetryableError(f"the connection to Twilio failed ({type(exc).__name__})", code="network") from None
        if not sent.sid:
            raise RetryableError("Twilio answered without a message id", code="no_id")
        return SendResult(provider_message_id=str(sent.sid), status=str(sent.status or "queued"),
                          detail={"segments": sent.num_segments})

    def _error(self, exc: TwilioException) -> Exception:
        status = _status(exc)
        try:
            code = int(getattr(exc, "code", 0) or 0)
        except (TypeError, ValueError):
            code = 0
        text = _reason(exc)
        label = f"Twilio {code}" if code and code != status else f"Twilio {status}"
        reason = f"{label}: {text}"
        if code in OPTED_OUT_CODES:
            return OptedOutError(f"{reason} (the number replied STOP to this sender)", code=str(code))
        if code in THROTTLE_CODES or status == 429:
            return RetryableError(reason, code=THROTTLED, retry_after=60.0 if code == 21611 else 1.0)
        if status in (401, 403) or code in SETUP_CODES:
            return QuotaExceededError(
                f"Twilio refused to send for this account ({reason}) — check TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN "
                f"and the sender (TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID), then resume the campaign",
                code=str(code or status))
        if status >= 500 or status in (408, 425) or status == 0:
            return RetryableError(reason, code=f"http_{status}")
        return PermanentError(reason, code=str(code or status))

    def reconcile(self, message: OutboundMessage, *, started_at: datetime) -> SendResult | None:
        """Did an earlier try of this message go out?  Twilio's record of it when it lists one.  Twilio
        creates a message before it answers, and lists it within seconds: a try it still does not list
        :data:`SETTLE_AFTER` later never reached it (``None``: a retry is safe); a younger one is asked
        about again later (:class:`RetryableError`), and a listing too long to read through proves
        nothing (:class:`OutcomeUnknown`)."""
        since = started_at - LIST_SLACK
        try:
            # messages sent since the try began, then the newest ones (a queued message has no sent date yet)
            sent = self.client.messages.list(to=message.to, date_sent_after=since, limit=LIST_LIMIT)
            found = self._match(sent, message, since)
            newest: list[Any] = []
            if found is None:
                newest = self.client.messages.list(to=message.to, limit=20)
                found = self._match(newest, message, since)
        except TwilioException as exc:
            status = _status(exc)
            if status in (401, 403):
                raise OutcomeUnknown(f"Twilio refused the credentials when asked for the messages to {message.to}",
                                     code="unauthorized") from None
            raise RetryableError(f"Twilio could not list the messages ({_reason(exc)})", code=f"http_{status}") \
                from None
        except requests.RequestException as exc:
            raise RetryableError(f"could not ask Twilio ({type(exc).__name__})", code="network") from None
        if found is not None:
            return found
        if len(sent) >= LIST_LIMIT:
            raise OutcomeUnknown(f"more than {LIST_LIMIT} messages went to {message.to} since "
                                 f"{since.astimezone(UTC):%Y-%m-%d %H:%M} UTC: too many to tell whether this one did",
                                 code="too_many_messages")
        if datetime.now(UTC) - started_at < SETTLE_AFTER:
            raise RetryableError("Twilio does not list this text yet; asked again shortly", code="too_early")
        return None

    def _match(self, messages: list[Any], message: OutboundMessage, since: datetime) -> SendResult | None:
        sender = self.settings.twilio_from_number
        for m in messages:
            created = getattr(m, "date_created", None)
            if isinstance(created, datetime) and created.tzinfo is not None and created < since:
                continue
            if (m.body or "").strip() != message.text.strip():
                continue
            if sender and m.from_ and m.from_ != sender:
                continue
            return SendResult(provider_message_id=str(m.sid), status=str(m.status or "queued"),
                              detail={"reconciled": True})
        return None
