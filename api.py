"""REST API (FastAPI): ``uvicorn api:app``; OpenAPI at ``/openapi.json``, docs at ``/docs``.

Routes are thin: they translate HTTP into calls into ``core`` and domain errors
back into HTTP answers, with one error shape everywhere (``ErrorBody``).

Layout of this module:

* the edge: request body limits, strict JSON, the error mapping;
* dependencies: the database session of a request and the caller's business;
* routers: ``/api/campaigns``, ``/api/audience``, ``/api/opt-outs`` (API key),
  and the service routes (``/healthz``);
* :func:`create_app`, which puts them together.  Routers with other
  authentication (provider webhooks, the unsubscribe page) are included there
  next to these.

A request's work runs in one transaction: committed when the route returns,
rolled back when it raises, so a refused request never leaves half a change.
(The API key is checked in a short transaction of its own; the dispatch pass
and the CSV export open their own, batch by batch.)
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response, Security
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import accounts, campaigns, clicks, exports, optouts, results, targeting, unsubscribe
from core.api_schemas import (
    MAX_OFFSET,
    MAX_PAGE,
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
from core.db import get_engine, make_engine
from core.errors import DomainError, Invalid
from core.logs import configure_logging
from core.schemas import CampaignCreate, CampaignOut, CampaignType, CampaignUpdate, RecipientOut
from core.webhooks import resend as resend_hooks
from core.webhooks import twilio as twilio_hooks
from core.webhooks import vapi as vapi_hooks

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 32  # far deeper than any body of this API; deeper input is refused, not parsed
DETAIL_RECIPIENTS = 50  # recipients shown with a campaign

# --- the edge: body limits, strict JSON, errors ---------------------------------------------------------


def _error(status_code: int, detail: str, errors: list[dict[str, str]] | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors or []}, status_code=status_code, headers=headers)


class BodyLimit:
    """Refuse request bodies above ``limit`` bytes with 413 before anything parses them.

    A declared ``Content-Length`` is checked first; a body without one (chunked)
    is read up to the limit and refused as soon as it goes over.  The bodies of
    this API are small, so an accepted body is buffered and handed on whole.
    """

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        too_large = _error(413, f"The request body is larger than {limit} bytes; send less at a time.",
                           [{"field": "body", "message": f"larger than {limit} bytes"}])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    await too_large(scope, receive, send)
                    return
            except ValueError:
                await _error(400, "The Content-Length header is not a number.")(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # the client went away before sending its body: nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _bad_json(message: str, doc: str, pos: int = 0) -> json.JSONDecodeError:
    return json.JSONDecodeError(message, doc, pos)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number")
    return value


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise ValueError("text may not contain the NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains an unpaired UTF-16 surrogate (\\ud800–\\udfff)") from None


def parse_json_strictly(body: bytes) -> Any:
    """``body`` as JSON, refusing what JSON does not define or the database cannot store:
    NaN and infinities, numbers too large for a double, NUL characters and unpaired
    surrogates in strings, and nesting deeper than ``MAX_JSON_DEPTH``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad_json("the body is not UTF-8 text", body.decode("utf-8", "replace"), exc.start) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _bad_json(f"nested deeper than {MAX_JSON_DEPTH} levels", text) from None
    except ValueError as exc:  # our own refusals above, and integers with thousands of digits
        raise _bad_json(str(exc), text) from None
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _bad_json(f"nested deeper than {MAX_JSON_DEPTH} levels", text)
        try:
            if isinstance(value, str):
                _check_text(value)
            elif isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    stack.append((item, depth + 1))
            elif isinstance(value, list):
                stack.extend((item, depth + 1) for item in value)
        except ValueError as exc:
            raise _bad_json(str(exc), text) from None
    return data


