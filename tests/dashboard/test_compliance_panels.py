"""Who is left out and the law that applies (DESIGN §10, §14): the campaign page's panel and the wizard's
review say in visible words who was left out and why — why consent is missing included — and, for calls and
texts, the states with their own rules among the customers' numbers (AppTest, both backends), from the
sentences of core/wizard.py (unit tests)."""

from __future__ import annotations

from datetime import UTC, datetime

from streamlit.testing.v1 import AppTest

from core import campaigns, compliance, consents, dnc, optouts, wizard
from core.models import Profile
from tests import factories as f
from tests.dashboard.conftest import assert_clean, button, open_app, texts

# the statute as compliance.STATE_RULES cites it, "§" kept on the line of its number
FLORIDA_LAW = "Florida Telephone Solicitation Act (CS/SB 1120, 2021), Fla. Stat. §\u00a0501.616(6)(a)–(b)"
MARYLAND_LAW = ("Maryland Stop the Spam Calls Act of 2023 (in force since 2024-01-01; texts are telephone "
                "solicitations too), Md. Code, Com. Law §\u00a014-4501 et seq.")
# (name, phone, e-mail, consent to texts on record, what else)
CUSTOMERS = [
    ("Fiona Flores", "+13055550101", None, "express_written", None),  # Florida
    ("Frank Diaz", "+13055550102", None, "express_written", None),
    ("Felix Ortiz", "+13055550103", None, None, None),  # no consent: left out
    ("Mary Baker", "+14105550101", None, "express_written", None),  # Maryland
    ("Mark Young", "+14105550102", None, "express", None),  # said yes, but not in writing: left out
    ("Nora Stone", "+12125550101", None, "express_written", None),  # New York: no rules of its own
    ("Nick Hale", "+12125550102", None, "express_written", "dnc"),  # on the do-not-call list: left out
    ("Nina Park", "+12125550103", None, "express_written", "opted_out"),  # texted STOP: left out
    ("Emma Roy", None, "emma@example.com", None, None),  # no phone number: not counted for texts
]
LEFT_OUT_PAST = (
    "4 customers who matched were left out when the campaign chose its customers:\n\n"
    "- 1 customer opted out.\n"
    "- 1 number was on your do-not-call list.\n"
    "- 2 customers had no written consent to texts. Win-back texts are marketing: US rules need the customer's "
    "written consent to texts.")
LEFT_OUT_NOW = (
    "4 customers who match are left out:\n\n"
    "- 1 customer opted out.\n"
    "- 1 number is on your do-not-call list.\n"
    "- 2 customers have no written consent to texts. Win-back texts are marketing: US rules need the customer's "
    "written consent to texts.")
STATE_ROWS = [
    {"State": "Florida", "Customers": 2, "Hours": "08:00–20:00",
     "Limit per 24 hours": "3 calls (texts not counted)", "Law": FLORIDA_LAW},
    {"State": "Maryland", "Customers": 1, "Hours": "08:00–20:00",
     "Limit per 24 hours": "3 calls and texts together", "Law": MARYLAND_LAW},
]


def _shop_under_us_rules(session, shop) -> Profile:
    """The shop under the US rules, with the customers of :data:`CUSTOMERS` (all dormant)."""
    profile = session.get(Profile, shop.profile_id)
    profile.consent_policy = "us_tcpa"
    seed_customers(session, profile)
    session.commit()
    return profile


def seed_customers(session, profile: Profile, *, service_type: str | None = None) -> None:
    """The customers of :data:`CUSTOMERS`, dormant for 300 days, with their consents, do-not-call entry and
    opt-out (also the browser test's, tests/browser/test_left_out_and_the_law.py)."""
    now = datetime.now(UTC)
    for name, phone, email, level, other in CUSTOMERS:
        f.lead(session, profile, phone=phone, email=email, name=name, status="Lost", days_ago=300, now=now,
               service_type=service_type)
        if level:
            consents.record_consent(session, profile_id=profile.id, contact=phone, channel="sms", level=level,
                                    source="import", now=now)
        if other == "dnc":
            dnc.add_numbers(session, profile_id=profile.id, numbers=[phone], source="internal", now=now)
        if other == "opted_out":
            optouts.record_opt_out(session, profile_id=profile.id, contact=phone, channel="sms", source="sms_stop",
                                   now=now)


def _table(at: AppTest) -> list[dict[str, object]]:
    [table] = at.table
    return table.value.to_dict("records")


