"""Tenancy: a business never sees nor touches another business's objects through any route.

Routes are enumerated from the app itself, so a route added later without a
rule here makes this test fail instead of going unchecked.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from api_helpers import EMAIL_CONTENT, Tenant, api_routes, make_campaign, opt_out, recipients_of
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import api
from core import consents, dnc, webhook_endpoints
from core.config import Settings
from core.db import utcnow
from core.leads import add_lead
from core.models import Campaign, Consent, Customer, DncNumber, Lead, OptOut, Profile, WebhookEndpoint

SETTINGS = Settings(_env_file=None, secret_key="api-tenancy-tests")  # type: ignore[call-arg]
HOOK = "https://93.184.216.34/hook"  # a public address: no name to resolve, and never called here
DNC_NUMBER = "+12015559998"  # on the first business's do-not-call list
CONSENTED = "+12015551001"  # the first business's consent is for this number
ONLY_A_STATUS = "Tenant VIP"  # a lead status only the first business's leads carry
NEW_PHONES = ("+14155557001", "+14155557002")  # leads the second business sends (API, then file)

# a valid body for every route that takes one
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/campaigns"): {"name": "Mine", "campaign_type": "winback", "outreach_method": "email",
                                 **EMAIL_CONTENT},
    ("PATCH", "/api/campaigns/{id}"): {"name": "Taken over", "status": "cancelled"},
    ("POST", "/api/campaigns/{id}/recipients"): {"contacts": [{"customer_email": "intruder@example.com"}]},
    ("POST", "/api/audience/preview"): {"target_criteria": {}, "outreach_method": "email"},
    ("POST", "/api/opt-outs"): {"contact": "+12015551000", "channel": "all"},
    ("POST", "/api/consents"): {"contact": CONSENTED, "channel": "sms", "level": "express"},
    ("POST", "/api/dnc"): {"numbers": [DNC_NUMBER]},
    ("POST", "/api/webhook-endpoints"): {"url": HOOK, "events": ["*"]},
    ("POST", "/api/leads"): {"leads": [{"customer_name": "Walk In", "customer_phone": NEW_PHONES[0]}]},
    ("PATCH", "/api/profile"): {"business_name": "Studio Nine renamed"},
}
# a file for every route that takes one (multipart)
FILES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/leads/import"): {"file": ("leads.csv", f"customer_name,customer_phone\nFile Person,"
                                                         f"{NEW_PHONES[1]}\n".encode(), "text/csv")},
}
# which object of the first business a path's {id} (or {number}) names, by how the path starts
TARGETS = {"/api/campaigns/": "campaign", "/api/opt-outs/": "opt_out", "/api/consents/": "consent",
           "/api/customers/": "customer", "/api/webhook-endpoints/": "endpoint", "/api/dnc/": "dnc_number"}
LISTS = {("GET", "/api/campaigns"): "campaigns", ("GET", "/api/opt-outs"): "opt_outs",
         ("GET", "/api/consents"): "consents", ("GET", "/api/dnc"): "numbers",
         ("GET", "/api/webhook-endpoints"): "endpoints", ("GET", "/api/customers"): "customers"}
CREATES = {("POST", "/api/campaigns"), ("POST", "/api/opt-outs"), ("POST", "/api/audience/preview"),
           ("POST", "/api/consents"), ("POST", "/api/dnc"), ("POST", "/api/webhook-endpoints"),
           ("POST", "/api/leads"), ("POST", "/api/leads/import")}
# routes about the key's own business, with no id: each has its check in ``own_business``
OWN = {("GET", "/api/profile"), ("PATCH", "/api/profile"), ("GET", "/api/lead-statuses")}


@pytest.fixture
def app(engine: Engine) -> FastAPI:
    """The app with a SECRET_KEY of its own (endpoint secrets are stored encrypted)."""
    return api.create_app(engine=engine, settings=SETTINGS)


@dataclass(frozen=True)
class Owned:
    """The first business's objects, one of each kind a route can name."""

    campaign: uuid.UUID
    opt_out: uuid.UUID
    consent: uuid.UUID
    customer: uuid.UUID
    endpoint: uuid.UUID
    dnc_number: str

    def path_value(self, kind: str) -> str:
        """How the object is written in a URL (a number URL-encoded: %2B…)."""
        return quote(self.dnc_number, safe="") if kind == "dnc_number" else str(getattr(self, kind))


