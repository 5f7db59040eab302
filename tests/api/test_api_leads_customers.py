"""Leads pushed by other systems, files over HTTP, the business's statuses and its customers — and who
selection leaves out — through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from api_helpers import Tenant, count, make_campaign
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

import api_edge
from core.channels.base import OutboundMessage
from core.config import get_settings
from core.db import utcnow
from core.models import (
    CampaignRecipient,
    Consent,
    Customer,
    Lead,
    OptOut,
    OutreachAttempt,
    Profile,
    WebhookEndpoint,
    WebhookEvent,
)
from core.outbound import attempt_detail


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"] and isinstance(body["errors"], list)
    return body


def leads_of(session: Session, tenant: Tenant) -> int:
    return count(session, Lead, profile_id=tenant.profile_id)


# --- POST /api/leads ----------------------------------------------------------------------------------


def test_leads_are_recorded_with_their_customers(client: TestClient, session: Session, tenant: Tenant) -> None:
    response = client.post("/api/leads", headers=tenant.headers, json={"leads": [
        {"customer_name": "Maria Lopez", "customer_phone": "(201) 555-7001", "customer_email": "Maria@Example.com",
         "status": "Booked", "service_type": "Color", "created_at": "2026-06-01T09:30:00-04:00",
         "notes": "Saturday", "agent_id": str(tenant.agent_id), "source": "hubspot"},
        {"customer_email": "only@example.com"}]})
    assert response.status_code == 201, response.text
    assert response.json() == {"imported": 2, "duplicates": 0, "merged": [], "rejected": []}
    session.rollback()
    maria = session.scalars(select(Lead).where(Lead.profile_id == tenant.profile_id,
                                               Lead.customer_phone == "+12015557001")).one()
    assert (maria.status, maria.source, maria.agent_id, maria.customer_email, maria.created_at.isoformat()) == (
        "Booked", "hubspot", tenant.agent_id, "maria@example.com", "2026-06-01T13:30:00+00:00")
    only = session.scalars(select(Lead).where(Lead.customer_email == "only@example.com")).one()
    assert (only.status, only.source) == ("New", "api")
    customer = session.scalars(select(Customer).where(Customer.contact_key == "+12015557001")).one()
    assert (customer.customer_name, customer.last_status, customer.lead_count) == ("Maria Lopez", "Booked", 1)
    session.rollback()  # on SQLite an open transaction holds the lock the app needs
    again = client.post("/api/leads", headers=tenant.headers, json={"leads": [
        {"customer_name": "Maria Lopez", "customer_phone": "+12015557001", "customer_email": "maria@example.com",
         "status": "Booked", "service_type": "Color", "created_at": "2026-06-01T13:30:00Z", "notes": "Saturday",
         "agent_id": str(tenant.agent_id), "source": "hubspot"}]})
    assert again.json()["duplicates"] == 1 and again.json()["imported"] == 0  # the same lead written another way
    session.rollback()


def test_all_or_nothing_names_the_index_and_the_field(client: TestClient, session: Session, tenant: Tenant,
                                                      other: Tenant) -> None:
    before = leads_of(session, tenant)
    body = {"leads": [{"customer_phone": "+12015557002"},
                      {"customer_phone": "555", "status": "x" * 51},
                      {"customer_email": "bo@example.com", "agent_id": str(other.agent_id)},
                      {"customer_email": "cy@example.com", "source": "campaign"},
                      {"customer_name": "Nobody"},
                      {"customer_email": "dee@example.com", "created_at": "next week"}]}
    refused = error(client.post("/api/leads", headers=tenant.headers, json=body), 422)
    fields = [e["field"] for e in refused["errors"]]
    assert fields == ["leads.1.customer_phone", "leads.1.status", "leads.2.agent_id", "leads.3.source",
                      "leads.4.customer_phone", "leads.5.created_at"]
    assert "leads.1.customer_phone: '555' is not a valid phone number" in refused["detail"]
    assert leads_of(session, tenant) == before  # nothing of the request was kept

    kept = client.post("/api/leads", headers=tenant.headers, json={**body, "skip_invalid": True})
    assert kept.status_code == 201, kept.text
    report = kept.json()
    assert report["imported"] == 1 and [r["index"] for r in report["rejected"]] == [1, 2, 3, 4, 5]
    assert report["rejected"][0]["error"].startswith("customer_phone: '555' is not a valid phone number")
    assert "status: longer than 50 characters" in report["rejected"][0]["error"]
    assert leads_of(session, tenant) == before + 1


def test_too_many_leads_or_too_large_a_body_is_413(client: TestClient, session: Session, tenant: Tenant,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    lead = {"customer_email": "x@example.com"}
    too_many = error(client.post("/api/leads", headers=tenant.headers, json={"leads": [lead] * 10_001}), 413)
    assert "at most 10,000 leads" in too_many["detail"]
    # these two routes have a limit of their own, above the rest of the API's
    monkeypatch.setenv("API_MAX_BODY_BYTES", "1000")
    get_settings.cache_clear()
    monkeypatch.setattr(api_edge, "BULK_MAX_BODY_BYTES", 20_000)
    try:
        body = {"leads": [{"customer_email": f"c{i}@example.com", "notes": "n" * 20} for i in range(60)]}
        assert 1000 < len(json.dumps(body)) < 20_000
        assert client.post("/api/leads", headers=tenant.headers, json=body).status_code == 201
        error(client.post("/api/audience/preview", headers=tenant.headers, json={
            "outreach_method": "email", "target_criteria": {"filters": [
                {"field": "notes", "op": "contains", "value": "n" * 1200}]}}), 413)
        big = error(client.post("/api/leads", headers=tenant.headers, json={"leads": [
            {"customer_email": f"c{i}@example.com", "notes": "n" * 400} for i in range(60)]}), 413)
        assert "larger than 20000 bytes" in big["detail"]
    finally:
        get_settings.cache_clear()


def test_a_pushed_lead_converts_the_recipient_and_counts_as_a_return(client: TestClient, session: Session,
                                                                     tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant, method="email")
    selected = client.post(f"/api/campaigns/{campaign.id}/select-recipients", headers=tenant.headers).json()
    assert selected["selected"] == 5 and selected["holdout"] == 0
    assert selected["suppressed_by"] == {"opted_out": 0, "no_consent": 0, "dnc": 0, "no_contact": 1}
    assert client.post(f"/api/campaigns/{campaign.id}/start", headers=tenant.headers).status_code == 200
    session.rollback()
    reached = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign.id)
                              .order_by(CampaignRecipient.contact_key)).first()
    session.execute(update(CampaignRecipient).where(CampaignRecipient.id == reached.id).values(sent_at=utcnow()))
    session.add(WebhookEndpoint(id=uuid.uuid4(), profile_id=tenant.profile_id, url="https://hooks.example/in",
                                events=["customer.returned"], secret="x"))
    session.commit()
    response = client.post("/api/leads", headers=tenant.headers, json={"leads": [
        {"customer_email": reached.customer_email, "status": "Booked",
         "created_at": (utcnow() + timedelta(hours=1)).isoformat()}]})
    assert response.status_code == 201, response.text
    session.rollback()
    session.expire_all()
    after = session.get(CampaignRecipient, reached.id)
    assert after.converted and after.returned_at is not None
    (event,) = session.scalars(select(WebhookEvent).where(WebhookEvent.profile_id == tenant.profile_id,
                                                          WebhookEvent.type == "customer.returned")).all()
    assert event.data["recipient_id"] == str(reached.id) and event.data["holdout"] is False
    session.rollback()


# --- POST /api/leads/import ------------------------------------------------------------------------------

EXPORT = ("\ufeffFull Name;Mobile No;E-mail Address;Stage;Visit Date\n"
          "Ana Li;(201) 555-7101;ana@example.com;Won;3/14/2025\n"
          "Bo Kim;201-555-7102;;No-show;12/1/2025 3:30 PM\n")


def test_a_file_over_http(client: TestClient, session: Session, tenant: Tenant) -> None:
    response = client.post("/api/leads/import", headers=tenant.headers,
                           files={"file": ("export.csv", EXPORT.encode(), "text/csv")},
                           data={"mapping": json.dumps({"customer_phone": "Mobile No"})})
    assert response.status_code == 201, response.text
    assert response.json() == {"imported": 2, "duplicates": 0, "merged": [], "rejected": []}
    session.rollback()
    ana = session.scalars(select(Lead).where(Lead.customer_phone == "+12015557101")).one()
    assert (ana.customer_name, ana.status, ana.created_at.date().isoformat()) == ("Ana Li", "Won", "2025-03-14")
    session.rollback()

    bad = EXPORT + "Cy;12;;Lost;3/14/2025\n"
    mapping = {"mapping": json.dumps({"customer_phone": "Mobile No"})}
    refused = error(client.post("/api/leads/import", headers=tenant.headers, data=mapping,
                                files={"file": ("export.csv", bad.encode(), "text/csv")}), 422)
    assert [e["field"] for e in refused["errors"]] == ["line.4"]
    kept = client.post("/api/leads/import", headers=tenant.headers, files={"file": ("e.csv", bad.encode())},
                       data={"skip_invalid": "true", **mapping})
    assert kept.status_code == 201 and kept.json()["duplicates"] == 2 and kept.json()["rejected"][0]["line"] == 4


@pytest.mark.parametrize(("kwargs", "status", "field"), [
    ({"files": {"file": ("e.csv", b"")}}, 422, "file"),
    ({"files": {"file": ("e.csv", b"PK\x03\x04" + b"\x00" * 50)}}, 422, "file"),
    ({"files": {"file": ("e.csv", b"Phone\n2015557101\n")}, "data": {"mapping": "{bad"}}, 422, "mapping"),
    ({"files": {"file": ("e.csv", b"Phone\n2015557101\n")}, "data": {"mapping": '{"phone_no": "Phone"}'}},
     422, "mapping"),
    ({"files": {"attachment": ("e.csv", b"Phone\n2015557101\n")}, "data": {"skip_invalid": "true"}}, 422, "file"),
    ({"data": {"skip_invalid": "true"}}, 415, None),  # a form without a file is not multipart
    ({"content": b"Phone\n2015557101\n", "headers": {"Content-Type": "text/csv"}}, 415, None),
    # a body that is not the multipart its header announces (found by the schema fuzzer)
    ({"content": b"--b0\r\nFalse--b0--\r\n", "headers": {"Content-Type": "multipart/form-data; boundary=b0"}},
     422, "file"),
])
def test_a_file_that_cannot_be_taken(client: TestClient, session: Session, tenant: Tenant, kwargs: dict[str, Any],
                                     status: int, field: str | None) -> None:
    kwargs = dict(kwargs)  # the same cases run on each database: leave them as they are
    headers = {**tenant.headers, **kwargs.pop("headers", {})}
    body = error(client.post("/api/leads/import", headers=headers, **kwargs), status)
    if field:
        assert body["errors"][0]["field"] == field
    assert leads_of(session, tenant) == len(tenant.lead_ids)


# --- statuses and customers -------------------------------------------------------------------------------


def test_lead_statuses(client: TestClient, session: Session, tenant: Tenant, other: Tenant) -> None:
    client.post("/api/leads", headers=tenant.headers, json={"leads": [
        {"customer_email": "a@example.com", "status": "booked"},
        {"customer_email": "b@example.com", "status": "Booked"},
        {"customer_email": "c@example.com", "status": " Booked"},
        {"customer_email": "d@example.com", "status": "Booked"}]})
    statuses = client.get("/api/lead-statuses", headers=tenant.headers).json()["statuses"]
    # the most customers first; case and spaces grouped, shown as most often written
    assert statuses == [{"status": "Closed", "customers": 7, "leads": 7},
                        {"status": "Booked", "customers": 4, "leads": 4}]
    theirs = client.get("/api/lead-statuses", headers=other.headers).json()["statuses"]
    assert theirs == [{"status": "Closed", "customers": 7, "leads": 7}]


def test_customers_are_listed_searched_and_paged(client: TestClient, session: Session, tenant: Tenant,
                                                 other: Tenant) -> None:
    page = client.get("/api/customers", headers=tenant.headers, params={"limit": 3}).json()
    assert page["total"] == 7 and page["limit"] == 3 and len(page["customers"]) == 3
    assert set(page["customers"][0]) == {"id", "customer_name", "customer_phone", "customer_email",
                                         "last_contact_at", "last_status", "lead_count", "score"}
    times = [c["last_contact_at"] for c in client.get("/api/customers", headers=tenant.headers).json()["customers"]]
    assert times == sorted(times, reverse=True)  # most recently in touch first
    rest = client.get("/api/customers", headers=tenant.headers, params={"limit": 3, "offset": 6}).json()
    assert len(rest["customers"]) == 1
    found = client.get("/api/customers", headers=tenant.headers, params={"search": "customer 2 of"}).json()
    assert found["total"] == 1 and found["customers"][0]["customer_name"] == "Customer 2 of Bella Vista"
    assert client.get("/api/customers", headers=tenant.headers, params={"status": " closed "}).json()["total"] == 7
    assert client.get("/api/customers", headers=tenant.headers, params={"status": "Lost"}).json()["total"] == 0
    mine = {c["id"] for c in client.get("/api/customers", headers=tenant.headers).json()["customers"]}
    theirs = {c["id"] for c in client.get("/api/customers", headers=other.headers).json()["customers"]}
    assert mine and theirs and not mine & theirs
    assert client.get("/api/customers", headers=other.headers, params={"search": "Bella"}).json()["total"] == 0


def test_a_customer_with_everything_that_happened(client: TestClient, session: Session, tenant: Tenant,
                                                  other: Tenant) -> None:
    campaign = make_campaign(session, tenant, method="email")
    client.post(f"/api/campaigns/{campaign.id}/select-recipients", headers=tenant.headers)
    session.rollback()
    recipient = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign.id)
                                .order_by(CampaignRecipient.contact_key)).first()
    message = OutboundMessage(channel="email", to=recipient.customer_email, idempotency_key="k", step=0,
                              profile_id=tenant.profile_id, business_name="Bella Vista", campaign_id=campaign.id,
                              recipient_id=recipient.id, subject="We miss you, Customer",
                              text="Hi Customer, come back for 20% off.")
    session.add(OutreachAttempt(id=uuid.uuid4(), profile_id=tenant.profile_id, campaign_id=campaign.id,
                                recipient_id=recipient.id, step=0, attempt_no=1, channel="email", provider="resend",
                                idempotency_key="k", outcome="accepted", provider_message_id="re_1",
                                detail=attempt_detail(message, {"subject": "We miss you, Customer",
                                                                "text": "Hi Customer, come back for 20% off."}),
                                started_at=utcnow()))
    session.add(OptOut(id=uuid.uuid4(), profile_id=tenant.profile_id, contact=recipient.customer_phone, channel="sms",
                       source="sms_stop"))
    session.add(Consent(id=uuid.uuid4(), profile_id=tenant.profile_id, contact=recipient.customer_phone,
                        channel="call", level="express", source="call", captured_at=utcnow()))
    customer_id = session.scalars(select(Customer.id).where(Customer.profile_id == tenant.profile_id,
                                                            Customer.contact_key == recipient.contact_key)).one()
    session.commit()

    body = client.get(f"/api/customers/{customer_id}", headers=tenant.headers).json()
    assert body["id"] == str(customer_id) and body["lead_count"] == 1 and len(body["leads"]) == 1
    (in_campaign,) = body["campaigns"]
    assert (in_campaign["campaign_id"], in_campaign["name"], in_campaign["status"]) == (
        str(campaign.id), campaign.name, "pending")
    (sent,) = in_campaign["messages"]
    assert (sent["channel"], sent["subject"], sent["body"], sent["provider"], sent["outcome"]) == (
        "email", "We miss you, Customer", "Hi Customer, come back for 20% off.", "resend", "accepted")
    assert [o["channel"] for o in body["opt_outs"]] == ["sms"]
    assert [(c["channel"], c["level"]) for c in body["consents"]] == [("call", "express")]
    # another business's customer does not exist for this key, and an unknown id neither
    error(client.get(f"/api/customers/{customer_id}", headers=other.headers), 404)
    error(client.get(f"/api/customers/{uuid.uuid4()}", headers=tenant.headers), 404)


def test_selection_says_who_was_left_out_and_why(client: TestClient, session: Session, tenant: Tenant) -> None:
    session.execute(update(Profile).where(Profile.id == tenant.profile_id).values(consent_policy="us_tcpa"))
    session.add(Consent(id=uuid.uuid4(), profile_id=tenant.profile_id, contact="+12015551000", channel="sms",
                        level="express_written", source="manual", captured_at=utcnow()))
    session.commit()
    preview = client.post("/api/audience/preview", headers=tenant.headers, json={
        "target_criteria": {"last_contact_days": 180}, "outreach_method": "sms", "campaign_type": "winback"}).json()
    assert (preview["count"], preview["suppressed"]) == (1, 4)
    assert preview["suppressed_by"] == {"opted_out": 0, "no_consent": 4, "dnc": 0, "no_contact": 1}
    campaign = make_campaign(session, tenant, method="sms")
    selected = client.post(f"/api/campaigns/{campaign.id}/select-recipients", headers=tenant.headers).json()
    assert (selected["selected"], selected["suppressed"], selected["suppressed_by"]) == (
        1, 4, preview["suppressed_by"])
    assert selected["total_recipients"] == 1