def _expander(at: AppTest, label: str) -> None:
    labels = [e.label for e in at.expander]
    assert label in labels, labels


def _page_links(at: AppTest) -> list[str]:
    return [p.proto.label for p in at.get("page_link")]


def test_the_campaign_page_says_who_was_left_out_and_the_rules_of_each_state(app_db, shop, session):
    profile = _shop_under_us_rules(session, shop)
    c = f.campaign(session, profile, method="sms", name="Spring texts")
    campaigns.start_campaign(session, profile_id=profile.id, campaign_id=c.id)
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    _expander(at, "Who was left out (4), and the law")
    page = texts(at)
    assert wizard.POLICY_SENTENCES["us_tcpa"] in page
    assert LEFT_OUT_PAST in page
    assert "1 customer who matched had no phone number, so they were not counted." in page
    assert "**Customers in states with their own rules for calls and texts**" in page
    assert _table(at) == STATE_ROWS  # New York has no rules of its own: no row
    assert ("Hours are the customer's local time; elsewhere in the US, calls and texts go out only 08:00–21:00. A "
            "limit is per customer, across all your campaigns.") in page
    assert "Import consent or manage the do-not-call list" in _page_links(at)
    assert "None" not in page.replace("None of", "")
    # the same figures as the API's
    found = compliance.campaign_compliance(session, profile_id=profile.id, campaign_id=c.id)
    assert found["suppressed_by"] == {"opted_out": 1, "no_consent": 2, "dnc": 1, "no_contact": 1}
    assert {k: v["recipients"] for k, v in found["by_state"].items()} == {"FL": 2, "MD": 1}


def test_a_draft_says_who_would_be_left_out_as_things_stand(app_db, shop, session):
    profile = _shop_under_us_rules(session, shop)
    c = f.campaign(session, profile, method="call", name="Calls later")
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    assert_clean(at)
    # nobody has written consent to calls: everyone with a number is left out, so no state has anyone
    _expander(at, "Who would be left out (8), and the law")
    page = texts(at)
    assert "Customers are chosen when the campaign starts. As the audience stands now:" in page
    assert ("8 customers who match are left out:\n\n"
            "- 1 number is on your do-not-call list.\n"
            "- 7 customers have no written consent to calls. Win-back calls are marketing: US rules need the "
            "customer's written consent to calls.") in page
    assert ("None of these customers' numbers is in a state with rules of its own for calls and texts (Florida, "
            "Oklahoma or Maryland).") in page
    assert not at.table


def test_a_business_that_vouches_for_consent_is_told_so_and_nobody_left_out(app_db, shop, session):
    profile = session.get(Profile, shop.profile_id)  # policy "none"
    now = datetime.now(UTC)
    f.lead(session, profile, phone="+13055550111", name="Fay", now=now)
    c = f.campaign(session, profile, method="sms", name="Texts")
    campaigns.start_campaign(session, profile_id=profile.id, campaign_id=c.id)
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    _expander(at, "Who was left out, and the law")
    page = texts(at)
    assert wizard.POLICY_SENTENCES["none"] in page
    assert "\nNobody was left out.\n" in f"\n{page}\n"
    assert [row["State"] for row in _table(at)] == ["Florida"]


def _click(at: AppTest, label: str) -> AppTest:
    button(at, label).click()
    at.run()
    assert_clean(at)
    return at


def test_the_wizard_review_shows_who_is_left_out_why_and_the_states(app_db, shop, session):
    _shop_under_us_rules(session, shop)
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Spring texts")
    _click(at, "Next: audience")
    _click(at, "Next: channel")
    at.radio(key="w_method").set_value("sms").run()
    # beside the channel: the reasons in words, not in a tooltip
    assert LEFT_OUT_NOW in texts(at)
    _click(at, "Next: content")
    _click(at, "Next: schedule")
    _click(at, "Next: review")
    page = texts(at)
    assert {m.label: m.value for m in at.metric}["Customers to reach"] == "4"
    assert LEFT_OUT_NOW in page
    assert "1 customer who matches has no phone number, so they are not counted." in page
    assert wizard.POLICY_SENTENCES["us_tcpa"] in page
    assert _table(at) == STATE_ROWS
    assert "Import consent or manage the do-not-call list" in _page_links(at)

    # calls instead: the Florida limit is on calls now, and nobody has written consent to calls
    button(at, "3. Channel").click().run()
    at.radio(key="w_method").set_value("call").run()
    _click(at, "Next: content")
    button(at, "6. Review").click().run()
    assert_clean(at)
    assert "- 7 customers have no written consent to calls. Win-back calls are marketing" in texts(at)
    assert not at.table


