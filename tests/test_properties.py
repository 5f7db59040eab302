"""Property tests: targeting against a plain-Python reference, and the status machine."""

from __future__ import annotations

import uuid
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from core import campaigns, targeting
from core.campaigns import USER_TRANSITIONS, can_transition
from core.contacts import normalize_email, normalize_phone
from core.errors import Conflict
from core.models import CAMPAIGN_STATUSES, Campaign, CampaignRecipient, Lead, OptOut
from core.optouts import record_opt_out
from tests import factories as f

PHONES = ["(312) 555-01{:02d}", "+1 312 555 01{:02d}", "312.555.01{:02d}"]
SERVICES = ["Color", "Haircut", None]

lead_st = st.fixed_dictionaries({
    "person": st.integers(0, 5),
    "phone_format": st.sampled_from(PHONES) | st.none(),
    "with_email": st.booleans(),
    "status": st.sampled_from(["New", "Contacted", "Closed"]),
    "days_ago": st.integers(0, 400),
    "service": st.sampled_from(SERVICES),
})
criteria_st = st.fixed_dictionaries({}, optional={
    "last_contact_days": st.integers(0, 400),
    "status": st.sampled_from(["Closed", "New", ["Contacted", "Closed"]]),
    "min_leads": st.integers(1, 3),
    "service_type": st.sampled_from(["Color", ["Color", "Haircut"]]),
})
opt_out_st = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["sms", "email", "all"]),
                                st.booleans()), max_size=3)


def reference(leads, criteria, opt_outs, method, now):
    """What selection must give, computed row by row in Python."""
    customers: dict[str, list[dict]] = {}
    for lead in leads:
        customers.setdefault(lead["key"], []).append(lead)
    selected, suppressed = set(), set()
    for key, rows in customers.items():
        rows = sorted(rows, key=lambda r: r["created_at"], reverse=True)
        latest = rows[0]
        if "last_contact_days" in criteria and not latest["created_at"] < now - timedelta(
                days=criteria["last_contact_days"]):
            continue
        statuses = criteria.get("status")
        if statuses and latest["status"] not in ([statuses] if isinstance(statuses, str) else statuses):
            continue
        if "min_leads" in criteria and len(rows) < criteria["min_leads"]:
            continue
        services = criteria.get("service_type")
        if services and not any(r["service"] in ([services] if isinstance(services, str) else services)
                                for r in rows):
            continue
        phone = latest["phone"]
        email = next((r["email"] for r in rows if r["email"]), None)
        contact = email if method == "email" else phone
        if contact is None:
            continue
        blocked = any(c == contact and ch in (method, "all") for c, ch in opt_outs)
        (suppressed if blocked else selected).add(key)
    return selected, suppressed


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.lists(lead_st, min_size=1, max_size=12), criteria_st, opt_out_st, st.sampled_from(["sms", "email"]))
def test_selection_matches_reference(session, now, leads, criteria, opt_outs, method):
    session.rollback()
    profile = f.make_profile(session)
    rows = []
    for idx, spec in enumerate(leads):
        phone_raw = spec["phone_format"].format(spec["person"]) if spec["phone_format"] else None
        email = f"p{spec['person']}@example.com" if spec["with_email"] or not phone_raw else None
        phone = normalize_phone(phone_raw) if phone_raw else None
        lead = f.lead(session, profile, phone=phone_raw, email=email, status=spec["status"],
                      days_ago=spec["days_ago"] + idx / 1000, service_type=spec["service"], now=now)
        rows.append({"key": phone or normalize_email(email), "phone": phone, "email": email,
                     "status": spec["status"], "created_at": lead.created_at, "service": spec["service"]})
    recorded = []
    for person, channel, by_phone in opt_outs:
        contact = normalize_phone(PHONES[0].format(person)) if by_phone else f"p{person}@example.com"
        record_opt_out(session, profile_id=profile.id, contact=contact, channel=channel, source="manual")
        recorded.append((contact, channel))
    expected_selected, expected_suppressed = reference(rows, criteria, recorded, method, now)

    c = f.campaign(session, profile, method=method, criteria=criteria)
    result = targeting.select_recipients(session, campaign=c, now=now)
    got = set(session.scalars(select(CampaignRecipient.contact_key).where(CampaignRecipient.campaign_id == c.id)))
    assert got == expected_selected
    assert result.suppressed == len(expected_suppressed)
    for table in (CampaignRecipient, Campaign, OptOut, Lead):
        session.execute(delete(table).where(table.profile_id == profile.id))
    session.commit()


def test_transition_table_shape():
    for final in ("completed", "cancelled"):
        assert USER_TRANSITIONS[final] == ()
    for status in CAMPAIGN_STATUSES:
        assert not can_transition(status, status)
        assert not can_transition(status, "completed")  # only the system completes
        if status not in ("completed", "cancelled"):
            assert can_transition(status, "cancelled")
    assert can_transition("active", "completed", by_system=True)


ACTIONS = ["start", "pause", "stop", "schedule", "unschedule", "delete"]


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.lists(st.sampled_from(ACTIONS), max_size=8))
def test_any_action_sequence_keeps_the_machine_legal(session, now, actions):
    session.rollback()
    profile = f.make_profile(session)
    f.lead(session, profile, email=f"{uuid.uuid4().hex[:8]}@example.com", now=now)
    c = f.campaign(session, profile, method="email", scheduled_at=(now + timedelta(days=1)).isoformat(),
                   status="draft", now=now)
    status, deleted = "draft", False
    for i, action in enumerate(actions):
        t = now + timedelta(minutes=i)
        before = status
        try:
            if deleted:
                break
            if action == "start":
                status = campaigns.start_campaign(session, profile_id=profile.id, campaign_id=c.id, now=t).status
            elif action == "pause":
                status = campaigns.pause_campaign(session, profile_id=profile.id, campaign_id=c.id, now=t).status
            elif action == "stop":
                status = campaigns.stop_campaign(session, profile_id=profile.id, campaign_id=c.id, now=t).status
            elif action == "schedule":
                status = campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id,
                                                   data={"status": "scheduled"}, now=t).status
            elif action == "unschedule":
                status = campaigns.update_campaign(session, profile_id=profile.id, campaign_id=c.id,
                                                   data={"status": "draft"}, now=t).status
            else:
                campaigns.delete_campaign(session, profile_id=profile.id, campaign_id=c.id)
                deleted = True
        except Conflict:
            current = session.get(Campaign, c.id).status
            assert current == before  # a refused change changes nothing
            continue
        if not deleted:
            assert before == status or can_transition(before, status)
            assert before != "active" or action != "delete"
            if status == "active":
                assert session.get(Campaign, c.id).started_at is not None
        else:
            assert before != "active"
    session.rollback()
