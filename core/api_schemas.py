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

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from core.models import RECIPIENT_STATUSES
from core.schemas import CampaignOut, OutreachMethod, RecipientOut, Step
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

    selected: int = Field(description="Customers added to the campaign by this request.", examples=[87])
    suppressed: int = Field(description="Matching customers left out because they opted out.", examples=[3])
    total_recipients: int = Field(description="Recipients the campaign has now.", examples=[87])


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


class CampaignResults(Counters):
    """A campaign's results, counted from its recipients at the moment of the request."""

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

    @model_validator(mode="after")
    def _steps_match_method(self) -> AudiencePreviewRequest:
        if self.outreach_method == "multi" and not self.steps:
            raise ValueError("a multi-channel campaign needs at least one step (steps)")
        if self.outreach_method != "multi" and self.steps:
            raise ValueError("steps apply only to multi-channel campaigns (outreach_method 'multi')")
        return self


class AudienceMember(BaseModel):
    """A customer the criteria match, as their most recent lead describes them."""

    lead_id: uuid.UUID = Field(description="The customer's most recent lead.", examples=[EXAMPLE_ID])
    customer_name: str | None = Field(description="Name on record.", examples=["Maria Lopez"])
    customer_phone: str | None = Field(description="Phone (E.164).", examples=["+14155550123"])
    customer_email: str | None = Field(description="E-mail address.", examples=["maria@example.com"])
    status: str = Field(description="Status of the most recent lead.", examples=["Closed"])
    service_type: str | None = Field(description="Service of the most recent lead.", examples=["Color"])
    last_contact_at: datetime = Field(description="When the most recent lead was recorded.",
                                      examples=[EXAMPLE_TIME])
    lead_count: int = Field(description="How many leads the customer has.", examples=[3])


class AudiencePreview(BaseModel):
    """How many customers a campaign with these criteria would reach now."""

    count: int = Field(description="Customers that would be selected (what select-recipients would add to a "
                                   "new campaign).", examples=[87])
    suppressed: int = Field(description="Matching customers left out because they opted out.", examples=[3])
    sample: list[AudienceMember] = Field(description="Some of the customers counted, most recent first.")


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
