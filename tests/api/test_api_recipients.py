"""Recipient endpoints: selecting, adding by hand, listing, results and the CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from typing import Any

from api_helpers import Tenant, make_campaign, opt_out, recipients_of
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import exports
from core.db import session_factory, utcnow
from core.models import CampaignRecipient, CampaignResult
from core.results import COUNTERS, refresh_campaign_results


def test_select_recipients_counts_and_is_idempotent(client: TestClient, session: Session, tenant: Tenant) -> None:
    opt_out(session, tenant, "+12015551001", channel="all")
    campaign = make_campaign(session, tenant, method="sms")
    url = f"/api/campaigns/{campaign.id}/select-recipients"
    first = client.post(url, headers=tenant.headers)
    assert first.status_code == 200
    # dormant with a phone: 4 + the phone-only one; one of them opted out
    left_out = {"opted_out": 1, "no_consent": 0, "dnc": 0, "no_contact": 1}  # the e-mail-only one has no phone
    assert first.json() == {"selected": 4, "suppressed": 1, "total_recipients": 4, "holdout": 0,
                            "suppressed_by": left_out}
    assert client.post(url, headers=tenant.headers).json() == {"selected": 0, "suppressed": 1, "total_recipients": 4,
                                                               "holdout": 0, "suppressed_by": left_out}
    client.post(f"/api/campaigns/{campaign.id}/stop", headers=tenant.headers)
    assert client.post(url, headers=tenant.headers).status_code == 409


def test_add_recipients_by_lead_and_by_contact(client: TestClient, session: Session, tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant, target_criteria={})
    url = f"/api/campaigns/{campaign.id}/recipients"
    by_lead = client.post(url, json={"lead_ids": [str(i) for i in tenant.lead_ids[:2]]}, headers=tenant.headers)
    assert by_lead.status_code == 200, by_lead.text
    assert by_lead.json() == {"added": 2, "suppressed": 0, "total_recipients": 2}
    # the same customers again: nothing new
    again = client.post(url, json={"lead_ids": [str(tenant.lead_ids[0])]}, headers=tenant.headers)
    assert again.json() == {"added": 0, "suppressed": 0, "total_recipients": 2}

    opt_out(session, tenant, "blocked@example.com", channel="email")
    by_contact = client.post(url, json={"contacts": [
        {"customer_name": "New Person", "customer_email": "New.Person@Example.com"},
        {"customer_email": "blocked@example.com"},
    ]}, headers=tenant.headers)
    assert by_contact.status_code == 200, by_contact.text
    assert by_contact.json() == {"added": 1, "suppressed": 1, "total_recipients": 3}
    added = [r for r in recipients_of(session, campaign.id) if r.customer_email == "new.person@example.com"]
    assert len(added) == 1 and added[0].customer_name == "New Person" and added[0].status == "pending"


BAD_ADDITIONS: list[tuple[dict[str, Any], str]] = [
    ({}, "body"),
    ({"lead_ids": [], "contacts": []}, "lead_ids"),
    ({"lead_ids": ["not-an-id"]}, "lead_ids.0"),
    ({"contacts": [{"customer_phone": "12"}]}, "contacts.0.customer_phone"),
    ({"contacts": [{"customer_email": "nobody@"}]}, "contacts.0.customer_email"),
    ({"contacts": [{"customer_name": "No Contact"}]}, "contacts.0"),
    ({"contacts": [{"customer_email": "a@example.com", "age": 3}]}, "contacts.0.age"),
]


def test_add_recipients_refuses_bad_input(client: TestClient, session: Session, tenant: Tenant,
                                          subtests: Any) -> None:
    campaign = make_campaign(session, tenant)
    for body, field in BAD_ADDITIONS:
        with subtests.test(field=field, body=body):
            response = client.post(f"/api/campaigns/{campaign.id}/recipients", json=body, headers=tenant.headers)
            assert response.status_code == 422, response.text
            assert field in [e["field"] for e in response.json()["errors"]]
    assert recipients_of(session, campaign.id) == []


def test_adding_is_all_or_nothing(client: TestClient, session: Session, tenant: Tenant, other: Tenant) -> None:
    campaign = make_campaign(session, tenant)
    response = client.post(f"/api/campaigns/{campaign.id}/recipients",
                           json={"lead_ids": [str(tenant.lead_ids[0]), str(other.lead_ids[0])]},
                           headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "lead_ids.1"  # another business's lead is unknown here
    assert recipients_of(session, campaign.id) == []
    mixed = client.post(f"/api/campaigns/{campaign.id}/recipients", json={"contacts": [
        {"customer_email": "fine@example.com"}, {"customer_phone": "not a phone"}]}, headers=tenant.headers)
    assert mixed.status_code == 422 and recipients_of(session, campaign.id) == []


def test_list_recipients_filters_searches_and_pages(client: TestClient, session: Session, tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant)
    client.post(f"/api/campaigns/{campaign.id}/select-recipients", headers=tenant.headers)
    rows = recipients_of(session, campaign.id)
    failed = rows[0]
    session.execute(CampaignRecipient.__table__.update().where(CampaignRecipient.id == failed.id)
                    .values(status="failed", error_message="mailbox does not exist"))
    session.commit()
    url = f"/api/campaigns/{campaign.id}/recipients"

    everyone = client.get(url, headers=tenant.headers).json()
    assert set(everyone) >= {"recipients", "total", "limit", "offset"}
    assert everyone["total"] == 5 and len(everyone["recipients"]) == 5
    assert set(everyone["recipients"][0]) >= {"id", "customer_name", "customer_phone", "customer_email", "status",
                                              "sent_at", "responded_at", "converted", "error_message"}
    only_failed = client.get(url, params={"status": "failed"}, headers=tenant.headers).json()
    assert [r["id"] for r in only_failed["recipients"]] == [str(failed.id)] and only_failed["total"] == 1
    assert only_failed["recipients"][0]["error_message"] == "mailbox does not exist"

    searched = client.get(url, params={"search": "MAILONLY"}, headers=tenant.headers).json()
    assert searched["total"] == 1 and searched["recipients"][0]["customer_email"].startswith("mailonly-")
    assert client.get(url, params={"search": "%"}, headers=tenant.headers).json()["total"] == 0

    pages = [client.get(url, params={"limit": 2, "offset": o}, headers=tenant.headers).json() for o in (0, 2, 4)]
    ids = [r["id"] for page in pages for r in page["recipients"]]
    assert len(ids) == 5 and len(set(ids)) == 5 and all(p["total"] == 5 for p in pages)
    for params in ({"limit": 501}, {"status": "lost"}, {"offset": -3}):
        assert client.get(url, params=params, headers=tenant.headers).status_code == 422


def _set(session: Session, recipient: CampaignRecipient, **values: object) -> None:
    session.execute(CampaignRecipient.__table__.update().where(CampaignRecipient.id == recipient.id).values(**values))


def test_results_equal_what_the_recipients_say(client: TestClient, session: Session, tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant, variants=[{"name": "A"}, {"name": "B"}])
    client.post(f"/api/campaigns/{campaign.id}/start", headers=tenant.headers)
    r = recipients_of(session, campaign.id)
    assert len(r) == 5
    t = utcnow()
    _set(session, r[0], status="delivered", sent_at=t, delivered_at=t, last_channel="email")
    _set(session, r[1], status="answered", sent_at=t, delivered_at=t, answered_at=t, responded_at=t, converted=True,
         converted_at=t, last_channel="email")
    _set(session, r[2], status="failed", error_message="bounced", last_channel="email")
    _set(session, r[3], status="opted_out")
    session.commit()

    response = client.get(f"/api/campaigns/{campaign.id}/results", headers=tenant.headers)
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in COUNTERS} == {
        "total_recipients": 5, "sent_count": 2, "delivered_count": 2, "answered_count": 1, "responded_count": 1,
        "converted_count": 1, "failed_count": 1, "opted_out_count": 1}
    assert body["response_rate"] == 0.5 and body["conversion_rate"] == 0.5
    assert set(body["by_variant"]) == {"A", "B"}
    assert sum(v["total_recipients"] for v in body["by_variant"].values()) == 5
    assert body["by_channel"]["email"]["total_recipients"] == 5
    assert body["by_channel"]["email"]["sent_count"] == 2

    # the stored copy is the engine's (refreshed as it works; a read writes nothing): made now, it agrees
    session.rollback()
    refresh_campaign_results(session, campaign_id=campaign.id)
    stored = session.scalars(select(CampaignResult).where(CampaignResult.campaign_id == campaign.id)).one()
    assert {k: getattr(stored, k) for k in COUNTERS} == {k: body[k] for k in COUNTERS}
    session.rollback()

    # a change in the recipients shows at once: results are counted, not cached
    _set(session, r[4], status="sent", sent_at=t, last_channel="email", responded_at=t)
    session.commit()
    later = client.get(f"/api/campaigns/{campaign.id}/results", headers=tenant.headers).json()
    assert later["sent_count"] == 3 and later["responded_count"] == 2


def test_export_streams_every_recipient_with_status_and_outcome(client: TestClient, session: Session,
                                                                tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant, name="Fête d'été / 2026")
    client.post(f"/api/campaigns/{campaign.id}/select-recipients", headers=tenant.headers)
    r = recipients_of(session, campaign.id)
    _set(session, r[0], status="failed", error_message="=HYPERLINK(\"x\")")
    _set(session, r[1], status="delivered", sent_at=utcnow(), delivered_at=utcnow(), converted=True)
    session.commit()

    response = client.get(f"/api/campaigns/{campaign.id}/export.csv", headers=tenant.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="fete-d-ete-2026-recipients-') and disposition.endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["recipient_id"] for row in rows] == [str(x.id) for x in r]  # ordered by contact
    assert set(rows[0]) == set(exports.EXPORT_COLUMNS)
    by_id = {row["recipient_id"]: row for row in rows}
    assert by_id[str(r[0].id)]["status"] == "failed" and by_id[str(r[0].id)]["outcome"] == "failed"
    assert by_id[str(r[0].id)]["error_message"].startswith("'=")  # no formula reaches a spreadsheet
    assert by_id[str(r[1].id)]["outcome"] == "converted" and by_id[str(r[1].id)]["converted"] == "yes"
    assert by_id[str(r[2].id)]["outcome"] == "not contacted yet"
    phones = [row["customer_phone"] for row in rows if row["customer_phone"]]
    assert phones and all(p.startswith("+1") for p in phones)  # phone numbers are left as they are

    assert client.get(f"/api/campaigns/{uuid.uuid4()}/export.csv", headers=tenant.headers).status_code == 404


def test_export_pages_with_a_keyset_in_small_batches(engine, session: Session, tenant: Tenant, other: Tenant) -> None:
    campaign = make_campaign(session, tenant, target_criteria={})
    from core.campaigns import select_campaign_recipients

    select_campaign_recipients(session, profile_id=tenant.profile_id, campaign_id=campaign.id)
    session.commit()
    factory = session_factory(engine)
    ids = [row.id for row in exports.iter_recipient_rows(factory, profile_id=tenant.profile_id,
                                                         campaign_id=campaign.id, batch=2)]
    # every customer with an e-mail address: 4 dormant, 1 recent, 1 e-mail only
    assert len(ids) == 6 and len(set(ids)) == 6
    chunks = list(exports.iter_recipient_csv(factory, profile_id=tenant.profile_id, campaign_id=campaign.id,
                                             batch=4))
    assert len(chunks) == 1 + 2  # the header, then batches of 4 and 2 rows
    assert [chunk.count("\n") for chunk in chunks] == [1, 4, 2]
    # another business's id gives nothing, even past the route's check
    assert list(exports.iter_recipient_rows(factory, profile_id=other.profile_id, campaign_id=campaign.id)) == []


def test_a_customer_added_after_a_start_is_due_at_once(client: TestClient, session: Session, tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant)
    client.post(f"/api/campaigns/{campaign.id}/start", headers=tenant.headers)
    client.post(f"/api/campaigns/{campaign.id}/recipients", json={"contacts": [{"customer_email": "late@example.com"}]},
                headers=tenant.headers)
    late = [r for r in recipients_of(session, campaign.id) if r.customer_email == "late@example.com"]
    assert late and late[0].next_attempt_at is not None
    assert late[0].next_attempt_at <= utcnow() + timedelta(seconds=1)


def test_a_put_off_recipient_says_why_while_it_waits(client: TestClient, session: Session, tenant: Tenant) -> None:
    """``waiting_reason`` as the engine wrote it, while a try is due; nothing once no try is (an opt-out or a
    reply ended the outreach meanwhile, leaving the old reason on the row)."""
    campaign = make_campaign(session, tenant, method="sms")
    assert client.post(f"/api/campaigns/{campaign.id}/select-recipients", headers=tenant.headers).status_code == 200
    first, second = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign.id)
                                    .order_by(CampaignRecipient.contact_key)).all()[:2]
    why = "outside the send window"
    first.next_attempt_at, first.waiting_reason = utcnow() + timedelta(hours=3), why
    second.next_attempt_at, second.waiting_reason = None, why
    session.commit()
    listed = {r["id"]: r for r in client.get(f"/api/campaigns/{campaign.id}/recipients?limit=100",
                                            headers=tenant.headers).json()["recipients"]}
    assert listed[str(first.id)]["waiting_reason"] == why
    assert listed[str(second.id)]["waiting_reason"] is None
