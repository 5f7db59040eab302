"""The law as data (core.compliance, core.consents.required_level): the state of a number, its calling
hours, the caps, this business's calls and texts of the last 24 hours, and what a campaign is told."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
import phonenumbers.geocoder
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from core import compliance
from core.compliance import FEDERAL, STATE_RULES, calling_hours, cap_applies, recent_contact_times, state_rule
from core.consents import CONSENT_RULES, PURPOSE, required_level, satisfies
from core.errors import NotFound
from core.models import CAMPAIGN_TYPES, CHANNELS, CONSENT_POLICIES, Campaign, CampaignRecipient, OutreachAttempt
from tests import factories as f

# --- the state of a number, by its area code ------------------------------------------------------------

STATES = {
    "FL": ["+13055550101", "+14075550101", "+18135550101", "+19545550101", "+17285550101", "+13245550101"],
    "OK": ["+14055550101", "+19185550101", "+15805550101", "+15395550101"],
    "MD": ["+13015550101", "+14105550101", "+14435550101", "+12405550101", "+16675550101"],
}
ELSEWHERE = [
    "+12125550101",  # New York
    "+12025550101",  # Washington, D.C.
    "+14155550101",  # California
    "+18005550101", "+18885550101",  # toll-free: no state
    "+14165550101",  # Toronto: Canada shares +1
    "+17875550101",  # Puerto Rico
    "+442079460018", "+4930901820",  # other countries
]


@pytest.mark.parametrize(("state", "number"), [(s, n) for s, numbers in STATES.items() for n in numbers])
def test_numbers_of_the_three_states_get_their_rule(state: str, number: str) -> None:
    rule = state_rule(number)
    assert rule is not None and rule.state == state
    assert calling_hours(number) == (8 * 60, 20 * 60, rule.source)
    assert rule.cap == 3


@pytest.mark.parametrize("number", ELSEWHERE)
def test_other_numbers_keep_the_federal_hours(number: str) -> None:
    assert state_rule(number) is None
    assert calling_hours(number) == (8 * 60, 21 * 60, "47 CFR 64.1200(c)(1)")


def test_the_state_is_the_one_the_geocoder_names() -> None:
    # the table is asked of the area code: every exchange of a rule state's area code belongs to it
    for state, numbers in STATES.items():
        for number in numbers:
            for exchange in ("2345678", "7771234", "5550199"):
                other = number[:5] + exchange
                described = phonenumbers.geocoder.description_for_number(phonenumbers.parse(other), "en")
                assert described in ("", compliance.rule_for_state(state).name) or described.endswith(f", {state}")
                assert state_rule(other).state == state


def _geocoder_state(npa: str) -> str | None:
    """The USPS code of the state phonenumbers' geocoder places an area code in (asked of two exchanges:
    it knows some exchanges of a new overlay by city only), or ``None`` outside the US."""
    names = {rule.name: rule.state for rule in STATE_RULES}
    for probe in (f"+1{npa}5550100", f"+1{npa}2345678"):
        number = phonenumbers.parse(probe, None)
        if phonenumbers.region_code_for_number(number) != "US":
            return None
        described = phonenumbers.geocoder.description_for_number(number, "en")
        if "," in described:  # "Tampa, FL"
            return described.rsplit(",", 1)[1].strip()
        if described:
            return names.get(described, described)
    return None


def test_the_area_code_lists_are_the_geocoders() -> None:
    """Every area code from 200 to 999: in a rule state's list exactly when the geocoder places it there."""
    listed = {npa: rule.state for rule in STATE_RULES for npa in rule.area_codes}
    found = {npa: state for n in range(200, 1000)
             if (state := _geocoder_state(npa := str(n))) in {rule.state for rule in STATE_RULES}}
    assert listed == found
    assert all(state_rule(f"+1{npa}5550100").state == state for npa, state in listed.items())


def test_the_scheduler_does_not_load_the_geocoder() -> None:
    """Its data costs a process about 100 MB; the state lists make it unnecessary at run time."""
    import subprocess
    import sys

    code = "import sys, scheduler; print('phonenumbers.geodata' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1])).stdout.split()
    assert out == ["False", "False"]


