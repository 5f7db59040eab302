"""The data model (SQLAlchemy 2.0 typed models).

Tenancy: every row belongs to one profile (a business), directly through
``profile_id``; every core query filters on it.

Work model: a campaign's recipients are also its work queue.  A recipient row
carries the step it is on (``step``), when that step is next due
(``next_attempt_at``; NULL once nothing is left to do) and a lease
(``claimed_by``/``claim_expires_at``) taken by the scheduler process working
on it.  ``outreach_attempts`` holds one row per try of a step (recorded before
the provider is called, completed after), and ``outreach_events`` one row per
provider event (webhooks, simulated sandbox outcomes, clicks): together they are
the single source of truth for retries, multi-step sequences and timelines.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.db import JSONType, UTCDateTime, utcnow

# the statuses the product's own defaults use; a business's leads may carry any label of its own (§9)
LEAD_STATUSES = ("New", "Contacted", "Closed")
LEAD_STATUS_MAX = 50
CAMPAIGN_TYPES = ("winback", "followup", "promotional", "feedback")
OUTREACH_METHODS = ("call", "email", "sms", "multi")
CHANNELS = ("call", "email", "sms")
CAMPAIGN_STATUSES = ("draft", "scheduled", "active", "paused", "completed", "cancelled")
# "holdout": chosen for the campaign's control group, never contacted (lift is measured against them)
RECIPIENT_STATUSES = ("pending", "queued", "sent", "delivered", "answered", "failed", "opted_out", "holdout")
OPT_OUT_CHANNELS = ("call", "email", "sms", "all")
OPT_OUT_SOURCES = ("sms_stop", "unsubscribe_link", "call_request", "bounce", "complaint", "manual")
STEP_CONDITIONS = ("always", "no_response", "not_answered", "voicemail", "answered")
# how the last call of a recipient ended (drives the conditions "voicemail" and "answered")
CALL_OUTCOMES = ("answered", "voicemail", "not_answered", "failed")
CONSENT_CHANNELS = ("call", "sms", "email", "all")
CONSENT_LEVELS = ("express", "express_written")
CONSENT_SOURCES = ("import", "web_form", "call", "manual", "api")
CONSENT_POLICIES = ("us_tcpa", "none")
DNC_SOURCES = ("national_registry", "internal")
SEND_TIMES = ("window", "best")
VARIANT_MODES = ("split", "test_then_winner")
AB_GROUPS = ("test", "rest")
EMAIL_PROVIDERS = ("resend", "smtp")
SMS_PROVIDERS = ("twilio", "vonage", "sns")
# the events other systems can subscribe to (webhook endpoints, §12)
WEBHOOK_EVENT_TYPES = ("recipient.sent", "recipient.responded", "recipient.converted", "recipient.opted_out",
                       "campaign.started", "campaign.paused", "campaign.completed", "customer.returned")
WEBHOOK_DELIVERY_STATUSES = ("pending", "delivered", "failed")
# normalized event types in outreach_events, whatever the provider (the timeline's vocabulary)
EVENT_TYPES = (
    "sent",              # the provider accepted a send / a call was placed
    "delivered",         # e-mail or SMS delivered; voicemail left
    "delivery_delayed",
    "opened",            # e-mail opened (not a response: mail clients pre-open)
    "clicked",           # e-mail link clicked (a response)
    "answered",          # call answered by the customer
    "not_answered",      # call not answered / busy
    "replied",           # inbound SMS reply (a response)
    "converted",         # booked / successful outcome; a new lead was created
    "bounced",           # e-mail bounced
    "complained",        # e-mail marked as spam
    "failed",            # the provider could not deliver (reason in payload)
    "opted_out",         # the customer asked to stop on this channel
    "opted_in",          # the customer asked to hear from the business again (SMS START)
    "status",            # any other provider status change worth keeping
)
ATTEMPT_OUTCOMES = ("accepted", "retryable", "permanent", "opted_out", "quota", "unknown", "skipped")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


def _pk() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


def _updated() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)


def _profile_fk() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False)


class Profile(Base):
    """A business: the tenant every other row belongs to."""

    __tablename__ = "profiles"

    id: Mapped[uuid.UUID] = _pk()
    business_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    timezone: Mapped[str] = mapped_column(String(64), default="America/New_York")
    default_region: Mapped[str] = mapped_column(String(2), default="US")
    booking_url: Mapped[str | None] = mapped_column(String(500))
    # compliance (§10): us_tcpa asks for consent records before calls and texts; none = the business's call
    consent_policy: Mapped[str] = mapped_column(String(16), default="us_tcpa")
    # who the business sends as (§12); empty = the platform's defaults from the environment
    email_from: Mapped[str | None] = mapped_column(String(320))
    email_from_name: Mapped[str | None] = mapped_column(String(200))
    email_reply_to: Mapped[str | None] = mapped_column(String(320))
    sms_from: Mapped[str | None] = mapped_column(String(64))
    vapi_assistant_id: Mapped[str | None] = mapped_column(String(100))
    vapi_phone_number_id: Mapped[str | None] = mapped_column(String(100))
    email_provider: Mapped[str | None] = mapped_column(String(16))
    sms_provider: Mapped[str | None] = mapped_column(String(16))
    # prices for cost estimates and actual cost (§11), in the business's currency
    price_per_sms_segment: Mapped[float] = mapped_column(Float, default=0.0083)
    price_per_call_minute: Mapped[float] = mapped_column(Float, default=0.13)
    price_per_email: Mapped[float] = mapped_column(Float, default=0.001)
    # provider credentials, encrypted with a key derived from SECRET_KEY (core.secrets); never returned
    encrypted_secrets: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    __table_args__ = (
        CheckConstraint(_in("consent_policy", CONSENT_POLICIES), name="consent_policy"),
        CheckConstraint(f"email_provider IS NULL OR {_in('email_provider', EMAIL_PROVIDERS)}", name="email_provider"),
        CheckConstraint(f"sms_provider IS NULL OR {_in('sms_provider', SMS_PROVIDERS)}", name="sms_provider"),
    )


class User(Base):
    """A dashboard login of a profile (password stored as an Argon2 hash)."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()
    last_login_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "profile_id"),)


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; ``prefix`` identifies it to people."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    name: Mapped[str] = mapped_column(String(100), default="default")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "profile_id"),)