def own_objects(client: TestClient, session: Session, tenant: Tenant) -> Owned:
    """Give the first business one object of each kind (committed)."""
    add_lead(session, profile_id=tenant.profile_id, customer_name="Vera Vip", customer_phone="+12015554000",
             status=ONLY_A_STATUS, created_at=utcnow() - timedelta(days=1))
    session.commit()
    campaign_id = make_campaign(session, tenant, agent_id=str(tenant.agent_id)).id
    assert client.post(f"/api/campaigns/{campaign_id}/start", headers=tenant.headers).status_code == 200
    opt_out_id = opt_out(session, tenant, "someone@example.com", channel="email").id
    consent = consents.record_consent(session, profile_id=tenant.profile_id, contact=CONSENTED, channel="sms",
                                      level="express_written")
    dnc.add_numbers(session, profile_id=tenant.profile_id, numbers=[DNC_NUMBER], source="internal")
    endpoint, _secret = webhook_endpoints.create_endpoint(session, profile_id=tenant.profile_id, url=HOOK,
                                                          events=["*"], settings=SETTINGS)
    customer_id = session.scalars(select(Customer.id).where(Customer.profile_id == tenant.profile_id)
                                  .order_by(Customer.contact_key)).first()
    assert customer_id is not None
    owned = Owned(campaign=campaign_id, opt_out=opt_out_id, consent=consent.id, customer=customer_id,
                  endpoint=endpoint.id, dnc_number=DNC_NUMBER)
    session.commit()
    return owned


def snapshot(session: Session, owned: Owned, tenant: Tenant) -> dict[str, Any]:
    """What the first business's objects look like in the database now."""
    session.rollback()
    row = session.get(Campaign, owned.campaign, populate_existing=True)
    kept = session.get(OptOut, owned.opt_out, populate_existing=True)
    consent = session.get(Consent, owned.consent, populate_existing=True)
    customer = session.get(Customer, owned.customer, populate_existing=True)
    profile = session.get(Profile, tenant.profile_id, populate_existing=True)
    business = tenant.profile_id
    state: dict[str, Any] = {
        "campaign": None if row is None else (row.name, row.status, row.updated_at),
        "opt_out": kept is not None,
        "consent": None if consent is None else (consent.revoked_at, consent.profile_id),
        "customer": None if customer is None else (customer.customer_name, customer.lead_count, customer.profile_id),
        "profile": None if profile is None else (profile.business_name, profile.updated_at),
        "dnc": sorted(session.scalars(select(DncNumber.number).where(DncNumber.profile_id == business))),
        "endpoints": sorted(session.scalars(select(WebhookEndpoint.id).where(WebhookEndpoint.profile_id == business))),
        "leads": session.scalar(select(func.count()).select_from(Lead).where(Lead.profile_id == business)),
        "customers": session.scalar(select(func.count()).select_from(Customer).where(Customer.profile_id == business)),
    }
    session.rollback()
    state["recipients"] = sorted(r.contact_key for r in recipients_of(session, owned.campaign))
    return state


def leads_of(session: Session, tenant: Tenant) -> int:
    session.rollback()
    try:
        return int(session.scalar(select(func.count()).select_from(Lead).where(Lead.profile_id == tenant.profile_id))
                   or 0)
    finally:
        session.rollback()


def own_business(method: str, path: str, client: TestClient, session: Session, tenant: Tenant, other: Tenant,
                 kwargs: dict[str, Any]) -> None:
    """A route without an id acts on the key's own business, and only on it."""
    response = client.request(method, path, headers=other.headers, **kwargs)
    assert response.status_code == 200, (method, path, response.text)
    if path == "/api/profile":
        assert response.json()["id"] == str(other.profile_id), (method, path)
        name = BODIES[(method, path)]["business_name"] if method == "PATCH" else "Studio Nine"
        assert response.json()["business_name"] == name, (method, path)
        own = client.get(path, headers=tenant.headers).json()
        assert (own["id"], own["business_name"]) == (str(tenant.profile_id), "Bella Vista"), (method, path)
    elif path == "/api/lead-statuses":
        seen = {s["status"]: s for s in response.json()["statuses"]}
        own = {s["status"]: s for s in client.get(path, headers=tenant.headers).json()["statuses"]}
        assert ONLY_A_STATUS in own and ONLY_A_STATUS not in seen, (seen, own)
        assert sum(s["leads"] for s in seen.values()) == leads_of(session, other), seen
        assert sum(s["leads"] for s in own.values()) == leads_of(session, tenant), own
    else:
        raise AssertionError(f"{method} {path}: no check in own_business")