def test_each_row_cites_its_statute() -> None:
    cited = {rule.state: rule.source for rule in STATE_RULES}
    assert "Fla. Stat. § 501.616" in cited["FL"]
    assert "15 O.S. § 775C.1" in cited["OK"] and "2022" in cited["OK"]
    assert "Md. Code, Com. Law § 14-4501" in cited["MD"] and "2024" in cited["MD"]
    assert FEDERAL.source == "47 CFR 64.1200(c)(1)"
    assert all(rule.hours == (480, 1200) and rule.hours_text == "08:00–20:00" for rule in STATE_RULES)


def test_maryland_counts_texts_with_calls_the_others_calls_only() -> None:
    fl, ok, md = (state_rule(STATES[s][0]) for s in ("FL", "OK", "MD"))
    assert [cap_applies(r, "call") for r in (fl, ok, md)] == [True, True, True]
    assert [cap_applies(r, "sms") for r in (fl, ok, md)] == [False, False, True]
    assert [cap_applies(r, "email") for r in (fl, ok, md)] == [False, False, False]
    assert not cap_applies(None, "call")


def test_odd_input_has_no_state() -> None:
    for text in ("", "+1", "+1305555010", "+130555501012", "ann@example.com", "3055550101"):
        assert state_rule(text) is None
        assert calling_hours(text)[:2] == (480, 1260)


# --- the consent a campaign needs -------------------------------------------------------------------------

EXPECTED = {
    ("us_tcpa", "marketing", "call"): "express_written", ("us_tcpa", "marketing", "sms"): "express_written",
    ("us_tcpa", "marketing", "email"): None,
    ("us_tcpa", "informational", "call"): "express", ("us_tcpa", "informational", "sms"): "express",
    ("us_tcpa", "informational", "email"): None,
}


@pytest.mark.parametrize(("policy", "campaign_type", "channel"),
                         list(itertools.product(CONSENT_POLICIES, CAMPAIGN_TYPES, CHANNELS)))
def test_required_level_for_every_policy_type_and_channel(policy: str, campaign_type: str, channel: str) -> None:
    expected = None if policy == "none" else EXPECTED[(policy, PURPOSE[campaign_type], channel)]
    assert required_level(policy, campaign_type, channel) == expected


def test_marketing_and_informational_campaigns() -> None:
    assert {t for t, p in PURPOSE.items() if p == "marketing"} == {"winback", "promotional", "followup"}
    assert {t for t, p in PURPOSE.items() if p == "informational"} == {"feedback"}
    assert required_level("us_tcpa", "a type added later", "call") == "express_written"  # the strictest
    with pytest.raises(ValueError):
        required_level("gdpr", "winback", "call")
    assert all("47 CFR 64.1200" in rule.source and "FCC 24-17" in rule.source for rule in CONSENT_RULES)


@pytest.mark.parametrize(("level", "needed", "ok"), [
    (None, None, True), ("express", None, True), (None, "express", False), ("express", "express", True),
    ("express_written", "express", True), ("express", "express_written", False),
    ("express_written", "express_written", True), (None, "express_written", False)])
def test_written_consent_satisfies_express(level: str | None, needed: str | None, ok: bool) -> None:
    assert satisfies(level, needed) is ok


# --- this business's calls and texts of the last 24 hours -------------------------------------------------

FL, MD, NY = "+13055550101", "+13015550101", "+12125550101"


