"""Pydantic models of a campaign as people and programs write and read it.

The same models serve the REST API (they are its request and response bodies
and its OpenAPI documentation) and the dashboard wizard, so a rule enforced for
one is enforced for the other.  Field-level rules live here; rules that look
at several fields or at the database live in ``core.campaigns``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import available_timezones

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

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
    email_subject: str | None = Field(None, max_length=500, description="Subject line for this variant's e-mails.")
    message_template: str | None = Field(None, max_length=TEMPLATE_MAX,
                                         description="E-mail body or SMS text for this variant.")
    call_script: str | None = Field(None, max_length=TEMPLATE_MAX, description="Call opening for this variant.")
    sms_template: str | None = Field(None, max_length=TEMPLATE_MAX,
                                     description="SMS text of SMS steps (multi) for this variant.")

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

    channel: Channel = Field(description="How this step reaches the customer: call, email or sms.")
    delay_hours: float = Field(0, ge=0, le=24 * 60,
                               description="Hours after the previous step (the first: after start).")
    condition: Literal["always", "no_response", "not_answered", "voicemail", "answered"] = Field(
        "always", description="always; no_response (the customer has not responded so far); not_answered (no call "
                              "was answered so far); voicemail (the previous call reached voicemail); answered "
                              "(a call was answered).")


_CONTENT_FIELDS = dict(
    message_template=Field(None, max_length=TEMPLATE_MAX,
                           description="E-mail body (e-mail) or message text (SMS). "
                                       "Placeholders {name} / {name|fallback}."),
    call_script=Field(None, max_length=TEMPLATE_MAX, description="What the voice agent says first (calls)."),
    email_subject=Field(None, max_length=500, description="Subject line (e-mail, and e-mail steps of multi)."),
    sms_template=Field(None, max_length=TEMPLATE_MAX, description="SMS text for SMS steps of multi campaigns."),
)


class CampaignFields(BaseModel):
    """Fields shared by create and update (all optional here)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    name: str | None = Field(None, min_length=1, max_length=200, description="What staff call the campaign.",
                             examples=["Holiday win-back"])
    description: str | None = Field(None, max_length=5000, description="Notes for staff; never sent.")
    campaign_type: CampaignType | None = Field(None, description="winback, followup, promotional or feedback.")
    outreach_method: OutreachMethod | None = Field(
        None, description="call, email, sms, or multi (a sequence of steps over several channels).")
    agent_id: uuid.UUID | None = Field(None, description="The voice agent whose identity calls use.")
    scheduled_at: AwareDatetime | None = Field(None, description="When to start (ISO 8601 with offset).")
    target_criteria: dict[str, Any] | None = Field(
        None, description="Who to reach; see TargetCriteria.",
        examples=[{"last_contact_days": 180, "status": "Closed"}])
    message_template: str | None = _CONTENT_FIELDS["message_template"]
    call_script: str | None = _CONTENT_FIELDS["call_script"]
    email_subject: str | None = _CONTENT_FIELDS["email_subject"]
    sms_template: str | None = _CONTENT_FIELDS["sms_template"]
    variables: dict[str, str | int | float] | None = Field(
        None, max_length=50, description="Campaign-wide template values.", examples=[{"promotion": "20% off"}])
    timezone: str | None = Field(None, description="IANA zone for recipients whose phone gives none.",
                                 examples=["America/New_York"])
    send_window: SendWindow | None = Field(
        None, description="Days and hours outreach may happen, in the recipient's local time.")
    rate_limit_per_minute: int | None = Field(None, ge=1, le=10000, description="Sends (or call starts) per minute.")
    max_concurrent_calls: int | None = Field(None, ge=1, le=1000, description="Calls in progress at once.")
    max_attempts: int | None = Field(None, ge=1, le=10, description="Tries per recipient and step.")
    variants: list[Variant] | None = Field(None, max_length=10, description="A/B variants (two or more).")
    steps: list[Step] | None = Field(None, max_length=10, description="Steps of a multi-channel campaign.")
    holdout_percent: int | None = Field(
        None, ge=0, le=50, description="Share of the matched customers kept back and never contacted, to measure "
                                       "how many came back because of the campaign (lift). 0–50, default 0.")
    always_on: bool | None = Field(
        None, description="Enrol newly matching customers every day while active; never completes by itself.")
    reenroll_after_days: int | None = Field(
        None, ge=1, le=3650, description="An always-on campaign enrols a customer again this many days after their "
                                         "last enrolment ended (default 180).")
    send_time: Literal["window", "best"] | None = Field(
        None, description="window: as soon as the send window allows; best: at each customer's best local hour "
                          "(learned from this business's history).")
    auto_pause_failure_rate: float | None = Field(
        None, gt=0, le=1, description="Pause when this share of the recent attempts (at least 20) fails "
                                      "(default 0.5).")
    variant_mode: Literal["split", "test_then_winner"] | None = Field(
        None, description="split: every customer gets a version by weight; test_then_winner: test_percent of them "
                          "try the versions, the rest get the winner.")
    test_percent: int | None = Field(None, ge=1, le=100,
                                     description="Share of customers in an A/B test (test_then_winner, default 20).")
    test_hours: float | None = Field(None, gt=0, le=24 * 30,
                                     description="Hours after which the leader wins if none is ahead for sure "
                                                 "(default 48).")

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

    @field_validator("scheduled_at")
    @classmethod
    def _scheduled_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is past the last representable UTC time
            raise ValueError("is outside the range of dates this service handles") from None

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

    name: str = Field(min_length=1, max_length=200, description="What staff call the campaign.",  # type: ignore[assignment]
                      examples=["Holiday win-back"])
    campaign_type: CampaignType = Field(description="winback, followup, promotional or feedback.")  # type: ignore[assignment]
    outreach_method: OutreachMethod = Field(  # type: ignore[assignment]
        description="call, email, sms, or multi (a sequence of steps over several channels).")
    status: Literal["draft", "scheduled"] | None = Field(
        None, description="draft, or scheduled (needs scheduled_at). Default: scheduled when scheduled_at is given.")


