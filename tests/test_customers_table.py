"""The customers table: equal to a from-scratch aggregation of the leads after every kind of write, stable
ids, the re-engagement score, the business's own statuses — on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import io
import math
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from core import campaigns, customers, customers_sync, leads, targeting
from core.customers_sync import score_of, zone_of
from core.errors import NotFound
from core.events import apply_event, record_event
from core.models import Campaign, CampaignRecipient, Consent, Customer, Lead, OptOut, OutreachEvent, WebhookEvent
from tests import factories as f


def campaign_with(session, profile, method: str = "sms", criteria: dict[str, Any] | None = None,
                  **columns: Any) -> Campaign:
    """A draft campaign with settings of this round (holdout, always-on, A/B test-then-winner) set on it."""
    c = f.campaign(session, profile, method=method, criteria=criteria,
                   **{k: columns.pop(k) for k in ("variants",) if k in columns})
    for key, value in columns.items():
        setattr(c, key, value)
    session.flush()
    return c


def from_scratch(session, profile_id) -> dict[str, tuple[Any, ...]]:
    """What the customers of a business must be, computed row by row in Python from its leads."""
    by_key: dict[str, list[Lead]] = defaultdict(list)
    for lead in session.scalars(select(Lead).where(Lead.profile_id == profile_id)):
        by_key[lead.contact_key].append(lead)
    out = {}
    for key, rows in by_key.items():
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)  # newest first; ties: the larger id
        newest = rows[0]
        name = next((r.customer_name for r in rows if r.customer_name is not None), None)
        email = next((r.customer_email for r in rows if r.customer_email is not None), None)
        out[key] = (name, newest.customer_phone, email, min(r.created_at for r in rows), newest.created_at,
                    newest.status, newest.agent_id, newest.service_type, newest.id, len(rows),
                    sorted({r.service_type for r in rows if r.service_type is not None}),
                    zone_of(newest.customer_phone) if newest.customer_phone else None)
    return out


def stored(session, profile_id) -> dict[str, tuple[Any, ...]]:
    session.expire_all()
    return {c.contact_key: (c.customer_name, c.customer_phone, c.customer_email, c.first_contact_at,
                            c.last_contact_at, c.last_status, c.last_agent_id, c.last_service_type, c.last_lead_id,
                            c.lead_count, list(c.service_types), c.timezone)
            for c in session.scalars(select(Customer).where(Customer.profile_id == profile_id))}


def assert_in_sync(session, profile_id) -> None:
    assert stored(session, profile_id) == from_scratch(session, profile_id)


def assert_scores(session, profile_id, now) -> None:
    """After a refresh, every score is the documented formula of the customer's facts."""
    customers_sync.refresh_scores(session, profile_id=profile_id, now=now)
    session.expire_all()
    contacted: dict[str, int] = defaultdict(int)
    responded: dict[str, int] = defaultdict(int)
    for r in session.scalars(select(CampaignRecipient).where(CampaignRecipient.profile_id == profile_id)):
        contacted[r.contact_key] += r.sent_at is not None
        responded[r.contact_key] += r.responded_at is not None
    for c in session.scalars(select(Customer).where(Customer.profile_id == profile_id)):
        days = (now - c.last_contact_at).total_seconds() / 86400
        expected = score_of(days_since_last_contact=days, lead_count=c.lead_count,
                            contacted=contacted[c.contact_key], responded=responded[c.contact_key])
        raw = 100 * (0.45 * math.exp(max(days, 0) * -math.log(2) / 180) + 0.35 * (1 - math.exp(-c.lead_count / 3))
                     + 0.2 * (responded[c.contact_key] + 1) / (contacted[c.contact_key] + 2))
        if abs(raw - math.floor(raw) - 0.5) > 1e-6:  # exactly on a half, the last bit may round either way
            assert c.score == expected, (c.contact_key, c.score, expected)


# --- every kind of write, interleaved ------------------------------------------------------------------

PERSON_PHONES = ["(312) 555-0100", "+1 312 555 0101", "312.555.0102", None]
NAMES = ["Ann Lee", "ann lee ", "Bo", None]
STATUSES = ["New", "closed", " Booked ", "Lost", "CLOSED"]

