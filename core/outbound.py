"""What a recipient gets: a campaign step rendered into an :class:`OutboundMessage`.

The content of a step is the campaign's, with the recipient's A/B variant
overriding what it sets; placeholders are filled from
:func:`core.templates.build_context` (business name, agent name, the
customer's service and last visit, campaign variables, unsubscribe link).

- e-mail: subject, text and HTML parts, and a visible unsubscribe footer when
  the text does not already carry the link (it also goes in the
  ``List-Unsubscribe`` header); the links the business wrote into the HTML
  part are tracked (:mod:`core.clicks`);
- SMS: the text, plus "Reply STOP to opt out" on the first SMS a business
  sends to a number when the text does not already say how to opt out;
- call: the rendered script as the assistant's first message, and the
  variables as assistant variable values.

The wizard's preview and the test send use the same builder (:func:`preview`),
so what the dashboard shows is, byte for byte, what the customer gets; SMS
length, segments and cost are read from that final text (:func:`message_cost`).

A message is stored with its attempt (:func:`message_to_dict`) before it is
sent, so a retry or a reconciliation after a crash uses exactly the same
content (:func:`message_from_dict`).
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from core.channels.base import OutboundMessage
from core.clicks import link_rewriter
from core.config import Settings
from core.eligibility import Step
from core.models import Agent, Campaign, Profile
from core.templates import SmsLength, build_context, render, render_html, sms_length
from core.tokens import unsubscribe_url

STOP_FOOTER = "Reply STOP to opt out"


def steps_of(campaign: Campaign) -> list[Step]:
    """The steps a recipient goes through."""
    if campaign.outreach_method == "multi":
        return [Step(i, s["channel"], float(s.get("delay_hours") or 0), s.get("condition") or "always")
                for i, s in enumerate(campaign.steps or [])]
    return [Step(0, campaign.outreach_method, 0.0, "always")]


def idempotency_key(recipient_id: uuid.UUID, step: int) -> str:
    """The key of every try of one recipient's step: a provider that honours it sends once."""
    return f"reengage/{recipient_id}/{step}"


@dataclass(frozen=True)
class Customer:
    """What the templates may say about one recipient."""

    recipient_id: uuid.UUID
    name: str | None
    phone: str | None
    email: str | None
    variant: str | None
    service_type: str | None = None
    last_visit: datetime | None = None


class MessageBuilder:
    """Renders one campaign's steps for its recipients (the templates are read once)."""

    def __init__(self, *, campaign: Campaign, profile: Profile, agent: Agent | None, settings: Settings) -> None:
        self.campaign = campaign
        self.profile = profile
        self.agent = agent
        self.settings = settings
        self._variants = {v["name"]: v for v in campaign.variants or []}
        # values the business wrote itself: a web address among them becomes a (tracked) link
        self._trusted = ("booking_link", "unsubscribe_url", *(campaign.variables or {}))
        self._multi = campaign.outreach_method == "multi"

    def content(self, channel: str, variant: str | None) -> tuple[str | None, str]:
        """``(subject template, body template)`` of ``channel`` for ``variant``."""
        c, v = self.campaign, self._variants.get(variant or "", {})
        if channel == "email":
            return (v.get("email_subject") or c.email_subject or "",
                    v.get("message_template") or c.message_template or "")
        if channel == "call":
            return None, v.get("call_script") or c.call_script or ""
        if self._multi:
            return None, v.get("sms_template") or c.sms_template or ""
        return None, v.get("message_template") or v.get("sms_template") or c.message_template or c.sms_template or ""

    def build(self, customer: Customer, *, step: int, channel: str, first_sms: bool = False) -> OutboundMessage:
        """The message of ``step`` for ``customer``."""
        c = self.campaign
        unsubscribe = unsubscribe_url(customer.recipient_id, self.settings)
        context = build_context(
            customer_name=customer.name, business_name=self.profile.business_name,
            agent_name=self.agent.name if self.agent else None, service_type=customer.service_type,
            last_visit=customer.last_visit, timezone=c.timezone, unsubscribe_url=unsubscribe,
            booking_link=self.profile.booking_url, variables=c.variables,
        )
        subject_template, body = self.content(channel, customer.variant)
        to = customer.email if channel == "email" else customer.phone
        common: dict[str, Any] = {
            "channel": channel, "to": to or "", "idempotency_key": idempotency_key(customer.recipient_id, step),
            "profile_id": c.profile_id, "business_name": self.profile.business_name, "campaign_id": c.id,
            "recipient_id": customer.recipient_id, "step": step, "customer_name": customer.name,
        }
        if channel == "email":
            text = render(body, context)
            # the footer is added only when the text does not already carry the link (never twice)
            if unsubscribe not in text:
                text = (f"{text}\n\n--\nYou are receiving this because you are a customer of "
                        f"{self.profile.business_name}. Unsubscribe: {unsubscribe}")
            # links in the HTML part go through click tracking (the text part keeps them as they are)
            track = link_rewriter(customer.recipient_id, self.settings, keep=(unsubscribe,))
            body_html = render_html(body, context, link=track, trusted=self._trusted)
            if f'href="{html.escape(unsubscribe, quote=True)}"' not in body_html:
                body_html += (f'\n<hr><p style="font-size:12px;color:#666">You are receiving this because you are a '
                              f"customer of {html.escape(self.profile.business_name)}. "
                              f'<a href="{html.escape(unsubscribe, quote=True)}">Unsubscribe</a></p>')
            return OutboundMessage(**common, subject=render(subject_template or "", context), text=text,
                                   html=body_html, unsubscribe_url=unsubscribe)
        if channel == "sms":
            text = render(body, context).strip()
            # the first text a business sends a number says how to opt out — unless it already does
            if first_sms and not says_how_to_stop(text):
                text = f"{text}\n{STOP_FOOTER}"
            return OutboundMessage(**common, text=text)
        script = render(body, context)
        values = {k: str(v) for k, v in context.items() if v is not None and k != "unsubscribe_url"}
        return OutboundMessage(**common, text=script, variables=values,
                               assistant_id=self.agent.vapi_assistant_id if self.agent else None,
                               phone_number_id=self.agent.vapi_phone_number_id if self.agent else None)


