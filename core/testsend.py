"""The wizard's preview and test send: the campaign's content, built for a sample customer by the
same :class:`core.outbound.MessageBuilder` a real send uses — footers, tracked links and all — so
the preview is, byte for byte, what a customer gets; the test goes to the owner's own phone or inbox
through the channel adapter a campaign uses (live when its credentials are set, else sandbox).

A test send belongs to no campaign and no recipient: nothing is recorded against a customer, and
the idempotency key is fresh for every click.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.accounts import get_profile
from core.channels import PROVIDER_NAMES, get_channel
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
from core.models import CHANNELS, Agent, Campaign, Profile
from core.outbound import Sample, message_cost, preview
from core.senders import settings_for
from core.templates import SmsLength, check_template

CHANNEL_WORDS = {"call": "call", "email": "e-mail", "sms": "text message"}
_BODY_FIELD = {"call": "call_script", "email": "message_template", "sms": "message_template"}

# the sample customer of a preview (kept under its old name for the dashboard)
SampleCustomer = Sample


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
        name = PROVIDER_NAMES.get(self.provider, self.provider)
        if self.live:
            verb = "placed to" if self.channel == "call" else "sent to"
            return f"Test {what} {verb} {self.to} through {name} (reference {self.provider_message_id})."
        return (f"Sandbox mode: the test {what} to {self.to} was simulated, nothing really went out "
                f"(reference {self.provider_message_id}). Add the provider's settings to send for real.")


@dataclass(frozen=True)
class RenderedMessage:
    """A campaign step as one customer would get it, with its length and cost."""

    channel: str
    subject: str | None
    text: str
    html: str | None
    sms: SmsLength | None
    cost: float | None
    message: OutboundMessage
    values: dict[str, str] = field(default_factory=dict)  # the template variables, for a call's assistant


def unsaved_campaign(*, profile: Profile, data: Mapping[str, Any]) -> Campaign:
    """A campaign object that is not stored (the wizard's draft, a test): what the builder reads."""
    return Campaign(
        id=uuid.UUID(int=0), profile_id=profile.id, name=str(data.get("name") or "Preview"),
        campaign_type=str(data.get("campaign_type") or "winback"),
        outreach_method=str(data.get("outreach_method") or "email"),
        message_template=data.get("message_template"), call_script=data.get("call_script"),
        email_subject=data.get("email_subject"), sms_template=data.get("sms_template"),
        variables=dict(data.get("variables") or {}), timezone=str(data.get("timezone") or profile.timezone),
        variants=list(data.get("variants") or []), steps=list(data.get("steps") or []),
    )


def _content_for(campaign: Campaign, channel: str) -> tuple[str | None, str, str]:
    """(subject, body, body field) a single-channel content check looks at."""
    if channel == "email":
        return campaign.email_subject, campaign.message_template or "", "message_template"
    if channel == "call":
        return None, campaign.call_script or "", "call_script"
    if campaign.outreach_method == "multi":
        return None, campaign.sms_template or "", "sms_template"
    return None, campaign.message_template or campaign.sms_template or "", "message_template"


def check_content(campaign: Campaign, channel: str) -> None:
    """Refuse (:class:`Invalid`, naming the field) missing content, a stray brace or an unknown variable."""
    subject, body, body_field = _content_for(campaign, channel)
    extra = (campaign.variables or {}).keys()
    if not body.strip():
        what = {"call": "call script", "email": "e-mail message", "sms": "SMS text"}[channel]
        raise Invalid(f"write the {what} first", field=body_field)
    check_template(body, field=body_field, extra_variables=extra)
    if channel == "email":
        if not (subject or "").strip():
            raise Invalid("write the subject first", field="email_subject")
        check_template(subject or "", field="email_subject", extra_variables=extra)
    for i, variant in enumerate(campaign.variants or []):
        for name in ("email_subject", "message_template", "sms_template", "call_script"):
            if variant.get(name):
                check_template(variant[name], field=f"variants.{i}.{name}", extra_variables=extra)


def render_message(*, campaign: Campaign, profile: Profile, channel: str, sample: Sample | None = None,
                   variant: str | None = None, agent: Agent | None = None, settings: Settings | None = None,
                   step: int = 0) -> RenderedMessage:
    """``campaign``'s message on ``channel`` for ``sample``, exactly as the dispatcher would send it (as the
    first text a business sends a number); :class:`Invalid` naming the field for unusable content."""
    check_content(campaign, channel)
    message = preview(campaign=campaign, profile=profile, agent=agent, settings=settings or get_settings(),
                      channel=channel, sample=sample, variant=variant, step=step)
    cost = message_cost(message, profile)
    return RenderedMessage(channel=channel, subject=message.subject, text=message.text, html=message.html,
                           sms=cost.sms, cost=cost.cost, message=message, values=dict(message.variables))


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


def send_test(
    session: Session, *, profile_id: uuid.UUID, channel: str, to: str, template: str | None = None,
    subject_template: str | None = None, variables: Mapping[str, Any] | None = None,
    campaign_data: Mapping[str, Any] | None = None, sample: Sample | None = None, variant: str | None = None,
    agent_id: uuid.UUID | None = None, settings: Settings | None = None,
) -> SendTestResult:
    """Build the message for ``sample`` exactly as a campaign would and send it to ``to``.

    The content is the wizard's draft (``campaign_data``, as :func:`core.wizard.campaign_data` gives it)
    or, for a single channel, ``template`` (and ``subject_template`` for e-mail) with ``variables``.
    Raises :class:`Invalid` for unusable content or address, and :class:`Conflict` when the provider
    refuses or is unavailable; the message says what to do.
    """
    if channel not in CHANNELS:
        raise Invalid(f"unknown channel '{channel}'; allowed: {', '.join(CHANNELS)}", field="channel")
    base = settings or get_settings()
    profile = get_profile(session, profile_id=profile_id)
    agent = None
    if agent_id is not None:
        agent = session.scalars(select(Agent).where(Agent.id == agent_id, Agent.profile_id == profile_id)
                                ).one_or_none()
        if agent is None:
            raise NotFound("That agent does not exist in this business.", field="agent_id")
    if campaign_data is None:
        campaign_data = {"outreach_method": channel, "variables": dict(variables or {}),
                         _BODY_FIELD[channel]: template, "email_subject": subject_template}
    campaign = unsaved_campaign(profile=profile, data=campaign_data)
    rendered = render_message(campaign=campaign, profile=profile, channel=channel, sample=sample, variant=variant,
                              agent=agent, settings=base)
    address = _recipient(channel, to, profile.default_region)
    message = replace(rendered.message, to=address, idempotency_key=f"test/{profile_id}/{uuid.uuid4()}",
                      campaign_id=None, recipient_id=None, test=True,
                      metadata={"test": "true", "profile_id": str(profile_id)})

    business = settings_for(profile, base)
    adapter = get_channel(channel, settings=business)
    name = PROVIDER_NAMES.get(adapter.provider, adapter.provider)
    try:
        result = adapter.send(message)
    except OptedOutError as exc:
        raise Conflict(f"{name} will not deliver to {address}: that number or address has opted out "
                       f"({exc.reason}).", field="to") from None
    except PermanentError as exc:
        raise Invalid(f"{name} refused the test: {exc.reason}", field="to") from None
    except QuotaExceededError as exc:
        raise Conflict(f"Your {name} account cannot send right now ({exc.reason}); the test was not sent.",
                       field="channel") from None
    except RetryableError as exc:
        raise Conflict(f"{name} is busy or unreachable right now ({exc.reason}); try again in a minute.",
                       field="channel") from None
    except ChannelError as exc:
        raise Conflict(f"The test was not sent: {exc.reason}", field="channel") from None
    return SendTestResult(channel=channel, to=address, live=bool(adapter.live), provider=adapter.provider,
                          provider_message_id=result.provider_message_id, subject=message.subject, text=message.text)


def last_visit(value: Any) -> datetime | None:
    """A sample's last visit from an audience sample row (a datetime, or its text)."""
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
