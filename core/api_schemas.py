"""Request and response bodies of the REST API that only the HTTP edge needs.

A campaign itself is written and read with the models of ``core.schemas`` (the
dashboard uses them too); this module adds the envelopes around them (pages,
counters, errors) and the bodies of the smaller endpoints.  Every field carries
a description and an example, because these models *are* the OpenAPI document.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from core.models import RECIPIENT_STATUSES, WEBHOOK_EVENT_TYPES
from core.schemas import CampaignOut, CampaignType, OutreachMethod, RecipientOut, Step
from core.senders import SECRET_FIELDS
from core.targeting import TargetCriteria

MAX_PAGE = 500  # the largest page any list endpoint returns
MAX_OFFSET = 1_000_000_000
MAX_HAND_PICKED = 1000  # leads or contacts in one "add recipients" request

EXAMPLE_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
EXAMPLE_TIME = "2026-06-15T15:00:00Z"

RecipientStatus = Literal["pending", "queued", "sent", "delivered", "answered", "failed", "opted_out", "holdout"]
CampaignStatus = Literal["draft", "scheduled", "active", "paused", "completed", "cancelled"]
OptOutChannel = Literal["all", "call", "email", "sms"]
assert set(RecipientStatus.__args__) == set(RECIPIENT_STATUSES)  # type: ignore[attr-defined]


QUERY_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$"
_QUERY_TIME = re.compile(QUERY_TIME_PATTERN)


def _query_time(value: object) -> datetime:
    """An ISO date or date-time from a query string, as aware UTC (UTC when it has no offset).

    Only ISO text is taken: pydantic alone would also read ``1700000000`` as a Unix
    time, which no one means in a URL."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and _QUERY_TIME.match(value):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'{value}' is not a real date or time") from None
    else:
        raise ValueError("must be a date or date-time such as 2026-06-15 or 2026-06-15T09:00:00Z")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the range of dates this service handles") from None


UtcDateTime = Annotated[datetime, BeforeValidator(_query_time), WithJsonSchema({
    "type": "string", "pattern": QUERY_TIME_PATTERN, "examples": ["2026-06-01", "2026-06-01T09:00:00Z"],
    "description": "ISO 8601 date or date-time; UTC when it has no offset."})]


# --- errors ----------------------------------------------------------------------------


class ErrorItem(BaseModel):
    """One thing wrong with a request."""

    field: str = Field(description="Where the problem is: a field (dotted for nested ones, e.g. "
                                   "`steps.0.channel`), a query parameter, `body`, or empty when it is "
                                   "about the request as a whole.", examples=["message_template"])
    message: str = Field(description="What is wrong with it, in plain words.",
                         examples=["unknown variable {promo}; known: customer_name, first_name, …"])


class ErrorBody(BaseModel):
    """The body of every error answer (4xx)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "detail": "message_template: unknown variable {promo}",
        "errors": [{"field": "message_template", "message": "unknown variable {promo}"}],
    }]})

    detail: str = Field(description="One sentence a person can act on, naming the field at fault.",
                        examples=["This campaign is active; pause or stop it before deleting it."])
    errors: list[ErrorItem] = Field(default_factory=list,
                                    description="Every problem found, one per field (empty when there is "
                                                "nothing more specific to say than `detail`).")


# --- campaigns -------------------------------------------------------------------------


class CampaignPage(BaseModel):
    """One page of the business's campaigns, newest first."""

    campaigns: list[CampaignOut] = Field(description="The campaigns on this page.")
    total: int = Field(description="How many campaigns match the filters, over all pages.", examples=[12])
    limit: int = Field(description="Page size used.", examples=[50])
    offset: int = Field(description="How many matching campaigns were skipped.", examples=[0])


def _example_of(model: type[BaseModel]) -> dict[str, Any]:
    extra: Any = model.model_config.get("json_schema_extra")
    return dict(extra["examples"][0]) if isinstance(extra, dict) else {}


class CampaignDetail(CampaignOut):
    """A campaign with a summary of its recipients."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        **_example_of(CampaignOut),
        "recipient_counts": {"pending": 40, "queued": 0, "sent": 25, "delivered": 20, "answered": 3, "failed": 2,
                             "opted_out": 1},
        "recipients": [_example_of(RecipientOut)]}]})

    recipient_counts: dict[str, int] = Field(
        description="How many recipients are in each status (every status is present, zero included).",
        examples=[{"pending": 40, "queued": 0, "sent": 25, "delivered": 20, "answered": 3, "failed": 2,
                   "opted_out": 1}])
    recipients: list[RecipientOut] = Field(
        description="The first page of recipients (up to 50, in the order they were added); "
                    "page through all of them with `GET /api/campaigns/{id}/recipients`.")


class RecipientPage(BaseModel):
    """One page of a campaign's recipients, in the order they were added."""

    recipients: list[RecipientOut] = Field(description="The recipients on this page.")
    total: int = Field(description="How many recipients match the filters, over all pages.", examples=[91])
    limit: int = Field(description="Page size used.", examples=[50])
    offset: int = Field(description="How many matching recipients were skipped.", examples=[0])


class Selection(BaseModel):
    """What running the campaign's criteria added."""

    selected: int = Field(description="Customers added to the campaign by this request, to be contacted.",
                          examples=[87])
    suppressed: int = Field(description="Matching customers left out because they opted out, are on the "
                                        "do-not-call list or lack the consent the campaign needs "
                                        "(`suppressed_by` without `no_contact`).", examples=[3])
    total_recipients: int = Field(description="Recipients the campaign will contact now (its holdout group not "
                                              "counted).", examples=[87])
    holdout: int = Field(0, description="Customers added to the campaign's holdout group by this request: kept "
                                        "back, never contacted, to measure the lift.", examples=[0])
    suppressed_by: SuppressedBy = Field(description="Matching customers left out, by reason.")