lead_st = st.fixed_dictionaries({
    "person": st.integers(0, 3), "email": st.booleans(), "name": st.sampled_from(NAMES),
    "status": st.sampled_from(STATUSES), "days": st.integers(0, 500), "service": st.sampled_from(["Color", "Cut", ""]),
})
op_st = st.one_of(
    st.tuples(st.just("import"), st.lists(lead_st, min_size=1, max_size=4)),
    st.tuples(st.just("api"), st.lists(lead_st, min_size=1, max_size=3)),
    st.tuples(st.just("lead"), lead_st),
    st.tuples(st.just("convert"), st.integers(0, 3)),
    st.tuples(st.just("erase"), st.integers(0, 3)),
)


def _contact(spec: dict[str, Any]) -> tuple[str | None, str | None]:
    phone = PERSON_PHONES[spec["person"]]
    email = f"p{spec['person']}@example.com" if spec["email"] or phone is None else None
    return phone, email


def _csv(rows: list[dict[str, Any]], now) -> bytes:
    lines = ["Full Name;Mobile;E-mail;Stage;Treatment;Date"]
    for spec in rows:
        phone, email = _contact(spec)
        when = (now - timedelta(days=spec["days"], minutes=spec["person"])).strftime("%m/%d/%Y %H:%M")
        lines.append(";".join([spec["name"] or "", phone or "", email or "", spec["status"], spec["service"], when]))
    return ("\n".join(lines) + "\n").encode("utf-8")


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.lists(op_st, min_size=1, max_size=6))
def test_customers_equal_their_leads_after_every_write(session, now, ops):
    session.rollback()
    profile = f.make_profile(session)
    campaign = None
    for op, arg in ops:
        if op == "import":
            report = leads.import_leads(session, profile_id=profile.id, source=io.BytesIO(_csv(arg, now)), now=now)
            assert not report.rejected
        elif op == "api":
            leads.add_leads(session, profile_id=profile.id, now=now, leads=[{
                "customer_name": s["name"], "customer_phone": _contact(s)[0], "customer_email": _contact(s)[1],
                "status": s["status"], "service_type": s["service"],
                "created_at": (now - timedelta(days=s["days"])).isoformat()} for s in arg])
        elif op == "lead":
            phone, email = _contact(arg)
            f.lead(session, profile, phone=phone, email=email, name=arg["name"], status=arg["status"],
                   days_ago=arg["days"], service_type=arg["service"] or None, now=now)
        elif op == "convert":
            if campaign is None:
                campaign = f.campaign(session, profile, method="email", now=now)
            targeting.select_recipients(session, campaign=campaign, now=now)  # newcomers since the last time
            recipient = session.scalars(select(CampaignRecipient).where(
                CampaignRecipient.campaign_id == campaign.id, CampaignRecipient.converted.is_(False),
                CampaignRecipient.contact_key.not_like("erased:%")).order_by(CampaignRecipient.contact_key)).first()
            if recipient is not None:
                event_id = f"test-{uuid.uuid4()}"
                record_event(session, provider="test", provider_event_id=event_id, type="converted",
                             occurred_at=now, recipient_id=recipient.id, payload={"service_type": "Color"})
                event = session.scalars(select(OutreachEvent).where(OutreachEvent.provider_event_id == event_id)).one()
                apply_event(session, event, now=now)
        else:
            phone, email = _contact({"person": arg, "email": True})
            with contextlib.suppress(NotFound):  # erased already, or never there
                customers.erase_customer(session, profile_id=profile.id, contact_key=leads.normalize_phone(phone)
                                         if phone else email, now=now)
        session.flush()
        assert_in_sync(session, profile.id)
    assert_scores(session, profile.id, now + timedelta(days=3))
    session.rollback()


