"""E-mail through Resend's REST API (``POST /emails``) with httpx.

Every send carries the step's ``Idempotency-Key`` (the same for every try of
one recipient's step) and the one-click unsubscribe headers of RFC 8058.  The
request body is a pure function of the message, and the dispatcher stores it
on the attempt before the call, so after a crash :meth:`ResendChannel.reconcile`
re-sends the *identical* request with the same key: Resend then answers with
the original response instead of sending again (for 24 hours).

Errors map to what the dispatcher should do (PROVIDERS.md): 429
``rate_limit_exceeded`` and 409 ``concurrent_idempotent_requests`` → retry
later (honouring ``retry-after``); daily/monthly quota, or a refused API key →
pause the campaign; validation errors and 409 ``invalid_idempotent_request``
→ permanent; 5xx, timeouts, connection errors → retry.

One connection pool per process and base URL (:class:`Connection`) is shared by every send.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from email.utils import formataddr, parseaddr
from functools import lru_cache
from typing import Any

import httpx

from core.channels import send_timeout, shared
from core.channels.base import (
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    QuotaExceededError,
    RetryableError,
    SendResult,
)
from core.config import Settings, get_settings

log = logging.getLogger(__name__)

PROVIDER = "resend"
QUOTA_ERRORS = ("daily_quota_exceeded", "monthly_quota_exceeded")
AUTH_ERRORS = ("missing_api_key", "invalid_api_key", "restricted_api_key", "invalid_access")
# Resend keeps an idempotency key for 24 hours; ask well within that
IDEMPOTENCY_WINDOW = timedelta(hours=23)
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

class Connection:
    """The process's connection pool to one Resend base URL.

    Requests go straight through a pooled ``httpx.HTTPTransport`` (a body we
    serialize once, two headers, no cookies, no redirects to follow): what an
    ``httpx.Client`` adds per request — URL merging, cookie-jar bookkeeping — cost
    a third of the dispatcher's whole time per e-mail, for nothing Resend needs.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.timeout = httpx.Timeout(timeout, connect=min(5.0, timeout))
        self._extensions = {"timeout": self.timeout.as_dict()}
        self._urls: dict[str, httpx.URL] = {}

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.request("POST", path, body, {"Content-Type": "application/json", **headers})

    def get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        return self.request("GET", path, b"", headers)

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.base_url + path)
        request = httpx.Request(method, url, content=body or None, extensions=self._extensions,
                                headers={"User-Agent": "connext-reengagement", **headers})
        response = self.transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response


def shared_connection(settings: Settings) -> Connection:
    """The process's pooled connection to ``RESEND_BASE_URL``."""
    key = (settings.resend_base_url.rstrip("/"), send_timeout(settings))
    return shared(("resend", *key), lambda: Connection(*key))


def _tag(name: str, value: object) -> dict[str, str]:
    return {"name": name, "value": _TAG_UNSAFE.sub("_", str(value))[:256]}


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value not in (None, "") else None
    except ValueError:
        return None


@lru_cache(maxsize=256)
def _sender(configured: str, name: str | None, business_name: str) -> str:
    shown, address = parseaddr(configured)
    if not address:
        return configured
    return formataddr((" ".join((name or shown or business_name).split()), address))


def sender_header(settings: Settings, business_name: str) -> str:
    """The From of every e-mail (Resend or SMTP): ``EMAIL_FROM`` (else ``RESEND_FROM``) under
    ``EMAIL_FROM_NAME``, else the name the address is written with, else the business's name."""
    return _sender(settings.email_sender() or "", settings.email_from_name, business_name)


def reply_to_address(settings: Settings) -> str | None:
    """Where customers' replies go when that is not the sender (``EMAIL_REPLY_TO``)."""
    return (settings.email_reply_to or "").strip() or None


