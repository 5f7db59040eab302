"""/api/consents, /api/dnc and /api/campaigns/{id}/compliance: the contract of DESIGN §10, refusals
that name the field, and one business never reaching another's records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from api_helpers import Tenant, count, make_campaign, recipients_of
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from core.models import Campaign, CampaignRecipient, Consent, DncNumber, Profile


def test_consent_lifecycle(client: TestClient, session: Session, tenant: Tenant, other: Tenant) -> None:
    captured = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    created = client.post("/api/consents", headers=tenant.headers, json={
        "contact": "(201) 555-1000", "channel": "sms", "level": "express_written", "source": "web_form",
        "proof": "Booking form", "captured_at": captured.isoformat()})
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "contact", "channel", "level", "source", "proof", "captured_at", "revoked_at",
                         "created_at"}
    assert body["contact"] == "+12015551000" and body["revoked_at"] is None
    assert datetime.fromisoformat(body["captured_at"].replace("Z", "+00:00")) == captured
    minimal = client.post("/api/consents", headers=tenant.headers,
                          json={"contact": "Ann@Example.com", "channel": "all", "level": "express"})
    assert minimal.status_code == 201 and minimal.json()["source"] == "api"
    assert minimal.json()["contact"] == "ann@example.com"
    client.post("/api/consents", headers=other.headers,
                json={"contact": "+12015551000", "channel": "call", "level": "express"})

    page = client.get("/api/consents", headers=tenant.headers).json()
    assert page["total"] == 2 and {c["id"] for c in page["consents"]} == {body["id"], minimal.json()["id"]}
    assert client.get("/api/consents", params={"search": "201 555"}, headers=tenant.headers).json()["total"] == 1
    assert len(client.get("/api/consents", params={"limit": 1, "offset": 1},
                          headers=tenant.headers).json()["consents"]) == 1

    assert client.delete(f"/api/consents/{body['id']}", headers=other.headers).status_code == 404
    assert client.delete(f"/api/consents/{body['id']}", headers=tenant.headers).status_code == 204
    assert client.delete(f"/api/consents/{body['id']}", headers=tenant.headers).status_code == 204  # idempotent
    kept = [c for c in client.get("/api/consents", headers=tenant.headers).json()["consents"] if c["id"] == body["id"]]
    assert kept and kept[0]["revoked_at"] is not None
    assert client.delete(f"/api/consents/{uuid.uuid4()}", headers=tenant.headers).status_code == 404
    assert count(session, Consent) == 3


def test_consents_refuse_bad_input_naming_the_field(client: TestClient, session: Session, tenant: Tenant) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    good = {"contact": "+12015551000", "channel": "sms", "level": "express"}
    for change, field in (({"contact": "not a phone"}, "contact"), ({"channel": "fax"}, "channel"),
                          ({"level": "implied"}, "level"), ({"source": "rumour"}, "source"),
                          ({"captured_at": future}, "captured_at"), ({"captured_at": "2026-06-01T10:00:00"},
                                                                     "captured_at"),
                          ({"captured_at": 1700000000}, "captured_at"), ({"extra": 1}, "extra")):
        response = client.post("/api/consents", headers=tenant.headers, json={**good, **change})
        assert response.status_code == 422, (change, response.text)
        assert response.json()["errors"][0]["field"] == field, (change, response.json())
    assert count(session, Consent) == 0


def test_dnc_lifecycle(client: TestClient, session: Session, tenant: Tenant, other: Tenant) -> None:
    body = {"numbers": ["2015551000", "+1 (201) 555-1001", "garbage", "201.555.1000", "555-0000"],
            "source": "national_registry"}
    refused = client.post("/api/dnc", headers=tenant.headers, json=body)
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["numbers.2", "numbers.4", "numbers"]
    assert "garbage" in refused.json()["errors"][0]["message"]
    assert count(session, DncNumber) == 0  # never partial unless asked
    added = client.post("/api/dnc", headers=tenant.headers, json={**body, "skip_invalid": True})
    assert added.status_code == 200, added.text
    assert added.json() == {"added": 2, "rejected": [
        {"index": 2, "number": "garbage", "error": "'garbage' is not a valid phone number (region US)"},
        {"index": 4, "number": "555-0000", "error": "'555-0000' is not a valid phone number (region US)"}]}
    again = client.post("/api/dnc", headers=tenant.headers, json={"numbers": ["+12015551001"]})
    assert again.json() == {"added": 0, "rejected": []}
    client.post("/api/dnc", headers=other.headers, json={"numbers": ["+12015551000", "+14155550100"]})

    page = client.get("/api/dnc", headers=tenant.headers).json()
    assert page["total"] == 2 and {n["number"] for n in page["numbers"]} == {"+12015551000", "+12015551001"}
    assert {n["source"] for n in page["numbers"]} == {"national_registry"}
    assert client.get("/api/dnc", params={"search": "(201) 555-1001"}, headers=tenant.headers).json()["total"] == 1
    assert client.get("/api/dnc", params={"limit": 1}, headers=tenant.headers).json()["total"] == 2

    spelled = quote("+1 (201) 555-1000", safe="")
    assert client.delete(f"/api/dnc/{quote('+14155550100', safe='')}", headers=tenant.headers).status_code == 404
    assert client.delete(f"/api/dnc/{spelled}", headers=tenant.headers).status_code == 204
    assert client.delete(f"/api/dnc/{spelled}", headers=tenant.headers).status_code == 404
    assert client.delete("/api/dnc/2015551001", headers=tenant.headers).status_code == 204
    assert client.delete("/api/dnc/not-a-number", headers=tenant.headers).status_code == 404
    assert client.get("/api/dnc", headers=tenant.headers).json()["total"] == 0
    # the other business's list is untouched by all of that
    assert {n["number"] for n in client.get("/api/dnc", headers=other.headers).json()["numbers"]} == {
        "+12015551000", "+14155550100"}
    assert count(session, DncNumber) == 2


def test_dnc_refuses_bad_bodies(client: TestClient, session: Session, tenant: Tenant) -> None:
    for body, field in (({"numbers": []}, "numbers"), ({"numbers": "2015551000"}, "numbers"),
                        ({"numbers": [2015551000]}, "numbers.0"), ({"numbers": ["2015551000"], "source": "x"},
                                                                    "source"), ({}, "numbers")):
        response = client.post("/api/dnc", headers=tenant.headers, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["field"] == field, (body, response.json())
    assert client.delete(f"/api/dnc/{'1' * 65}", headers=tenant.headers).status_code == 422
    assert count(session, DncNumber) == 0


def _recipients(session: Session, campaign: Campaign, phones: list[str]) -> None:
    session.rollback()
    for phone in phones:
        session.add(CampaignRecipient(id=uuid.uuid4(), campaign_id=campaign.id, profile_id=campaign.profile_id,
                                      contact_key=phone, customer_phone=phone, status="pending", response_data={}))
    row = session.get(Campaign, campaign.id)
    assert row is not None
    row.selection_report = {"selected": len(phones), "suppressed_by": {"no_consent": 2, "dnc": 1}}
    row.status = "active"  # it has chosen its customers (a draft is counted on its audience instead)
    session.commit()


def test_campaign_compliance(client: TestClient, session: Session, tenant: Tenant, other: Tenant) -> None:
    profile = session.get(Profile, tenant.profile_id)
    assert profile is not None
    profile.consent_policy = "us_tcpa"  # the policy a business starts with; the tenant fixture vouches itself
    session.commit()
    campaign = make_campaign(session, tenant, method="call")
    _recipients(session, campaign, ["+13055550101", "+14055550102", "+14105550103", "+12125550104"])
    response = client.get(f"/api/campaigns/{campaign.id}/compliance", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["policy"] == "us_tcpa" and body["counted_on"] == "selection" and body["selected"] == 4
    assert body["suppressed_by"] == {"opted_out": 0, "no_consent": 2, "dnc": 1, "no_contact": 0}
    assert {state: entry["recipients"] for state, entry in body["by_state"].items()} == {"FL": 1, "OK": 1, "MD": 1}
    assert body["by_state"]["MD"]["hours"] == "08:00–20:00" and body["by_state"]["MD"]["cap_per_24h"] == 3
    assert body["by_state"]["MD"]["cap_counts_texts"] is True
    assert "§ 501.616" in body["by_state"]["FL"]["source"]

    refused = client.get(f"/api/campaigns/{campaign.id}/compliance", headers=other.headers)
    assert refused.status_code == 404 and refused.json()["detail"].startswith("No such")
    assert client.get(f"/api/campaigns/{uuid.uuid4()}/compliance", headers=tenant.headers).status_code == 404
    assert len(recipients_of(session, campaign.id)) == 4  # a read: nothing changed


def test_the_new_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for method, path, success in (("post", "/api/consents", "201"), ("get", "/api/consents", "200"),
                                  ("delete", "/api/consents/{id}", "204"), ("post", "/api/dnc", "200"),
                                  ("get", "/api/dnc", "200"), ("delete", "/api/dnc/{number}", "204"),
                                  ("get", "/api/campaigns/{id}/compliance", "200")):
        operation = paths[path][method]
        assert success in operation["responses"] and operation["summary"] and operation["description"]
        assert operation["security"] == [{"HTTPBearer": []}]
        assert {"401", "422"} <= set(operation["responses"])
        if "{" in path:
            assert "404" in operation["responses"]
        assert client.request(method.upper(), path.replace("{id}", str(uuid.uuid4())).replace("{number}", "1"),
                              json={}).status_code == 401


def test_the_compliance_of_a_real_selection_against_a_breakdown_by_hand(client: TestClient, session: Session) -> None:
    """Everything through the API — leads, consents, the do-not-call list, an opt-out, the selection — then
    the compliance report, compared with a breakdown counted by hand."""
    from api_helpers import make_tenant, opt_out

    # make_tenant adds a dormant e-mail-only customer (no phone: no_contact for texts) and a dormant
    # phone-only 212 customer with no consent on record
    t = make_tenant(session, name="Sunshine Nails", dormant=0, recent=0, area="212", consent_policy="us_tcpa")
    long_ago = (datetime.now(UTC) - timedelta(days=200)).isoformat()
    people = {
        "+13055550101": "written", "+13055550102": "written", "+13055550103": "written",  # Florida
        "+13055550104": None,                                                               # Florida, no consent
        "+14105550101": "written", "+14105550102": "written",                              # Maryland
        "+14105550103": "written, opted out",
        "+14055550101": "written", "+14055550102": "written, on the do-not-call list",     # Oklahoma
        "+12125550101": "written", "+16155550101": "express",                              # New York, Tennessee
    }
    added = client.post("/api/leads", headers=t.headers, json={"leads": [
        {"customer_name": f"Customer {n}", "customer_phone": phone, "created_at": long_ago, "status": "Closed"}
        for n, phone in enumerate(people)]})
    assert added.status_code in (200, 201), added.text
    for phone, situation in people.items():
        if situation is None:
            continue
        level = "express" if situation == "express" else "express_written"
        made = client.post("/api/consents", headers=t.headers,
                           json={"contact": phone, "channel": "sms", "level": level, "source": "web_form"})
        assert made.status_code == 201, made.text
    assert client.post("/api/dnc", headers=t.headers,
                       json={"numbers": ["(405) 555-0102"], "source": "internal"}).json()["added"] == 1
    opt_out(session, t, "+14105550103", channel="sms")
    session.commit()
    campaign = make_campaign(session, t, method="sms")

    # before it chooses, the report counts its audience as it stands — the same figures the selection then gives
    before = client.get(f"/api/campaigns/{campaign.id}/compliance", headers=t.headers).json()
    assert before["counted_on"] == "audience"
    # and the audience preview, which counts the states in the same pass, gives the same figures
    preview = client.post("/api/audience/preview", headers=t.headers, json={
        "target_criteria": campaign.target_criteria, "outreach_method": "sms",
        "campaign_type": campaign.campaign_type, "sample_size": 0})
    assert preview.status_code == 200, preview.text
    assert {k: preview.json()[k] for k in ("suppressed_by", "by_state")} == {k: before[k] for k in ("suppressed_by",
                                                                                                   "by_state")}
    assert preview.json()["count"] == before["selected"] == 7
    chosen = client.post(f"/api/campaigns/{campaign.id}/select-recipients", headers=t.headers)
    assert chosen.status_code == 200, chosen.text
    response = client.get(f"/api/campaigns/{campaign.id}/compliance", headers=t.headers)
    assert response.status_code == 200, response.text
    florida = "Florida Telephone Solicitation Act (CS/SB 1120, 2021), Fla. Stat. § 501.616(6)(a)–(b)"
    body = response.json()
    sources = {state: entry.pop("source") for state, entry in body["by_state"].items()}
    assert sources["FL"] == florida and "14-4501" in sources["MD"] and "775C.1" in sources["OK"]
    assert body == {
        "policy": "us_tcpa", "counted_on": "selection",
        # 3 FL + 2 MD + 1 OK + 1 NY with written consent; the Tennessee customer's consent is the spoken
        # kind, not enough for a win-back text
        "selected": 7,
        "suppressed_by": {"opted_out": 1, "no_consent": 3, "dnc": 1, "no_contact": 1},
        "by_state": {
            "FL": {"recipients": 3, "hours": "08:00–20:00", "cap_per_24h": 3, "cap_counts_texts": False},
            "MD": {"recipients": 2, "hours": "08:00–20:00", "cap_per_24h": 3, "cap_counts_texts": True},
            "OK": {"recipients": 1, "hours": "08:00–20:00", "cap_per_24h": 3, "cap_counts_texts": False},
        },
    }
    assert chosen.json()["suppressed_by"] == body["suppressed_by"]
    assert {**before, "counted_on": "selection"} == {**body, "by_state": {
        state: {**entry, "source": sources[state]} for state, entry in body["by_state"].items()}}