class Agent(Base):
    """A CONNEXT AI voice agent of a profile (its Vapi ids override the defaults)."""

    __tablename__ = "agents"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    name: Mapped[str] = mapped_column(String(200))
    vapi_assistant_id: Mapped[str | None] = mapped_column(String(100))
    vapi_phone_number_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    __table_args__ = (Index(None, "profile_id"),)


class Lead(Base):
    """One contact a CONNEXT agent (or an import, or a campaign) recorded.

    ``contact_key`` is the customer this lead belongs to: the normalized phone,
    or for a lead with no phone its normalized e-mail.
    """

    __tablename__ = "leads"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    contact_key: Mapped[str] = mapped_column(String(320))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(LEAD_STATUS_MAX), default="New")
    service_type: Mapped[str | None] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)
    call_summary: Mapped[str | None] = mapped_column(Text)
    call_transcript: Mapped[str | None] = mapped_column(Text)
    recording_url: Mapped[str | None] = mapped_column(String(1000))
    sentiment: Mapped[str | None] = mapped_column(String(32))
    structured_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    duration: Mapped[int | None]
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(32), default="agent")
    fingerprint: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    __table_args__ = (
        # the customer page and attribution read a profile's leads by customer, newest first
        Index(None, "profile_id", "contact_key", "created_at"),
        # exact-duplicate detection on import
        Index(None, "profile_id", "fingerprint", unique=True),
    )


class Customer(Base):
    """One customer of a profile: the leads sharing a ``contact_key``, aggregated.

    Kept equal to its leads in the transaction of every write to ``leads``
    (:mod:`core.customers_sync`), so choosing recipients, the customer list and
    the customer page read one row per customer instead of ranking every lead.
    ``customer_name`` and ``customer_email`` are the newest known values (a newer
    lead may lack what an older one has); ``last_*`` come from the most recent
    lead.  The id is stable: new leads update the row, never replace it.
    """

    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    contact_key: Mapped[str] = mapped_column(String(320))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    first_contact_at: Mapped[datetime]
    last_contact_at: Mapped[datetime]
    last_status: Mapped[str] = mapped_column(String(LEAD_STATUS_MAX))
    last_agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    last_service_type: Mapped[str | None] = mapped_column(String(100))
    last_lead_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    lead_count: Mapped[int] = mapped_column(Integer, default=0)
    service_types: Mapped[list[Any]] = mapped_column(default=list)
    timezone: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    __table_args__ = (
        UniqueConstraint("profile_id", "contact_key"),
        # the customer list (most recently in touch first) and dormancy criteria
        Index(None, "profile_id", "last_contact_at"),
    )