def test_ids_are_stable_and_one_row_per_customer(session, now):
    p = f.make_profile(session)
    f.lead(session, p, phone="(312) 555-0100", name="Ann", days_ago=300, now=now)
    first = session.scalars(select(Customer).where(Customer.profile_id == p.id)).one()
    cid = first.id
    f.lead(session, p, phone="+13125550100", name=None, days_ago=10, now=now, status="Booked")
    leads.import_leads(session, profile_id=p.id, now=now, source=io.BytesIO(
        b"phone,name,status,date\n312-555-0100,Ann L.,Lost,2024-01-01\n"))
    rows = session.scalars(select(Customer).where(Customer.profile_id == p.id)).all()
    assert len(rows) == 1 and rows[0].id == cid
    # newest known name (the newest lead has none), status of the newest lead, every lead counted
    assert (rows[0].customer_name, rows[0].last_status, rows[0].lead_count) == ("Ann", "Booked", 3)
    assert rows[0].timezone == "America/Chicago"
    assert_in_sync(session, p.id)


def test_erased_customer_becomes_the_anonymous_row(session, now):
    p = f.make_profile(session)
    f.lead(session, p, phone="+13125550100", email="ann@example.com", name="Ann", days_ago=30, now=now,
           service_type="Color")
    cid = session.scalars(select(Customer.id).where(Customer.profile_id == p.id)).one()
    customers.erase_customer(session, profile_id=p.id, contact_key="+13125550100", now=now)
    row = session.get(Customer, cid)
    assert row.contact_key.startswith("erased:") and (row.customer_name, row.customer_phone, row.customer_email,
                                                      row.timezone) == (None, None, None, None)
    assert row.lead_count == 1 and row.service_types == ["Color"]  # anonymous facts stay
    assert_in_sync(session, p.id)
    assert customers.search_customers(session, profile_id=p.id) == ([], 0)


# --- the score ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("days", "n", "contacted", "responded", "expected"), [
    (0, 1, 0, 0, 65),        # 100 * (0.45 * 1 + 0.35 * 0.2835 + 0.2 * 1/2) = 64.92
    (180, 1, 0, 0, 42),      # recency halved: 100 * (0.225 + 0.0992 + 0.1) = 42.42
    (360, 9, 0, 0, 55),      # 100 * (0.1125 + 0.35 * 0.9502 + 0.1) = 54.51
    (0, 3, 4, 4, 84),        # 100 * (0.45 + 0.35 * 0.6321 + 0.2 * 5/6) = 83.79
    (10_000, 1, 10, 0, 12),  # 100 * (0 + 0.0992 + 0.2 * 1/12) = 11.59
])
def test_the_score_formula(days, n, contacted, responded, expected):
    assert score_of(days_since_last_contact=days, lead_count=n, contacted=contacted, responded=responded) == expected


def test_the_score_is_monotone_in_each_input():
    base = {"days_since_last_contact": 100.0, "lead_count": 2, "contacted": 2, "responded": 1}
    for days in range(0, 2000, 37):
        assert score_of(**{**base, "days_since_last_contact": days + 37}) <= score_of(
            **{**base, "days_since_last_contact": days})
    for n in range(1, 30):
        assert score_of(**{**base, "lead_count": n + 1}) >= score_of(**{**base, "lead_count": n})
    for r in range(0, 5):
        assert score_of(**{**base, "contacted": 6, "responded": r + 1}) >= score_of(
            **{**base, "contacted": 6, "responded": r})
    for c in range(1, 10):
        assert score_of(**{**base, "contacted": c + 1}) <= score_of(**{**base, "contacted": c})
    assert all(0 <= score_of(days_since_last_contact=d, lead_count=n, contacted=c, responded=min(c, 3)) <= 100
               for d in (-5, 0, 10**6) for n in (1, 10**6) for c in (0, 10**6))


def test_scores_in_sql_equal_the_formula_and_follow_responses(session, now):
    p = f.make_profile(session)
    for i, days in enumerate((1, 90, 200, 400, 1200)):
        for _ in range(i + 1):
            f.lead(session, p, phone=f"+1 312 555 01{i:02d}", days_ago=days, now=now)
    c = f.campaign(session, p, method="sms", criteria={})
    targeting.select_recipients(session, campaign=c, now=now)
    session.execute(update(CampaignRecipient).where(CampaignRecipient.contact_key == "+13125550101")
                    .values(sent_at=now, responded_at=now))
    session.execute(update(CampaignRecipient).where(CampaignRecipient.contact_key == "+13125550102")
                    .values(sent_at=now))
    assert_scores(session, p.id, now)
    assert_scores(session, p.id, now + timedelta(days=400))  # recency moves with the clock alone
    assert_scores(session, p.id, now)
    by_score = targeting.preview_audience(session, profile_id=p.id, target_criteria={"score_min": 60},
                                          outreach_method="sms", now=now)
    scores = {c.contact_key: c.score for c in session.scalars(select(Customer).where(Customer.profile_id == p.id))}
    assert by_score.count == sum(s >= 60 for s in scores.values()) > 0
    low = targeting.preview_audience(session, profile_id=p.id, target_criteria={"score_max": 59},
                                     outreach_method="sms", now=now)
    assert low.count + by_score.count == 5


