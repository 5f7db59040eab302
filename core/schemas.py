"""Pydantic models of a campaign as people and programs write and read it.

The same models serve the REST API (they are its request and response bodies
and its OpenAPI documentation) and the dashboard wizard, so a rule enforced for
one is enforced for the other.  Field-level rules live here; rules that look
at several fields or at the database live in ``core.campaigns``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal
from zoneinfo import available_timezones

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from core.models import CAMPAIGN_STATUSES, CAMPAIGN_TYPES, OUTREACH_METHODS, RECIPIENT_STATUSES

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TEMPLATE_MAX = 10_000

CampaignType = Literal["winback", "followup", "promotional", "feedback"]
OutreachMethod = Literal["call", "email", "sms", "multi"]
Channel = Literal["call", "email", "sms"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
assert set(CampaignType.__args__) == set(CAMPAIGN_TYPES)  # type: ignore[attr-defined]
assert set(OutreachMethod.__args__) == set(OUTREACH_METHODS)  # type: ignore[attr-defined]

_TIMEZONES = frozenset(available_timezones())


def check_timezone(value: str) -> str:
    """``value`` if it is a real IANA zone name (``Europe/Paris``), else ValueError."""
    if value not in _TIMEZONES:
        raise ValueError(f"'{value}' is not an IANA time zone name (for example America/New_York)")
    return value


def _hhmm(value: str, *, allow_24: bool) -> int:
    try:
        hours, minutes = value.split(":")
        h, m = int(hours), int(minutes)
    except ValueError:
        raise ValueError(f"'{value}' is not a time of day (HH:MM)") from None
    if len(minutes) != 2 or not (0 <= m < 60) or not (0 <= h < 24 or (allow_24 and h == 24 and m == 0)):
        raise ValueError(f"'{value}' is not a time of day (HH:MM)")
    return h * 60 + m


class SendWindow(BaseModel):
    """When outreach may happen, in the recipient's local time."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"start": "09:00", "end": "19:00", "days": ["mon", "tue", "wed", "thu", "fri", "sat"]}]})

    start: str = Field("09:00", description="Earliest local time, HH:MM.")
    end: str = Field("20:00", description="Latest local time, HH:MM (exclusive; 24:00 for midnight).")
    days: list[Day] = Field(default_factory=lambda: list(DAYS), description="Days of the week allowed.")

    @model_validator(mode="after")
    def _sane(self) -> SendWindow:
        start = _hhmm(self.start, allow_24=False)
        end = _hhmm(self.end, allow_24=True)
        if start >= end:
            raise ValueError(f"the window must end after it starts ({self.start}–{self.end})")
        if not self.days:
            raise ValueError("pick at least one day")
        self.days = [d for d in DAYS if d in set(self.days)]
        return self

    def minutes(self) -> tuple[int, int]:
        """(start, end) as minutes after local midnight."""
        return _hhmm(self.start, allow_24=False), _hhmm(self.end, allow_24=True)


class Variant(BaseModel):
    """An A/B variant: its content replaces the campaign's for the recipients it gets."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"name": "B", "weight": 1, "email_subject": "A treat for you, {first_name}"}]})

    name: str = Field(min_length=1, max_length=64, description="Short label, unique in the campaign.")
    weight: int = Field(1, ge=1, le=1000, description="Share of recipients, relative to the other variants.")
    email_subject: str | None = Field(None, max_length=500)
    message_template: str | None = Field(None, max_length=TEMPLATE_MAX)
    call_script: str | None = Field(None, max_length=TEMPLATE_MAX)
    sms_template: str | None = Field(None, max_length=TEMPLATE_MAX)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a variant needs a name")
        return value


class Step(BaseModel):
    """One step of a multi-channel campaign."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"channel": "call", "delay_hours": 48, "condition": "no_response"}]})

    channel: Channel
    delay_hours: float = Field(0, ge=0, le=24 * 60, description="Hours after the previous step (the first: after start).")
    condition: Literal["always", "no_response", "not_answered"] = Field(
        "always", description="Run only if the customer has not responded / no call was answered so far.")


_CONTENT_FIELDS = dict(
    message_template=Field(None, max_length=TEMPLATE_MAX,
                           description="E-mail body (e-mail) or message text (SMS). Placeholders {name} / {name|fallback}."),
    call_script=Field(None, max_length=TEMPLATE_MAX, description="What the voice agent says first (calls)."),
    email_subject=Field(None, max_length=500, description="Subject line (e-mail, and e-mail steps of multi)."),
    sms_template=Field(None, max_length=TEMPLATE_MAX, description="SMS text for SMS steps of multi campaigns."),
)