class Campaign(Base):
    """A re-engagement campaign (seed columns plus execution settings)."""

    __tablename__ = "campaigns"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    campaign_type: Mapped[str] = mapped_column(String(16))
    outreach_method: Mapped[str] = mapped_column(String(8))
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    status_reason: Mapped[str | None] = mapped_column(Text)
    scheduled_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    target_criteria: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message_template: Mapped[str | None] = mapped_column(Text)
    call_script: Mapped[str | None] = mapped_column(Text)
    email_subject: Mapped[str | None] = mapped_column(String(500))
    sms_template: Mapped[str | None] = mapped_column(Text)
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timezone: Mapped[str] = mapped_column(String(64))
    send_window: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, default=30)
    max_concurrent_calls: Mapped[int] = mapped_column(Integer, default=3)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    attribution_days: Mapped[int] = mapped_column(Integer, default=14)
    variants: Mapped[list[Any]] = mapped_column(default=list)
    steps: Mapped[list[Any]] = mapped_column(default=list)
    # lift (§11): this share of the matched customers is kept back, never contacted
    holdout_percent: Mapped[int] = mapped_column(Integer, default=0)
    # always-on (§11): newly matching customers are enrolled daily; never completes by itself
    always_on: Mapped[bool] = mapped_column(Boolean, default=False)
    reenroll_after_days: Mapped[int] = mapped_column(Integer, default=180)
    last_enrolled_at: Mapped[datetime | None]
    send_time: Mapped[str] = mapped_column(String(8), default="window")
    auto_pause_failure_rate: Mapped[float] = mapped_column(Float, default=0.5)
    variant_mode: Mapped[str] = mapped_column(String(24), default="split")
    test_percent: Mapped[int] = mapped_column(Integer, default=20)
    test_hours: Mapped[float] = mapped_column(Float, default=48.0)
    winner_variant: Mapped[str | None] = mapped_column(String(64))
    winner_decided_at: Mapped[datetime | None]
    winner_reason: Mapped[str | None] = mapped_column(Text)
    # who the last selection left out and why: {"opted_out", "no_consent", "dnc", "no_contact"} (cumulative)
    selection_report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    __table_args__ = (
        CheckConstraint(_in("campaign_type", CAMPAIGN_TYPES), name="campaign_type"),
        CheckConstraint("holdout_percent BETWEEN 0 AND 50", name="holdout_percent"),
        CheckConstraint("reenroll_after_days BETWEEN 1 AND 3650", name="reenroll_after_days"),
        CheckConstraint(_in("send_time", SEND_TIMES), name="send_time"),
        CheckConstraint("auto_pause_failure_rate > 0 AND auto_pause_failure_rate <= 1", name="auto_pause"),
        CheckConstraint(_in("variant_mode", VARIANT_MODES), name="variant_mode"),
        CheckConstraint("test_percent BETWEEN 1 AND 100", name="test_percent"),
        CheckConstraint("test_hours > 0", name="test_hours"),
        CheckConstraint(_in("outreach_method", OUTREACH_METHODS), name="outreach_method"),
        CheckConstraint(_in("status", CAMPAIGN_STATUSES), name="status"),
        CheckConstraint("rate_limit_per_minute BETWEEN 1 AND 10000", name="rate_limit"),
        CheckConstraint("max_concurrent_calls BETWEEN 1 AND 1000", name="max_concurrent_calls"),
        CheckConstraint("max_attempts BETWEEN 1 AND 10", name="max_attempts"),
        Index(None, "profile_id", "status"),
        Index(None, "profile_id", "created_at"),
        Index(None, "status", "scheduled_at"),
    )


