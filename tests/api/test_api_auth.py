"""Authentication: API keys as Bearer tokens; missing, wrong and revoked keys are 401."""

from __future__ import annotations

import uuid
from typing import Any

from api_helpers import Tenant, api_routes
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

import api
from core import accounts
from core.models import ApiKey


def concrete(path: str) -> str:
    return path.replace("{id}", str(uuid.uuid4()))


def assert_401(response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert "API key" in body["detail"] and body["errors"] == []


def test_health_needs_no_key(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_every_api_route_needs_a_key(app: FastAPI, client: TestClient) -> None:
    routes = api_routes(app)
    assert len(routes) >= 16
    for method, path in routes:
        assert_401(client.request(method, concrete(path)))


def test_wrong_keys_are_refused(client: TestClient, tenant: Tenant, subtests: Any) -> None:
    for header in ("Bearer cx_not-a-real-key", "Bearer ", "Basic dXNlcjpwYXNz", "cx_only-the-key",
                   "Bearer " + "x" * 5000, f"Bearer {tenant.key[:-1]}", f"Token {tenant.key}"):
        with subtests.test(header=header[:30]):
            assert_401(client.get("/api/campaigns", headers={"Authorization": header}))


def test_the_key_of_a_business_works_and_is_marked_used(client: TestClient, session: Session,
                                                        tenant: Tenant) -> None:
    response = client.get("/api/campaigns", headers=tenant.headers)
    assert response.status_code == 200
    session.rollback()
    used = session.scalars(select(ApiKey.last_used_at).where(ApiKey.profile_id == tenant.profile_id)).all()
    assert any(u is not None for u in used)


def test_a_revoked_key_is_refused_at_once(client: TestClient, session: Session, tenant: Tenant) -> None:
    row, key = accounts.create_api_key(session, profile_id=tenant.profile_id, name="integration")
    session.commit()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/campaigns", headers=headers).status_code == 200
    accounts.revoke_api_key(session, profile_id=tenant.profile_id, key_id=row.id)
    session.commit()
    assert_401(client.get("/api/campaigns", headers=headers))
    # the business's other key is untouched
    assert client.get("/api/campaigns", headers=tenant.headers).status_code == 200


def test_the_scheme_is_case_insensitive(client: TestClient, tenant: Tenant) -> None:
    assert client.get("/api/campaigns", headers={"Authorization": f"bearer {tenant.key}"}).status_code == 200


def test_a_database_that_does_not_answer_is_503_not_500() -> None:
    # nothing listens on port 9: the connection is refused at once
    down = api.create_app(database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    with TestClient(down) as client:
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json() == {"status": "unavailable", "database": "error"}
        response = client.get("/api/campaigns", headers={"Authorization": "Bearer cx_anything"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5" and "try again" in response.json()["detail"]