# --- the business's own statuses -------------------------------------------------------------------------


def test_statuses_are_stored_as_written_and_matched_ignoring_case_and_spaces(session, now):
    p = f.make_profile(session)
    f.lead(session, p, phone="+13125550100", status=" Booked ", now=now)
    f.lead(session, p, phone="+13125550101", status="booked", now=now)
    f.lead(session, p, phone="+13125550102", status="BOOKED", now=now)
    f.lead(session, p, phone="+13125550103", status="No-show", now=now)
    f.lead(session, p, phone="+13125550104", status="", now=now)
    f.lead(session, p, phone="+13125550105", status="Booked", now=now)
    assert sorted(session.scalars(select(Lead.status).where(Lead.profile_id == p.id))) == [
        "BOOKED", "Booked", "Booked", "New", "No-show", "booked"]  # trimmed, else as written
    for criteria in ({"status": "booked"}, {"status": ["  BOOKED  "]}, {"filters": [
            {"field": "status", "op": "eq", "value": " Booked"}]}, {"filters": [
            {"field": "status", "op": "in", "value": ["bOOked", "x"]}]}):
        assert targeting.preview_audience(session, profile_id=p.id, target_criteria=criteria, outreach_method="sms",
                                          now=now).count == 4, criteria
    assert targeting.preview_audience(session, profile_id=p.id, outreach_method="sms", now=now, target_criteria={
        "filters": [{"field": "status", "op": "ne", "value": "booked "}]}).count == 2
    found = customers.lead_statuses(session, profile_id=p.id)
    # grouped ignoring case, shown as most often written
    assert [(s.status, s.customers, s.leads) for s in found] == [("Booked", 4, 4), ("New", 1, 1), ("No-show", 1, 1)]


def test_criteria_are_stored_and_returned_exactly_as_given(session, now):
    p = f.make_profile(session)
    given = {"status": "Booked", "service_type": "Color", "last_contact_days": 90,
             "filters": [{"field": "notes", "op": "contains", "value": "wedding"}]}
    c = f.campaign(session, p, method="email", criteria=given)
    session.commit()
    session.expire_all()
    assert session.get(Campaign, c.id).target_criteria == given
    assert isinstance(session.get(Campaign, c.id).target_criteria["status"], str)


def test_filters_on_what_only_a_lead_has_read_the_most_recent_lead(session, now):
    p = f.make_profile(session)
    f.lead(session, p, phone="+13125550100", notes="Booked for a wedding", days_ago=300, now=now)
    f.lead(session, p, phone="+13125550100", notes="asked about prices", days_ago=100, now=now)
    f.lead(session, p, phone="+13125550101", notes="Wedding in June", days_ago=200, now=now)
    preview = targeting.preview_audience(session, profile_id=p.id, outreach_method="sms", now=now, target_criteria={
        "filters": [{"field": "notes", "op": "contains", "value": "wedding"}]})
    assert [s["customer_phone"] for s in preview.sample] == ["+13125550101"]


# --- who a selection leaves out, and why (§10) ------------------------------------------------------------


