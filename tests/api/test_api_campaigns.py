"""Campaign endpoints: create, list, read, change, delete, start/pause/stop (DESIGN §7)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from api_helpers import EMAIL_CONTENT, Tenant, count, make_campaign, recipients_of
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import RECIPIENT_STATUSES, Campaign

SEED_FIELDS = {"id", "name", "description", "campaign_type", "outreach_method", "agent_id", "status",
               "scheduled_at", "started_at", "completed_at", "target_criteria", "message_template", "call_script",
               "created_at", "updated_at"}
EXTRA_FIELDS = {"email_subject", "sms_template", "variables", "timezone", "send_window", "rate_limit_per_minute",
                "max_concurrent_calls", "max_attempts", "variants", "steps"}


def new_campaign(**fields: Any) -> dict[str, Any]:
    return {"name": "Holiday win-back", "campaign_type": "winback", "outreach_method": "email",
            "target_criteria": {"last_contact_days": 180}, **EMAIL_CONTENT, **fields}


def create(client: TestClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/campaigns", json=new_campaign(**fields), headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_answers_201_with_the_campaign_and_its_defaults(client: TestClient, tenant: Tenant) -> None:
    body = create(client, tenant, agent_id=str(tenant.agent_id))
    assert set(body) >= SEED_FIELDS | EXTRA_FIELDS
    assert body["status"] == "draft" and body["started_at"] is None
    assert body["agent_id"] == str(tenant.agent_id)
    assert body["timezone"] == "America/New_York"  # the business's
    assert body["send_window"] == {"start": "09:00", "end": "20:00",
                                   "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}
    assert (body["rate_limit_per_minute"], body["max_concurrent_calls"], body["max_attempts"]) == (30, 3, 3)
    assert body["variables"] == {"promotion": "20% off"}
    assert body["target_criteria"] == {"last_contact_days": 180}


def test_create_with_a_start_time_is_scheduled(client: TestClient, tenant: Tenant) -> None:
    when = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    body = create(client, tenant, scheduled_at=when.isoformat())
    assert body["status"] == "scheduled"
    assert body["scheduled_at"].startswith(when.strftime("%Y-%m-%dT%H:%M:%S"))


def test_create_with_every_option(client: TestClient, tenant: Tenant) -> None:
    body = create(client, tenant, outreach_method="multi", sms_template="Hi from {business_name}",
                  call_script="Hello {customer_name|there}", timezone="America/Chicago",
                  send_window={"start": "10:00", "end": "18:00", "days": ["fri", "mon"]},
                  rate_limit_per_minute=12, max_concurrent_calls=2, max_attempts=5,
                  steps=[{"channel": "email"}, {"channel": "call", "delay_hours": 48, "condition": "no_response"}],
                  variants=[{"name": "A"}, {"name": "B", "weight": 2, "email_subject": "Psst, {first_name}"}])
    assert body["send_window"]["days"] == ["mon", "fri"]
    assert [s["channel"] for s in body["steps"]] == ["email", "call"]
    assert [v["name"] for v in body["variants"]] == ["A", "B"]
    assert body["timezone"] == "America/Chicago" and body["max_attempts"] == 5


BAD_CAMPAIGNS: list[tuple[dict[str, Any], str, str]] = [
    ({"message_template": "Hi {promo}"}, "message_template", "{promo}"),
    ({"email_subject": "Hello {first_nme}"}, "email_subject", "{first_nme}"),
    ({"timezone": "Mars/Olympus"}, "timezone", "Mars/Olympus"),
    ({"target_criteria": {"status": ["Booked", "x" * 51]}}, "target_criteria.status", "50 characters"),
    ({"target_criteria": {"filters": [{"field": "password", "op": "eq", "value": "x"}]}},
     "target_criteria.filters.0", "password"),
    ({"target_criteria": {"colour": "red"}}, "target_criteria.colour", "unknown"),
    ({"send_window": {"start": "19:00", "end": "09:00"}}, "send_window", "end after it starts"),
    ({"rate_limit_per_minute": 0}, "rate_limit_per_minute", "at least 1"),
    ({"variants": [{"name": "A"}]}, "variants", "two variants"),
    ({"outreach_method": "fax"}, "outreach_method", "must be one of"),
    ({"status": "active"}, "status", "must be one of"),
    ({"scheduled_at": "2026-12-01T09:00:00"}, "scheduled_at", "offset"),
    ({"nickname": "x"}, "nickname", "not a field"),
]


def test_create_refuses_bad_input_naming_the_field(client: TestClient, session: Session, tenant: Tenant,
                                                   subtests: Any) -> None:
    for fields, field, words in BAD_CAMPAIGNS:
        with subtests.test(field=field):
            response = client.post("/api/campaigns", json=new_campaign(**fields), headers=tenant.headers)
            assert response.status_code == 422, response.text
            body = response.json()
            assert field in [e["field"] for e in body["errors"]]
            assert field in body["detail"] and words in body["detail"]
    assert count(session, Campaign, profile_id=tenant.profile_id) == 0


def test_an_agent_of_another_business_is_refused(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    response = client.post("/api/campaigns", json=new_campaign(agent_id=str(other.agent_id)), headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "agent_id"
    campaign = create(client, tenant)
    response = client.patch(f"/api/campaigns/{campaign['id']}", json={"agent_id": str(other.agent_id)},
                            headers=tenant.headers)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "agent_id"


def test_list_pages_and_filters(client: TestClient, session: Session, tenant: Tenant, other: Tenant) -> None:
    ids = [create(client, tenant, name=f"Campaign {i}", campaign_type=t)["id"]
           for i, t in enumerate(["winback", "winback", "feedback"])]
    client.post(f"/api/campaigns/{ids[0]}/start", headers=tenant.headers)
    create(client, other)

    response = client.get("/api/campaigns", headers=tenant.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"campaigns", "total", "limit", "offset"}
    assert body["total"] == 3 and body["limit"] == 50 and body["offset"] == 0
    assert [c["id"] for c in body["campaigns"]] == ids[::-1]  # newest first

    page = client.get("/api/campaigns", params={"limit": 2, "offset": 2}, headers=tenant.headers).json()
    assert [c["id"] for c in page["campaigns"]] == [ids[0]] and page["total"] == 3 and page["limit"] == 2

    active = client.get("/api/campaigns", params={"status": "active"}, headers=tenant.headers).json()
    assert [c["id"] for c in active["campaigns"]] == [ids[0]] and active["total"] == 1
    feedback = client.get("/api/campaigns", params={"campaign_type": "feedback"}, headers=tenant.headers).json()
    assert [c["id"] for c in feedback["campaigns"]] == [ids[2]]

    # a created-date range: move the first campaign a month back
    session.rollback()
    first = session.get(Campaign, __import__("uuid").UUID(ids[0]))
    assert first is not None
    first.created_at = utcnow() - timedelta(days=30)
    session.commit()
    cutoff = (utcnow() - timedelta(days=1)).date().isoformat()
    recent = client.get("/api/campaigns", params={"created_after": cutoff}, headers=tenant.headers).json()
    assert sorted(c["id"] for c in recent["campaigns"]) == sorted(ids[1:])
    older = client.get("/api/campaigns", params={"created_before": cutoff + "T00:00:00+00:00"},
                       headers=tenant.headers).json()
    assert [c["id"] for c in older["campaigns"]] == [ids[0]]


def test_list_refuses_bad_parameters(client: TestClient, tenant: Tenant, subtests: Any) -> None:
    for params in ({"limit": 501}, {"limit": 0}, {"offset": -1}, {"status": "sleeping"}, {"campaign_type": "spam"},
                   {"created_after": "last tuesday"}, {"created_before": "0001-01-01T00:00:00+14:00"},
                   {"limit": "ten"}, {"limit": 10**30}):
        with subtests.test(params=params):
            response = client.get("/api/campaigns", params=params, headers=tenant.headers)
            assert response.status_code == 422, response.text
            name = next(iter(params))
            assert response.json()["errors"][0]["field"] == name and name in response.json()["detail"]


def test_get_has_recipient_counts_and_the_first_recipients(client: TestClient, session: Session,
                                                           tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant)
    client.post(f"/api/campaigns/{campaign.id}/select-recipients", headers=tenant.headers)
    response = client.get(f"/api/campaigns/{campaign.id}", headers=tenant.headers)
    assert response.status_code == 200
    body = response.json()
    assert SEED_FIELDS | EXTRA_FIELDS | {"recipient_counts", "recipients"} <= set(body)
    assert body["recipient_counts"] == {**dict.fromkeys(RECIPIENT_STATUSES, 0), "pending": 5}
    assert len(body["recipients"]) == 5
    assert {r["customer_email"] for r in body["recipients"]} == {
        r.customer_email for r in recipients_of(session, campaign.id)}
    assert client.get(f"/api/campaigns/{__import__('uuid').uuid4()}", headers=tenant.headers).status_code == 404


def test_patch_changes_editable_fields(client: TestClient, tenant: Tenant) -> None:
    campaign = create(client, tenant)
    response = client.patch(f"/api/campaigns/{campaign['id']}",
                            json={"name": "Renamed", "rate_limit_per_minute": 5, "variables": {"promotion": "a gift"}},
                            headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["rate_limit_per_minute"], body["variables"]) == ("Renamed", 5, {"promotion": "a gift"})
    assert body["updated_at"] >= campaign["updated_at"]
    # a template change is checked against the variables it would run with
    response = client.patch(f"/api/campaigns/{campaign['id']}", json={"message_template": "Hi {discount}"},
                            headers=tenant.headers)
    assert response.status_code == 422 and "{discount}" in response.json()["detail"]


def test_patch_status_follows_the_status_machine(client: TestClient, session: Session, tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant)
    url = f"/api/campaigns/{campaign.id}"
    started = client.patch(url, json={"status": "active"}, headers=tenant.headers)
    assert started.status_code == 200 and started.json()["status"] == "active"
    assert len(recipients_of(session, campaign.id)) == 5  # starting selected the recipients

    for illegal in ("draft", "scheduled", "completed"):
        response = client.patch(url, json={"status": illegal}, headers=tenant.headers)
        assert response.status_code == 409, (illegal, response.text)
        assert response.json()["errors"][0]["field"] == "status"
    frozen = client.patch(url, json={"message_template": "New text for {business_name}"}, headers=tenant.headers)
    assert frozen.status_code == 409 and "message_template" in frozen.json()["detail"]
    assert client.patch(url, json={"status": "paused"}, headers=tenant.headers).json()["status"] == "paused"
    assert client.patch(url, json={"status": "cancelled"}, headers=tenant.headers).json()["status"] == "cancelled"
    assert client.patch(url, json={"status": "active"}, headers=tenant.headers).status_code == 409


def test_start_pause_resume_stop(client: TestClient, session: Session, tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant)
    base = f"/api/campaigns/{campaign.id}"
    assert client.post(f"{base}/pause", headers=tenant.headers).status_code == 409  # a draft cannot pause
    started = client.post(f"{base}/start", headers=tenant.headers)
    assert started.status_code == 200
    assert started.json()["status"] == "active" and started.json()["started_at"] is not None
    assert client.post(f"{base}/start", headers=tenant.headers).status_code == 409  # already active
    paused = client.post(f"{base}/pause", headers=tenant.headers)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    resumed = client.post(f"{base}/start", headers=tenant.headers)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    stopped = client.post(f"{base}/stop", headers=tenant.headers)
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "cancelled" and stopped.json()["completed_at"] is not None
    again = client.post(f"{base}/stop", headers=tenant.headers)
    assert again.status_code == 409 and again.json()["detail"].startswith("This campaign is cancelled")
    assert client.post(f"{base}/start", headers=tenant.headers).status_code == 409


def test_delete(client: TestClient, session: Session, tenant: Tenant) -> None:
    draft = make_campaign(session, tenant)
    response = client.delete(f"/api/campaigns/{draft.id}", headers=tenant.headers)
    assert response.status_code == 204 and response.content == b""
    assert client.get(f"/api/campaigns/{draft.id}", headers=tenant.headers).status_code == 404
    assert client.delete(f"/api/campaigns/{draft.id}", headers=tenant.headers).status_code == 404

    active = make_campaign(session, tenant)
    client.post(f"/api/campaigns/{active.id}/start", headers=tenant.headers)
    refused = client.delete(f"/api/campaigns/{active.id}", headers=tenant.headers)
    assert refused.status_code == 409
    assert refused.json()["detail"] == "This campaign is active; pause or stop it before deleting it."
    assert len(recipients_of(session, active.id)) == 5  # nothing was deleted
    client.post(f"/api/campaigns/{active.id}/pause", headers=tenant.headers)
    assert client.delete(f"/api/campaigns/{active.id}", headers=tenant.headers).status_code == 204
    assert recipients_of(session, active.id) == []
