"""The wizard's test send: the campaign's content, rendered for a sample
customer, sent to the owner's own phone or inbox through the same channel
adapter a campaign uses (live when its credentials are set, else sandbox).

A test send belongs to no campaign and no recipient: nothing is recorded
against a customer, and the idempotency key is fresh for every click.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.accounts import get_profile
from core.channels import get_channel
from core.channels.base import (
    ChannelError,
    OptedOutError,
    OutboundMessage,
    PermanentError,
    QuotaExceededError,
    RetryableError,
)
from core.config import Settings, get_settings
from core.contacts import ContactError, normalize_email, normalize_phone
from core.errors import Conflict, Invalid, NotFound
from core.models import CHANNELS, Agent
from core.templates import SmsLength, build_context, check_template, render, render_html, sms_length

PROVIDER_NAMES = {"call": "Vapi", "email": "Resend", "sms": "Twilio"}
CHANNEL_WORDS = {"call": "call", "email": "e-mail", "sms": "text message"}


@dataclass(frozen=True)
class SampleCustomer:
    """Whose details fill the template in a test (a real customer from the audience, or none)."""

    customer_name: str | None = None
    service_type: str | None = None
    last_visit: datetime | None = None


@dataclass(frozen=True)
class SendTestResult:
    """What happened to a test send."""

    channel: str
    to: str
    live: bool
    provider: str
    provider_message_id: str
    subject: str | None
    text: str

    def sentence(self) -> str:
        """The outcome as the owner reads it."""
        what = CHANNEL_WORDS[self.channel]
        if self.live:
            verb = "placed to" if self.channel == "call" else "sent to"
            return (f"Test {what} {verb} {self.to} through {PROVIDER_NAMES[self.channel]} "
                    f"(reference {self.provider_message_id}).")
        return (f"Sandbox mode: the test {what} to {self.to} was simulated, nothing really went out "
                f"(reference {self.provider_message_id}). Add the {PROVIDER_NAMES[self.channel]} settings to "
                f"send for real.")


def _recipient(channel: str, to: str, region: str) -> str:
    if not to or not to.strip():
        need = "your e-mail address" if channel == "email" else "your mobile number"
        raise Invalid(f"enter {need} to send the test to", field="to")
    try:
        if channel == "email":
            return normalize_email(to)
        return normalize_phone(to, region)
    except ContactError as exc:
        raise Invalid(str(exc), field="to") from None


@dataclass(frozen=True)
class RenderedMessage:
    """A template rendered for one customer, as the customer would get it."""

    channel: str
    subject: str | None
    text: str
    html: str | None
    sms: SmsLength | None
    values: dict[str, str] = field(default_factory=dict)  # the template variables, for a call's assistant


def render_message(
    *, channel: str, template: str, subject_template: str | None = None,
    variables: Mapping[str, Any] | None = None, sample: SampleCustomer | None = None, business_name: str,
    timezone: str, agent_name: str | None = None, unsubscribe_url: str | None = None,
) -> RenderedMessage:
    """Check and render a channel's content for ``sample`` (the wizard's preview and the test send).

    Raises :class:`Invalid` naming the field for missing content, a stray
    brace or an unknown variable.
    """
    variables = dict(variables or {})
    body_field = {"call": "call_script", "email": "message_template", "sms": "message_template"}[channel]
    if not (template or "").strip():
        what = {"call": "call script", "email": "e-mail message", "sms": "SMS text"}[channel]
        raise Invalid(f"write the {what} first", field=body_field)
    check_template(template, field=body_field, extra_variables=variables.keys())
    if channel == "email":
        if not (subject_template or "").strip():
            raise Invalid("write the subject first", field="email_subject")
        check_template(subject_template or "", field="email_subject", extra_variables=variables.keys())
    sample = sample or SampleCustomer()
    context = build_context(
        customer_name=sample.customer_name, business_name=business_name, agent_name=agent_name,
        service_type=sample.service_type, last_visit=sample.last_visit, timezone=timezone,
        unsubscribe_url=unsubscribe_url if channel == "email" else None, variables=variables,
    )
    text = render(template, context)
    return RenderedMessage(
        channel=channel,
        subject=render(subject_template or "", context) if channel == "email" else None,
        text=text,
        html=render_html(template, context) if channel == "email" else None,
        sms=sms_length(text) if channel == "sms" else None,
        values={k: str(v) for k, v in context.items() if v is not None and k != "unsubscribe_url"},
    )


def send_test(
    session: Session, *, profile_id: uuid.UUID, channel: str, to: str, template: str,
    subject_template: str | None = None, variables: Mapping[str, Any] | None = None,
    sample: SampleCustomer | None = None, agent_id: uuid.UUID | None = None, settings: Settings | None = None,
) -> SendTestResult:
    """Render ``template`` (and ``subject_template`` for e-mail) for ``sample`` and send it to ``to``.

    Raises :class:`Invalid` for unusable content or address, and
    :class:`Conflict` when the provider refuses or is unavailable; the message
    says what to do.
    """
    if channel not in CHANNELS:
        raise Invalid(f"unknown channel '{channel}'; allowed: {', '.join(CHANNELS)}", field="channel")
    settings = settings or get_settings()
    profile = get_profile(session, profile_id=profile_id)
    agent = None
    if agent_id is not None:
        agent = session.scalars(select(Agent).where(Agent.id == agent_id, Agent.profile_id == profile_id)
                                ).one_or_none()
        if agent is None:
            raise NotFound("That agent does not exist in this business.", field="agent_id")
    sample = sample or SampleCustomer()
    # a test has no recipient, so there is no real unsubscribe token to put in it
    rendered = render_message(
        channel=channel, template=template, subject_template=subject_template, variables=variables,
        sample=sample, business_name=profile.business_name, timezone=profile.timezone,
        agent_name=agent.name if agent else None,
        unsubscribe_url=f"{settings.public_base_url.rstrip('/')}/unsubscribe/test-message",
    )
    address = _recipient(channel, to, profile.default_region)
    message = OutboundMessage(
        channel=channel, to=address, idempotency_key=f"test/{profile_id}/{uuid.uuid4()}", profile_id=profile_id,
        business_name=profile.business_name, customer_name=sample.customer_name,
        subject=f"[Test] {rendered.subject}" if rendered.subject is not None else None, text=rendered.text,
        html=rendered.html,
        variables=rendered.values if channel == "call" else {},
        assistant_id=agent.vapi_assistant_id if agent else None,
        phone_number_id=agent.vapi_phone_number_id if agent else None,
        metadata={"test": "true", "profile_id": str(profile_id)}, test=True,
    )

    adapter = get_channel(channel, settings=settings)
    provider = PROVIDER_NAMES[channel]
    try:
        result = adapter.send(message)
    except OptedOutError as exc:
        raise Conflict(f"{provider} will not deliver to {address}: that number or address has opted out "
                       f"({exc.reason}).", field="to") from None
    except PermanentError as exc:
        raise Invalid(f"{provider} refused the test: {exc.reason}", field="to") from None
    except QuotaExceededError as exc:
        raise Conflict(f"Your {provider} account has used up its quota ({exc.reason}); the test was not "
                       "sent.", field="channel") from None
    except RetryableError as exc:
        raise Conflict(f"{provider} is busy or unreachable right now ({exc.reason}); try again in a "
                       "minute.", field="channel") from None
    except ChannelError as exc:
        raise Conflict(f"The test was not sent: {exc.reason}", field="channel") from None
    return SendTestResult(channel=channel, to=address, live=bool(adapter.live), provider=adapter.provider,
                          provider_message_id=result.provider_message_id, subject=rendered.subject,
                          text=rendered.text)
