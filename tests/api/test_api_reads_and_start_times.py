"""Reads that change nothing, and start times that have not passed — at the API, the same rules as in
the dashboard because both come from core (DESIGN §13, finding 11)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from api_helpers import EMAIL_CONTENT, Tenant, count, make_campaign
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from core import campaigns
from core.db import utcnow
from core.models import Campaign

WRITES = ("INSERT", "UPDATE", "DELETE", "MERGE")


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the app sends while the block runs."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split()[:3]).upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_reading_results_writes_nothing(client: TestClient, engine: Engine, session: Session, tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant)
    campaigns.start_campaign(session, profile_id=tenant.profile_id, campaign_id=campaign.id)
    session.commit()
    for path in (f"/api/campaigns/{campaign.id}/results", f"/api/campaigns/{campaign.id}",
                 f"/api/campaigns/{campaign.id}/recipients", f"/api/campaigns/{campaign.id}/compliance",
                 "/api/campaigns", "/api/customers", "/api/profile"):
        with statements(engine) as seen:
            answer = client.get(path, headers=tenant.headers)
        assert answer.status_code == 200, (path, answer.text)
        # the one write a read may make is the key's "last used" stamp (once a minute at most)
        writes = [s for s in seen if s.startswith(WRITES) and s != "UPDATE API_KEYS SET"]
        assert seen and not writes, (path, writes)


@pytest.mark.parametrize("when", [timedelta(minutes=-5), timedelta(days=-2), timedelta(0)],
                         ids=["five-minutes-ago", "two-days-ago", "now"])
def test_a_start_time_that_has_passed_is_refused(client: TestClient, session: Session, tenant: Tenant,
                                                when: timedelta) -> None:
    before = count(session, Campaign)
    body = {"name": "Late", "campaign_type": "winback", "outreach_method": "email", **EMAIL_CONTENT,
            "scheduled_at": (utcnow() + when).isoformat()}
    answer = client.post("/api/campaigns", json=body, headers=tenant.headers)
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error["field"] == "scheduled_at" and "has passed" in error["message"]
    assert count(session, Campaign) == before


def test_rescheduling_into_the_past_is_refused_but_other_edits_of_an_old_schedule_are_not(
        client: TestClient, session: Session, tenant: Tenant) -> None:
    soon = utcnow() + timedelta(hours=1)
    campaign = make_campaign(session, tenant, scheduled_at=soon.isoformat())
    path = f"/api/campaigns/{campaign.id}"
    answer = client.patch(path, json={"scheduled_at": (utcnow() - timedelta(hours=1)).isoformat()},
                          headers=tenant.headers)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "scheduled_at"
    # renaming does not judge the (unchanged) start time again
    assert client.patch(path, json={"name": "Renamed"}, headers=tenant.headers).status_code == 200