class StrictJSONRequest(Request):
    """A request whose JSON body is parsed by :func:`parse_json_strictly`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_strictly(await self.body())
        return self._json


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


_BODY_TYPE = "connext.body_type"  # request scope key: the JSON body's model, for strict_body()


class ApiRoute(APIRoute):
    """Route of the JSON API: strict JSON bodies, JSON-only request bodies, and no
    NUL characters in query parameters (no database column can store them)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        model = self.body_field.field_info.annotation if self.body_field is not None else None
        body_type = TypeAdapter(model) if model is not None else None

        async def strict_handler(request: Request) -> Response:
            for name, value in request.query_params.multi_items():
                if "\x00" in value or "\x00" in name:
                    raise Invalid("may not contain the NUL character", field=name or "query")
            if body_type is not None and _has_body(request) and not _is_json(request.headers.get("content-type")):
                raise HTTPException(415, "Send the request body as JSON, with the header "
                                         "Content-Type: application/json.")
            request.scope[_BODY_TYPE] = body_type
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


_PLAIN_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a field this request accepts",
    "uuid_parsing": "is not a valid id (ids look like 3fa85f64-5717-4562-b3fc-2c963f66afa6)",
    "uuid_type": "is not a valid id (ids look like 3fa85f64-5717-4562-b3fc-2c963f66afa6)",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
    "datetime_parsing": "must be a date-time such as 2026-06-15T09:00:00Z",
    "datetime_from_date_parsing": "must be a date or date-time such as 2026-06-15T09:00:00Z",
    "timezone_aware": "needs a time-zone offset, e.g. 2026-06-15T09:00:00-04:00",
    "date_parsing": "must be a date such as 2026-06-15",
    "date_from_datetime_parsing": "must be a date such as 2026-06-15",
}


def _plain(error: dict[str, Any]) -> str:
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "json_invalid":
        return f"is not valid JSON ({ctx.get('error', 'could not be read')})"
    if kind in _PLAIN_MESSAGES:
        return _PLAIN_MESSAGES[kind]
    if kind == "literal_error" and "expected" in ctx:
        return f"must be one of {ctx['expected']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "too_long":
        return f"may have at most {ctx.get('max_length')} items"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "string_too_long":
        return f"may be at most {ctx.get('max_length')} characters long"
    if kind == "string_too_short":
        return "may not be empty" if ctx.get("min_length") == 1 else \
            f"must be at least {ctx.get('min_length')} characters long"
    message = str(error.get("msg", "is not valid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


_SOURCES = ("body", "query", "path", "header", "cookie")


def _field_of(loc: tuple[Any, ...], kind: str) -> str:
    parts = list(loc)
    source = parts.pop(0) if parts and parts[0] in _SOURCES else ""
    if kind == "json_invalid" or not parts:
        return source or "body"
    # tagged unions and function validators add a technical step to the location
    return ".".join(str(p) for p in parts if not (isinstance(p, str) and p.startswith("function-")))


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = []
    for error in exc.errors():
        items.append({"field": _field_of(tuple(error.get("loc", ())), error.get("type", "")),
                      "message": _plain(error)})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in items) or "The request is not valid."
    return _error(422, detail, items)


def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, Invalid):
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    else:
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
    return _error(exc.status_code, exc.message, errors)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # the router names only the methods of the first route matching the path
        headers["Allow"] = ", ".join(_allowed_methods(request.app, request.url.path))
    return _error(exc.status_code, str(exc.detail), headers=headers)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the app documents for ``path``."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(app.state, "allowed_methods", None)
    if table is None:
        table = []
        for template, operations in app.openapi()["paths"].items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            table.append((re.compile(f"^{pattern}$"), sorted(m.upper() for m in operations)))
        app.state.allowed_methods = table
    return sorted({m for pattern, methods in table if pattern.match(path) for m in methods})


def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    # two requests changed the same thing at once and the database kept one of them
    log.warning("%s %s: integrity conflict: %s", request.method, request.url.path, exc)
    return _error(409, "Someone changed this at the same time; reload it and try again.")


def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: database unavailable: %s", request.method, request.url.path, exc)
    return _error(503, "The database is busy or unreachable; try again in a moment.",
                  headers={"Retry-After": "5"})


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, "Something went wrong on our side; the change was not saved. Please try again.")


# --- dependencies ---------------------------------------------------------------------------------------


