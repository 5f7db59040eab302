"""REST API (FastAPI): ``uvicorn api:app``; OpenAPI at ``/openapi.json``, docs at ``/docs``.

The list of routes.  Each translates HTTP into a call into ``core`` and its answer back;
what every route shares — body limits, strict JSON, one error shape, the request's
transaction and the caller's business — is the edge, in :mod:`api_edge`.

A request's work runs in one transaction: committed when the route returns, rolled
back when it raises, so a refused request never leaves half a change.  (The API key is
checked in a short transaction of its own; the dispatch pass and the CSV export open
their own, batch by batch.)
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api_edge import (
    BODY,
    ApiRoute,
    Database,
    DbSession,
    Limit,
    Offset,
    ProfileId,
    database,
    install,
    responses,
    strict_body,
)
from core import (
    accounts,
    campaigns,
    clicks,
    compliance,
    consents,
    customers,
    dnc,
    exports,
    leads,
    optouts,
    results,
    senders,
    targeting,
    unsubscribe,
    webhook_delivery,
    webhook_endpoints,
)
from core.api_schemas import (
    AddRecipients,
    AudiencePreview,
    AudiencePreviewRequest,
    CampaignCompliance,
    CampaignDetail,
    CampaignPage,
    CampaignResults,
    CampaignStatus,
    ChannelModeOut,
    ConsentCreate,
    ConsentOut,
    ConsentPage,
    CustomerDetailOut,
    CustomerOut,
    CustomerPage,
    DncAdd,
    DncAdded,
    DncNumberOut,
    DncPage,
    ErrorBody,
    FileImported,
    Health,
    LeadsImported,
    LeadsIn,
    LeadStatuses,
    LeadStatusOut,
    OptOutCreate,
    OptOutOut,
    OptOutPage,
    PassReport,
    ProfileOut,
    ProfileUpdate,
    RecipientPage,
    RecipientsAdded,
    RecipientStatus,
    Selection,
    UtcDateTime,
    WebhookAck,
    WebhookDeliveryOut,
    WebhookDeliveryPage,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointList,
    WebhookEndpointOut,
)
from core.config import Settings, get_settings
from core.errors import Invalid
from core.logs import configure_logging
from core.models import Profile
from core.schemas import CampaignCreate, CampaignOut, CampaignType, CampaignUpdate, RecipientOut
from core.webhooks import postmark as postmark_hooks
from core.webhooks import resend as resend_hooks
from core.webhooks import sendgrid as sendgrid_hooks
from core.webhooks import ses as ses_hooks
from core.webhooks import twilio as twilio_hooks
from core.webhooks import vapi as vapi_hooks
from core.webhooks import vonage as vonage_hooks

log = logging.getLogger(__name__)

DETAIL_RECIPIENTS = 50  # recipients shown with a campaign
CampaignId = Annotated[uuid.UUID, Path(description="The campaign's id.")]
OptOutId = Annotated[uuid.UUID, Path(description="The opt-out's id.")]


# --- /api/campaigns -------------------------------------------------------------------------------------

campaigns_router = APIRouter(prefix="/api/campaigns", tags=["campaigns"], route_class=ApiRoute,
                             dependencies=[Depends(strict_body)])


@campaigns_router.post("", status_code=201, response_model=CampaignOut, responses=responses(*BODY),
                       summary="Create a campaign")
def create_campaign(body: CampaignCreate, session: DbSession, profile_id: ProfileId) -> Any:
    """Create a draft campaign (or a scheduled one, with `scheduled_at`). Templates, criteria,
    the agent and every setting are checked; anything wrong is a 422 naming the field."""
    return campaigns.create_campaign(session, profile_id=profile_id, data=body)


@campaigns_router.get("", response_model=CampaignPage, responses=responses(), summary="List campaigns")
def list_campaigns(
    session: DbSession, profile_id: ProfileId,
    status: Annotated[CampaignStatus | None, Query(description="Only campaigns in this status.")] = None,
    campaign_type: Annotated[CampaignType | None, Query(description="Only campaigns of this type.")] = None,
    created_after: Annotated[UtcDateTime | None, Query(
        description="Only campaigns created at or after this time (ISO 8601; UTC when no offset).")] = None,
    created_before: Annotated[UtcDateTime | None, Query(
        description="Only campaigns created before this time (ISO 8601; UTC when no offset).")] = None,
    limit: Limit = 50, offset: Offset = 0,
) -> Any:
    """The business's campaigns, newest first, a page at a time."""
    rows, total = campaigns.list_campaigns(session, profile_id=profile_id, status=status,
                                           campaign_type=campaign_type, created_after=created_after,
                                           created_before=created_before, limit=limit, offset=offset)
    return CampaignPage(campaigns=[CampaignOut.model_validate(c) for c in rows], total=total, limit=limit,
                        offset=offset)


@campaigns_router.get("/{id}", response_model=CampaignDetail, responses=responses(404),
                      summary="Get a campaign")
