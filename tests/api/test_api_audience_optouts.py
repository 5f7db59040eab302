"""Audience preview and opt-outs."""

from __future__ import annotations

import uuid
from typing import Any

from api_helpers import EMAIL_CONTENT, Tenant, count, opt_out
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from core.models import Campaign, OptOut

CONTENT: dict[str, dict[str, Any]] = {
    "email": EMAIL_CONTENT,
    "sms": {"message_template": "Hi {first_name|there}!"},
    "call": {"call_script": "Hello {first_name|there}"},
    "multi": {**EMAIL_CONTENT, "call_script": "Hello {first_name|there}",
              "steps": [{"channel": "email"}, {"channel": "call", "delay_hours": 24, "condition": "no_response"}]},
}


def test_preview_equals_what_selection_then_gives(client: TestClient, session: Session, tenant: Tenant,
                                                 subtests: Any) -> None:
    opt_out(session, tenant, "+12015551000", channel="all")
    opt_out(session, tenant, tenant.emails[-1], channel="email")  # the e-mail-only customer
    for method, criteria in (("email", {"last_contact_days": 180}), ("sms", {"last_contact_days": 180}),
                             ("call", {}), ("multi", {"status": ["Closed"], "service_type": "Color"}),
                             ("email", {"last_contact_days": 5000})):
        with subtests.test(method=method, criteria=criteria):
            body: dict[str, Any] = {"target_criteria": criteria, "outreach_method": method}
            if method == "multi":
                body["steps"] = CONTENT["multi"]["steps"]
            campaigns_before = count(session, Campaign, profile_id=tenant.profile_id)
            preview = client.post("/api/audience/preview", json=body, headers=tenant.headers)
            assert preview.status_code == 200, preview.text
            seen = preview.json()
            assert set(seen) == {"count", "suppressed", "suppressed_by", "sample", "by_state"}
            assert len(seen["sample"]) == min(seen["count"], 10)
            # a preview writes nothing
            assert count(session, Campaign, profile_id=tenant.profile_id) == campaigns_before

            created = client.post("/api/campaigns", json={"name": "Check", "campaign_type": "winback",
                                                          "outreach_method": method, "target_criteria": criteria,
                                                          **CONTENT[method]}, headers=tenant.headers)
            assert created.status_code == 201, created.text
            selected = client.post(f"/api/campaigns/{created.json()['id']}/select-recipients",
                                   headers=tenant.headers).json()
            assert (selected["selected"], selected["suppressed"]) == (seen["count"], seen["suppressed"])