class Database:
    """Where a running app keeps its engine and session factory."""

    def __init__(self, *, engine: Engine | None = None, url: str | None = None) -> None:
        self.owns_engine = engine is None and url is not None
        self.engine = engine if engine is not None else (make_engine(url) if url else None)
        self._factory = sessionmaker(self.engine, expire_on_commit=False) if self.engine is not None else None

    @property
    def factory(self) -> sessionmaker[Session]:
        if self._factory is None:
            # the process's default engine, on first use: importing api.py touches no database
            self._factory = sessionmaker(get_engine(), expire_on_commit=False)
        return self._factory


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def db_session(request: Request) -> Iterator[Session]:
    """The request's session: one transaction, committed when the route returns, else rolled back."""
    with _database(request).factory() as session, session.begin():
        yield session


# scope="function": the transaction ends when the route returns, before the answer is
# sent, so a client never sees success for a change that then fails to commit
DbSession = Annotated[Session, Depends(db_session, scope="function")]
_bearer = HTTPBearer(auto_error=False, description="An API key: `python -m core create-api-key --email <login>`.")


def current_profile(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> uuid.UUID:
    """The business whose API key the request carries (401 without a valid one).

    Checked in its own short transaction, so routes that manage their own
    transactions (execute, export) hold no database lock while they work.
    """
    profile_id = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        with _database(request).factory() as session, session.begin():
            profile_id = accounts.authenticate_api_key(session, key=credentials.credentials.strip())
    if profile_id is None:
        raise HTTPException(401, "Missing, unknown or revoked API key; send it as 'Authorization: Bearer <key>'.",
                            headers={"WWW-Authenticate": "Bearer"})
    return profile_id


ProfileId = Annotated[uuid.UUID, Depends(current_profile)]


async def strict_body(request: Request, _caller: ProfileId) -> None:
    """Check a JSON body against its model with JSON's own types (after the API key).

    FastAPI's validation is lenient: it would take ``"30"`` for a number, ``1700000000``
    for a date, ``true`` for 1.  The API promises what its OpenAPI document says, so a
    body whose types differ from the schema is refused (422), not reinterpreted.
    """
    body_type: TypeAdapter[Any] | None = request.scope.get(_BODY_TYPE)
    raw = await request.body()
    if body_type is None or not raw:
        return
    try:
        body_type.validate_json(raw, strict=True)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


CampaignId = Annotated[uuid.UUID, Path(description="The campaign's id.")]
OptOutId = Annotated[uuid.UUID, Path(description="The opt-out's id.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size (1–{MAX_PAGE}).")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many matching rows to skip.")]


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "No valid API key.",
        404: "No such object in your business.",
        409: "The object's current state does not allow this.",
        413: "The body is too large.",
        415: "The body is not JSON.",
        422: "The request is not valid; `errors` names every field at fault.",
        503: "The database is busy or unreachable.",
    }
    return {code: {"model": ErrorBody, "description": described[code]} for code in (401, 422, 503, *codes)}


BODY = (413, 415)

# --- /api/campaigns -------------------------------------------------------------------------------------

campaigns_router = APIRouter(prefix="/api/campaigns", tags=["campaigns"], route_class=ApiRoute,
                             dependencies=[Depends(strict_body)])


@campaigns_router.post("", status_code=201, response_model=CampaignOut, responses=_responses(*BODY),
                       summary="Create a campaign")
def create_campaign(body: CampaignCreate, session: DbSession, profile_id: ProfileId) -> Any:
    """Create a draft campaign (or a scheduled one, with `scheduled_at`). Templates, criteria,
    the agent and every setting are checked; anything wrong is a 422 naming the field."""
    return campaigns.create_campaign(session, profile_id=profile_id, data=body)


@campaigns_router.get("", response_model=CampaignPage, responses=_responses(), summary="List campaigns")
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


@campaigns_router.get("/{id}", response_model=CampaignDetail, responses=_responses(404),
                      summary="Get a campaign")
def get_campaign(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """The campaign, how many recipients are in each status, and the first recipients."""
    campaign = campaigns.get_campaign(session, profile_id=profile_id, campaign_id=id)
    counts = campaigns.recipient_counts(session, profile_id=profile_id, campaign_id=id)
    first, _total = campaigns.list_recipients(session, profile_id=profile_id, campaign_id=id,
                                              limit=DETAIL_RECIPIENTS)
    return CampaignDetail(**CampaignOut.model_validate(campaign).model_dump(), recipient_counts=counts,
                          recipients=[RecipientOut.model_validate(r) for r in first])


@campaigns_router.patch("/{id}", response_model=CampaignOut, responses=_responses(404, 409, *BODY),
                        summary="Change a campaign")
def update_campaign(id: CampaignId, body: CampaignUpdate, session: DbSession, profile_id: ProfileId) -> Any:
    """Change the fields given. Content and targeting are frozen once a campaign has started
    (409 says what is still editable); a `status` follows the same rules as start/pause/stop."""
    return campaigns.update_campaign(session, profile_id=profile_id, campaign_id=id, data=body)


@campaigns_router.delete("/{id}", status_code=204, response_class=Response, responses=_responses(404, 409),
                         summary="Delete a campaign")
def delete_campaign(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Response:
    """Delete the campaign and its recipients; refused (409) while it is active."""
    campaigns.delete_campaign(session, profile_id=profile_id, campaign_id=id)
    return Response(status_code=204)


@campaigns_router.post("/{id}/start", response_model=CampaignOut, responses=_responses(404, 409),
                       summary="Start or resume a campaign")
def start_campaign(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """Start now (a draft or scheduled campaign selects its recipients if it has none), or resume
    a paused one."""
    return campaigns.start_campaign(session, profile_id=profile_id, campaign_id=id)


@campaigns_router.post("/{id}/pause", response_model=CampaignOut, responses=_responses(404, 409),
                       summary="Pause a campaign")
def pause_campaign(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """Pause an active campaign: nothing more is sent until it is started again."""
    return campaigns.pause_campaign(session, profile_id=profile_id, campaign_id=id)


@campaigns_router.post("/{id}/stop", response_model=CampaignOut, responses=_responses(404, 409),
                       summary="Stop a campaign")
def stop_campaign(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """Cancel the campaign for good; customers not reached yet are not contacted."""
    return campaigns.stop_campaign(session, profile_id=profile_id, campaign_id=id)


@campaigns_router.post("/{id}/execute", response_model=PassReport, responses=_responses(404, 409),
                       summary="Run one dispatch pass now")
def execute_campaign(id: CampaignId, request: Request, profile_id: ProfileId) -> Any:
    """Work on the campaign's due recipients right away instead of waiting for the scheduler's
    next tick, with every rule the scheduler applies (opt-outs, send window, rate limits)."""
    # imported on use: the dispatcher loads every channel adapter and provider SDK
    from core.dispatch import run_campaign_pass

    report = run_campaign_pass(_database(request).factory, profile_id=profile_id, campaign_id=id)
    return report.as_dict()


@campaigns_router.post("/{id}/select-recipients", response_model=Selection, responses=_responses(404, 409),
                       summary="Select recipients by the campaign's criteria")
def select_recipients(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """Add every customer the campaign's `target_criteria` match and who is not in it yet
    (running it again adds only new matches)."""
    return campaigns.select_campaign_recipients(session, profile_id=profile_id, campaign_id=id)


@campaigns_router.post("/{id}/recipients", response_model=RecipientsAdded,
                       responses=_responses(404, 409, *BODY), summary="Add recipients by hand")
def add_recipients(id: CampaignId, body: AddRecipients, session: DbSession, profile_id: ProfileId) -> Any:
    """Add customers by lead id or by contact details. All or nothing: one unknown lead or
    unusable contact refuses the whole request."""
    outcome = campaigns.add_recipients(
        session, profile_id=profile_id, campaign_id=id, lead_ids=body.lead_ids,
        contacts=[c.model_dump() for c in body.contacts] if body.contacts is not None else None)
    return RecipientsAdded(added=outcome.selected, suppressed=outcome.suppressed,
                           total_recipients=outcome.total_recipients)


@campaigns_router.get("/{id}/recipients", response_model=RecipientPage, responses=_responses(404),
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


@campaigns_router.get("/{id}/results", response_model=CampaignResults, responses=_responses(404),
                      summary="A campaign's results")
def campaign_results(id: CampaignId, session: DbSession, profile_id: ProfileId) -> Any:
    """Counters, response and conversion rates, per variant and per channel, counted from the
    recipients at the moment of the request (the stored summary is brought up to date too)."""
    outcome = results.campaign_results(session, profile_id=profile_id, campaign_id=id)
    results.refresh_campaign_results(session, campaign_id=id)
    return outcome.as_dict()


@campaigns_router.get(
    "/{id}/export.csv", response_class=StreamingResponse, summary="Export recipients as CSV",
    responses={**_responses(404), 200: {"description": "One row per recipient, with status and outcome.",
                                        "content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def export_recipients(id: CampaignId, request: Request, session: DbSession, profile_id: ProfileId) -> Any:
    """Every recipient with status, outcome and timestamps (UTC), streamed as it is read."""
    filename = exports.export_filename(session, profile_id=profile_id, campaign_id=id)
    rows = exports.iter_recipient_csv(_database(request).factory, profile_id=profile_id, campaign_id=id)
    return StreamingResponse(rows, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- /api/audience --------------------------------------------------------------------------------------

audience_router = APIRouter(prefix="/api/audience", tags=["audience"], route_class=ApiRoute,
                            dependencies=[Depends(strict_body)])


@audience_router.post("/preview", response_model=AudiencePreview, responses=_responses(*BODY),
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


@opt_outs_router.post("", status_code=201, response_model=OptOutOut, responses=_responses(*BODY),
                      summary="Record an opt-out")
def create_opt_out(body: OptOutCreate, session: DbSession, profile_id: ProfileId) -> Any:
    """Stop contacting a phone number or e-mail address on a channel (or on all). Recording the
    same opt-out twice keeps the first."""
    profile = accounts.get_profile(session, profile_id=profile_id)
    return optouts.record_opt_out(session, profile_id=profile_id, contact=body.contact, channel=body.channel,
                                  source="manual", reason=body.reason, region=profile.default_region)


@opt_outs_router.get("", response_model=OptOutPage, responses=_responses(), summary="List opt-outs")
def list_opt_outs(
    session: DbSession, profile_id: ProfileId,
    search: Annotated[str | None, Query(max_length=200, description="Part of a phone or e-mail.")] = None,
    limit: Limit = 50, offset: Offset = 0,
) -> Any:
    """The business's opt-outs, newest first."""
    rows, total = optouts.list_opt_outs(session, profile_id=profile_id, search=search, limit=limit, offset=offset)
    return OptOutPage(opt_outs=[OptOutOut.model_validate(o) for o in rows], total=total, limit=limit,
                      offset=offset)


@opt_outs_router.delete("/{id}", status_code=204, response_class=Response, responses=_responses(404),
                        summary="Delete an opt-out")
def delete_opt_out(id: OptOutId, session: DbSession, profile_id: ProfileId) -> Response:
    """The customer asked to hear from the business again."""
    optouts.delete_opt_out(session, profile_id=profile_id, opt_out_id=id)
    return Response(status_code=204)


# --- service ----------------------------------------------------------------------------------------------

service_router = APIRouter(tags=["service"])


@service_router.get("/healthz", response_model=Health,
                    responses={503: {"model": Health, "description": "The database does not answer."}},
                    summary="Health check")
def healthz(request: Request) -> Any:
    """`ok` when the API is up and its database answers (no API key needed)."""
    try:
        with _database(request).factory() as session:
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
    with _database(request).factory() as session, session.begin():
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
        yield
        if database.owns_engine and database.engine is not None:
            database.engine.dispose()

    app = FastAPI(title="CONNEXT Re-engagement API", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.database = database
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(OperationalError, _database_busy)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit, limit=lambda: get_settings().api_max_body_bytes)

    app.include_router(service_router)
    app.include_router(campaigns_router)
    app.include_router(audience_router)
    app.include_router(opt_outs_router)
    # provider webhooks and the unsubscribe page authenticate by signature/token, not API key:
    # their routers are included here, next to these
    app.include_router(webhooks_router)
    app.include_router(pages_router)
    return app


app = create_app()
