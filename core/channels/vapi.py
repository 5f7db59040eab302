"""AI voice calls through Vapi's REST API (``POST /call``) with httpx.

A call is created with the assistant and phone number of the campaign's agent
(else ``VAPI_ASSISTANT_ID`` / ``VAPI_PHONE_NUMBER_ID``), the customer's E.164
number and name, and ``assistantOverrides`` carrying the rendered call script
as the first message, the template values as ``variableValues`` and our ids in
``metadata`` (Vapi refuses unknown top-level properties, so there is no
top-level metadata; the overrides come back with the call in every webhook).

Vapi takes no idempotency key.  A try that may have gone through (a timeout, a
5xx, a lost answer) is settled by :meth:`VapiChannel.reconcile` before any
retry: ``GET /call/{id}`` when the id is known, else ``GET /call?createdAtGt=…``
and a match on the step's key in ``assistantOverrides.metadata``.  Only a
listing that is complete and old enough proves that no call was created.

Errors map to what the dispatcher should do: 400 → permanent (but retried
later when it speaks of the concurrency limit; and a refused assistant or
phone number pauses the campaign, since every call would fail the same way);
401/403 and an exhausted balance → pause the campaign with the reason;
429 → retry after the provider's ``retry-after``; 5xx and timeouts → retry
after reconciling; a connection that could not even be opened → an ordinary
retry (nothing was sent).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

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

log = logging.getLogger(__name__)

PROVIDER = "vapi"
# Vapi's call statuses; "ended" is final, the others mean the call is still going
IN_PROGRESS = ("scheduled", "queued", "ringing", "in-progress", "forwarding")
CUSTOMER_NAME_MAX = 40  # Vapi refuses longer customer names
LIST_LIMIT = 100
LIST_PAGES = 5
# calls created this long before the try started are looked at too (clocks differ a little)
LIST_SLACK = timedelta(minutes=2)
# a request that timed out may still be processed for a while: absence is only proven after this
SETTLE_AFTER = timedelta(seconds=60)
# error codes the dispatcher knows: "not_sent" (nothing left this machine), "concurrency_limited" (a throttle)
NOT_SENT = "not_sent"
CONCURRENCY = "concurrency_limited"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _text(body: Any) -> str:
    """The error text of a Vapi answer (``message`` may be a string or a list of them)."""
    if not isinstance(body, dict):
        return ""
    message = body.get("message")
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    return str(message or body.get("error") or "").strip()


def call_metadata(call: Any) -> dict[str, Any]:
    """Our metadata on a Vapi call object (``assistantOverrides.metadata``, or older spellings)."""
    if not isinstance(call, dict):
        return {}
    for holder in (call.get("assistantOverrides"), call):
        if isinstance(holder, dict) and isinstance(holder.get("metadata"), dict):
            return dict(holder["metadata"])
    return {}


class VapiChannel:
    """Live AI voice calls through Vapi."""

    channel = "call"
    provider = PROVIDER
    live = True
    # Vapi takes no idempotency key: a try that may have gone through is looked up before any retry
    retry_needs_reconcile = True
    # the dispatcher may pass the call id it recorded, so a known call is read directly
    reconciles_by_id = True

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        if not self.settings.vapi_api_key:
            raise ValueError("VAPI_API_KEY is needed for live calls")
        self._auth = {"Authorization": f"Bearer {self.settings.vapi_api_key.get_secret_value()}"}
        self.client = shared_http_client(self.settings.vapi_base_url, self.settings)

    # --- the request -----------------------------------------------------------------------

    def request_payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The exact body of ``POST /call`` for ``message`` (our metadata inside the overrides)."""
        assistant = message.assistant_id or self.settings.vapi_assistant_id
        phone_number = message.phone_number_id or self.settings.vapi_phone_number_id
        customer: dict[str, Any] = {"number": message.to}
        if message.customer_name and message.customer_name.strip():
            customer["name"] = message.customer_name.strip()[:CUSTOMER_NAME_MAX]
        metadata = {"idempotency_key": message.idempotency_key, "profile_id": str(message.profile_id),
                    "step": str(message.step)}
        if message.recipient_id is not None:
            metadata["recipient_id"] = str(message.recipient_id)
        if message.campaign_id is not None:
            metadata["campaign_id"] = str(message.campaign_id)
        if message.metadata.get("attempt"):
            metadata["attempt"] = message.metadata["attempt"]
        if message.test:
            metadata["test"] = "true"
        overrides: dict[str, Any] = {"metadata": metadata}
        if message.text.strip():
            overrides["firstMessage"] = message.text.strip()
        if message.variables:
            overrides["variableValues"] = {k: str(v) for k, v in message.variables.items()}
        payload: dict[str, Any] = {"customer": customer, "assistantOverrides": overrides}
        if assistant:
            payload["assistantId"] = assistant
        if phone_number:
            payload["phoneNumberId"] = phone_number
        return payload

    def _request(self, method: str, path: str, *, payload: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            if payload is not None:
                body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                return self.client.request(method, path, content=body, params=params,
                                           headers={**self._auth, "Content-Type": "application/json"})
            return self.client.request(method, path, params=params, headers=self._auth)
        except httpx.ConnectError as exc:
            # the connection was never made: nothing reached Vapi
            raise RetryableError(f"could not reach Vapi ({exc})", code=NOT_SENT) from None
        except httpx.TimeoutException as exc:
            raise RetryableError(f"Vapi did not answer in time ({type(exc).__name__})", code="timeout") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"the connection to Vapi failed ({type(exc).__name__}: {exc})",
                                 code="network") from None

    # --- sending ---------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """Place one call; raises what the dispatcher should do when Vapi did not take it."""
        payload = self.request_payload(message)
        if "assistantId" not in payload or "phoneNumberId" not in payload:
            missing = "assistant" if "assistantId" not in payload else "phone number"
            raise QuotaExceededError(
                f"No Vapi {missing} is set for this campaign — set VAPI_ASSISTANT_ID and VAPI_PHONE_NUMBER_ID, or "
                f"the agent's Vapi ids, then resume the campaign", code="not_configured")
        return self._created(self._request("POST", "/call", payload=payload))

    def _created(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        if 200 <= status < 300 and isinstance(body, dict) and body.get("id"):
            return SendResult(provider_message_id=str(body["id"]), status=str(body.get("status") or "queued"),
                              detail={"http_status": status})
        text = _text(body) or response.reason_phrase or "no details"
        reason = f"Vapi {status}: {text}"
        lowered = text.lower()
        if "concurren" in lowered:
            # every line of the account is busy: the call was not created; try again when one frees up
            raise RetryableError(f"Vapi's concurrent-call limit is reached ({text})", code=CONCURRENCY,
                                 retry_after=_seconds(response.headers.get("retry-after")) or 30.0)
        if status in (401, 403):
            raise QuotaExceededError(f"Vapi refused the API key ({text}) — fix VAPI_API_KEY, then resume the "
                                     "campaign", code="unauthorized")
        if status == 402 or "credit" in lowered or "balance" in lowered or "billing" in lowered:
            raise QuotaExceededError(f"Vapi says the account cannot pay for calls ({text}) — add credit in Vapi, "
                                     "then resume the campaign", code="payment_required")
        if status == 429:
            raise RetryableError(reason, code="rate_limited",
                                 retry_after=_seconds(response.headers.get("retry-after")) or 1.0)
        if status >= 500 or status in (408, 425):
            raise RetryableError(reason, code=f"http_{status}",
                                 retry_after=_seconds(response.headers.get("retry-after")))
        if 200 <= status < 300:
            raise RetryableError(f"Vapi answered {status} without a call id", code="no_id")
        if status in (400, 404) and ("assistant" in lowered or "phonenumber" in lowered
                                     or "phone number" in lowered) and "customer" not in lowered:
            # the campaign's set-up is refused: every call would fail the same way
            raise QuotaExceededError(f"Vapi refused the assistant or phone number of this campaign ({text}) — "
                                     "check VAPI_ASSISTANT_ID / VAPI_PHONE_NUMBER_ID or the agent's Vapi ids, then "
                                     "resume the campaign", code="bad_configuration")
        raise PermanentError(reason, code=f"http_{status}")

    # --- after a crash or a lost answer -----------------------------------------------------

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The call ``call_id`` as Vapi has it (``None`` when Vapi does not know it)."""
        response = self._request("GET", f"/call/{call_id}")
        if response.status_code == 404:
            return None
        body = self._read(response, "read the call")
        if not isinstance(body, dict):
            raise RetryableError("Vapi answered the call look-up with something that is not a call", code="bad_body")
        return body

    def _read(self, response: httpx.Response, what: str) -> Any:
        status = response.status_code
        if status in (401, 403):
            raise OutcomeUnknown(f"Vapi refused the API key when asked to {what}", code="unauthorized")
        if not 200 <= status < 300:
            # the provider cannot answer now: asked again a little later
            raise RetryableError(f"Vapi could not {what} ({status})", code=f"http_{status}")
        try:
            return response.json()
        except ValueError:
            raise RetryableError(f"Vapi's answer to {what} is not JSON", code="bad_body") from None

    def list_calls(self, *, created_after: datetime) -> tuple[list[dict[str, Any]], bool]:
        """Calls created after ``created_after``, newest first, and whether the listing is complete."""
        calls: list[dict[str, Any]] = []
        params: dict[str, Any] = {"createdAtGt": _iso(created_after), "limit": LIST_LIMIT}
        for _ in range(LIST_PAGES):
            page = self._read(self._request("GET", "/call", params=params), "list calls")
            if not isinstance(page, list):
                raise RetryableError("Vapi's call list is not a list", code="bad_body")
            found = [c for c in page if isinstance(c, dict)]
            calls.extend(found)
            if len(page) < LIST_LIMIT:
                return calls, True
            oldest = min((str(c.get("createdAt") or "") for c in found), default="")
            if not oldest:
                break
            params = {**params, "createdAtLt": oldest}
        return calls, False

    def reconcile(self, message: OutboundMessage, *, started_at: datetime, request: dict[str, Any] | None = None,
                  provider_message_id: str | None = None) -> SendResult | None:
        """Did an earlier try of this step create a call?  The call (its status tells whether it
        ended), ``None`` when Vapi's complete list of calls since the try proves none was created,
        :class:`OutcomeUnknown` when Vapi cannot tell; any other error means "ask again later"."""
        if provider_message_id:
            call = self.get_call(provider_message_id)
            if call is None:
                raise OutcomeUnknown(f"Vapi no longer knows call {provider_message_id}", code="not_found")
            return self._result(call)
        calls, complete = self.list_calls(created_after=started_at - LIST_SLACK)
        for call in calls:
            if call_metadata(call).get("idempotency_key") == message.idempotency_key and call.get("id"):
                return self._result(call)
        if not complete:
            raise OutcomeUnknown("too many calls were created since this try to look through them all",
                                 code="too_many_calls")
        if _now() - started_at < SETTLE_AFTER:
            raise RetryableError("the try is too recent to be sure Vapi never created its call", code="too_early")
        return None

    @staticmethod
    def _result(call: dict[str, Any]) -> SendResult:
        status = str(call.get("status") or "queued")
        # the call as Vapi records it: an ended call's outcome is read from it when its report never came
        return SendResult(provider_message_id=str(call["id"]), status=status,
                          detail={"reconciled": True, "record": call})