class ContactIn(BaseModel):
    """A customer given by their contact details (matched to their leads when they have any)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"customer_name": "Maria Lopez", "customer_phone": "+1 415 555 0123", "customer_email": "maria@example.com"}]})

    customer_name: str | None = Field(None, max_length=200, description="How to address the customer.",
                                      examples=["Maria Lopez"])
    customer_phone: str | None = Field(None, max_length=40,
                                       description="Phone number (E.164, or national in the business's country).",
                                       examples=["+14155550123"])
    customer_email: str | None = Field(None, max_length=320, description="E-mail address.",
                                       examples=["maria@example.com"])


class AddRecipients(BaseModel):
    """Customers to add by hand: give exactly one of ``lead_ids`` and ``contacts``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"lead_ids": [EXAMPLE_ID]},
        {"contacts": [{"customer_name": "Maria Lopez", "customer_phone": "+14155550123"}]},
    ]})

    lead_ids: list[uuid.UUID] | None = Field(
        None, min_length=1, max_length=MAX_HAND_PICKED,
        description="Leads of this business; each adds the customer the lead belongs to.", examples=[[EXAMPLE_ID]])
    contacts: list[ContactIn] | None = Field(
        None, min_length=1, max_length=MAX_HAND_PICKED, description="Customers given by their contact details.")

    @model_validator(mode="after")
    def _exactly_one(self) -> AddRecipients:
        if (self.lead_ids is None) == (self.contacts is None):
            raise ValueError("give exactly one of lead_ids and contacts")
        return self


class RecipientsAdded(BaseModel):
    """What adding recipients by hand did."""

    added: int = Field(description="Customers added by this request.", examples=[2])
    suppressed: int = Field(description="Customers left out because they opted out.", examples=[0])
    total_recipients: int = Field(description="Recipients the campaign has now.", examples=[89])


class Counters(BaseModel):
    """Outcome counters of a set of recipients, and the rates derived from them."""

    total_recipients: int = Field(description="Recipients counted.", examples=[120])
    sent_count: int = Field(description="Recipients something was sent to (or a call placed), delivered and "
                                        "answered ones included.", examples=[100])
    delivered_count: int = Field(description="Recipients with a delivery confirmed.", examples=[92])
    answered_count: int = Field(description="Recipients whose call was answered.", examples=[10])
    responded_count: int = Field(description="Recipients who responded (reply, click, answered call).",
                                 examples=[21])
    converted_count: int = Field(description="Recipients who converted (booked, or came back).", examples=[7])
    failed_count: int = Field(description="Recipients that could not be reached.", examples=[4])
    opted_out_count: int = Field(description="Recipients who opted out.", examples=[1])
    response_rate: float = Field(description="responded_count / sent_count (0 when nothing was sent).",
                                 examples=[0.21])
    conversion_rate: float = Field(description="converted_count / sent_count (0 when nothing was sent).",
                                   examples=[0.07])


class LiftResult(BaseModel):
    """Contacted customers' return rate against the holdout's (DESIGN §11): a two-proportion comparison."""

    contacted_rate: float = Field(description="returned_count / total_recipients.", examples=[0.12])
    holdout_rate: float = Field(description="holdout_returned_count / holdout_count.", examples=[0.05])
    absolute: float = Field(description="contacted_rate − holdout_rate.", examples=[0.07])
    relative: float | None = Field(description="absolute / holdout_rate (null when no holdout customer returned).",
                                   examples=[1.4])
    ci_low: float = Field(description="Lower end of the 95 % interval of `absolute`.", examples=[0.01])
    ci_high: float = Field(description="Upper end of the 95 % interval of `absolute`.", examples=[0.13])
    p_value: float | None = Field(description="Two-sided p-value of the pooled two-proportion z-test "
                                              "(null when undefined: no variation at all).", examples=[0.03])


class CampaignResults(Counters):
    """A campaign's results, counted from its recipients at the moment of the request."""

    holdout_count: int = Field(description="Customers kept back as the control group (never contacted).",
                               examples=[40])
    returned_count: int = Field(description="Contacted recipients who came back (a new lead within "
                                            "`attribution_days` of the start).", examples=[43])
    holdout_returned_count: int = Field(description="Holdout recipients who came back in the same window.",
                                        examples=[2])
    lift: LiftResult | None = Field(description="Lift over the holdout (null without a holdout).")
    actual_cost: float = Field(description="What the campaign's messages and calls cost so far, at the "
                                           "profile's prices.", examples=[12.4])
    estimated_cost: float | None = Field(description="Every step for every contacted recipient at the profile's "
                                                     "prices (null when the content cannot be built).",
                                         examples=[14.1])
    cost_per_returned: float | None = Field(description="actual_cost / returned_count (null before anyone "
                                                        "returned).", examples=[0.29])

    by_variant: dict[str, Counters] = Field(
        description="The same counters per A/B variant (empty for a campaign without variants).")
    by_channel: dict[str, Counters] = Field(
        description="The same counters per channel that last reached the recipient (`call`, `email`, `sms`).")


class PassReport(BaseModel):
    """What one dispatch pass over a campaign did."""

    processed: int = Field(description="Recipients looked at in this pass.", examples=[30])
    sent: int = Field(description="Messages sent or calls placed.", examples=[26])
    failed: int = Field(description="Recipients that failed for good in this pass.", examples=[1])
    opted_out: int = Field(description="Recipients skipped because they had opted out.", examples=[1])
    deferred: int = Field(description="Recipients put back for later (send window, rate limit, retry).",
                          examples=[2])
    skipped: int = Field(description="Recipients with nothing to do in their current step.", examples=[0])
    remaining: int = Field(description="Recipients still to be worked on after this pass.", examples=[57])


# --- audience ----------------------------------------------------------------------------