def test_every_route_keeps_businesses_apart(app: FastAPI, client: TestClient, session: Session, tenant: Tenant,
                                           other: Tenant) -> None:
    owned = own_objects(client, session, tenant)
    before = snapshot(session, owned, tenant)
    schema = app.openapi()["paths"]
    routes = api_routes(app)
    assert len(routes) >= 37
    unclassified = []

    for method, path in routes:
        takes_body = "requestBody" in schema[path][method.lower()]
        body, files = BODIES.get((method, path)), FILES.get((method, path))
        if takes_body and body is None and files is None:
            unclassified.append(f"{method} {path}: no body in BODIES (or file in FILES)")
            continue
        kwargs: dict[str, Any] = {"files": files} if files else {"json": body} if takes_body else {}
        param = re.search(r"\{\w+\}", path)

        if param is not None:
            prefix = next((p for p in TARGETS if path.startswith(p)), None)
            if prefix is None:
                unclassified.append(f"{method} {path}: which object does {param.group(0)} name?")
                continue
            url = path.replace(param.group(0), owned.path_value(TARGETS[prefix]))
            response = client.request(method, url, headers=other.headers, **kwargs)
            assert response.status_code == 404, (method, path, response.status_code, response.text)
            assert response.json()["detail"].startswith("No such"), (method, path, response.text)
            if method == "GET":  # the id is right: its owner gets it
                assert client.get(url, headers=tenant.headers).status_code == 200, (method, path)
        elif (method, path) in LISTS:
            key = LISTS[(method, path)]
            response = client.request(method, path, headers=other.headers)
            seen = response.json()
            own = client.request(method, path, headers=tenant.headers).json()
            assert {row["id"] for row in seen[key]}.isdisjoint({row["id"] for row in own[key]}), path
            assert own[key], path  # the owner does see rows here: the check above is not vacuous
            assert not [e for e in tenant.emails if e in response.text], path
        elif (method, path) in CREATES:
            response = client.request(method, path, headers=other.headers, **kwargs)
            assert response.status_code in (200, 201), (method, path, response.text)
        elif (method, path) in OWN:
            own_business(method, path, client, session, tenant, other, kwargs)
        else:
            unclassified.append(f"{method} {path}: no tenancy rule")
    assert unclassified == []

    # nothing of the first business's changed; what the second business created or counted is its own
    assert snapshot(session, owned, tenant) == before
    mine = client.get("/api/campaigns", headers=tenant.headers).json()
    assert [c["id"] for c in mine["campaigns"]] == [str(owned.campaign)]
    theirs = client.get("/api/opt-outs", headers=other.headers).json()
    assert [o["contact"] for o in theirs["opt_outs"]] == ["+12015551000"]
    preview = client.post("/api/audience/preview", json=BODIES[("POST", "/api/audience/preview")],
                          headers=other.headers).json()
    assert preview["count"] == 6  # its own six customers with an e-mail address, none of the first business's
    assert {m["customer_email"] for m in preview["sample"]} <= set(other.emails)

    def listed(tenant_: Tenant, path: str, key: str, field: str) -> list[Any]:
        return [row[field] for row in client.get(path, headers=tenant_.headers).json()[key]]

    assert listed(tenant, "/api/consents", "consents", "id") == [str(owned.consent)]
    assert listed(other, "/api/consents", "consents", "contact") == [CONSENTED]
    assert listed(tenant, "/api/dnc", "numbers", "number") == [DNC_NUMBER]
    assert listed(other, "/api/dnc", "numbers", "number") == [DNC_NUMBER]  # its own entry of the same number
    assert listed(tenant, "/api/webhook-endpoints", "endpoints", "id") == [str(owned.endpoint)]
    their_endpoints = listed(other, "/api/webhook-endpoints", "endpoints", "id")
    assert len(their_endpoints) == 1 and their_endpoints != [str(owned.endpoint)]
    for phone in NEW_PHONES:
        assert listed(other, f"/api/customers?search={quote(phone)}", "customers", "customer_phone") == [phone]
        assert listed(tenant, f"/api/customers?search={quote(phone)}", "customers", "customer_phone") == []


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
        ("POST", "/api/leads", {"leads": [{"customer_phone": NEW_PHONES[0], "agent_id": str(tenant.agent_id)}]}),
    ):
        response = client.request(method, url, json=body, headers=other.headers)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["errors"][0]["field"].endswith("agent_id")
