"""POST /api/campaigns/{id}/execute: one dispatch pass now, through the real engine (sandbox channels)."""

from __future__ import annotations

import uuid

from api_helpers import Tenant, make_campaign, recipients_of
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

REPORT_KEYS = {"processed", "sent", "failed", "opted_out", "deferred", "skipped", "remaining"}
ALL_DAY = {"start": "00:00", "end": "24:00", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}


def test_execute_runs_one_pass_of_an_active_campaign(client: TestClient, session: Session, tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant, send_window=ALL_DAY, rate_limit_per_minute=600)
    assert client.post(f"/api/campaigns/{campaign.id}/start", headers=tenant.headers).status_code == 200

    response = client.post(f"/api/campaigns/{campaign.id}/execute", headers=tenant.headers)
    assert response.status_code == 200, response.text
    report = response.json()
    assert set(report) == REPORT_KEYS
    assert all(isinstance(v, int) and v >= 0 for v in report.values())
    assert report["sent"] >= 1  # e-mail at any hour, in sandbox mode: something goes out
    # the report tells what the recipients table now says
    recipients = recipients_of(session, campaign.id)
    assert sum(r.sent_at is not None for r in recipients) == report["sent"]
    assert report["sent"] <= report["processed"] <= len(recipients)

    # the pass's answer and the results endpoint agree
    results = client.get(f"/api/campaigns/{campaign.id}/results", headers=tenant.headers).json()
    assert results["sent_count"] == report["sent"]


def test_execute_needs_an_active_campaign_of_ones_own(client: TestClient, session: Session, tenant: Tenant,
                                                     other: Tenant) -> None:
    draft = make_campaign(session, tenant)
    refused = client.post(f"/api/campaigns/{draft.id}/execute", headers=tenant.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"]
    assert recipients_of(session, draft.id) == []

    client.post(f"/api/campaigns/{draft.id}/start", headers=tenant.headers)
    client.post(f"/api/campaigns/{draft.id}/pause", headers=tenant.headers)
    assert client.post(f"/api/campaigns/{draft.id}/execute", headers=tenant.headers).status_code == 409
    assert all(r.sent_at is None for r in recipients_of(session, draft.id))  # a paused campaign sends nothing

    assert client.post(f"/api/campaigns/{draft.id}/execute", headers=other.headers).status_code == 404
    assert client.post(f"/api/campaigns/{uuid.uuid4()}/execute", headers=tenant.headers).status_code == 404
