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

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

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
from core import accounts, campaigns, clicks, exports, optouts, results, targeting, unsubscribe
from core.api_schemas import (
    AddRecipients,
    AudiencePreview,
    AudiencePreviewRequest,
    CampaignDetail,
    CampaignPage,
    CampaignResults,
    CampaignStatus,
    ErrorBody,
    Health,
    OptOutCreate,
    OptOutOut,
    OptOutPage,
    PassReport,
    RecipientPage,
    RecipientsAdded,
    RecipientStatus,
    Selection,
    UtcDateTime,
    WebhookAck,
)
from core.config import Settings, get_settings
from core.logs import configure_logging
from core.schemas import CampaignCreate, CampaignOut, CampaignType, CampaignUpdate, RecipientOut
from core.webhooks import resend as resend_hooks
from core.webhooks import twilio as twilio_hooks
from core.webhooks import vapi as vapi_hooks

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
    recipients at the moment of the request (the stored summary is brought up to date too)."""
    outcome = results.campaign_results(session, profile_id=profile_id, campaign_id=id)
    results.refresh_campaign_results(session, campaign_id=id)
    return outcome.as_dict()


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
        sample_size=body.sample_size)
    return AudiencePreview(count=preview.count, suppressed=preview.suppressed, sample=preview.sample)  # type: ignore[arg-type]


# --- /api/opt-outs --------------------------------------------------------------------------------------

opt_outs_router = APIRouter(prefix="/api/opt-outs", tags=["opt-outs"], route_class=ApiRoute,
                            dependencies=[Depends(strict_body)])


@opt_outs_router.post("", status_code=201, response_model=OptOutOut, responses=responses(*BODY),
                      summary="Record an opt-out")
def create_opt_out(body: OptOutCreate, session: DbSession, profile_id: ProfileId) -> Any:
    """Stop contacting a phone number or e-mail address on a channel (or on all). Recording the
    same opt-out twice keeps the first."""
    profile = accounts.get_profile(session, profile_id=profile_id)
    return optouts.record_opt_out(session, profile_id=profile_id, contact=body.contact, channel=body.channel,
                                  source="manual", reason=body.reason, region=profile.default_region)


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


# --- /api/consents, /api/dnc, /api/campaigns/{id}/compliance ---------------------------------------------

compliance_router = APIRouter(prefix="/api", tags=["compliance"], route_class=ApiRoute,
                              dependencies=[Depends(strict_body)])


# --- /api/webhook-endpoints --------------------------------------------------------------------------------

endpoints_router = APIRouter(prefix="/api/webhook-endpoints", tags=["events out"], route_class=ApiRoute,
                             dependencies=[Depends(strict_body)])


# --- /api/profile ------------------------------------------------------------------------------------------

profile_router = APIRouter(prefix="/api/profile", tags=["profile"], route_class=ApiRoute,
                           dependencies=[Depends(strict_body)])


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


# --- Vonage delivery receipts and inbound texts --------------------------------------------------------


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
    url = _transaction(request, lambda s: clicks.follow(s, token=token, settings=_settings(request)))
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

    app = FastAPI(title="CONNEXT Re-engagement API", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
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