class CampaignUpdate(CampaignFields):
    """A partial change. A ``status`` here follows the same rules as start/pause/stop."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rate_limit_per_minute": 20}]})

    status: Literal["draft", "scheduled", "active", "paused", "completed", "cancelled"] | None = Field(
        None, description="Move the campaign to this status (illegal changes are refused).")


class CampaignOut(BaseModel):
    """A campaign as stored."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "name": "Holiday win-back", "description": None,
        "campaign_type": "winback", "outreach_method": "email", "agent_id": None, "status": "active",
        "status_reason": None, "scheduled_at": None, "started_at": "2026-06-15T15:00:00Z", "completed_at": None,
        "target_criteria": {"last_contact_days": 180, "status": ["Closed"]},
        "message_template": "Hi {first_name|there}, enjoy {promotion} at {business_name}.", "call_script": None,
        "email_subject": "We miss you, {first_name|friend}!", "sms_template": None,
        "variables": {"promotion": "20% off"}, "timezone": "America/New_York",
        "send_window": {"start": "09:00", "end": "20:00", "days": ["mon", "tue", "wed", "thu", "fri", "sat"]},
        "rate_limit_per_minute": 30, "max_concurrent_calls": 3, "max_attempts": 3, "variants": [], "steps": [],
        "created_at": "2026-06-14T10:00:00Z", "updated_at": "2026-06-15T15:00:00Z"}]})

    id: uuid.UUID = Field(description="The campaign's id.")
    name: str = Field(description="What staff call the campaign.")
    description: str | None = Field(description="Notes for staff.")
    campaign_type: str = Field(description="winback, followup, promotional or feedback.")
    outreach_method: str = Field(description="call, email, sms or multi.")
    agent_id: uuid.UUID | None = Field(description="The voice agent whose identity calls use.")
    status: str = Field(description="One of " + ", ".join(CAMPAIGN_STATUSES))
    status_reason: str | None = Field(description="Why the campaign is paused/cancelled, when the system did it.")
    scheduled_at: datetime | None = Field(description="When a scheduled campaign starts (UTC).")
    started_at: datetime | None = Field(description="When it started.")
    completed_at: datetime | None = Field(description="When it completed or was stopped.")
    target_criteria: dict[str, Any] = Field(description="Who it reaches (normalized criteria).")
    message_template: str | None = Field(description="E-mail body or SMS text.")
    call_script: str | None = Field(description="What the voice agent says first.")
    email_subject: str | None = Field(description="E-mail subject line.")
    sms_template: str | None = Field(description="SMS text of SMS steps (multi).")
    variables: dict[str, Any] = Field(description="Campaign-wide template values.")
    timezone: str = Field(description="IANA zone for recipients whose phone gives none.")
    send_window: dict[str, Any] = Field(description="Days and hours outreach may happen (recipient local time).")
    rate_limit_per_minute: int = Field(description="Sends (or call starts) per minute.")
    max_concurrent_calls: int = Field(description="Calls in progress at once.")
    max_attempts: int = Field(description="Tries per recipient and step.")
    variants: list[dict[str, Any]] = Field(description="A/B variants.")
    steps: list[dict[str, Any]] = Field(description="Steps of a multi-channel campaign.")
    attribution_days: int = Field(description="A customer's new lead within this many days counts for the campaign.")
    holdout_percent: int = Field(description="Share of the matched customers kept back, never contacted (lift).")
    always_on: bool = Field(description="Enrols newly matching customers daily; never completes by itself.")
    reenroll_after_days: int = Field(description="An always-on campaign's wait before enrolling a customer again.")
    send_time: str = Field(description="window or best (each customer's best local hour).")
    auto_pause_failure_rate: float = Field(description="Pauses when this share of recent attempts fails.")
    variant_mode: str = Field(description="split or test_then_winner.")
    test_percent: int = Field(description="Share of customers in an A/B test (test_then_winner).")
    test_hours: float = Field(description="Hours after which the A/B test's leader wins.")
    winner_variant: str | None = Field(description="The version the rest of the customers get, once decided.")
    winner_decided_at: datetime | None = Field(description="When the A/B winner was decided.")
    winner_reason: str | None = Field(description="Why that version won, in words.")
    paused_reason: str | None = Field(None, description="Why the campaign is paused, in words (quota, a refused "
                                                        "key, an automatic pause after a failure spike, …).")
    created_at: datetime = Field(description="When it was created.")
    updated_at: datetime = Field(description="When it last changed.")

    @model_validator(mode="after")
    def _paused_reason(self) -> CampaignOut:
        if self.status == "paused" and self.paused_reason is None:
            self.paused_reason = self.status_reason
        return self