class Sends:
    """Campaigns, recipients and attempts straight into the tables, as the dispatcher leaves them."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session, self.now = session, now
        self.n = itertools.count(1)

    def campaign(self, profile: Any, method: str = "sms") -> Campaign:
        return f.campaign(self.session, profile, method=method, now=self.now)

    def recipient(self, campaign: Campaign, phone: str, *, status: str = "sent") -> CampaignRecipient:
        row = CampaignRecipient(id=uuid.uuid4(), campaign_id=campaign.id, profile_id=campaign.profile_id,
                                contact_key=phone, customer_phone=phone, customer_name="Pat", status=status,
                                response_data={})
        self.session.add(row)
        self.session.flush()
        return row

    def attempt(self, recipient: CampaignRecipient, channel: str, *, hours_ago: float,
                outcome: str | None = "accepted") -> OutreachAttempt:
        n = next(self.n)
        row = OutreachAttempt(id=uuid.uuid4(), profile_id=recipient.profile_id, campaign_id=recipient.campaign_id,
                              recipient_id=recipient.id, step=0, attempt_no=n, channel=channel, provider="sandbox",
                              idempotency_key=f"k{n}", outcome=outcome, detail={},
                              started_at=self.now - timedelta(hours=hours_ago))
        self.session.add(row)
        self.session.flush()
        return row


def test_recent_contacts_across_campaigns_calls_and_texts_apart(session: Session, now: datetime) -> None:
    shop, other = f.make_profile(session), f.make_profile(session)
    sends = Sends(session, now)
    texts, calls, later = sends.campaign(shop, "sms"), sends.campaign(shop, "call"), sends.campaign(shop, "call")
    in_texts, in_calls, in_later = (sends.recipient(c, FL) for c in (texts, calls, later))
    sends.attempt(in_texts, "sms", hours_ago=1)
    sends.attempt(in_texts, "sms", hours_ago=23.9)
    sends.attempt(in_texts, "sms", hours_ago=24.1)  # older than 24 hours
    sends.attempt(in_calls, "call", hours_ago=2)
    sends.attempt(in_calls, "call", hours_ago=0.01, outcome=None)  # still going on
    sends.attempt(in_later, "call", hours_ago=3, outcome="unknown")  # may have reached the customer
    for outcome in ("retryable", "permanent", "opted_out", "quota", "skipped"):  # never reached anyone
        sends.attempt(in_later, "call", hours_ago=4, outcome=outcome)
    theirs = sends.recipient(sends.campaign(other, "call"), FL)  # another business calling the same number
    sends.attempt(theirs, "call", hours_ago=1)
    sends.attempt(sends.recipient(texts, NY), "sms", hours_ago=1)

    counts = compliance.recent_contacts(session, profile_id=shop.id, contacts=[FL, MD, NY, FL], now=now)
    assert counts == {FL: {"call": 3, "sms": 2}, MD: {"call": 0, "sms": 0}, NY: {"call": 0, "sms": 1}}
    times = recent_contact_times(session, profile_id=shop.id, contacts=[FL], now=now)[FL]
    assert times["sms"] == [now - timedelta(hours=23.9), now - timedelta(hours=1)]
    assert times["call"] == sorted(times["call"]) and len(times["call"]) == 3
    assert compliance.recent_contacts(session, profile_id=other.id, contacts=[FL], now=now) == {
        FL: {"call": 1, "sms": 0}}
    # a day later nothing counts any more
    assert compliance.recent_contacts(session, profile_id=shop.id, contacts=[FL], now=now + timedelta(days=1)) == {
        FL: {"call": 0, "sms": 0}}
    assert compliance.recent_contacts(session, profile_id=shop.id, contacts=[], now=now) == {}


def test_maryland_reaches_its_cap_with_texts_florida_does_not(session: Session, now: datetime) -> None:
    shop = f.make_profile(session)
    sends = Sends(session, now)
    campaign = sends.campaign(shop, "sms")
    for phone in (FL, MD):
        row = sends.recipient(campaign, phone)
        for hours in (1, 2):
            sends.attempt(row, "sms", hours_ago=hours)
    call_campaign = sends.campaign(shop, "call")
    for phone in (FL, MD):
        sends.attempt(sends.recipient(call_campaign, phone), "call", hours_ago=3)
    counts = compliance.recent_contacts(session, profile_id=shop.id, contacts=[FL, MD], now=now)

    def counted(phone: str) -> int:
        rule = state_rule(phone)
        return sum(n for channel, n in counts[phone].items() if cap_applies(rule, channel))

    assert counted(FL) == 1 < state_rule(FL).cap  # Florida counts the call only
    assert counted(MD) == 3 == state_rule(MD).cap  # Maryland: calls and texts together reach the cap


def test_one_query_served_by_indexes(session: Session, engine: Any, backend: str, now: datetime) -> None:
    shop = f.make_profile(session)
    sends = Sends(session, now)
    campaign = sends.campaign(shop, "call")
    sends.attempt(sends.recipient(campaign, FL), "call", hours_ago=1)
    seen: list[tuple[str, Any]] = []

    def remember(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    try:
        phones = [FL, MD, NY] + [f"+1201555{i:04d}" for i in range(200)]
        recent_contact_times(session, profile_id=shop.id, contacts=phones, now=now)
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert len(seen) == 1
    if backend != "postgresql":
        return
    statement, parameters = seen[0]
    connection = session.connection()
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = "\n".join(r[0] for r in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
    assert "ix_campaign_recipients_profile_id_contact_key_sent_at" in plan, plan
    assert "uq_outreach_attempts_recipient_id_step_attempt_no" in plan, plan


# --- what a campaign is told -------------------------------------------------------------------------------


def test_campaign_compliance_by_state(session: Session, now: datetime) -> None:
    shop, other = f.make_profile(session), f.make_profile(session)
    shop.consent_policy = "us_tcpa"
    sends = Sends(session, now)
    campaign = sends.campaign(shop, "sms")
    for phone in ("+13055550101", "+14075550102", "+18135550103", "+13015550104", "+14105550105",
                  "+12125550106", "+18005550107", "+14165550108"):
        sends.recipient(campaign, phone, status="pending")
    sends.recipient(campaign, "+13055550109", status="holdout")  # never contacted: not counted
    campaign.selection_report = {"selected": 8, "suppressed_by": {"opted_out": 2, "no_consent": 5, "dnc": 1}}
    session.flush()

    report = compliance.campaign_compliance(session, profile_id=shop.id, campaign_id=campaign.id)
    assert report["policy"] == "us_tcpa" and report["selected"] == 8
    assert report["suppressed_by"] == {"opted_out": 2, "no_consent": 5, "dnc": 1, "no_contact": 0}
    assert set(report["by_state"]) == {"FL", "MD"}
    assert report["by_state"]["FL"] == {"recipients": 3, "hours": "08:00–20:00", "cap_per_24h": 3,
                                        "cap_counts_texts": False, "source": state_rule(FL).source}
    assert report["by_state"]["MD"]["recipients"] == 2 and report["by_state"]["MD"]["cap_counts_texts"] is True
    with pytest.raises(NotFound):
        compliance.campaign_compliance(session, profile_id=other.id, campaign_id=campaign.id)
    with pytest.raises(NotFound):
        compliance.campaign_compliance(session, profile_id=shop.id, campaign_id=uuid.uuid4())


@pytest.mark.parametrize(("report", "selected", "suppressed"), [
    ({}, 2, {"opted_out": 0, "no_consent": 0, "dnc": 0, "no_contact": 0}),
    ({"opted_out": 3, "no_consent": 4, "dnc": 1, "no_contact": 2}, 2,
     {"opted_out": 3, "no_consent": 4, "dnc": 1, "no_contact": 2}),
    ({"selected": "many", "suppressed_by": {"dnc": -1, "no_consent": True, "opted_out": 1.5}}, 2,
     {"opted_out": 0, "no_consent": 0, "dnc": 0, "no_contact": 0}),
    ({"selected": 5, "suppressed_by": "none"}, 5, {"opted_out": 0, "no_consent": 0, "dnc": 0, "no_contact": 0}),
])
def test_the_selection_report_is_read_defensively(session: Session, now: datetime, report: dict[str, Any],
                                                  selected: int, suppressed: dict[str, int]) -> None:
    shop = f.make_profile(session)
    shop.consent_policy = "none"
    sends = Sends(session, now)
    campaign = sends.campaign(shop, "email")
    for phone in (FL, MD):
        sends.recipient(campaign, phone)
    campaign.selection_report = report
    session.flush()
    out = compliance.campaign_compliance(session, profile_id=shop.id, campaign_id=campaign.id)
    assert out == {"policy": "none", "counted_on": "selection", "selected": selected, "suppressed_by": suppressed,
                   "by_state": {}}


def test_a_multi_channel_campaign_with_a_call_step_shows_its_states(session: Session, now: datetime) -> None:
    shop = f.make_profile(session)
    sends = Sends(session, now)
    campaign = sends.campaign(shop, "multi")
    sends.recipient(campaign, "+19185550101")
    out = compliance.campaign_compliance(session, profile_id=shop.id, campaign_id=campaign.id)
    assert out["by_state"]["OK"]["recipients"] == 1
    assert "775C" in out["by_state"]["OK"]["source"]
