"""The one small interface every channel adapter implements.

The dispatcher only knows :class:`Channel`: it hands over a fully rendered
:class:`OutboundMessage` and gets back a :class:`SendResult` or one of the
errors below, which say what to do next (retry later, give up, record an
opt-out, pause the campaign).  Live adapters (Vapi, Resend, Twilio) and the
sandbox sit behind the same interface.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message (or call) for one recipient and step."""

    channel: str  # "call" | "email" | "sms"
    to: str  # E.164 phone number or e-mail address
    idempotency_key: str  # identical for every try of one recipient's step
    profile_id: uuid.UUID
    business_name: str
    campaign_id: uuid.UUID | None = None  # None for a test send
    recipient_id: uuid.UUID | None = None
    step: int = 0
    customer_name: str | None = None
    subject: str | None = None  # e-mail
    text: str = ""  # e-mail text part, SMS body, or a call's first message
    html: str | None = None  # e-mail
    unsubscribe_url: str | None = None
    variables: dict[str, str] = field(default_factory=dict)  # call: assistant variable values
    assistant_id: str | None = None  # call: agent-level Vapi ids (else the defaults)
    phone_number_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    test: bool = False  # a test send from the dashboard: no campaign, no recipient


@dataclass(frozen=True)
class SendResult:
    """The provider accepted the message (or placed the call)."""

    provider_message_id: str
    status: str = "accepted"
    detail: dict[str, Any] = field(default_factory=dict)


class ChannelError(Exception):
    """A send that did not go through; subclasses say what to do about it."""

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class RetryableError(ChannelError):
    """Transient (timeout, 429, 5xx): try again later, ``retry_after`` seconds at the earliest."""

    def __init__(self, reason: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class PermanentError(ChannelError):
    """Will never work for this recipient (invalid number, rejected address): fail at once."""


class OptedOutError(PermanentError):
    """The provider says the recipient opted out (Twilio 21610, a suppressed address): record an opt-out."""


class QuotaExceededError(ChannelError):
    """The account's quota is used up: pause the campaign and say why."""


class OutcomeUnknown(ChannelError):
    """Reconciliation could not tell whether an earlier try went out."""


@runtime_checkable
class Channel(Protocol):
    """A way to reach a customer."""

    channel: str  # "call" | "email" | "sms"
    provider: str  # "vapi" | "resend" | "twilio" | "sandbox"
    live: bool

    def send(self, message: OutboundMessage) -> SendResult:
        """Send now; raises a :class:`ChannelError` subclass when it did not go through."""
        ...

    def reconcile(self, message: OutboundMessage, *, started_at: datetime) -> SendResult | None:
        """After a crash: did an earlier try of this message go out?

        Returns the provider's record when it did, ``None`` when the provider
        confirms it did not (so a retry is safe), and raises
        :class:`OutcomeUnknown` when it cannot tell.
        """
        ...