# --- the sentences (core/wizard.py) ------------------------------------------------------------------------------


def test_why_consent_is_missing_follows_the_campaign_type_and_channels():
    assert wizard.consent_reason("us_tcpa", "winback", ["sms"]) == (
        "Win-back texts are marketing: US rules need the customer's written consent to texts.")
    assert wizard.consent_reason("us_tcpa", "promotional", ["call", "email"]) == (
        "Promotional calls are marketing: US rules need the customer's written consent to calls.")
    assert wizard.consent_reason("us_tcpa", "followup", ["email", "sms", "call"]) == (
        "Follow-up calls and texts are marketing: US rules need the customer's written consent to calls before a "
        "call, and to texts before a text.")
    assert wizard.consent_reason("us_tcpa", "feedback", ["sms"]) == (
        "Feedback texts are not marketing, but US rules still need the customer's consent to texts (written or not).")
    assert wizard.consent_reason("us_tcpa", "winback", ["email"]) is None  # e-mail needs none
    assert wizard.consent_reason("none", "winback", ["sms"]) is None  # the business vouches for it


def test_left_out_counts_in_words_with_plurals_and_no_zeros():
    one_each = {"opted_out": 1, "dnc": 1, "no_consent": 1, "no_contact": 1}
    words = wizard.left_out(one_each, policy="us_tcpa", campaign_type="feedback", channels=["call"])
    assert words.total == 3
    assert words.markdown() == (
        "3 customers who match are left out:\n\n"
        "- 1 customer opted out.\n"
        "- 1 number is on your do-not-call list.\n"
        "- 1 customer has not consented to calls. Feedback calls are not marketing, but US rules still need the "
        "customer's consent to calls (written or not).")
    assert words.no_contact == "1 customer who matches has no phone number, so they are not counted."

    many = {"opted_out": 3, "dnc": 0, "no_consent": 1200, "no_contact": 4}
    words = wizard.left_out(many, policy="us_tcpa", campaign_type="winback", channels=["email", "sms"])
    assert words.reasons[0] == "3 customers opted out."
    assert words.reasons[1].startswith("1,200 customers have no written consent to texts. Win-back texts")
    assert len(words.reasons) == 2  # no line for the do-not-call list: nobody is on it
    assert words.no_contact == "4 customers who match have no phone number or e-mail address, so they are not counted."

    nobody = wizard.left_out({}, policy="us_tcpa", campaign_type="winback", channels=["sms"])
    assert (nobody.markdown(), nobody.no_contact) == ("Nobody who matches is left out.", None)
    assert wizard.left_out({"no_contact": 0}, policy="none", campaign_type="winback", channels=["sms"],
                           past=True).markdown() == "Nobody was left out."
    only_unreachable = wizard.left_out({"no_contact": 2}, policy="us_tcpa", campaign_type="winback",
                                       channels=["email"], past=True)
    assert only_unreachable.markdown() == ("Nobody was left out for an opt-out, the do-not-call list or missing "
                                           "consent.")
    assert only_unreachable.no_contact == "2 customers who matched had no e-mail address, so they were not counted."
    one = wizard.left_out({"dnc": 1}, policy="us_tcpa", campaign_type="winback", channels=["call"], past=True)
    assert one.markdown() == ("1 customer who matched was left out when the campaign chose its customers:\n\n"
                              "- 1 number was on your do-not-call list.")


def test_state_rows_say_the_limit_for_the_campaign_channels():
    fl = {"recipients": 2, "hours": "08:00–20:00", "cap_per_24h": 3, "cap_counts_texts": False, "source": "x"}
    md = {**fl, "cap_counts_texts": True}
    assert [r["Limit per 24 hours"] for r in wizard.state_rows({"FL": fl, "MD": md}, channels=["call"])] == [
        "3 calls", "3 calls and texts together"]
    assert wizard.state_rows({"FL": fl}, channels=["sms"])[0]["Limit per 24 hours"] == "3 calls (texts not counted)"
    assert wizard.state_rows({"FL": fl}, channels=["sms", "call"])[0] == {
        "State": "Florida", "Customers": 2, "Hours": "08:00–20:00",
        "Limit per 24 hours": "3 calls", "Law": "x"}