@pytest.fixture
def shop(session, now):
    """A business under the US consent policy with one customer per situation (phone and e-mail each)."""
    p = f.make_profile(session, consent_policy="us_tcpa")
    people = {"written": "0100", "express": "0101", "revoked": "0102", "dnc": "0103", "opted": "0104",
              "none": "0105", "all_written": "0106"}
    for name, last4 in people.items():
        f.lead(session, p, phone=f"+1312555{last4}", email=f"{name}@example.com", name=name, now=now)
    f.lead(session, p, email="mailonly@example.com", name="mailonly", now=now)

    def consent(last4: str, channel: str, level: str, revoked: bool = False) -> None:
        session.add(Consent(id=uuid.uuid4(), profile_id=p.id, contact=f"+1312555{last4}", channel=channel,
                            level=level, source="manual", captured_at=now - timedelta(days=5),
                            revoked_at=now - timedelta(days=1) if revoked else None))

    consent("0100", "sms", "express_written")
    consent("0101", "sms", "express")
    consent("0102", "sms", "express_written", revoked=True)
    consent("0103", "sms", "express_written")
    consent("0104", "sms", "express_written")
    consent("0106", "all", "express_written")
    from core.models import DncNumber

    session.add(DncNumber(id=uuid.uuid4(), profile_id=p.id, number="+13125550103", source="internal"))
    session.add(OptOut(id=uuid.uuid4(), profile_id=p.id, contact="+13125550104", channel="sms", source="manual"))
    session.flush()
    return p


def _names(session, campaign_id) -> list[str]:
    return sorted(session.scalars(select(CampaignRecipient.customer_name)
                                  .where(CampaignRecipient.campaign_id == campaign_id)))


@pytest.mark.parametrize(("campaign_type", "picked", "no_consent"), [
    ("winback", ["all_written", "written"], 3),     # marketing: written consent only
    ("promotional", ["all_written", "written"], 3),
    ("followup", ["all_written", "written"], 3),
    ("feedback", ["all_written", "express", "written"], 2),  # informational: any consent
])
def test_consent_levels_by_campaign_type(session, shop, now, campaign_type, picked, no_consent):
    c = f.campaign(session, shop, method="sms", campaign_type=campaign_type)
    result = targeting.select_recipients(session, campaign=c, now=now)
    assert _names(session, c.id) == picked
    assert result.suppressed_by == {"opted_out": 1, "dnc": 1, "no_consent": no_consent, "no_contact": 1}
    assert result.suppressed == 2 + no_consent
    preview = targeting.preview_audience(session, profile_id=shop.id, target_criteria={}, outreach_method="sms",
                                         campaign_type=campaign_type, now=now)
    assert (preview.count, preview.suppressed, preview.suppressed_by) == (
        result.selected, result.suppressed, result.suppressed_by)
    report = session.get(Campaign, c.id).selection_report
    assert report["no_consent"] == no_consent and report["selections"] == 1 and report["last_selected_at"]


def test_email_needs_no_consent_and_any_usable_channel_selects(session, shop, now):
    email = f.campaign(session, shop, method="email")
    result = targeting.select_recipients(session, campaign=email, now=now)
    assert result.selected == 8 and result.suppressed_by == dict.fromkeys(targeting.REASONS, 0)
    multi = f.campaign(session, shop, method="multi", steps=[{"channel": "sms"}, {"channel": "email"}])
    assert targeting.select_recipients(session, campaign=multi, now=now).selected == 8


def test_policy_none_leaves_consent_to_the_business(session, shop, now):
    session.execute(update(type(shop)).where(type(shop).id == shop.id).values(consent_policy="none"))
    c = f.campaign(session, shop, method="sms")
    result = targeting.select_recipients(session, campaign=c, now=now)
    assert result.suppressed_by == {"opted_out": 1, "dnc": 1, "no_consent": 0, "no_contact": 1}
    assert result.selected == 5


def test_reasons_come_in_order_opted_out_then_dnc_then_consent(session, now):
    p = f.make_profile(session, consent_policy="us_tcpa")
    f.lead(session, p, phone="+13125550100", now=now)  # on the list, opted out, no consent: opted_out
    from core.models import DncNumber

    session.add(DncNumber(id=uuid.uuid4(), profile_id=p.id, number="+13125550100", source="internal"))
    session.add(OptOut(id=uuid.uuid4(), profile_id=p.id, contact="+13125550100", channel="all", source="manual"))
    f.lead(session, p, phone="+13125550101", now=now)  # on the list, no consent: dnc
    session.add(DncNumber(id=uuid.uuid4(), profile_id=p.id, number="+13125550101", source="internal"))
    session.flush()
    preview = targeting.preview_audience(session, profile_id=p.id, target_criteria={}, outreach_method="call",
                                         now=now)
    assert preview.suppressed_by == {"opted_out": 1, "dnc": 1, "no_consent": 0, "no_contact": 0}