class AudiencePreviewRequest(BaseModel):
    """Criteria to try before creating a campaign."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"target_criteria": {"last_contact_days": 180, "status": "Closed"}, "outreach_method": "email"}]})

    target_criteria: TargetCriteria = Field(
        default_factory=lambda: TargetCriteria.model_validate({}),
        description="Who to reach (as a campaign's `target_criteria`).")
    outreach_method: OutreachMethod = Field(description="The campaign's channel; customers it cannot reach "
                                                        "are not counted.", examples=["email"])
    steps: list[Step] | None = Field(None, max_length=10,
                                     description="Steps of a `multi` campaign (their channels decide who is "
                                                 "reachable).")
    sample_size: int = Field(10, ge=0, le=100, description="How many matching customers to return as a sample.",
                             examples=[10])
    campaign_type: CampaignType = Field("winback", description="The campaign's type: it decides the consent calls "
                                                               "and texts need (marketing types need written "
                                                               "consent, `feedback` express consent).",
                                        examples=["winback"])

    @model_validator(mode="after")
    def _steps_match_method(self) -> AudiencePreviewRequest:
        if self.outreach_method == "multi" and not self.steps:
            raise ValueError("a multi-channel campaign needs at least one step (steps)")
        if self.outreach_method != "multi" and self.steps:
            raise ValueError("steps apply only to multi-channel campaigns (outreach_method 'multi')")
        return self


class AudienceMember(BaseModel):
    """A customer the criteria match, as their most recent lead describes them."""

    customer_id: uuid.UUID = Field(description="The customer (`GET /api/customers/{id}`).", examples=[EXAMPLE_ID])
    lead_id: uuid.UUID = Field(description="The customer's most recent lead.", examples=[EXAMPLE_ID])
    customer_name: str | None = Field(description="Name on record.", examples=["Maria Lopez"])
    customer_phone: str | None = Field(description="Phone (E.164).", examples=["+14155550123"])
    customer_email: str | None = Field(description="E-mail address.", examples=["maria@example.com"])
    status: str = Field(description="Status of the most recent lead.", examples=["Closed"])
    service_type: str | None = Field(description="Service of the most recent lead.", examples=["Color"])
    last_contact_at: datetime = Field(description="When the most recent lead was recorded.",
                                      examples=[EXAMPLE_TIME])
    lead_count: int = Field(description="How many leads the customer has.", examples=[3])
    score: int = Field(description="Re-engagement score, 0–100.", examples=[62])


class AudiencePreview(BaseModel):
    """How many customers a campaign with these criteria would reach now."""

    count: int = Field(description="Customers that would be selected (what select-recipients would add to a "
                                   "new campaign, its holdout group included).", examples=[87])
    suppressed: int = Field(description="Matching customers left out because they opted out, are on the "
                                        "do-not-call list or lack the consent the campaign needs "
                                        "(`suppressed_by` without `no_contact`).", examples=[3])
    suppressed_by: SuppressedBy = Field(description="Matching customers left out, by reason.")
    sample: list[AudienceMember] = Field(description="Some of the customers counted, most recent first.")
    by_state: dict[str, StateCompliance] = Field(
        default_factory=dict,
        description="When it calls or texts: the states with their own stricter rule (by USPS code) among the "
                    "numbers counted, as `GET /api/campaigns/{id}/compliance` gives them. Empty for e-mail only.")


# --- opt-outs ----------------------------------------------------------------------------


class OptOutCreate(BaseModel):
    """A customer who asked not to be contacted (recorded with source `manual`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"contact": "+14155550123", "channel": "sms", "reason": "Asked at the front desk"}]})

    contact: str = Field(min_length=1, max_length=320,
                         description="Phone number or e-mail address (normalized before it is stored).",
                         examples=["+14155550123"])
    channel: OptOutChannel = Field("all", description="Channel the customer opted out of; `all` covers every "
                                                      "channel.", examples=["all"])
    reason: str | None = Field(None, max_length=2000, description="Why, in the staff's words.",
                               examples=["Asked at the front desk"])


class OptOutOut(BaseModel):
    """A contact that will not be reached on a channel."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": EXAMPLE_ID, "contact": "+14155550123", "channel": "sms", "source": "manual",
        "reason": "Asked at the front desk", "created_at": EXAMPLE_TIME}]})

    id: uuid.UUID = Field(description="The opt-out's id (to delete it).", examples=[EXAMPLE_ID])
    contact: str = Field(description="Normalized phone (E.164) or lower-case e-mail.", examples=["+14155550123"])
    channel: str = Field(description="`call`, `email`, `sms`, or `all`.", examples=["sms"])
    source: str = Field(description="How it was recorded: `sms_stop`, `unsubscribe_link`, `call_request`, "
                                    "`bounce`, `complaint` or `manual`.", examples=["manual"])
    reason: str | None = Field(description="Why, when known.", examples=["Asked at the front desk"])
    created_at: datetime = Field(description="When it was recorded.", examples=[EXAMPLE_TIME])


class OptOutPage(BaseModel):
    """One page of the business's opt-outs, newest first."""

    opt_outs: list[OptOutOut] = Field(description="The opt-outs on this page.")
    total: int = Field(description="How many opt-outs match, over all pages.", examples=[4])
    limit: int = Field(description="Page size used.", examples=[50])
    offset: int = Field(description="How many matching opt-outs were skipped.", examples=[0])


# --- service --------------------------------------------------------------------------------


class Health(BaseModel):
    """Whether the API can serve requests."""

    status: Literal["ok", "unavailable"] = Field(description="`ok` when the database answers.", examples=["ok"])
    database: Literal["ok", "error"] = Field(description="Whether the database answered.", examples=["ok"])



# --- provider webhooks -------------------------------------------------------------------------


class WebhookAck(BaseModel):
    """What a provider webhook did (providers only look at the status; the counts help when debugging)."""

    received: int = Field(description="Events found in the request.", examples=[1])
    applied: int = Field(description="Events stored and applied to a campaign recipient.", examples=[1])
    replayed: int = Field(description="Events already received before (a retried or replayed webhook): "
                                      "nothing changed.", examples=[0])
    ignored: int = Field(description="Events about a message this service did not send: stored, not applied.",
                         examples=[0])


# --- events out (webhook endpoints) -------------------------------------------------------------


WebhookEventName = Literal["recipient.sent", "recipient.responded", "recipient.converted", "recipient.opted_out",
                           "campaign.started", "campaign.paused", "campaign.completed", "customer.returned", "*"]
assert set(WebhookEventName.__args__) == {*WEBHOOK_EVENT_TYPES, "*"}  # type: ignore[attr-defined]
EXAMPLE_HOOK = "https://hooks.zapier.com/hooks/catch/123456/abcdef/"