class ResendChannel:
    """Live e-mail through Resend."""

    channel = "email"
    provider = PROVIDER
    live = True
    # a retry carries the same Idempotency-Key: Resend never sends twice, for as long as it remembers the key
    retry_needs_reconcile = False
    idempotency_window = IDEMPOTENCY_WINDOW
    # settling an open try replays the request: it sends, unless Resend remembers the key
    reconcile_sends = True

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        if not self.settings.resend_api_key or not self.settings.email_sender():
            raise ValueError("RESEND_API_KEY and EMAIL_FROM (or RESEND_FROM) are needed for live e-mail")
        self._auth = f"Bearer {self.settings.resend_api_key.get_secret_value()}"
        self.connection = shared_connection(self.settings)


    def request_payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The exact body of ``POST /emails`` for ``message`` (the same for every try of a step)."""
        payload: dict[str, Any] = {
            "from": sender_header(self.settings, message.business_name), "to": [message.to],
            "subject": message.subject or "", "text": message.text,
        }
        reply_to = reply_to_address(self.settings)
        if reply_to:
            payload["reply_to"] = reply_to
        if message.html:
            payload["html"] = message.html
        if message.unsubscribe_url:
            payload["headers"] = {"List-Unsubscribe": f"<{message.unsubscribe_url}>",
                                  "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
        tags = []
        if message.recipient_id is not None:
            tags.append(_tag("recipient_id", message.recipient_id))
        if message.campaign_id is not None:
            tags.append(_tag("campaign_id", message.campaign_id))
            tags.append(_tag("step", message.step))
        if message.test:
            tags.append(_tag("test", "true"))
        if tags:
            payload["tags"] = tags
        return payload

    def _post(self, payload: dict[str, Any], key: str) -> httpx.Response:
        # keys sorted: a replay of the stored request (a JSON document whose key order the database may
        # not keep) is byte for byte the request first sent
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
        try:
            return self.connection.post("/emails", body, {"Authorization": self._auth, "Idempotency-Key": key})
        except httpx.TimeoutException as exc:
            raise RetryableError(f"Resend did not answer in time ({type(exc).__name__})", code="timeout") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"could not reach Resend ({type(exc).__name__}: {exc})", code="network") from None

    def send(self, message: OutboundMessage) -> SendResult:
        """Send one e-mail; raises what the dispatcher should do when it did not go through."""
        response = self._post(self.request_payload(message), message.idempotency_key)
        return self._result(response)

    def _result(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if 200 <= status < 300 and body.get("id"):
            return SendResult(provider_message_id=str(body["id"]), status="accepted",
                              detail={"http_status": status})
        name = str(body.get("name") or "")
        text = str(body.get("message") or response.reason_phrase or "no details")
        reason = f"Resend {status} {name}: {text}".replace("  ", " ")
        if status == 429:
            if name in QUOTA_ERRORS:
                period = "daily" if name.startswith("daily") else "monthly"
                raise QuotaExceededError(f"Resend {period} quota exceeded — resume the campaign when it resets",
                                         code=name)
            retry_after = _seconds(response.headers.get("retry-after")) or _seconds(
                response.headers.get("ratelimit-reset"))
            raise RetryableError(reason, code=name or "rate_limit_exceeded", retry_after=retry_after or 1.0)
        if status == 409 and name == "concurrent_idempotent_requests":
            raise RetryableError(reason, code=name, retry_after=1.0)
        if status in (401, 403) and (name in AUTH_ERRORS or status == 401):
            raise QuotaExceededError(f"Resend refused the API key ({text}) — fix RESEND_API_KEY, then resume the "
                                     "campaign", code=name or "unauthorized")
        if status == 403:
            raise QuotaExceededError(f"Resend refused to send ({text}) — check the sending domain in Resend, then "
                                     "resume the campaign", code=name or "forbidden")
        if status >= 500 or status in (408, 425):
            raise RetryableError(reason, code=name or f"http_{status}",
                                 retry_after=_seconds(response.headers.get("retry-after")))
        if 200 <= status < 300:
            raise RetryableError(f"Resend answered {status} without an id", code="no_id")
        raise PermanentError(reason, code=name or f"http_{status}")

    def check(self) -> str:
        """Ask Resend for the account's domains (``GET /domains``): the API key works and the sender's
        domain is verified.  Nothing is sent."""
        address = parseaddr(self.settings.email_sender() or "")[1]
        domain = address.rpartition("@")[2].lower()
        try:
            response = self.connection.get("/domains", {"Authorization": self._auth})
        except httpx.TimeoutException:
            raise RetryableError("Resend did not answer in time; try again in a moment.", code="timeout") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"Resend could not be reached ({type(exc).__name__}: {exc}); check the network and "
                                 "RESEND_BASE_URL.", code="network") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        name, text = str(body.get("name") or ""), str(body.get("message") or response.reason_phrase or "")
        status = response.status_code
        if status == 401 and name == "restricted_api_key":
            return (f"Connected to Resend with a sending-only API key; it may not list domains, so whether {domain} "
                    "is verified was not checked.")
        if status in (401, 403):
            raise QuotaExceededError(f"Resend refused the API key ({text}); correct RESEND_API_KEY.",
                                     code=name or "unauthorized")
        if status == 429 or status >= 500:
            raise RetryableError(f"Resend is busy ({status} {text}); try again in a moment.", code=f"http_{status}")
        if status != 200:
            raise PermanentError(f"Resend answered {status} {name}: {text}".strip(), code=name or f"http_{status}")
        domains = {str(d["name"]).lower(): str(d.get("status") or "") for d in body.get("data") or []
                   if isinstance(d, dict) and d.get("name")}
        if domain not in domains:
            raise QuotaExceededError(f"The Resend account has no domain {domain}, so it cannot send as {address}; add "
                                     f"{domain} under Domains in Resend and verify it.", code="domain_missing")
        if domains[domain] != "verified":
            raise QuotaExceededError(f"The domain {domain} is '{domains[domain]}' in Resend, not verified; finish its "
                                     "DNS records there.", code="domain_not_verified")
        return f"Connected to Resend; the domain {domain} is verified, so e-mails go out from {address}."

    def reconcile(self, message: OutboundMessage, *, started_at: datetime,
                  request: dict[str, Any] | None = None) -> SendResult | None:
        """Re-send the identical request with the same key: Resend answers with the
        original e-mail when the first try got through, and otherwise sends it now
        (which is then the only send).  ``request`` is the body stored before the
        first try; without it the body is rebuilt from the message."""
        if datetime.now(UTC) - started_at > IDEMPOTENCY_WINDOW:
            raise OutcomeUnknown("more than a day has passed, so Resend no longer recognizes the idempotency key",
                                 code="idempotency_expired")
        response = self._post(request or self.request_payload(message), message.idempotency_key)
        try:
            return self._result(response)
        except PermanentError as exc:
            if exc.code == "invalid_idempotent_request":
                raise OutcomeUnknown(f"Resend remembers a different request under this key ({exc.reason})",
                                     code=exc.code) from None
            return None  # refused as invalid: this request never went out
        except QuotaExceededError as exc:
            if exc.code in QUOTA_ERRORS:
                return None  # over quota: a first try that had gone out would have been answered from memory
            raise RetryableError(exc.reason, code=exc.code) from None