def test_hand_picked_customers_follow_the_same_rules(session, shop, now):
    c = f.campaign(session, shop, method="sms")
    result = campaigns.add_recipients(session, profile_id=shop.id, campaign_id=c.id, now=now, contacts=[
        {"customer_phone": f"+1312555{n}"} for n in ("0100", "0101", "0103", "0104", "0106")])
    assert (result.selected, result.suppressed) == (2, 3)
    assert result.suppressed_by == {"opted_out": 1, "dnc": 1, "no_consent": 1, "no_contact": 0}
    added = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)).all()
    assert all(r.customer_id is not None for r in added)


# --- holdout, test-then-winner, always-on (§11) -----------------------------------------------------------


@pytest.fixture
def crowd(session, now):
    p = f.make_profile(session)
    for i in range(400):
        f.lead(session, p, phone=f"+1 312 555 {i:04d}", name=f"C{i}", days_ago=200, now=now)
    return p


def test_holdout_is_a_deterministic_share_never_contacted(session, crowd, now):
    c = campaign_with(session, crowd, holdout_percent=20)
    result = targeting.select_recipients(session, campaign=c, now=now)
    rows = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)).all()
    held = {r.contact_key for r in rows if r.status == "holdout"}
    assert result.holdout == len(held) and result.selected == 400 - len(held) and 50 <= len(held) <= 110
    assert result.total_recipients == result.selected
    assert all(r.next_attempt_at is None and r.variant is None for r in rows if r.status == "holdout")
    assert all(r.customer_id is not None for r in rows)
    campaigns.start_campaign(session, profile_id=crowd.id, campaign_id=c.id, now=now + timedelta(hours=1))
    session.expire_all()
    assert all(r.next_attempt_at is None for r in session.scalars(select(CampaignRecipient).where(
        CampaignRecipient.campaign_id == c.id, CampaignRecipient.status == "holdout")))
    # the same customers again in a copy of the campaign with the same id: determinism by campaign and key
    again = campaign_with(session, crowd, holdout_percent=20)
    targeting.select_recipients(session, campaign=again, now=now)
    other = {r.contact_key for r in session.scalars(select(CampaignRecipient).where(
        CampaignRecipient.campaign_id == again.id, CampaignRecipient.status == "holdout"))}
    assert other != held  # another campaign draws its own group
    session.execute(delete(CampaignRecipient).where(CampaignRecipient.campaign_id == again.id))
    targeting.select_recipients(session, campaign=again, now=now)
    assert {r.contact_key for r in session.scalars(select(CampaignRecipient).where(
        CampaignRecipient.campaign_id == again.id, CampaignRecipient.status == "holdout"))} == other


def test_test_then_winner_groups(session, crowd, now):
    c = campaign_with(session, crowd, variant_mode="test_then_winner", test_percent=25, test_hours=24.0,
                      variants=[{"name": "A", "weight": 1}, {"name": "B", "weight": 1, "message_template": "Hey!"}])
    targeting.select_recipients(session, campaign=c, now=now)
    campaigns.start_campaign(session, profile_id=crowd.id, campaign_id=c.id, now=now)
    session.expire_all()
    rows = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)).all()
    test = [r for r in rows if r.ab_group == "test"]
    rest = [r for r in rows if r.ab_group == "rest"]
    assert len(test) + len(rest) == 400 and 60 <= len(test) <= 140
    assert {r.variant for r in test} == {"A", "B"} and all(r.next_attempt_at == now for r in test)
    assert all(r.variant is None and r.next_attempt_at == now + timedelta(hours=24) for r in rest)


def test_rest_get_the_winner_once_decided(session, crowd, now):
    c = campaign_with(session, crowd, variant_mode="test_then_winner", test_percent=10,
                      variants=[{"name": "A", "weight": 1}, {"name": "B", "weight": 1, "message_template": "Hey!"}])
    session.execute(update(Campaign).where(Campaign.id == c.id).values(winner_variant="B"))
    session.refresh(c)
    targeting.select_recipients(session, campaign=c, now=now)
    rest = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id,
                                                           CampaignRecipient.ab_group == "rest")).all()
    assert rest and all(r.variant == "B" and r.next_attempt_at == now for r in rest)


