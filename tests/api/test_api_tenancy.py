"""Tenancy: a business never sees nor touches another business's objects through any route.

Routes are enumerated from the app itself, so a route added later without a
rule here makes this test fail instead of going unchecked.
"""

from __future__ import annotations

import uuid
from typing import Any

from api_helpers import EMAIL_CONTENT, Tenant, api_routes, make_campaign, opt_out, recipients_of
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from core.models import Campaign, OptOut

# a valid body for every route that takes one
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/campaigns"): {"name": "Mine", "campaign_type": "winback", "outreach_method": "email",
                                 **EMAIL_CONTENT},
    ("PATCH", "/api/campaigns/{id}"): {"name": "Taken over", "status": "cancelled"},
    ("POST", "/api/campaigns/{id}/recipients"): {"contacts": [{"customer_email": "intruder@example.com"}]},
    ("POST", "/api/audience/preview"): {"target_criteria": {}, "outreach_method": "email"},
    ("POST", "/api/opt-outs"): {"contact": "+12015551000", "channel": "all"},
}
LISTS = {("GET", "/api/campaigns"): "campaigns", ("GET", "/api/opt-outs"): "opt_outs"}
CREATES = {("POST", "/api/campaigns"), ("POST", "/api/opt-outs"), ("POST", "/api/audience/preview")}


def snapshot(session: Session, campaign_id: uuid.UUID, opt_out_id: uuid.UUID) -> dict[str, Any]:
    """What the first business's objects look like in the database now."""
    session.rollback()
    row = session.get(Campaign, campaign_id, populate_existing=True)
    kept = session.get(OptOut, opt_out_id, populate_existing=True)
    state: dict[str, Any] = {"campaign": None if row is None else (row.name, row.status, row.updated_at),
                             "opt_out": kept is not None}
    session.rollback()
    state["recipients"] = sorted(r.contact_key for r in recipients_of(session, campaign_id))
    return state


def test_every_route_keeps_businesses_apart(app: FastAPI, client: TestClient, session: Session, tenant: Tenant,
                                           other: Tenant) -> None:
    campaign_id = make_campaign(session, tenant, agent_id=str(tenant.agent_id)).id
    assert client.post(f"/api/campaigns/{campaign_id}/start", headers=tenant.headers).status_code == 200
    opt_out_id = opt_out(session, tenant, "someone@example.com", channel="email").id
    before = snapshot(session, campaign_id, opt_out_id)
    schema = app.openapi()["paths"]
    routes = api_routes(app)
    assert len(routes) >= 16
    unclassified = []

    for method, path in routes:
        takes_body = "requestBody" in schema[path][method.lower()]
        body = BODIES.get((method, path))
        if takes_body and body is None:
            unclassified.append(f"{method} {path}: no body in BODIES")
            continue
        kwargs: dict[str, Any] = {"json": body} if takes_body else {}

        if "{id}" in path:
            if path.startswith("/api/campaigns/"):
                target = campaign_id
            elif path.startswith("/api/opt-outs/"):
                target = opt_out_id
            else:
                unclassified.append(f"{method} {path}: which object does {{id}} name?")
                continue
            url = path.replace("{id}", str(target))
            response = client.request(method, url, headers=other.headers, **kwargs)
            assert response.status_code == 404, (method, path, response.status_code, response.text)
            assert response.json()["detail"].startswith("No such")
            if method == "GET":  # the id is right: its owner gets it
                assert client.get(url, headers=tenant.headers).status_code == 200, (method, path)
        elif (method, path) in LISTS:
            key = LISTS[(method, path)]
            seen = client.request(method, path, headers=other.headers).json()
            own = client.request(method, path, headers=tenant.headers).json()
            assert {row["id"] for row in seen[key]}.isdisjoint({row["id"] for row in own[key]}), path
            assert own[key], path  # the owner does see rows here: the check above is not vacuous
        elif (method, path) in CREATES:
            response = client.request(method, path, headers=other.headers, **kwargs)
            assert response.status_code in (200, 201), (method, path, response.text)
        else:
            unclassified.append(f"{method} {path}: no tenancy rule")
    assert unclassified == []

    # what the second business created or counted is its own
    assert snapshot(session, campaign_id, opt_out_id) == before
    mine = client.get("/api/campaigns", headers=tenant.headers).json()
    assert [c["id"] for c in mine["campaigns"]] == [str(campaign_id)]
    theirs = client.get("/api/opt-outs", headers=other.headers).json()
    assert [o["contact"] for o in theirs["opt_outs"]] == ["+12015551000"]
    preview = client.post("/api/audience/preview", json=BODIES[("POST", "/api/audience/preview")],
                          headers=other.headers).json()
    assert preview["count"] == 6  # its own six customers with an e-mail address, none of the first business's
    assert {m["customer_email"] for m in preview["sample"]} <= set(other.emails)


def test_another_business_agent_is_invalid_not_found(client: TestClient, session: Session, tenant: Tenant,
                                                     other: Tenant) -> None:
    campaign = make_campaign(session, other)
    for method, url, body in (
        ("POST", "/api/campaigns", {**BODIES[("POST", "/api/campaigns")], "agent_id": str(tenant.agent_id)}),
        ("PATCH", f"/api/campaigns/{campaign.id}", {"agent_id": str(tenant.agent_id)}),
        ("POST", "/api/audience/preview", {"target_criteria": {"agent_id": str(tenant.agent_id)},
                                           "outreach_method": "call"}),
        ("POST", "/api/campaigns", {**BODIES[("POST", "/api/campaigns")],
                                    "target_criteria": {"agent_id": str(tenant.agent_id)}}),
    ):
        response = client.request(method, url, json=body, headers=other.headers)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["errors"][0]["field"].endswith("agent_id")