def get_campaign(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """The campaign, how many recipients are in each status, and the first recipients."""
    campaign = campaigns.get_campaign(session, profile_id=profile_id, campaign_id=id)
    counts = campaigns.recipient_counts(session, profile_id=profile_id, campaign_id=id)
    first, _total = campaigns.list_recipients(session, profile_id=profile_id, campaign_id=id,
                                              limit=DETAIL_RECIPIENTS)
    return CampaignDetail(**CampaignOut.model_validate(campaign).model_dump(), recipient_counts=counts,
                          recipients=[RecipientOut.model_validate(r) for r in first])


@campaigns_router.patch("/{id}", response_model=CampaignOut, responses=responses(404, 409, *BODY),
                        summary="Change a campaign")
def update_campaign(id: CampaignId, body: CampaignUpdate, session: DbSession, profile_id: ProfileId) -> Any:
    """Change the fields given. Content and targeting are frozen once a campaign has started
    (409 says what is still editable); a `status` follows the same rules as start/pause/stop."""
    return campaigns.update_campaign(session, profile_id=profile_id, campaign_id=id, data=body)


@campaigns_router.delete("/{id}", status_code=204, response_class=Response, responses=responses(404, 409),
                         summary="Delete a campaign")
def delete_campaign(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Response:
    """Delete the campaign and its recipients; refused (409) while it is active."""
    campaigns.delete_campaign(session, profile_id=profile_id, campaign_id=id)
    return Response(status_code=204)


@campaigns_router.post("/{id}/start", response_model=CampaignOut, responses=responses(404, 409),
                       summary="Start or resume a campaign")
def start_campaign(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """Start now (a draft or scheduled campaign selects its recipients if it has none), or resume
    a paused one."""
    return campaigns.start_campaign(session, profile_id=profile_id, campaign_id=id)


@campaigns_router.post("/{id}/pause", response_model=CampaignOut, responses=responses(404, 409),
                       summary="Pause a campaign")
def pause_campaign(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """Pause an active campaign: nothing more is sent until it is started again."""
    return campaigns.pause_campaign(session, profile_id=profile_id, campaign_id=id)


@campaigns_router.post("/{id}/stop", response_model=CampaignOut, responses=responses(404, 409),
                       summary="Stop a campaign")
def stop_campaign(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """Cancel the campaign for good; customers not reached yet are not contacted."""
    return campaigns.stop_campaign(session, profile_id=profile_id, campaign_id=id)


@campaigns_router.post("/{id}/execute", response_model=PassReport, responses=responses(404, 409),
                       summary="Run one dispatch pass now")
def execute_campaign(id: CampaignId, request: Request, profile_id: ProfileId) -> Any:
    """Work on the campaign's due recipients right away instead of waiting for the scheduler's
    next tick, with every rule the scheduler applies (opt-outs, send window, rate limits)."""
    # imported on use: the dispatcher loads every channel adapter and provider SDK
    from core.dispatch import run_campaign_pass

    report = run_campaign_pass(database(request).factory, profile_id=profile_id, campaign_id=id)
    return report.as_dict()


@campaigns_router.post("/{id}/select-recipients", response_model=Selection, responses=responses(404, 409),
                       summary="Select recipients by the campaign's criteria")
def select_recipients(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """Add every customer the campaign's `target_criteria` match and who is not in it yet
    (running it again adds only new matches)."""
    return campaigns.select_campaign_recipients(session, profile_id=profile_id, campaign_id=id)


@campaigns_router.post("/{id}/recipients", response_model=RecipientsAdded,
                       responses=responses(404, 409, *BODY), summary="Add recipients by hand")
def add_recipients(id: CampaignId, body: AddRecipients, session: DbSession, profile_id: ProfileId) -> Any:
    """Add customers by lead id or by contact details. All or nothing: one unknown lead or
    unusable contact refuses the whole request."""
    outcome = campaigns.add_recipients(
        session, profile_id=profile_id, campaign_id=id, lead_ids=body.lead_ids,
        contacts=[c.model_dump() for c in body.contacts] if body.contacts is not None else None)
    return RecipientsAdded(added=outcome.selected, suppressed=outcome.suppressed,
                           total_recipients=outcome.total_recipients)


@campaigns_router.get("/{id}/recipients", response_model=RecipientPage, responses=responses(404),
                      summary="List a campaign's recipients")
def list_recipients(
    id: CampaignId, session: DbSession, profile_id: ProfileId,
    status: Annotated[RecipientStatus | None, Query(description="Only recipients in this status.")] = None,
    search: Annotated[str | None, Query(max_length=200, description="Part of a name, phone or e-mail.")] = None,
    limit: Limit = 50, offset: Offset = 0,
) -> Any:
    """The campaign's recipients, in the order they were added, a page at a time."""
    rows, total = campaigns.list_recipients(session, profile_id=profile_id, campaign_id=id, status=status,
                                            search=search, limit=limit, offset=offset)
    return RecipientPage(recipients=[RecipientOut.model_validate(r) for r in rows], total=total, limit=limit,
                         offset=offset)


@campaigns_router.get("/{id}/results", response_model=CampaignResults, responses=responses(404),
                      summary="A campaign's results")
def campaign_results(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """Counters, response and conversion rates, per variant and per channel, counted from the
    recipients at the moment of the request (a read: nothing is written)."""
    return results.campaign_results(session, profile_id=profile_id, campaign_id=id).as_dict()


@campaigns_router.get(
    "/{id}/export.csv", response_class=StreamingResponse, summary="Export recipients as CSV",
    responses={**responses(404), 200: {"description": "One row per recipient, with status and outcome.",
                                        "content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def export_recipients(id: CampaignId, request: Request, session: DbSession, profile_id: ProfileId) -> Any:
    """Every recipient with status, outcome and timestamps (UTC), streamed as it is read."""
    filename = exports.export_filename(session, profile_id=profile_id, campaign_id=id)
    rows = exports.iter_recipient_csv(database(request).factory, profile_id=profile_id, campaign_id=id)
    return StreamingResponse(rows, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- /api/audience --------------------------------------------------------------------------------------

audience_router = APIRouter(prefix="/api/audience", tags=["audience"], route_class=ApiRoute,
                            dependencies=[Depends(strict_body)])


@audience_router.post("/preview", response_model=AudiencePreview, responses=responses(*BODY),
                      summary="Preview an audience")
def preview_audience(body: AudiencePreviewRequest, session: DbSession, profile_id: ProfileId) -> Any:
    """How many customers a campaign with these criteria would reach, how many opted out, and a
    sample, without creating anything."""
    preview = targeting.preview_audience(
        session, profile_id=profile_id, target_criteria=body.target_criteria,
        outreach_method=body.outreach_method,
        steps=[s.model_dump(mode="json") for s in body.steps] if body.steps else None,
        sample_size=body.sample_size, campaign_type=body.campaign_type)
    return AudiencePreview(count=preview.count, suppressed=preview.suppressed,  # type: ignore[arg-type]
                           suppressed_by=preview.suppressed_by, sample=preview.sample,
                           by_state=preview.by_state)


# --- /api/opt-outs --------------------------------------------------------------------------------------

opt_outs_router = APIRouter(prefix="/api/opt-outs", tags=["opt-outs"], route_class=ApiRoute,
                            dependencies=[Depends(strict_body)])


@opt_outs_router.post("", status_code=201, response_model=OptOutOut, responses=responses(*BODY),
                      summary="Record an opt-out")
def create_opt_out(body: OptOutCreate, session: DbSession, profile_id: ProfileId) -> Any:
    """Stop contacting a phone number or e-mail address on a channel (or on all). Recording the
    same opt-out twice keeps the first. A phone number without its country code is read in the
    business's country."""
    return optouts.record_opt_out(session, profile_id=profile_id, contact=body.contact, channel=body.channel,
                                  source="manual", reason=body.reason)


@opt_outs_router.get("", response_model=OptOutPage, responses=responses(), summary="List opt-outs")
def list_opt_outs(
    session: DbSession, profile_id: ProfileId,
    search: Annotated[str | None, Query(max_length=200, description="Part of a phone or e-mail.")] = None,
    limit: Limit = 50, offset: Offset = 0,
) -> Any:
    """The business's opt-outs, newest first."""
    rows, total = optouts.list_opt_outs(session, profile_id=profile_id, search=search, limit=limit, offset=offset)
    return OptOutPage(opt_outs=[OptOutOut.model_validate(o) for o in rows], total=total, limit=limit,
                      offset=offset)


@opt_outs_router.delete("/{id}", status_code=204, response_class=Response, responses=responses(404),
                        summary="Delete an opt-out")
def delete_opt_out(id: OptOutId, session: DbSession, profile_id: ProfileId) -> Response:
    """The customer asked to hear from the business again."""
    optouts.delete_opt_out(session, profile_id=profile_id, opt_out_id=id)
    return Response(status_code=204)


# --- /api/leads, /api/customers, /api/lead-statuses ------------------------------------------------------

leads_router = APIRouter(prefix="/api", tags=["customers"], route_class=ApiRoute,
                         dependencies=[Depends(strict_body)])
CustomerId = Annotated[uuid.UUID, Path(description="The customer's id.")]
_TOO_MANY_LEADS = (f"Send at most {leads.MAX_API_LEADS:,} leads in one request; split them into several "
                   "requests.")


@leads_router.post("/leads", status_code=201, response_model=LeadsImported, responses=responses(*BODY),
                   summary="Record leads from another system")
def create_leads(body: LeadsIn, session: DbSession, profile_id: ProfileId) -> Any:
    """Leads a CONNEXT voice agent, a CRM or a booking tool recorded, 1 to 10,000 at a time. All or
    nothing: one invalid lead refuses the request (422 naming `leads.<index>.<field>`) unless
    `skip_invalid`. A lead of a customer a campaign reached within its window converts that campaign's
    recipient and counts as a return. Identical leads sent again are skipped as `duplicates`."""
    if len(body.leads) > leads.MAX_API_LEADS:
        raise HTTPException(413, _TOO_MANY_LEADS)
    report = leads.add_leads(session, profile_id=profile_id, skip_invalid=body.skip_invalid,
                             leads=[lead.model_dump() for lead in body.leads])
    return report.as_dict()


_MULTIPART_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "The CSV file: a header row, then one lead per row (UTF-8 or Windows-1252; "
                                "comma, semicolon or tab)."},
        "skip_invalid": {"type": "boolean", "default": False,
                         "description": "Import the good rows and list the bad ones, instead of importing "
                                        "nothing when a row is bad."},
        "mapping": {"type": "string", "description": "JSON object of lead field to column name, for columns "
                                                     "whose name says nothing, e.g. {\"customer_phone\": "
                                                     "\"Mobile No\"}."}}}}}}}


@leads_router.post("/leads/import", status_code=201, response_model=FileImported, responses=responses(*BODY),
                   summary="Import a CSV file of leads", openapi_extra=_MULTIPART_BODY)
async def import_leads_file(request: Request, profile_id: ProfileId) -> Any:
    """The command line's import over HTTP: columns are matched by name and synonyms (or `mapping`);
    all or nothing unless `skip_invalid` (422 names every bad line as `line.<n>`)."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(415, "Send the file as multipart/form-data, in a field named 'file'.")
    try:
        form = await request.form()
    except StarletteHTTPException as exc:  # a body that is not the multipart/form-data its header says
        if exc.status_code != 400:
            raise
        raise Invalid(f"the upload could not be read ({str(exc.detail).rstrip('.').lower()}): send the CSV file "
                      "as multipart/form-data, in a field named 'file'", field="file") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise Invalid("attach the CSV file in a field named 'file'", field="file")
    data = await upload.read()
    skip_invalid = str(form.get("skip_invalid") or "").strip().lower() in ("true", "1", "yes", "on")
    mapping = leads.mapping_from_text(str(form.get("mapping") or "") or None)

    def work(session: Session) -> Any:
        report = leads.import_leads(session, profile_id=profile_id, source=io.BytesIO(data), mapping=mapping,
                                    skip_invalid=skip_invalid)
        return (report if skip_invalid else leads.refuse_rejected(report)).as_dict()

    return await run_in_threadpool(_transaction, request, work)


@leads_router.get("/lead-statuses", response_model=LeadStatuses, responses=responses(),
                  summary="The business's lead statuses")
def lead_statuses(session: DbSession, profile_id: ProfileId) -> Any:
    """Every status the business's leads carry (its own words: Booked, Lost, …), as most often written,
    with how many customers' most recent lead has it — what `target_criteria.status` matches."""
    return LeadStatuses(statuses=[LeadStatusOut.model_validate(s)
                                  for s in customers.lead_statuses(session, profile_id=profile_id)])


@leads_router.get("/customers", response_model=CustomerPage, responses=responses(), summary="List customers")
def list_customers(
    session: DbSession, profile_id: ProfileId,
    search: Annotated[str | None, Query(max_length=200, description="Part of a name, phone or e-mail of any of "
                                                                    "the customer's leads.")] = None,
    status: Annotated[str | None, Query(max_length=50, description="Status of their most recent lead (case "
                                                                   "and surrounding spaces ignored).")] = None,
    limit: Limit = 50, offset: Offset = 0,
) -> Any:
    """The business's customers, most recently in touch first, a page at a time."""
    rows, total = customers.search_customers(session, profile_id=profile_id, search=search, status=status,
                                             limit=limit, offset=offset)
    return CustomerPage(customers=[CustomerOut.model_validate(c) for c in rows], total=total, limit=limit,
                        offset=offset)


@leads_router.get("/customers/{id}", response_model=CustomerDetailOut, responses=responses(404),
                  summary="Get a customer")
def get_customer(id: CustomerId, session: DbSession, profile_id: ProfileId) -> Any:
    """The customer with their leads, the campaigns they were in and what each sent them (read from the
    attempt log), their opt-outs and consents."""
    return CustomerDetailOut.model_validate(customers.customer_detail(session, profile_id=profile_id,
                                                                      customer_id=id))


# --- /api/consents, /api/dnc, /api/campaigns/{id}/compliance ---------------------------------------------

compliance_router = APIRouter(prefix="/api", tags=["compliance"], route_class=ApiRoute,
                              dependencies=[Depends(strict_body)])
ConsentId = Annotated[uuid.UUID, Path(description="The consent's id.")]
DncNumberPath = Annotated[str, Path(min_length=1, max_length=64, description=(
    "The number in any format that reads as one on the list (URL-encoded: `%2B13055550101` for +13055550101)."))]


@compliance_router.post("/consents", status_code=201, response_model=ConsentOut, responses=responses(*BODY),
                        summary="Record a consent")
def create_consent(body: ConsentCreate, session: DbSession, profile_id: ProfileId) -> Any:
    """Record that a customer agreed to be reached on a channel (or on all), at a level, with its proof.
    The contact is normalized; `captured_at` may not lie in the future. Sending the very same record
    again returns the first."""
    return consents.record_consent(session, profile_id=profile_id, contact=body.contact, channel=body.channel,
                                   level=body.level, source=body.source, proof=body.proof,
                                   captured_at=body.captured_at)


@compliance_router.get("/consents", response_model=ConsentPage, responses=responses(), summary="List consents")
def list_consents(
    session: DbSession, profile_id: ProfileId,
    search: Annotated[str | None, Query(max_length=200, description="Part of a phone or e-mail.")] = None,
    limit: Limit = 50, offset: Offset = 0,
) -> Any:
    """The business's consent records, revoked ones included (with `revoked_at`), newest first."""
    rows, total = consents.list_consents(session, profile_id=profile_id, search=search, limit=limit, offset=offset)
    return ConsentPage(consents=[ConsentOut.model_validate(c) for c in rows], total=total, limit=limit,
                       offset=offset)


@compliance_router.delete("/consents/{id}", status_code=204, response_class=Response, responses=responses(404),
                          summary="Revoke a consent")
def revoke_consent(id: ConsentId, session: DbSession, profile_id: ProfileId) -> Response:
    """The customer withdrew their consent: the record is kept with `revoked_at` and no longer counts
    from the next send on. Revoking it again changes nothing."""
    consents.revoke_consent(session, profile_id=profile_id, consent_id=id)
    return Response(status_code=204)


@compliance_router.post("/dnc", response_model=DncAdded, responses=responses(*BODY),
                        summary="Add numbers to the do-not-call list")
def add_dnc_numbers(body: DncAdd, session: DbSession, profile_id: ProfileId) -> Any:
    """Numbers on the list are never called or texted. Any format is read, ten-digit registry lines
    included. All or nothing: an entry that is not a phone number refuses the list with a 422 naming
    each such entry (`numbers.<index>`) — unless `skip_invalid`, which adds the others and lists those
    in `rejected`. Adding a number already on the list changes nothing."""
    report = dnc.add_numbers(session, profile_id=profile_id, numbers=body.numbers, source=body.source,
                             skip_invalid=body.skip_invalid)
    if report.refused:
        raise report.as_error("numbers")
    return report.as_dict()


@compliance_router.get("/dnc", response_model=DncPage, responses=responses(), summary="List the do-not-call list")
def list_dnc_numbers(
    session: DbSession, profile_id: ProfileId,
    search: Annotated[str | None, Query(max_length=200, description="Digits anywhere in the number.")] = None,
    limit: Limit = 50, offset: Offset = 0,
) -> Any:
    """The business's do-not-call list, newest first."""
    rows, total = dnc.list_numbers(session, profile_id=profile_id, search=search, limit=limit, offset=offset)
    return DncPage(numbers=[DncNumberOut.model_validate(n) for n in rows], total=total, limit=limit, offset=offset)


@compliance_router.delete("/dnc/{number}", status_code=204, response_class=Response, responses=responses(404),
                          summary="Remove a number from the do-not-call list")
def remove_dnc_number(number: DncNumberPath, session: DbSession, profile_id: ProfileId) -> Response:
    """Calls and texts may reach the number again (other rules still apply)."""
    dnc.remove_number(session, profile_id=profile_id, number=number)
    return Response(status_code=204)


@compliance_router.get("/campaigns/{id}/compliance", response_model=CampaignCompliance, responses=responses(404),
                       summary="What the law asks of a campaign")
def campaign_compliance(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """The consent policy, who the selection left out and why, and, for calls and texts, the states
    with their own rules where the campaign has recipients: their hours and their cap per 24 hours."""
    return compliance.campaign_compliance(session, profile_id=profile_id, campaign_id=id)


# --- /api/webhook-endpoints --------------------------------------------------------------------------------

endpoints_router = APIRouter(prefix="/api/webhook-endpoints", tags=["events out"], route_class=ApiRoute,
                             dependencies=[Depends(strict_body)])
EndpointId = Annotated[uuid.UUID, Path(description="The endpoint's id.")]


@endpoints_router.post("", status_code=201, response_model=WebhookEndpointCreated, responses=responses(409, *BODY),
                       summary="Add a webhook endpoint")
def create_webhook_endpoint(body: WebhookEndpointCreate, request: Request, session: DbSession,
                            profile_id: ProfileId) -> Any:
    """Post the chosen events to `url`, signed per Standard Webhooks. The answer carries the signing
    `secret`, shown only this once. A URL that is not http(s), or whose host is (or resolves to) a loopback or
    private address, is refused (422)."""
    endpoint, secret = webhook_endpoints.create_endpoint(session, profile_id=profile_id, url=body.url,
                                                         events=body.events, description=body.description,
                                                         settings=_settings(request))
    return WebhookEndpointCreated(**WebhookEndpointOut.model_validate(endpoint).model_dump(), secret=secret)


@endpoints_router.get("", response_model=WebhookEndpointList, responses=responses(),
                      summary="List webhook endpoints")
def list_webhook_endpoints(session: DbSession, profile_id: ProfileId) -> Any:
    """The business's endpoints (without their secrets)."""
    rows = webhook_endpoints.list_endpoints(session, profile_id=profile_id)
    return WebhookEndpointList(endpoints=[WebhookEndpointOut.model_validate(e) for e in rows])


@endpoints_router.delete("/{id}", status_code=204, response_class=Response, responses=responses(404),
                         summary="Delete a webhook endpoint")
def delete_webhook_endpoint(id: EndpointId, session: DbSession, profile_id: ProfileId) -> Response:
    """Stop posting events there; its deliveries, also those not made yet, are dropped."""
    webhook_endpoints.delete_endpoint(session, profile_id=profile_id, endpoint_id=id)
    return Response(status_code=204)


@endpoints_router.get("/{id}/deliveries", response_model=WebhookDeliveryPage, responses=responses(404),
                      summary="An endpoint's delivery log")
def webhook_deliveries(id: EndpointId, session: DbSession, profile_id: ProfileId, limit: Limit = 50,
                       offset: Offset = 0) -> Any:
    """Each event sent to the endpoint, newest first: delivered, pending (with its next attempt) or failed, how many
    attempts, and the last answer's status code or error."""
    rows, total = webhook_endpoints.list_deliveries(session, profile_id=profile_id, endpoint_id=id, limit=limit,
                                                    offset=offset)
    return WebhookDeliveryPage(deliveries=[WebhookDeliveryOut.model_validate(d) for d in rows], total=total,
                               limit=limit, offset=offset)


@endpoints_router.post("/{id}/test", response_model=WebhookDeliveryOut, responses=responses(404, 409),
                       summary="Send a test event")
def send_test_event(id: EndpointId, request: Request, profile_id: ProfileId) -> Any:
    """Send the endpoint an event of the first type it receives, with example data and `"test": true`, right away
    (waiting at most `WEBHOOK_TIMEOUT_SECONDS` for its answer), and return its log entry. Not taken: retried like
    any event."""
    entry = webhook_delivery.send_test_now(database(request).factory, profile_id=profile_id, endpoint_id=id,
                                           settings=_settings(request))
    return WebhookDeliveryOut.model_validate(entry)


# --- /api/profile ------------------------------------------------------------------------------------------

profile_router = APIRouter(prefix="/api/profile", tags=["profile"], route_class=ApiRoute,
                           dependencies=[Depends(strict_body)])


def _profile_out(profile: Profile, settings: Settings) -> ProfileOut:
    modes = senders.channel_modes(profile, settings)
    fields = {name: getattr(profile, name) for name in ProfileOut.model_fields if hasattr(profile, name)}
    return ProfileOut.model_validate({**fields, "secrets_set": senders.secrets_set(profile, settings), "channels": {
        channel: ChannelModeOut(mode="live" if m.live else "sandbox", provider=m.provider, own_account=m.own_account,
                                missing=senders.missing_in_words(m)) for channel, m in modes.items()}})


@profile_router.get("", response_model=ProfileOut, responses=responses(), summary="Get the business profile")
def get_profile(request: Request, session: DbSession, profile_id: ProfileId) -> Any:
    """The business's profile: name, time zone, booking link, consent policy, who it sends as, prices, which
    credentials are stored (`secrets_set`; their values are never returned) and per channel whether it is live."""
    return _profile_out(accounts.get_profile(session, profile_id=profile_id), _settings(request))


@profile_router.patch("", response_model=ProfileOut, responses=responses(*BODY), summary="Change the business profile")
def update_profile(body: ProfileUpdate, request: Request, session: DbSession, profile_id: ProfileId) -> Any:
    """Change what is given: a null (or empty) optional text clears it; credentials (`resend_api_key`,
    `smtp_url`, `twilio_account_sid`, `twilio_auth_token`, `vonage_api_key`, `vonage_api_secret`, `vapi_api_key`,
    …) are write-only: a value sets one (stored encrypted), empty or null clears it. Phone numbers are stored in
    E.164. A bad value is refused (422) naming the field, and nothing changes."""
    fields, secrets = body.changes()
    settings = _settings(request)
    profile = accounts.update_profile(session, profile_id=profile_id, **fields, secrets=secrets or None,
                                      settings=settings)
    return _profile_out(profile, settings)


# --- service ----------------------------------------------------------------------------------------------

service_router = APIRouter(tags=["service"])


@service_router.get("/healthz", response_model=Health,
                    responses={503: {"model": Health, "description": "The database does not answer."}},
                    summary="Health check")
def healthz(request: Request) -> Any:
    """`ok` when the API is up and its database answers (no API key needed)."""
    try:
        with database(request).factory() as session:
            accounts.count_profiles(session)
    except Exception as exc:  # any failure to reach the database means unhealthy, whatever it is
        log.error("health check: database does not answer: %s", exc)
        return JSONResponse({"status": "unavailable", "database": "error"}, status_code=503)
    return {"status": "ok", "database": "ok"}


# --- provider webhooks, the unsubscribe page, tracked links ----------------------------------------------
# Authenticated by the provider's signature or a signed token, not an API key.  The signature is checked on
# the raw body before anything else; a refused request (401) touches no database.


def _settings(request: Request) -> Settings:
    settings: Settings | None = getattr(request.app.state, "settings", None)
    return settings or get_settings()


def _transaction(request: Request, work: Callable[[Session], Any]) -> Any:
    with database(request).factory() as session, session.begin():
        return work(session)


_HOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Signed, but the body is not the provider's payload."},
    401: {"model": ErrorBody, "description": "The signature is missing or wrong (or its secret is not set): "
                                             "nothing was changed."},
    503: {"model": ErrorBody, "description": "The database is busy or unreachable; the provider retries."},
}
webhooks_router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@webhooks_router.post("/vapi", response_model=WebhookAck, responses=_HOOK_RESPONSES,
                      summary="Vapi server messages")
async def vapi_webhook(request: Request) -> Any:
    """Call status updates and end-of-call reports from Vapi. The `x-vapi-secret` header must equal
    `VAPI_WEBHOOK_SECRET`. A replayed message changes nothing; a call this service did not place is ignored."""
    settings, body = _settings(request), await request.body()
    vapi_hooks.verify(request.headers, settings=settings)
    report = await run_in_threadpool(_transaction, request, lambda s: vapi_hooks.handle(s, body=body))
    return report.as_dict()


@webhooks_router.post("/twilio/status", response_model=WebhookAck, responses=_HOOK_RESPONSES,
                      summary="Twilio message status callbacks")
async def twilio_status_webhook(request: Request) -> Any:
    """Delivery reports of texts (`MessageSid`, `MessageStatus`, `ErrorCode`), signed with `X-Twilio-Signature`
    for `PUBLIC_BASE_URL` + this path."""
    params = twilio_hooks.verified_form(settings=_settings(request), path=twilio_hooks.STATUS_PATH,
                                        query=request.url.query, body=await request.body(), headers=request.headers)
    report = await run_in_threadpool(_transaction, request, lambda s: twilio_hooks.handle_status(s, params=params))
    return report.as_dict()


@webhooks_router.post("/twilio/inbound", response_class=Response, summary="Texts customers send",
                      responses={**_HOOK_RESPONSES, 200: {"description": "TwiML: the reply to send, if any.",
                                                          "content": {"application/xml": {"schema": {
                                                              "type": "string"}}}}})
async def twilio_inbound_webhook(request: Request) -> Response:
    """A customer's text, signed with `X-Twilio-Signature` for `PUBLIC_BASE_URL` + this path: STOP and its
    synonyms opt the number out of texts, START opts it back in, HELP answers with the business's details,
    anything else is a response (a positive one a conversion). Answered with TwiML."""
    params = twilio_hooks.verified_form(settings=_settings(request), path=twilio_hooks.INBOUND_PATH,
                                        query=request.url.query, body=await request.body(), headers=request.headers)
    twiml = await run_in_threadpool(_transaction, request, lambda s: twilio_hooks.handle_inbound(s, params=params))
    return Response(content=twiml, media_type="application/xml")


@webhooks_router.post("/resend", response_model=WebhookAck, responses=_HOOK_RESPONSES,
                      summary="Resend e-mail events")
async def resend_webhook(request: Request) -> Any:
    """Deliveries, bounces, complaints, opens and clicks of e-mails, signed by Svix (`svix-id`,
    `svix-timestamp`, `svix-signature`) with `RESEND_WEBHOOK_SECRET`; a timestamp more than five minutes off
    is refused."""
    settings, body = _settings(request), await request.body()
    event_id = resend_hooks.verify(settings=settings, headers=request.headers, body=body)
    report = await run_in_threadpool(_transaction, request,
                                     lambda s: resend_hooks.handle(s, body=body, event_id=event_id))
    return report.as_dict()


# --- e-mail services' bounce and complaint webhooks (SES through SNS, SendGrid, Postmark) --------------


@webhooks_router.post("/ses", response_model=WebhookAck, summary="Amazon SES notifications (through SNS)",
                      responses={**_HOOK_RESPONSES, 503: {"model": ErrorBody, "description": (
                          "The database, or SNS (for its signing certificate), cannot be reached; SNS retries.")}})
async def ses_webhook(request: Request) -> Any:
    """Bounces, complaints and deliveries (and opens and clicks with event publishing) of e-mails sent through
    Amazon SES, posted by SNS. The SNS signature (version 1 or 2) is checked against the certificate at
    `SigningCertURL` (an https URL of `sns.<region>.amazonaws.com`), and `TopicArn` must be in `SES_TOPIC_ARNS`.
    A subscription confirmation of such a topic is confirmed at once."""
    settings, body = _settings(request), await request.body()
    sns = getattr(request.app.state, "sns_client", None)
    message = await run_in_threadpool(lambda: ses_hooks.verify(settings=settings, body=body, client=sns))
    if await run_in_threadpool(lambda: ses_hooks.confirm_subscription(message, client=sns)):
        return {"received": 0, "applied": 0, "replayed": 0, "ignored": 0}
    report = await run_in_threadpool(_transaction, request, lambda s: ses_hooks.handle(s, message=message))
    return report.as_dict()


@webhooks_router.post("/sendgrid", response_model=WebhookAck, responses=_HOOK_RESPONSES,
                      summary="SendGrid Event Webhook")
async def sendgrid_webhook(request: Request) -> Any:
    """Deliveries, bounces, drops, complaints, unsubscribes, opens and clicks of e-mails sent through SendGrid: a
    JSON array of events, signed with ECDSA (`X-Twilio-Email-Event-Webhook-Signature` over
    `X-Twilio-Email-Event-Webhook-Timestamp` + body) for `SENDGRID_WEBHOOK_PUBLIC_KEY`; a timestamp more than ten
    minutes off is refused."""
    settings, body = _settings(request), await request.body()
    sendgrid_hooks.verify(settings=settings, headers=request.headers, body=body)
    report = await run_in_threadpool(_transaction, request, lambda s: sendgrid_hooks.handle(s, body=body))
    return report.as_dict()


@webhooks_router.post("/postmark", response_model=WebhookAck, responses=_HOOK_RESPONSES,
                      summary="Postmark webhooks")
async def postmark_webhook(request: Request) -> Any:
    """Bounces, spam complaints, deliveries, opens, clicks and subscription changes of e-mails sent through
    Postmark. Postmark signs nothing: give it the URL `https://user:password@<host>/webhooks/postmark` with
    `POSTMARK_WEBHOOK_USER` and `POSTMARK_WEBHOOK_PASSWORD` (HTTP basic authentication)."""
    settings, body = _settings(request), await request.body()
    try:
        postmark_hooks.verify(settings=settings, headers=request.headers)
    except postmark_hooks.SignatureError as exc:
        return JSONResponse({"detail": exc.message, "errors": []}, status_code=401, headers=postmark_hooks.CHALLENGE)
    report = await run_in_threadpool(_transaction, request, lambda s: postmark_hooks.handle(s, body=body))
    return report.as_dict()


# --- Vonage delivery receipts and inbound texts --------------------------------------------------------


async def _vonage_params(request: Request) -> dict[str, Any]:
    """The parameters of a Vonage webhook (GET query, POST form or JSON), once its `sig` is checked (else 401)."""
    settings = _settings(request)
    params = vonage_hooks.read_params(query=request.url.query, body=await request.body(),
                                      content_type=request.headers.get("content-type"))
    await run_in_threadpool(lambda: vonage_hooks.verify_request(params=params, settings=settings,
                                                                factory=database(request).factory))
    return params


@webhooks_router.get("/vonage/status", response_model=WebhookAck, responses=_HOOK_RESPONSES,
                     summary="Vonage delivery receipts (GET)")
@webhooks_router.post("/vonage/status", response_model=WebhookAck, responses=_HOOK_RESPONSES,
                      summary="Vonage delivery receipts")
async def vonage_status_webhook(request: Request) -> Any:
    """Delivery receipts of texts sent through Vonage's SMS API (`messageId`, `status`, `err-code`, `client-ref`),
    by GET or POST (form or JSON), signed with `sig` (`VONAGE_SIGNATURE_SECRET`, `VONAGE_SIGNATURE_METHOD`); a
    `timestamp` more than five minutes off is refused. A replayed receipt changes nothing."""
    params = await _vonage_params(request)
    report = await run_in_threadpool(_transaction, request, lambda s: vonage_hooks.handle_status(s, params=params))
    return report.as_dict()


@webhooks_router.get("/vonage/inbound", response_model=WebhookAck, responses=_HOOK_RESPONSES,
                     summary="Texts customers send to a Vonage number (GET)")
@webhooks_router.post("/vonage/inbound", response_model=WebhookAck, responses=_HOOK_RESPONSES,
                      summary="Texts customers send to a Vonage number")
async def vonage_inbound_webhook(request: Request) -> Any:
    """A customer's text to a Vonage number (`msisdn`, `to`, `text`, `messageId`; the parts of a long text are
    put together), signed like the receipts: STOP and any plain request to stop opt the number out of texts,
    START opts it back in, HELP names the business, anything else is a response (a positive one a conversion).
    The one reply is sent through the SMS API after this answer."""
    settings, params = _settings(request), await _vonage_params(request)
    done = await run_in_threadpool(_transaction, request,
                                   lambda s: vonage_hooks.handle_inbound(s, params=params, settings=settings))
    reply = done.reply
    return JSONResponse(done.ack.as_dict(),
                        background=BackgroundTask(vonage_hooks.send_reply, reply) if reply is not None else None)


# pages for people (HTML), not part of the JSON API's document
pages_router = APIRouter(include_in_schema=False)
_NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


@pages_router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    """The page an unsubscribe link opens: who is unsubscribed from what, and a button (nothing happens yet)."""
    target = _transaction(request, lambda s: unsubscribe.find(s, token=token, settings=_settings(request)))
    if target is None:
        return HTMLResponse(unsubscribe.invalid_page(), status_code=404, headers=_NO_STORE)
    return HTMLResponse(unsubscribe.confirm_page(target), headers=_NO_STORE)


@pages_router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_now(token: str, request: Request) -> HTMLResponse:
    """The page's button, or RFC 8058 one-click (`List-Unsubscribe=One-Click`): unsubscribed at once."""
    target = _transaction(request, lambda s: unsubscribe.unsubscribe(s, token=token, settings=_settings(request)))
    if target is None:
        return HTMLResponse(unsubscribe.invalid_page(), status_code=404, headers=_NO_STORE)
    return HTMLResponse(unsubscribe.done_page(target), headers=_NO_STORE)


@pages_router.get("/c/{token}")
def follow_tracked_link(token: str, request: Request) -> Response:
    """A tracked link of an e-mail: the click is recorded, then the browser goes where the link leads."""
    url = _transaction(request, lambda s: clicks.follow(s, token=token, settings=_settings(request),
                                                        user_agent=request.headers.get("user-agent")))
    if url is None:
        return HTMLResponse(unsubscribe.invalid_page(), status_code=404, headers=_NO_STORE)
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


# --- the app ----------------------------------------------------------------------------------------------

DESCRIPTION = """\
Win back customers who went quiet: campaigns by AI voice call, e-mail and SMS.

**Authentication**: every `/api/…` request carries `Authorization: Bearer <api key>`.
Create a key with `python -m core create-api-key --email <your login e-mail>`.

**Errors** are JSON: `{"detail": "<a sentence naming the field>", "errors": [{"field", "message"}]}`.
401 no valid key · 404 no such object in your business · 409 not allowed in the object's current state ·
413 body too large · 415 body not JSON · 422 invalid input.
"""


def create_app(*, engine: Engine | None = None, database_url: str | None = None,
               settings: Settings | None = None) -> FastAPI:
    """The API as an ASGI app, on ``engine`` or ``database_url`` (default: ``DATABASE_URL``); ``settings``
    (default: the process's) are what the webhooks and the unsubscribe page check against."""
    database = Database(engine=engine, url=database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        configure_logging("api")
        (settings or get_settings()).require_secret_key()
        yield
        if database.owns_engine and database.engine is not None:
            database.engine.dispose()

    # the docs work offline: Swagger UI (5, for OpenAPI 3.1) and ReDoc are served from the files the pinned
    # fastapi-offline package ships, never from a CDN (FastAPI's documented self-hosting of the docs)
    from pathlib import Path as FilePath

    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    docs_assets = FilePath(fastapi_offline.__file__).parent / "static"

    app = FastAPI(title="CONNEXT Re-engagement API", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.mount("/docs/assets", StaticFiles(directory=str(docs_assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path") or "").rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} — Swagger UI",
                                   swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
                                   swagger_favicon_url=f"{root}/docs/assets/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path") or "").rstrip("/")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} — ReDoc",
                              redoc_js_url=f"{root}/docs/assets/redoc.standalone.js",
                              redoc_favicon_url=f"{root}/docs/assets/favicon.png", with_google_fonts=False)

    app.state.database = database
    app.state.settings = settings
    install(app)

    app.include_router(service_router)
    app.include_router(campaigns_router)
    app.include_router(audience_router)
    app.include_router(opt_outs_router)
    app.include_router(leads_router)
    app.include_router(compliance_router)
    app.include_router(endpoints_router)
    app.include_router(profile_router)
    # provider webhooks and the unsubscribe page authenticate by signature/token, not API key:
    # their routers are included here, next to these
    app.include_router(webhooks_router)
    app.include_router(pages_router)
    return app


app = create_app()
