"""The HTTP edge of the REST API: what every route shares, so ``api.py`` reads as the list of routes.

* request body limits (:class:`BodyLimit`) and strict JSON (:func:`parse_json_strictly`,
  :class:`ApiRoute`, :func:`strict_body`): what JSON does not define, or the database cannot
  store, is refused before a route sees it;
* one error shape (``{"detail", "errors"}``) for domain errors, validation errors, HTTP errors,
  database conflicts and outages (:func:`install`);
* dependencies: the request's database session (one transaction, committed when the route
  returns) and the caller's business (its API key).
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response, Security
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import accounts
from core.api_schemas import MAX_OFFSET, MAX_PAGE, ErrorBody
from core.config import get_settings
from core.db import get_engine, make_engine
from core.errors import DomainError, Invalid

log = logging.getLogger("api")

MAX_JSON_DEPTH = 32  # far deeper than any body of this API; deeper input is refused, not parsed

def error_response(status_code: int, detail: str, errors: list[dict[str, str]] | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors or []}, status_code=status_code, headers=headers)


# routes that take many leads at once (up to 10,000 leads, or a CSV file) get a larger body limit
BULK_MAX_BODY_BYTES = 20_000_000
BULK_ROUTES = ("/api/leads", "/api/leads/import")


def _bulk_limit() -> int:
    return BULK_MAX_BODY_BYTES


class BodyLimit:
    """Refuse request bodies above ``limit`` bytes with 413 before anything parses them.

    A declared ``Content-Length`` is checked first; a body without one (chunked)
    is read up to the limit and refused as soon as it goes over.  The bodies of
    this API are small, so an accepted body is buffered and handed on whole.
    ``routes`` gives some paths a limit of their own (bulk lead imports).
    """

    def __init__(self, app: ASGIApp, limit: Callable[[], int],
                 routes: Mapping[str, Callable[[], int]] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.routes = dict(routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.routes.get(str(scope.get("path", "")).rstrip("/"), self.limit)()
        too_large = error_response(413, f"The request body is larger than {limit} bytes; send less at a time.",
                           [{"field": "body", "message": f"larger than {limit} bytes"}])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    await too_large(scope, receive, send)
                    return
            except ValueError:
                await error_response(400, "The Content-Length header is not a number.")(scope, receive, send)
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
    return error_response(422, detail, items)


def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, Invalid):
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    else:
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
    return error_response(exc.status_code, exc.message, errors)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # the router names only the methods of the first route matching the path
        headers["Allow"] = ", ".join(_allowed_methods(request.app, request.url.path))
    return error_response(exc.status_code, str(exc.detail), headers=headers)


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


def install(app: FastAPI) -> None:
    """One error shape for everything that can go wrong, and the body limit, on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(OperationalError, _database_busy)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit, limit=lambda: get_settings().api_max_body_bytes,
                       routes=dict.fromkeys(BULK_ROUTES, _bulk_limit))


def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    # two requests changed the same thing at once and the database kept one of them
    log.warning("%s %s: integrity conflict: %s", request.method, request.url.path, exc)
    return error_response(409, "Someone changed this at the same time; reload it and try again.")


def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: database unavailable: %s", request.method, request.url.path, exc)
    return error_response(503, "The database is busy or unreachable; try again in a moment.",
                  headers={"Retry-After": "5"})


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Something went wrong on our side; the change was not saved. Please try again.")


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


def database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def db_session(request: Request) -> Iterator[Session]:
    """The request's session: one transaction, committed when the route returns, else rolled back."""
    with database(request).factory() as session, session.begin():
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
        with database(request).factory() as session, session.begin():
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


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size (1–{MAX_PAGE}).")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many matching rows to skip.")]


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
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