class CampaignRecipient(Base):
    """A customer in a campaign: their outreach state, outcome and work-queue slot."""

    __tablename__ = "campaign_recipients"

    id: Mapped[uuid.UUID] = _pk()
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    lead_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    contact_key: Mapped[str] = mapped_column(String(320))
    # an always-on campaign may enrol a customer again after reenroll_after_days: 1, 2, …
    enrollment: Mapped[int] = mapped_column(Integer, default=1)
    customer_name: Mapped[str | None] = mapped_column(String(200))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    variant: Mapped[str | None] = mapped_column(String(64))
    # A/B test then winner: "test" recipients try the variants, "rest" get the winner once decided
    ab_group: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # work queue
    step: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    # best time to reach (§11): when the first step was planned for; set once, so a late send is not re-planned
    planned_at: Mapped[datetime | None]
    # why the next try waits until next_attempt_at, in words, when the engine put it off (the send window, a
    # state's calling hours or its cap, the best hour, the A/B test); cleared when the step is sent or ends
    waiting_reason: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claim_expires_at: Mapped[datetime | None]
    # outcome
    last_channel: Mapped[str | None] = mapped_column(String(8))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    responded_at: Mapped[datetime | None]
    converted: Mapped[bool] = mapped_column(Boolean, default=False)
    converted_at: Mapped[datetime | None]
    # how the last call ended: answered, voicemail, not_answered or failed
    last_call_outcome: Mapped[str | None] = mapped_column(String(16))
    # the customer came back (a new lead of theirs) within the attribution window of the campaign's start
    returned_at: Mapped[datetime | None]
    response_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    @property
    def waits_because(self) -> str | None:
        """Why the next try waits, while one is due: an opt-out or a reply that ended the outreach meanwhile
        leaves the last reason on the row, and it no longer means anything."""
        return self.waiting_reason if self.next_attempt_at is not None else None

    __table_args__ = (
        CheckConstraint(_in("status", RECIPIENT_STATUSES), name="status"),
        CheckConstraint(f"last_call_outcome IS NULL OR {_in('last_call_outcome', CALL_OUTCOMES)}",
                        name="last_call_outcome"),
        # a customer is in a campaign once per enrolment (selection is idempotent)
        UniqueConstraint("campaign_id", "contact_key", "enrollment"),
        Index(None, "campaign_id", "status"),
        Index(None, "campaign_id", "next_attempt_at"),
        # frequency cap and attribution: this customer's recent contacts
        Index(None, "profile_id", "contact_key", "sent_at"),
        # an inbound text names only the number: the recipients of every business that texted it
        Index(None, "contact_key"),
    )


class CampaignResult(Base):
    """The seed's counters of a campaign, kept equal to what its recipients say."""

    __tablename__ = "campaign_results"

    id: Mapped[uuid.UUID] = _pk()
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), unique=True)
    total_recipients: Mapped[int] = mapped_column(Integer, default=0)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    delivered_count: Mapped[int] = mapped_column(Integer, default=0)
    answered_count: Mapped[int] = mapped_column(Integer, default=0)
    responded_count: Mapped[int] = mapped_column(Integer, default=0)
    converted_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    opted_out_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class OutreachAttempt(Base):
    """One try of one step for one recipient.

    Written with ``outcome`` NULL *before* the provider is called and completed
    after; a row still NULL once its lease has expired is an attempt whose
    outcome is unknown (the process died mid-call) and is reconciled with the
    provider before anything is retried.  ``idempotency_key`` is the same for
    every try of a step, so a provider that honours it never sends twice.
    """

    __tablename__ = "outreach_attempts"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    recipient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaign_recipients.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    attempt_no: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # what this try cost (SMS segments of the final text, an e-mail, a call's minutes once it ended)
    cost: Mapped[float | None] = mapped_column(Float)
    # when the try was handed to a provider that cannot be asked afterwards (SMTP, SNS): a try never handed
    # over is known not to have gone out
    handed_at: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None]
    # when the attempt's work ended: at once for e-mail, SMS and failures; for an
    # accepted call only when its end is reported (until then it counts as in progress)
    completed_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(f"outcome IS NULL OR {_in('outcome', ATTEMPT_OUTCOMES)}", name="outcome"),
        UniqueConstraint("recipient_id", "step", "attempt_no"),
        Index(None, "provider", "provider_message_id"),
        Index(None, "campaign_id", "started_at"),
        # the few open attempts (in flight, or calls in progress)
        Index("ix_outreach_attempts_open", "channel", "campaign_id",
              postgresql_where=text("completed_at IS NULL"), sqlite_where=text("completed_at IS NULL")),
    )