class RecipientOut(BaseModel):
    """A customer in a campaign and how their outreach went."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": "9b2f1c3e-8a47-4d5e-9f60-1a2b3c4d5e6f", "campaign_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "lead_id": "5d7e6f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "customer_name": "Maria Lopez",
        "customer_phone": "+14155550123", "customer_email": "maria@example.com", "variant": None,
        "status": "delivered", "step": 0, "attempts": 1, "next_attempt_at": None, "last_channel": "email",
        "sent_at": "2026-06-15T15:01:00Z", "delivered_at": "2026-06-15T15:01:05Z", "answered_at": None,
        "responded_at": None, "converted": False, "converted_at": None, "response_data": {},
        "error_message": None, "created_at": "2026-06-15T15:00:00Z", "updated_at": "2026-06-15T15:01:05Z"}]})

    id: uuid.UUID = Field(description="The recipient's id.")
    campaign_id: uuid.UUID = Field(description="The campaign.")
    lead_id: uuid.UUID | None = Field(description="The customer's most recent lead, when known.")
    customer_name: str | None = Field(description="How to address the customer.")
    customer_phone: str | None = Field(description="Phone (E.164).")
    customer_email: str | None = Field(description="E-mail address.")
    customer_id: uuid.UUID | None = Field(None, description="The customer (GET /api/customers/{id}).")
    variant: str | None = Field(description="A/B variant the customer gets.")
    status: str = Field(description="One of " + ", ".join(RECIPIENT_STATUSES) + " (holdout: kept back for the "
                                    "lift measurement, never contacted)")
    step: int = Field(description="Step of a multi-channel campaign the customer is on (0 first).")
    attempts: int = Field(description="Tries of the current step so far.")
    next_attempt_at: datetime | None = Field(description="When the next try is due (none once nothing is left to do).")
    # read from the model's ``waits_because``: the reason only while a try is due
    waiting_reason: str | None = Field(None, validation_alias=AliasChoices("waits_because", "waiting_reason"),
                                       description="Why the next try waits until `next_attempt_at`, when it "
                                                         "was put off: the send window, a state's calling hours or "
                                                         "24-hour cap, the customer's best hour, an A/B test.",
                                       examples=["3 calls in 24 hours already reached this FL number (Florida "
                                                 "Telephone Solicitation Act …)"])
    last_channel: str | None = Field(description="Channel of the last step that reached the customer.")
    sent_at: datetime | None = Field(description="When something was first sent (or a call placed).")
    delivered_at: datetime | None = Field(description="When delivery was confirmed.")
    answered_at: datetime | None = Field(description="When a call was answered.")
    responded_at: datetime | None = Field(description="When the customer responded (reply, click, answered call).")
    converted: bool = Field(description="Whether the customer converted (booked, or came back).")
    converted_at: datetime | None = Field(description="When the customer converted.")
    returned_at: datetime | None = Field(None, description="When the customer came back (a new lead of theirs "
                                                           "within the attribution window of the campaign's start).")
    response_data: dict[str, Any] = Field(description="What the provider reported (call summary, reply text, …).")
    error_message: str | None = Field(description="Why outreach failed, in the provider's words.")
    created_at: datetime = Field(description="When the customer was added to the campaign.")
    updated_at: datetime = Field(description="When this recipient last changed.")
