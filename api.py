"""REST API (FastAPI): ``uvicorn api:app``.  Routes are thin: they translate
HTTP to calls into ``core`` and domain errors back to HTTP statuses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from core import accounts, campaigns
from core.db import session_factory
from core.errors import DomainError
from core.schemas import CampaignOut

app = FastAPI(title="CONNEXT Re-engagement API", version="0.1.0")


def get_session() -> Iterator[Session]:
    with session_factory()() as session, session.begin():
        yield session


def current_profile(session: Annotated[Session, Depends(get_session)],
                    authorization: Annotated[str | None, Header()] = None) -> uuid.UUID:
    scheme, _, key = (authorization or "").partition(" ")
    profile_id = accounts.authenticate_api_key(session, key=key.strip()) if scheme.lower() == "bearer" else None
    if profile_id is None:
        raise HTTPException(401, "Missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return profile_id


@app.exception_handler(DomainError)
def _domain_error(_request: Request, exc: DomainError) -> JSONResponse:
    return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=exc.status_code)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/campaigns")
def list_campaigns(
    session: Annotated[Session, Depends(get_session)], profile_id: Annotated[uuid.UUID, Depends(current_profile)],
    status: str | None = None, campaign_type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, object]:
    rows, total = campaigns.list_campaigns(session, profile_id=profile_id, status=status,
                                           campaign_type=campaign_type, limit=limit, offset=offset)
    return {"campaigns": [CampaignOut.model_validate(c) for c in rows], "total": total, "limit": limit,
            "offset": offset}