class WebhookEndpointCreate(BaseModel):
    """Where to post events, and which."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"url": EXAMPLE_HOOK, "events": ["recipient.converted", "recipient.opted_out"],
         "description": "Zapier: bookings to the CRM"}]})

    url: str = Field(min_length=1, max_length=2000,
                     description="An `https://` (or `http://`) address on the public internet: an n8n Webhook node, "
                                 "a Zapier Catch Raw Hook, a Make webhook, a CRM. Addresses that are (or resolve to) "
                                 "loopback or private networks are refused.", examples=[EXAMPLE_HOOK])
    events: list[WebhookEventName] = Field(min_length=1, max_length=9,
                                           description="The event types to receive, or `[\"*\"]` for every type "
                                                       "(also types added later).",
                                           examples=[["recipient.converted", "recipient.opted_out"]])
    description: str | None = Field(None, max_length=500, description="A note for people: what this endpoint feeds.",
                                    examples=["Zapier: bookings to the CRM"])


class WebhookEndpointOut(BaseModel):
    """An endpoint (its signing secret is shown only when it is created)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The endpoint's id.", examples=[EXAMPLE_ID])
    url: str = Field(description="Where events are posted.", examples=[EXAMPLE_HOOK])
    events: list[str] = Field(description="The event types it receives (`*`: all).",
                              examples=[["recipient.converted", "recipient.opted_out"]])
    description: str | None = Field(description="The note given when it was added.",
                                    examples=["Zapier: bookings to the CRM"])
    disabled_at: datetime | None = Field(description="When it stopped receiving events (it answered 410 Gone), "
                                                     "else null.", examples=[None])
    disabled_reason: str | None = Field(description="Why it was disabled.", examples=[None])
    created_at: datetime = Field(description="When it was added.", examples=[EXAMPLE_TIME])


class WebhookEndpointCreated(WebhookEndpointOut):
    """A new endpoint with its signing secret: copy it now, it is never shown again."""

    secret: str = Field(description="The Standard Webhooks signing secret (`whsec_` + base64 of 32 bytes) that "
                                    "verifies `webhook-signature`. Shown only in this answer.",
                        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw8LKzKkDrqMM="])


class WebhookEndpointList(BaseModel):
    """The business's endpoints, oldest first."""

    endpoints: list[WebhookEndpointOut] = Field(description="Every endpoint of the business.")


class WebhookDeliveryOut(BaseModel):
    """One event for one endpoint: where its delivery stands."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The delivery's id.", examples=[EXAMPLE_ID])
    event_id: str = Field(description="The event's id: the `webhook-id` header and the payload's `id`, the same on "
                                      "every attempt.", examples=["msg_3fa85f6457174562b3fc2c963f66afa6"])
    event_type: str = Field(description="The event's type.", examples=["recipient.converted"])
    test: bool = Field(description="A test event (*Send test event*): its `data` has `\"test\": true`.",
                       examples=[False])
    status: Literal["pending", "delivered", "failed"] = Field(
        description="`pending` (being tried, or waiting for its next attempt), `delivered` (the endpoint answered "
                    "2xx) or `failed` (not delivered within 24 hours, or the endpoint was disabled).",
        examples=["delivered"])
    attempts: int = Field(description="How many times it was sent.", examples=[1])
    response_status: int | None = Field(description="The HTTP status of the last answer; null when there was none "
                                                    "(timeout, no connection).", examples=[200])
    last_error: str | None = Field(description="What went wrong on the last attempt, when something did.",
                                   examples=[None])
    created_at: datetime = Field(description="When the event happened.", examples=[EXAMPLE_TIME])
    last_attempt_at: datetime | None = Field(description="When it was last sent.", examples=[EXAMPLE_TIME])
    next_attempt_at: datetime | None = Field(description="When it will be tried again (pending only).",
                                             examples=[None])
    delivered_at: datetime | None = Field(description="When the endpoint took it.", examples=[EXAMPLE_TIME])


class WebhookDeliveryPage(BaseModel):
    """One page of an endpoint's delivery log, newest event first."""

    deliveries: list[WebhookDeliveryOut] = Field(description="The deliveries on this page.")
    total: int = Field(description="How many deliveries the endpoint has, over all pages.", examples=[12])
    limit: int = Field(description="Page size used.", examples=[50])
    offset: int = Field(description="How many deliveries were skipped.", examples=[0])


# --- compliance: consents, the do-not-call list, a campaign's rules ----------------------------------


class ConsentCreate(BaseModel):
    """A customer's consent to be reached on a channel, with what proves it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"contact": "+14155550123", "channel": "sms", "level": "express_written", "source": "web_form",
         "proof": "Booking form, box 'Text me offers' ticked", "captured_at": "2026-06-01T17:04:00Z"}]})

    contact: str = Field(min_length=1, max_length=320,
                         description="Phone number (E.164, or national in the business's country) or e-mail "
                                     "address; normalized before it is stored.", examples=["+14155550123"])
    channel: Literal["call", "sms", "email", "all"] = Field(
        description="The channel consented to; `all` covers every channel.", examples=["sms"])
    level: Literal["express", "express_written"] = Field(
        description="`express_written` (signed, e.g. a web form with the disclosure) or `express` (given "
                    "another way). Marketing calls and texts need `express_written`; informational ones "
                    "`express`.", examples=["express_written"])
    source: Literal["import", "web_form", "call", "manual", "api"] = Field(
        "api", description="How the consent was captured.", examples=["web_form"])
    proof: str | None = Field(None, max_length=10_000,
                              description="What proves it: the form, the recording, the words.",
                              examples=["Booking form, box 'Text me offers' ticked"])
    captured_at: AwareDatetime | None = Field(
        None, description="When it was given (ISO 8601 with offset; not in the future). Default: now.",
        examples=["2026-06-01T17:04:00Z"])


class ConsentOut(BaseModel):
    """A consent record; a revoked one is kept, with `revoked_at`, and no longer counts."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": EXAMPLE_ID, "contact": "+14155550123", "channel": "sms", "level": "express_written",
        "source": "web_form", "proof": "Booking form, box 'Text me offers' ticked",
        "captured_at": "2026-06-01T17:04:00Z", "revoked_at": None, "created_at": EXAMPLE_TIME}]})

    id: uuid.UUID = Field(description="The consent's id (to revoke it).", examples=[EXAMPLE_ID])
    contact: str = Field(description="Normalized phone (E.164) or lower-case e-mail.", examples=["+14155550123"])
    channel: str = Field(description="`call`, `sms`, `email`, or `all`.", examples=["sms"])
    level: str = Field(description="`express` or `express_written`.", examples=["express_written"])
    source: str = Field(description="`import`, `web_form`, `call`, `manual` or `api`.", examples=["web_form"])
    proof: str | None = Field(description="What proves it.", examples=["Booking form"])
    captured_at: datetime = Field(description="When it was given.", examples=[EXAMPLE_TIME])
    revoked_at: datetime | None = Field(description="When it was revoked; null while it counts.", examples=[None])
    created_at: datetime = Field(description="When it was recorded here.", examples=[EXAMPLE_TIME])