def test_preview_sample_describes_customers(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    response = client.post("/api/audience/preview", headers=tenant.headers, json={
        "target_criteria": {"last_contact_days": 180}, "outreach_method": "email", "sample_size": 2})
    body = response.json()
    assert body["count"] == 5 and body["suppressed"] == 0 and len(body["sample"]) == 2
    member = body["sample"][0]
    assert set(member) == {"customer_id", "lead_id", "customer_name", "customer_phone", "customer_email", "status",
                           "service_type", "last_contact_at", "lead_count", "score"}
    assert uuid.UUID(member["lead_id"]) in tenant.lead_ids  # never another business's customer


BAD_PREVIEWS: list[tuple[dict[str, Any], str]] = [
    ({"target_criteria": {"status": "A status far longer than fifty characters, it cannot be"},
      "outreach_method": "email"}, "target_criteria.status"),
    ({"target_criteria": {"last_contact_days": -1}, "outreach_method": "email"}, "target_criteria.last_contact_days"),
    ({"target_criteria": {"filters": [{"field": "notes", "op": "gt", "value": 1}]}, "outreach_method": "sms"},
     "target_criteria.filters.0"),
    ({"target_criteria": {}, "outreach_method": "pigeon"}, "outreach_method"),
    ({"target_criteria": {}, "outreach_method": "multi"}, "body"),
    ({"target_criteria": {}}, "outreach_method"),
    ({"target_criteria": {}, "outreach_method": "email", "sample_size": 1000}, "sample_size"),
]


def test_preview_refuses_bad_criteria(client: TestClient, tenant: Tenant, subtests: Any) -> None:
    for body, field in BAD_PREVIEWS:
        with subtests.test(field=field):
            response = client.post("/api/audience/preview", json=body, headers=tenant.headers)
            assert response.status_code == 422, response.text
            assert field in [e["field"] for e in response.json()["errors"]]


def test_preview_refuses_another_business_agent(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    response = client.post("/api/audience/preview", headers=tenant.headers, json={
        "target_criteria": {"agent_id": str(other.agent_id)}, "outreach_method": "call"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "target_criteria.agent_id"
    own = client.post("/api/audience/preview", headers=tenant.headers, json={
        "target_criteria": {"agent_id": str(tenant.agent_id)}, "outreach_method": "call"})
    assert own.status_code == 200 and own.json()["count"] == 6


def test_opt_out_lifecycle(client: TestClient, session: Session, tenant: Tenant, other: Tenant) -> None:
    created = client.post("/api/opt-outs", headers=tenant.headers,
                          json={"contact": "(201) 555-1002", "channel": "sms", "reason": "Asked at the desk"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "contact", "channel", "source", "reason", "created_at"}
    assert (body["contact"], body["channel"], body["source"], body["reason"]) == (
        "+12015551002", "sms", "manual", "Asked at the desk")
    # recording it again keeps the first one
    again = client.post("/api/opt-outs", headers=tenant.headers, json={"contact": "+12015551002", "channel": "sms"})
    assert again.status_code == 201 and again.json()["id"] == body["id"]
    mail = client.post("/api/opt-outs", headers=tenant.headers, json={"contact": "Someone@Example.COM"})
    assert mail.json()["contact"] == "someone@example.com" and mail.json()["channel"] == "all"
    opt_out(session, other, "+14155550199")

    listed = client.get("/api/opt-outs", headers=tenant.headers)
    assert listed.status_code == 200
    page = listed.json()
    assert page["total"] == 2 and {o["id"] for o in page["opt_outs"]} == {body["id"], mail.json()["id"]}
    assert set(page["opt_outs"][0]) == {"id", "contact", "channel", "source", "reason", "created_at"}
    assert client.get("/api/opt-outs", params={"limit": 1}, headers=tenant.headers).json()["total"] == 2
    assert len(client.get("/api/opt-outs", params={"limit": 1, "offset": 1},
                          headers=tenant.headers).json()["opt_outs"]) == 1
    assert client.get("/api/opt-outs", params={"search": "example"}, headers=tenant.headers).json()["total"] == 1

    # an opted-out customer is suppressed from selection
    sms = client.post("/api/campaigns", headers=tenant.headers, json={
        "name": "Texts", "campaign_type": "promotional", "outreach_method": "sms",
        "target_criteria": {"last_contact_days": 180}, "message_template": "Hi!"}).json()
    assert client.post(f"/api/campaigns/{sms['id']}/select-recipients",
                       headers=tenant.headers).json()["suppressed"] == 1

    deleted = client.delete(f"/api/opt-outs/{body['id']}", headers=tenant.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.delete(f"/api/opt-outs/{body['id']}", headers=tenant.headers).status_code == 404
    assert count(session, OptOut, profile_id=tenant.profile_id) == 1


BAD_OPT_OUTS: list[tuple[dict[str, Any], str]] = [
    ({"contact": "not a contact", "channel": "sms"}, "contact"),
    ({"contact": "", "channel": "sms"}, "contact"),
    ({"contact": "+12015551002", "channel": "fax"}, "channel"),
    ({"channel": "sms"}, "contact"),
    ({"contact": "+12015551002", "source": "sms_stop"}, "source"),
    ({"contact": "a@b.co", "reason": "x" * 2001}, "reason"),
]


def test_opt_out_refuses_bad_input(client: TestClient, session: Session, tenant: Tenant, subtests: Any) -> None:
    for body, field in BAD_OPT_OUTS:
        with subtests.test(field=field, body=body):
            response = client.post("/api/opt-outs", json=body, headers=tenant.headers)
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["field"] == field
    assert count(session, OptOut, profile_id=tenant.profile_id) == 0