class OutreachEvent(Base):
    """One thing a provider (or the sandbox, or a tracked link) told us.

    ``(provider, provider_event_id)`` is unique, so a replayed webhook is a
    no-op.  Events are stored first and applied afterwards (``processed_at``);
    an event with ``occurred_at`` in the future is a simulated sandbox outcome
    waiting for its time.
    """

    __tablename__ = "outreach_events"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    recipient_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("campaign_recipients.id", ondelete="CASCADE"))
    step: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str | None] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(16))
    provider_event_id: Mapped[str] = mapped_column(String(200))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = _created()
    received_at: Mapped[datetime] = _created()
    processed_at: Mapped[datetime | None]
    error_message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id"),
        Index(None, "processed_at", "occurred_at"),
        Index(None, "campaign_id", "occurred_at"),
        Index(None, "recipient_id"),
    )


class OptOut(Base):
    """A contact that must not be reached on ``channel`` (``all``: on any channel)."""

    __tablename__ = "opt_outs"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    contact: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()

    __table_args__ = (
        CheckConstraint(_in("channel", OPT_OUT_CHANNELS), name="channel"),
        CheckConstraint(_in("source", OPT_OUT_SOURCES), name="source"),
        UniqueConstraint("profile_id", "contact", "channel"),
        Index(None, "profile_id", "created_at"),
    )


class RateLimit(Base):
    """Shared limiter state: the theoretical arrival time of the next permitted action for ``key``
    (GCRA, epoch seconds) and the permits of the last minute.  One row per campaign and per
    provider account; every scheduler process updates the same row atomically."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    tat: Mapped[float] = mapped_column(Float, default=0.0)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)
    # permits of the last minute, as [bucket start, count] pairs: the ceiling over any sliding 60 s
    recent: Mapped[list[Any]] = mapped_column(default=list)
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _updated()


class Consent(Base):
    """A customer's consent to be reached on a channel (§10), with its proof; revoked ones are kept."""

    __tablename__ = "consents"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    contact: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(8))
    level: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    proof: Mapped[str | None] = mapped_column(Text)
    captured_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()

    __table_args__ = (
        CheckConstraint(_in("channel", CONSENT_CHANNELS), name="channel"),
        CheckConstraint(_in("level", CONSENT_LEVELS), name="level"),
        CheckConstraint(_in("source", CONSENT_SOURCES), name="source"),
        Index(None, "profile_id", "contact"),
    )


class DncNumber(Base):
    """A phone number the business must never call or text (its do-not-call list, §10)."""

    __tablename__ = "dnc_numbers"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    number: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = _created()

    __table_args__ = (
        CheckConstraint(_in("source", DNC_SOURCES), name="source"),
        UniqueConstraint("profile_id", "number"),
    )


class WebhookEndpoint(Base):
    """Where a business wants its events delivered (n8n, Zapier, a CRM), signed per Standard Webhooks."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[Any]] = mapped_column(default=list)
    secret: Mapped[str] = mapped_column(Text)  # encrypted (core.secrets); shown once when created
    description: Mapped[str | None] = mapped_column(String(500))
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    __table_args__ = (Index(None, "profile_id"),)


class WebhookEvent(Base):
    """The outbox: one event for other systems, written in the transaction of the change it announces."""

    __tablename__ = "webhook_events"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()

    __table_args__ = (Index(None, "profile_id", "created_at"),)


class WebhookDelivery(Base):
    """One event for one endpoint: delivered at least once, retried with back-off for 24 hours."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = _pk()
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claim_expires_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    response_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()

    __table_args__ = (
        CheckConstraint(_in("status", WEBHOOK_DELIVERY_STATUSES), name="status"),
        UniqueConstraint("endpoint_id", "event_id"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "endpoint_id", "created_at"),
        Index(None, "event_id"),
    )


class LoginAttempt(Base):
    """Failed dashboard sign-ins per e-mail and per address, for throttling (§13)."""

    __tablename__ = "login_attempts"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]


class DashboardSession(Base):
    """A signed-in dashboard browser: its token survives a reload until it expires or the user signs out."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    profile_id: Mapped[uuid.UUID] = _profile_fk()
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "user_id"),)