def says_how_to_stop(text: str) -> bool:
    """Whether an SMS already tells the customer how to opt out ("Reply STOP to opt out", "Text STOP to
    unsubscribe", …) — not merely the word "stop" ("stop by on Saturday")."""
    return bool(_HOW_TO_STOP.search(text))


_HOW_TO_STOP = re.compile(r"\b(?:reply|text|send|respond(?:\s+with)?)\s+[\"'“]?stop\b"
                          r"|\bstop\b[\"'”]?\s+to\s+(?:opt[\s-]?out|unsubscribe|end|quit|cancel|stop)", re.IGNORECASE)

# the recipient a preview or a test is built for: no such recipient exists, so its links lead nowhere
PREVIEW_RECIPIENT = uuid.UUID("00000000-0000-4000-8000-000000000000")


@dataclass(frozen=True)
class Sample:
    """Whose details fill the templates in a preview or a test (a customer from the audience, or none)."""

    customer_name: str | None = None
    customer_phone: str | None = None
    customer_email: str | None = None
    service_type: str | None = None
    last_visit: datetime | None = None


def preview(*, campaign: Campaign, profile: Profile, agent: Agent | None, settings: Settings, channel: str,
            sample: Sample | None = None, variant: str | None = None, step: int = 0, first_sms: bool = True,
            recipient_id: uuid.UUID = PREVIEW_RECIPIENT) -> OutboundMessage:
    """The message a customer like ``sample`` would get from ``campaign`` (which need not be saved: the
    wizard's draft) — built by the very builder the dispatcher sends with, footers included; by default as
    the first text a business sends a number.  Only the recipient's own links (unsubscribe, tracked links)
    differ from what a real recipient gets, as they name the recipient."""
    sample = sample or Sample()
    customer = Customer(recipient_id=recipient_id, name=sample.customer_name, phone=sample.customer_phone,
                        email=sample.customer_email, variant=variant, service_type=sample.service_type,
                        last_visit=sample.last_visit)
    builder = MessageBuilder(campaign=campaign, profile=profile, agent=agent, settings=settings)
    return builder.build(customer, step=step, channel=channel, first_sms=channel == "sms" and first_sms)


@dataclass(frozen=True)
class MessageCost:
    """How long an SMS is and what a message costs, from its final text."""

    sms: SmsLength | None
    cost: float | None  # None: a call, whose cost depends on how long it lasts


def message_cost(message: OutboundMessage, profile: Profile) -> MessageCost:
    """Length, segments and cost of the final message (what the provider is handed)."""
    if message.channel == "sms":
        length = sms_length(message.text)
        return MessageCost(sms=length, cost=round(length.segments * profile.price_per_sms_segment, 6))
    if message.channel == "email":
        return MessageCost(sms=None, cost=profile.price_per_email)
    return MessageCost(sms=None, cost=None)


def with_metadata(message: OutboundMessage, **values: str) -> OutboundMessage:
    """``message`` with per-try metadata (which try, the dispatcher's clock)."""
    return replace(message, metadata={**message.metadata, **values})


_FIELDS = ("channel", "to", "idempotency_key", "business_name", "step", "customer_name", "subject", "text", "html",
           "unsubscribe_url", "variables", "assistant_id", "phone_number_id", "metadata", "test")


def message_to_dict(message: OutboundMessage) -> dict[str, Any]:
    """A JSON-ready copy of ``message`` (stored with the attempt)."""
    data = {k: getattr(message, k) for k in _FIELDS}
    data["variables"] = dict(message.variables)
    data["metadata"] = dict(message.metadata)
    for key in ("profile_id", "campaign_id", "recipient_id"):
        value = getattr(message, key)
        data[key] = str(value) if value is not None else None
    return data


def message_from_dict(data: dict[str, Any]) -> OutboundMessage:
    """The message :func:`message_to_dict` stored."""
    values = {k: data[k] for k in _FIELDS if k in data}
    ids = {k: uuid.UUID(data[k]) if data.get(k) else None for k in ("profile_id", "campaign_id", "recipient_id")}
    return OutboundMessage(**values, **ids)  # type: ignore[arg-type]


_BODIES = ("subject", "text", "html")


def attempt_detail(message: OutboundMessage, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """What an attempt stores before the provider is called: the message, and the
    adapter's exact request when it has one (a body found verbatim in the request
    is stored once, in the request)."""
    stored = message_to_dict(message)
    if request is None:
        return {"message": stored}
    for key in _BODIES:
        if stored.get(key) is not None and request.get(key) == stored[key]:
            stored[key] = {"in_request": key}
    return {"message": stored, "request": request}


def message_from_detail(detail: dict[str, Any]) -> OutboundMessage | None:
    """The message an attempt stored (``None`` when it stored none)."""
    stored = detail.get("message") if isinstance(detail, dict) else None
    if not stored:
        return None
    stored = dict(stored)
    request = detail.get("request") or {}
    for key in _BODIES:
        if isinstance(stored.get(key), dict):
            stored[key] = request.get(stored[key].get("in_request"))
    return message_from_dict(stored)