class ConsentPage(BaseModel):
    """One page of the business's consent records (revoked ones included), newest first."""

    consents: list[ConsentOut] = Field(description="The consent records on this page.")
    total: int = Field(description="How many records match, over all pages.", examples=[4])
    limit: int = Field(description="Page size used.", examples=[50])
    offset: int = Field(description="How many matching records were skipped.", examples=[0])


class DncAdd(BaseModel):
    """Numbers to put on the do-not-call list."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"numbers": ["+13055550101", "(407) 555-0123", "8135550199"], "source": "national_registry"}]})

    numbers: list[str] = Field(min_length=1, max_length=100_000,
                               description="Phone numbers in any format: E.164, national in the business's "
                                           "country, or the ten digits of a National Do Not Call Registry "
                                           "file (read as US numbers).",
                               examples=[["+13055550101", "(407) 555-0123"]])
    source: Literal["national_registry", "internal"] = Field(
        "internal", description="`national_registry` (numbers from the National Do Not Call Registry) or "
                                "`internal` (the business's own list).", examples=["national_registry"])
    skip_invalid: bool = Field(False, description="Add the numbers and list the entries that are not phone "
                                                  "numbers in `rejected`. Without it, one such entry refuses the "
                                                  "whole list: 422 naming each (`numbers.<index>`), nothing added.")


class DncRejected(BaseModel):
    """An entry that is not a phone number (left out with `skip_invalid`; the others were added)."""

    index: int = Field(description="Its position in `numbers`, from 0.", examples=[2])
    number: str = Field(description="The entry as sent.", examples=["555-CALL"])
    error: str = Field(description="Why it was left out.",
                       examples=["'555-CALL' is not a valid phone number (region US)"])


class DncAdded(BaseModel):
    """What adding numbers to the do-not-call list did."""

    added: int = Field(description="Numbers new on the list (ones already on it are not counted).", examples=[2])
    rejected: list[DncRejected] = Field(description="Entries that are not phone numbers, left out (only with "
                                                    "`skip_invalid`).")


class DncNumberOut(BaseModel):
    """A number that is never called or texted."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": EXAMPLE_ID, "number": "+13055550101", "source": "national_registry", "created_at": EXAMPLE_TIME}]})

    id: uuid.UUID = Field(description="The entry's id.", examples=[EXAMPLE_ID])
    number: str = Field(description="The number (E.164); remove it with `DELETE /api/dnc/{number}`.",
                        examples=["+13055550101"])
    source: str = Field(description="`national_registry` or `internal`.", examples=["national_registry"])
    created_at: datetime = Field(description="When it was put on the list.", examples=[EXAMPLE_TIME])


class DncPage(BaseModel):
    """One page of the do-not-call list, newest first."""

    numbers: list[DncNumberOut] = Field(description="The numbers on this page.")
    total: int = Field(description="How many numbers match, over all pages.", examples=[1200])
    limit: int = Field(description="Page size used.", examples=[50])
    offset: int = Field(description="How many matching numbers were skipped.", examples=[0])


class SuppressedBy(BaseModel):
    """Customers the campaign's criteria matched but its selection left out, by reason."""

    opted_out: int = Field(description="Opted out of the campaign's channel.", examples=[3])
    no_consent: int = Field(description="Without the consent the channel needs under the consent policy.",
                            examples=[12])
    dnc: int = Field(description="On the do-not-call list (calls and texts).", examples=[1])
    no_contact: int = Field(description="Without a phone number or e-mail address for the channel.", examples=[4])


class StateCompliance(BaseModel):
    """A state with its own rule for calls and texts, and the campaign's recipients there."""

    recipients: int = Field(description="Recipients whose number's area code is in this state.", examples=[40])
    hours: str = Field(description="Local hours calls and texts may reach them.", examples=["08:00–20:00"])
    cap_per_24h: int = Field(description="At most this many calls (and texts, where they count) from the business "
                                         "to one customer in 24 hours, across all campaigns.", examples=[3])
    cap_counts_texts: bool = Field(description="Whether texts count against the cap together with calls.",
                                   examples=[False])
    source: str = Field(description="The law and its statute.",
                        examples=["Florida Telephone Solicitation Act (CS/SB 1120, 2021), "
                                  "Fla. Stat. § 501.616(6)(a)–(b)"])


class CampaignCompliance(BaseModel):
    """What the law asks of a campaign, and who its selection left out."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "policy": "us_tcpa", "counted_on": "selection", "selected": 87,
        "suppressed_by": {"opted_out": 3, "no_consent": 12, "dnc": 1, "no_contact": 4},
        "by_state": {"FL": {"recipients": 40, "hours": "08:00–20:00", "cap_per_24h": 3, "cap_counts_texts": False,
                            "source": "Florida Telephone Solicitation Act (CS/SB 1120, 2021), "
                                      "Fla. Stat. § 501.616(6)(a)–(b)"}}}]})

    policy: Literal["us_tcpa", "none"] = Field(
        description="The business's consent policy: `us_tcpa` asks for consent records before calls and texts; "
                    "`none` leaves it to the business.", examples=["us_tcpa"])
    counted_on: Literal["selection", "audience"] = Field(
        description="`selection`: the customers the campaign chose when it started. `audience`: a draft or "
                    "scheduled campaign chooses when it starts, so the figures are its audience as it stands now "
                    "(as `POST /api/audience/preview` counts it).", examples=["selection"])
    selected: int = Field(description="Customers the campaign selected, or would select now (its control group "
                                      "excluded).", examples=[87])
    suppressed_by: SuppressedBy = Field(description="Customers left out by the selection (or the audience), by "
                                                    "reason.")
    by_state: dict[str, StateCompliance] = Field(
        description="For a campaign that calls or texts: the states with their own stricter rule (by USPS code) "
                    "where it has recipients. Everywhere else calls and texts keep to 08:00–21:00 local time "
                    "(47 CFR 64.1200(c)(1)).")


# --- leads in, the business's statuses, customers -----------------------------------------------------


class LeadIn(BaseModel):
    """One lead another system recorded (a CONNEXT voice agent, a CRM, a booking tool)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "customer_name": "Maria Lopez", "customer_phone": "+1 415 555 0123", "customer_email": "maria@example.com",
        "status": "Booked", "service_type": "Color", "created_at": "2026-06-15T09:30:00-07:00",
        "notes": "Wants a Saturday", "agent_id": EXAMPLE_ID, "source": "hubspot"}]})

    customer_name: str | None = Field(None, description="How to address the customer.", examples=["Maria Lopez"])
    customer_phone: str | None = Field(None, description="Phone number (E.164, or national in the business's "
                                                         "country). A lead needs a phone or an e-mail.",
                                       examples=["+14155550123"])
    customer_email: str | None = Field(None, description="E-mail address.", examples=["maria@example.com"])
    status: str | None = Field(None, description="The business's own status word, 1–50 characters (default "
                                                 "`New`).", examples=["Booked"])
    service_type: str | None = Field(None, description="What it was about.", examples=["Color"])
    created_at: str | None = Field(None, description="When it happened: ISO 8601 (local times are the "
                                                     "business's), or a date in the business's country's order. "
                                                     "Default: now.", examples=["2026-06-15T09:30:00-07:00"])
    notes: str | None = Field(None, description="Notes (up to 10,000 characters).", examples=["Wants a Saturday"])
    agent_id: uuid.UUID | None = Field(None, description="The business's voice agent that took it.",
                                       examples=[EXAMPLE_ID])
    source: str | None = Field(None, description="Which system sent it (up to 32 characters; default `api`; "
                                                 "`campaign` is reserved).", examples=["hubspot"])