def test_always_on_enrols_newcomers_and_re_enrols_after_the_wait(session, now):
    p = f.make_profile(session)
    f.lead(session, p, phone="+13125550100", name="Ann", days_ago=200, now=now)
    f.lead(session, p, phone="+13125550101", name="Bo", days_ago=200, now=now)
    c = campaign_with(session, p, criteria={"last_contact_days": 100}, always_on=True, reenroll_after_days=30)
    assert targeting.select_recipients(session, campaign=c, now=now).selected == 2
    assert targeting.select_recipients(session, campaign=c, now=now).selected == 0  # still running
    # Ann's enrolment ended 40 days after selection; Bo's is still going
    later = now + timedelta(days=80)
    session.execute(update(CampaignRecipient).where(CampaignRecipient.contact_key == "+13125550100")
                    .values(next_attempt_at=None, status="delivered", updated_at=now + timedelta(days=40)))
    f.lead(session, p, phone="+13125550102", name="Cy", days_ago=150, now=now)
    result = targeting.select_recipients(session, campaign=c, now=later)
    assert result.selected == 2  # Cy is new, Ann comes back for a second enrolment
    rows = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)
                           .order_by(CampaignRecipient.contact_key, CampaignRecipient.enrollment)).all()
    assert [(r.customer_name, r.enrollment) for r in rows] == [("Ann", 1), ("Ann", 2), ("Bo", 1), ("Cy", 1)]
    assert session.get(Campaign, c.id).selection_report["selections"] == 3
    # a campaign that is not always-on never takes anyone twice
    once = f.campaign(session, p, method="sms", criteria={"last_contact_days": 100})
    assert targeting.select_recipients(session, campaign=once, now=now).selected == 3
    session.execute(update(CampaignRecipient).where(CampaignRecipient.campaign_id == once.id)
                    .values(next_attempt_at=None, updated_at=now))
    assert targeting.select_recipients(session, campaign=once, now=now + timedelta(days=400)).selected == 0


def test_a_new_lead_marks_every_recipient_of_the_customer_returned(session, now):
    p = f.make_profile(session)
    for i in range(40):
        f.lead(session, p, phone=f"+1 312 555 {i:04d}", name=f"C{i}", days_ago=200, now=now)
    c = campaign_with(session, p, holdout_percent=50)
    targeting.select_recipients(session, campaign=c, now=now)
    campaigns.start_campaign(session, profile_id=p.id, campaign_id=c.id, now=now)
    rows = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)).all()
    held = next(r for r in rows if r.status == "holdout")
    sent = next(r for r in rows if r.status != "holdout")
    session.execute(update(CampaignRecipient).where(CampaignRecipient.id == sent.id).values(sent_at=now))
    from core.models import WebhookEndpoint

    session.add(WebhookEndpoint(id=uuid.uuid4(), profile_id=p.id, url="https://hooks.example/x",
                                events=["customer.returned"], secret="x"))
    f.lead(session, p, phone=held.contact_key, days_ago=-2, now=now)
    f.lead(session, p, phone=sent.contact_key, days_ago=-3, now=now)
    f.lead(session, p, phone=sent.contact_key, days_ago=-4, now=now)  # returned once, at the first lead
    f.lead(session, p, phone=rows[2].contact_key if rows[2].id not in (held.id, sent.id) else rows[3].contact_key,
           days_ago=-20, now=now)  # after the 14-day window: not a return
    session.expire_all()
    assert session.get(CampaignRecipient, held.id).returned_at == now + timedelta(days=2)
    assert session.get(CampaignRecipient, sent.id).returned_at == now + timedelta(days=3)
    assert session.get(CampaignRecipient, sent.id).converted
    events = session.scalars(select(WebhookEvent).where(WebhookEvent.type == "customer.returned")).all()
    assert sorted((e.data["recipient_id"], e.data["holdout"]) for e in events) == sorted(
        [(str(held.id), True), (str(sent.id), False)])
    assert all(e.data["customer_id"] and e.data["lead_id"] and e.data["returned_at"] for e in events)