class CampaignFields(BaseModel):
    """Fields shared by create and update (all optional here)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    name: str | None = Field(None, min_length=1, max_length=200, examples=["Holiday win-back"])
    description: str | None = Field(None, max_length=5000)
    campaign_type: CampaignType | None = None
    outreach_method: OutreachMethod | None = None
    agent_id: uuid.UUID | None = Field(None, description="The voice agent whose identity calls use.")
    scheduled_at: AwareDatetime | None = Field(None, description="When to start (ISO 8601 with offset).")
    target_criteria: dict[str, Any] | None = Field(
        None, description="Who to reach; see TargetCriteria.", examples=[{"last_contact_days": 180, "status": "Closed"}])
    message_template: str | None = _CONTENT_FIELDS["message_template"]
    call_script: str | None = _CONTENT_FIELDS["call_script"]
    email_subject: str | None = _CONTENT_FIELDS["email_subject"]
    sms_template: str | None = _CONTENT_FIELDS["sms_template"]
    variables: dict[str, str | int | float] | None = Field(
        None, max_length=50, description="Campaign-wide template values.", examples=[{"promotion": "20% off"}])
    timezone: str | None = Field(None, description="IANA zone for recipients whose phone gives none.",
                                 examples=["America/New_York"])
    send_window: SendWindow | None = None
    rate_limit_per_minute: int | None = Field(None, ge=1, le=10000, description="Sends (or call starts) per minute.")
    max_concurrent_calls: int | None = Field(None, ge=1, le=1000, description="Calls in progress at once.")
    max_attempts: int | None = Field(None, ge=1, le=10, description="Tries per recipient and step.")
    variants: list[Variant] | None = Field(None, max_length=10, description="A/B variants (two or more).")
    steps: list[Step] | None = Field(None, max_length=10, description="Steps of a multi-channel campaign.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("a campaign needs a name")
        return value.strip() if value is not None else None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return check_timezone(value) if value is not None else None

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[Variant] | None) -> list[Variant] | None:
        if value:
            if len(value) < 2:
                raise ValueError("an A/B test needs at least two variants")
            names = [v.name for v in value]
            if len(set(names)) != len(names):
                raise ValueError("variant names must be unique")
        return value


class CampaignCreate(CampaignFields):
    """A new campaign. ``name``, ``campaign_type`` and ``outreach_method`` are required."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "Holiday win-back", "campaign_type": "winback", "outreach_method": "email",
        "target_criteria": {"last_contact_days": 180, "status": "Closed"},
        "email_subject": "We miss you, {first_name|friend}!",
        "message_template": "Hi {first_name|there},\n\nIt has been a while since your last visit on "
                            "{last_visit_date}. Enjoy {promotion} on your next {service_type|visit}.\n\n"
                            "{business_name}\n\nUnsubscribe: {unsubscribe_url}",
        "variables": {"promotion": "20% off"},
    }]})

    name: str = Field(min_length=1, max_length=200, examples=["Holiday win-back"])  # type: ignore[assignment]
    campaign_type: CampaignType  # type: ignore[assignment]
    outreach_method: OutreachMethod  # type: ignore[assignment]
    status: Literal["draft", "scheduled"] | None = Field(
        None, description="draft, or scheduled (needs scheduled_at). Default: scheduled when scheduled_at is given.")


class CampaignUpdate(CampaignFields):
    """A partial change. A ``status`` here follows the same rules as start/pause/stop."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rate_limit_per_minute": 20}]})

    status: Literal["draft", "scheduled", "active", "paused", "completed", "cancelled"] | None = None


class CampaignOut(BaseModel):
    """A campaign as stored."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    campaign_type: str
    outreach_method: str
    agent_id: uuid.UUID | None
    status: str = Field(description="One of " + ", ".join(CAMPAIGN_STATUSES))
    status_reason: str | None = Field(description="Why the campaign is paused/cancelled, when the system did it.")
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    target_criteria: dict[str, Any]
    message_template: str | None
    call_script: str | None
    email_subject: str | None
    sms_template: str | None
    variables: dict[str, Any]
    timezone: str
    send_window: dict[str, Any]
    rate_limit_per_minute: int
    max_concurrent_calls: int
    max_attempts: int
    variants: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class RecipientOut(BaseModel):
    """A customer in a campaign and how their outreach went."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    campaign_id: uuid.UUID
    lead_id: uuid.UUID | None
    customer_name: str | None
    customer_phone: str | None
    customer_email: str | None
    variant: str | None
    status: str = Field(description="One of " + ", ".join(RECIPIENT_STATUSES))
    step: int
    attempts: int
    next_attempt_at: datetime | None
    last_channel: str | None
    sent_at: datetime | None
    delivered_at: datetime | None
    answered_at: datetime | None
    responded_at: datetime | None
    converted: bool
    converted_at: datetime | None
    response_data: dict[str, Any]
    error_message: str | None
    created_at: datetime
    updated_at: datetime