class LeadsIn(BaseModel):
    """Leads to record: all of them, or none when one is invalid — unless `skip_invalid`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "leads": [{"customer_name": "Maria Lopez", "customer_phone": "+14155550123", "status": "Booked"}],
        "skip_invalid": False}]})

    leads: list[LeadIn] = Field(min_length=1, description="1 to 10,000 leads.")
    skip_invalid: bool = Field(False, description="Record the valid leads and list the others in `rejected`, "
                                                  "instead of refusing the whole request.")


class LeadRejected(BaseModel):
    """A lead that was not recorded, and why."""

    index: int = Field(description="Its position in `leads` (0 for the first).", examples=[3])
    error: str = Field(description="What is wrong, field by field.",
                       examples=["customer_phone: '555' is not a valid phone number (region US)"])


class LeadMerged(BaseModel):
    """A lead that joined a customer already on file under another name (same phone or e-mail)."""

    index: int = Field(description="Its position in `leads`.", examples=[0])
    customer_id: uuid.UUID = Field(description="The customer it joined.", examples=[EXAMPLE_ID])
    customer_name: str | None = Field(description="The name the customer had on file.", examples=["Maria L."])


class LeadsImported(BaseModel):
    """What recording the leads did."""

    imported: int = Field(description="Leads recorded.", examples=[1])
    duplicates: int = Field(description="Leads identical to one already recorded: skipped.", examples=[0])
    merged: list[LeadMerged] = Field(description="Leads that joined an existing customer whose name differs.")
    rejected: list[LeadRejected] = Field(description="Leads not recorded (only with `skip_invalid`).")


class LineRejected(BaseModel):
    """A row of the file that was not imported, and why."""

    line: int = Field(description="Its line in the file (the header is line 1).", examples=[7])
    error: str = Field(description="What is wrong, column by column.",
                       examples=["customer_email: 'bo@' is not a valid e-mail address"])


class LineMerged(BaseModel):
    """A row that joined a customer already on file under another name."""

    line: int = Field(description="Its line in the file.", examples=[12])
    customer_id: uuid.UUID = Field(description="The customer it joined.", examples=[EXAMPLE_ID])
    customer_name: str | None = Field(description="The name the customer had on file.", examples=["Maria L."])


class FileImported(BaseModel):
    """What importing the file did (the command line's report)."""

    imported: int = Field(description="Rows imported as leads.", examples=[1200])
    duplicates: int = Field(description="Rows identical to a lead already stored, or to an earlier row: skipped.",
                            examples=[3])
    merged: list[LineMerged] = Field(description="Rows that joined an existing customer whose name differs.")
    rejected: list[LineRejected] = Field(description="Rows left out (only with `skip_invalid`).")


class LeadStatusOut(BaseModel):
    """A status the business's leads carry."""

    model_config = ConfigDict(from_attributes=True)

    status: str = Field(description="As it is most often written (statuses are grouped ignoring case and "
                                    "surrounding spaces).", examples=["Booked"])
    customers: int = Field(description="Customers whose most recent lead has it (what criteria match).",
                           examples=[412])
    leads: int = Field(description="Leads that have it.", examples=[1290])


class LeadStatuses(BaseModel):
    """The business's lead statuses, the most customers first."""

    statuses: list[LeadStatusOut] = Field(description="Every status found in the business's leads.")


class CustomerOut(BaseModel):
    """A customer: the leads sharing a phone number (or, without one, an e-mail address)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The customer's id (stable as new leads arrive).", examples=[EXAMPLE_ID])
    customer_name: str | None = Field(description="The newest name on record.", examples=["Maria Lopez"])
    customer_phone: str | None = Field(description="Phone (E.164).", examples=["+14155550123"])
    customer_email: str | None = Field(description="The newest e-mail address on record.",
                                       examples=["maria@example.com"])
    last_contact_at: datetime = Field(description="When their most recent lead was recorded.",
                                      examples=[EXAMPLE_TIME])
    last_status: str = Field(description="Status of their most recent lead.", examples=["Booked"])
    lead_count: int = Field(description="How many leads they have.", examples=[3])
    score: int = Field(description="Re-engagement score, 0–100: recency, frequency and past responses (see the "
                                   "README).", examples=[62])


class CustomerPage(BaseModel):
    """One page of the business's customers, most recently in touch first."""

    customers: list[CustomerOut] = Field(description="The customers on this page.")
    total: int = Field(description="How many customers match, over all pages.", examples=[1520])
    limit: int = Field(description="Page size used.", examples=[50])
    offset: int = Field(description="How many matching customers were skipped.", examples=[0])


class CustomerLeadOut(BaseModel):
    """One lead of the customer."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The lead's id.", examples=[EXAMPLE_ID])
    created_at: datetime = Field(description="When it happened.", examples=[EXAMPLE_TIME])
    status: str = Field(description="Its status.", examples=["Booked"])
    service_type: str | None = Field(description="What it was about.", examples=["Color"])
    notes: str | None = Field(description="Notes.", examples=[None])
    source: str = Field(description="Where it came from: `agent`, `import`, `api`, `campaign` (a conversion a "
                                    "campaign recorded), or the system that sent it.", examples=["agent"])
    agent_id: uuid.UUID | None = Field(description="The voice agent that took it.", examples=[None])
    campaign_id: uuid.UUID | None = Field(description="The campaign it is a conversion of.", examples=[None])
    customer_name: str | None = Field(description="Name on this lead.", examples=["Maria Lopez"])
    customer_phone: str | None = Field(description="Phone on this lead.", examples=["+14155550123"])
    customer_email: str | None = Field(description="E-mail on this lead.", examples=["maria@example.com"])


class SentMessageOut(BaseModel):
    """What one try of a step sent, as recorded before the provider was called."""

    model_config = ConfigDict(from_attributes=True)

    channel: str = Field(description="`call`, `email` or `sms`.", examples=["email"])
    at: datetime = Field(description="When it was handed to the provider.", examples=[EXAMPLE_TIME])
    step: int = Field(description="The campaign step (0 for the first).", examples=[0])
    subject: str | None = Field(description="E-mail subject.", examples=["We miss you, Maria!"])
    body: str = Field(description="The e-mail's text, the SMS, or the call's opening script, as sent.",
                      examples=["Hi Maria, it has been a while…"])
    provider: str = Field(description="Who carried it (`resend`, `twilio`, `vapi`, … or `sandbox`).",
                          examples=["resend"])
    provider_message_id: str | None = Field(description="The provider's id for it.", examples=["re_123"])
    outcome: str | None = Field(description="`accepted` (the provider took it), `retryable`, `permanent`, "
                                            "`opted_out`, `quota`, `unknown`, `skipped`; null while in flight.",
                                examples=["accepted"])
    error: str | None = Field(description="Why it did not go, when it did not.", examples=[None])


class CustomerCampaignOut(BaseModel):
    """A campaign the customer was in, and what it sent them."""

    model_config = ConfigDict(from_attributes=True)

    campaign_id: uuid.UUID = Field(description="The campaign.", examples=[EXAMPLE_ID])
    name: str = Field(description="Its name.", examples=["Holiday win-back"])
    recipient_id: uuid.UUID = Field(description="The customer as its recipient.", examples=[EXAMPLE_ID])
    status: str = Field(description="The recipient's status (`holdout`: kept back, never contacted).",
                        examples=["delivered"])
    enrollment: int = Field(description="1, or more when an always-on campaign enrolled them again.",
                            examples=[1])
    converted: bool = Field(description="Whether the campaign won them back.", examples=[False])
    returned_at: datetime | None = Field(description="When they came back within the campaign's window.",
                                         examples=[None])
    messages: list[SentMessageOut] = Field(description="What was sent, oldest first.")


class CustomerOptOutOut(BaseModel):
    """An opt-out covering one of the customer's contacts."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The opt-out's id.", examples=[EXAMPLE_ID])
    contact: str = Field(description="The phone or e-mail it covers.", examples=["+14155550123"])
    channel: str = Field(description="`call`, `email`, `sms` or `all`.", examples=["sms"])
    source: str = Field(description="How it was recorded.", examples=["sms_stop"])
    reason: str | None = Field(description="Why, when known.", examples=["Replied STOP"])
    created_at: datetime = Field(description="When.", examples=[EXAMPLE_TIME])


class CustomerConsentOut(BaseModel):
    """A consent of one of the customer's contacts (revoked ones included)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The consent's id.", examples=[EXAMPLE_ID])
    contact: str = Field(description="The phone or e-mail it is for.", examples=["+14155550123"])
    channel: str = Field(description="`call`, `sms`, `email` or `all`.", examples=["sms"])
    level: str = Field(description="`express` or `express_written`.", examples=["express_written"])
    source: str = Field(description="How it was captured.", examples=["import"])
    proof: str | None = Field(description="What proves it.", examples=["Signed intake form"])
    captured_at: datetime = Field(description="When it was given.", examples=[EXAMPLE_TIME])
    revoked_at: datetime | None = Field(description="When it was revoked (it no longer counts).", examples=[None])


class CustomerDetailOut(CustomerOut):
    """A customer with their leads, their campaigns and what was sent, their opt-outs and consents."""

    first_contact_at: datetime | None = Field(description="When their first lead was recorded.",
                                              examples=[EXAMPLE_TIME])
    last_service_type: str | None = Field(description="Service of their most recent lead.", examples=["Color"])
    service_types: list[str] = Field(description="Every service their leads mention.",
                                     examples=[["Color", "Haircut"]])
    timezone: str | None = Field(description="The time zone their phone number belongs to, when it names one.",
                                 examples=["America/Los_Angeles"])
    leads: list[CustomerLeadOut] = Field(description="Their leads, newest first.")
    campaigns: list[CustomerCampaignOut] = Field(description="The campaigns they were in, oldest first.")
    opt_outs: list[CustomerOptOutOut] = Field(description="Opt-outs covering their phone or e-mail addresses.")
    consents: list[CustomerConsentOut] = Field(description="Consents for their phone or e-mail addresses.")


# --- the business profile (§12) ------------------------------------------------------------------------

SecretText = Annotated[str | None, Field(None, max_length=2000, description="Write-only: a value sets it, empty or "
                                                                            "null clears it; never returned.")]
Price = Annotated[float | None, Field(None, ge=0, le=100, allow_inf_nan=False)]


class ChannelModeOut(BaseModel):
    """Whether the business's channel really sends, and through what."""

    mode: Literal["live", "sandbox"] = Field(description="live: messages really go out; sandbox: simulated.",
                                             examples=["live"])
    provider: str = Field(description="The provider it sends (or would send) through.", examples=["resend"])
    own_account: bool = Field(description="Through the business's own provider account (its own credentials).",
                              examples=[True])
    missing: list[str] = Field(description="What is still missing to go live, in words.",
                               examples=[["a sender address (e-mail from)"]])


class ProfileOut(BaseModel):
    """The business's profile: who it is and who it sends as. Credentials are never returned; `secrets_set`
    names those that are stored."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The business's id.", examples=[EXAMPLE_ID])
    business_name: str = Field(description="Used as {business_name} in messages.", examples=["Bella Vista Salon"])
    email: str = Field(description="The owner's login e-mail (changed by the owner only).",
                       examples=["owner@bellavista.example"])
    phone: str | None = Field(description="The business's phone (E.164).", examples=["+12015550100"])
    timezone: str = Field(description="Default time zone of new campaigns (IANA).", examples=["America/New_York"])
    default_region: str = Field(description="Country phone numbers without +code are read in.", examples=["US"])
    booking_url: str | None = Field(description="The online booking link: {booking_link} in messages.",
                                    examples=["https://bellavista.example/book"])
    consent_policy: Literal["us_tcpa", "none"] = Field(
        description="us_tcpa: calls and texts need consent records (§10); none: the business takes responsibility "
                    "for consent.", examples=["us_tcpa"])
    email_from: str | None = Field(description="Sender address of e-mails (null: the platform's).",
                                   examples=["hello@bellavista.example"])
    email_from_name: str | None = Field(description="Sender name of e-mails (null: the business name).",
                                        examples=["Bella Vista Salon"])
    email_reply_to: str | None = Field(description="Where replies go (null: the sender).",
                                       examples=["desk@bellavista.example"])
    sms_from: str | None = Field(description="SMS sender: a number in E.164, a Twilio messaging service (MG…) or a "
                                             "sender name (null: the platform's).", examples=["+12015550199"])
    vapi_assistant_id: str | None = Field(description="Default Vapi assistant of calls (agents override it).",
                                          examples=["asst_123"])
    vapi_phone_number_id: str | None = Field(description="Default Vapi phone number calls come from.",
                                             examples=["pn_123"])
    email_provider: Literal["resend", "smtp"] | None = Field(
        description="resend or smtp (null: whichever is set up).", examples=["resend"])
    sms_provider: Literal["twilio", "vonage", "sns"] | None = Field(
        description="twilio, vonage or sns (null: whichever is set up).", examples=["twilio"])
    price_per_sms_segment: float = Field(description="Price of one SMS segment, for cost figures.",
                                         examples=[0.0083])
    price_per_call_minute: float = Field(description="Price of one call minute.", examples=[0.13])
    price_per_email: float = Field(description="Price of one e-mail.", examples=[0.001])
    secrets_set: list[str] = Field(description="Which credentials are stored (their values are never returned).",
                                   examples=[["resend_api_key"]])
    channels: dict[str, ChannelModeOut] = Field(description="Per channel (call, email, sms): live or sandbox for "
                                                            "this business, and through what.")
    created_at: datetime = Field(description="When the business was created.", examples=[EXAMPLE_TIME])
    updated_at: datetime = Field(description="When the profile last changed.", examples=[EXAMPLE_TIME])


# a profile field that may be cleared (null or empty text), and those that always have a value
PROFILE_CLEARABLE = ("phone", "booking_url", "email_from", "email_from_name", "email_reply_to", "sms_from",
                     "vapi_assistant_id", "vapi_phone_number_id", "email_provider", "sms_provider")
PROFILE_REQUIRED = ("business_name", "timezone", "default_region", "consent_policy", "price_per_sms_segment",
                    "price_per_call_minute", "price_per_email")
PROFILE_SECRETS = ("resend_api_key", "resend_webhook_secret", "smtp_url", "twilio_account_sid", "twilio_auth_token",
                   "vonage_api_key", "vonage_api_secret", "vonage_signature_secret", "vapi_api_key")
assert set(PROFILE_SECRETS) == set(SECRET_FIELDS)


class ProfileUpdate(BaseModel):
    """A partial change of the profile: only the fields given change. Optional texts are cleared with null or
    an empty text; credentials are write-only (a value sets, empty or null clears)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "email_from": "hello@bellavista.example", "email_from_name": "Bella Vista Salon",
        "resend_api_key": "re_123…", "price_per_sms_segment": 0.0079}]})

    business_name: str | None = Field(None, max_length=200, description="The business's name.")
    timezone: str | None = Field(None, max_length=64, description="IANA time zone.")
    default_region: str | None = Field(None, max_length=2, description="Two-letter country code.")
    phone: str | None = Field(None, max_length=40, description="The business's phone (any format).")
    booking_url: str | None = Field(None, max_length=500, description="Online booking link (https://…).")
    consent_policy: Literal["us_tcpa", "none"] | None = Field(None, description="us_tcpa or none.")
    email_from: str | None = Field(None, max_length=320, description="Sender address of e-mails.")
    email_from_name: str | None = Field(None, max_length=200, description="Sender name of e-mails.")
    email_reply_to: str | None = Field(None, max_length=320, description="Reply-to address.")
    sms_from: str | None = Field(None, max_length=64, description="SMS sender (a number is stored in E.164).")
    vapi_assistant_id: str | None = Field(None, max_length=100, description="Default Vapi assistant.")
    vapi_phone_number_id: str | None = Field(None, max_length=100, description="Default Vapi phone number.")
    email_provider: Literal["resend", "smtp", ""] | None = Field(None, description="resend, smtp, or null.")
    sms_provider: Literal["twilio", "vonage", "sns", ""] | None = Field(None, description="twilio, vonage, sns, "
                                                                                           "or null.")
    price_per_sms_segment: Price = Field(None, description="Price of one SMS segment (0–100), for cost figures.",
                                         examples=[0.0079])
    price_per_call_minute: Price = Field(None, description="Price of one call minute (0–100).", examples=[0.13])
    price_per_email: Price = Field(None, description="Price of one e-mail (0–100).", examples=[0.001])
    resend_api_key: SecretText = None
    resend_webhook_secret: SecretText = None
    smtp_url: SecretText = None
    twilio_account_sid: SecretText = None
    twilio_auth_token: SecretText = None
    vonage_api_key: SecretText = None
    vonage_api_secret: SecretText = None
    vonage_signature_secret: SecretText = None
    vapi_api_key: SecretText = None

    def changes(self) -> tuple[dict[str, Any], dict[str, str | None]]:
        """``(profile fields, credentials)`` as ``core.accounts.update_profile`` takes them: only what was
        given; a null optional text becomes an empty one (cleared). A null for a field that always has a
        value is refused (422 naming it)."""
        from core.errors import FieldError, Invalid

        given = self.model_dump(exclude_unset=True)
        empty = [FieldError(k, "cannot be null; leave it out to keep it as it is") for k in PROFILE_REQUIRED
                 if k in given and given[k] is None]
        if empty:
            raise Invalid(empty)
        secrets = {k: given.pop(k) for k in PROFILE_SECRETS if k in given}
        fields = {k: ("" if v is None and k in PROFILE_CLEARABLE else v) for k, v in given.items()}
        return fields, secrets
