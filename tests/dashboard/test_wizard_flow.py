"""The wizard page (pages/create_campaign.py) in AppTest: edit a draft and duplicate any campaign
(``create_campaign?edit=`` / ``?copy=``), the live audience count, holdout, always-on, best hour, A/B test then
winner, the score range, the starter sequence, the cost and the "nothing goes out until" warning."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from core import campaigns, wizard
from core.models import Campaign, Profile
from tests import factories as f
from tests.dashboard.conftest import assert_clean, button, open_app, read, texts


def _customers(session, shop, *, policy: str = "none") -> None:
    """Five dormant customers: three with phone and e-mail, one phone only, one e-mail only."""
    profile = session.get(Profile, shop.profile_id)
    profile.consent_policy = policy
    now = datetime.now(UTC)
    rows = [("Maria Garcia", "+12015551000", "maria@example.com", 400), ("Liam Chen", "+12015551001",
            "liam@example.com", 300), ("Ava Patel", "+12015551002", "ava@example.com", 250),
            ("Noah Kim", "+12015551003", None, 220), ("Emma Roy", None, "emma@example.com", 200)]
    for name, phone, email, days in rows:
        f.lead(session, profile, phone=phone, email=email, name=name, status="Lost", days_ago=days, now=now,
               service_type="Oil change")
    session.commit()


def _click(at: AppTest, label: str) -> AppTest:
    button(at, label).click()
    at.run()
    assert_clean(at)
    return at


def _count(at: AppTest) -> str:
    return {m.label: m.value for m in at.metric}["Customers"]


def _campaigns(engine) -> list[Campaign]:  # type: ignore[no-untyped-def]
    return read(engine, lambda s: list(s.scalars(select(Campaign).order_by(Campaign.created_at))))


def _leaks(at: AppTest) -> list[str]:
    """Error and warning texts that name a field as the API does (message_template, …)."""
    said = [e.value for e in (*at.error, *at.warning)]
    return [s for s in said if re.search(r"\b[a-z]+_[a-z_]+\b", re.sub(r"\{[^}]*\}", "", s))]


def test_the_audience_count_follows_every_change_and_counts_any_channel_first(app_db, shop, session):
    _customers(session, shop)
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Win back")
    _click(at, "Next: audience")
    assert not [b for b in at.button if b.label == "Update count"]
    assert _count(at) == "5"  # before a channel is picked: everyone reachable on any channel
    assert "Counted for any channel" in texts(at)
    at.number_input(key="w_days").set_value(240).run()
    assert _count(at) == "3"  # no button: the count follows the change
    at.slider(key="w_score").set_value((60, 100)).run()
    assert at.session_state["wizard"]["draft"]["target_criteria"]["score_min"] == 60
    at.slider(key="w_score").set_value((0, 100)).run()
    assert "score_min" not in at.session_state["wizard"]["draft"]["target_criteria"]
    at.number_input(key="w_days").set_value(0).run()
    _click(at, "Next: channel")
    assert _count(at) == "4"  # e-mail picked (the default): the phone-only customer is out
    at.radio(key="w_method").set_value("sms").run()
    assert _count(at) == "4"


def test_one_customer_is_one(app_db, shop, session):
    _customers(session, shop)
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Just Maria")
    _click(at, "Next: audience")
    at.number_input(key="w_days").set_value(350).run()
    assert _count(at) == "1"
    assert "The one customer who matches." in texts(at) and "1 customers" not in texts(at)


def test_holdout_always_on_best_hour_and_a_test_then_winner_are_saved(app_db, shop, session, engine):
    _customers(session, shop)
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Quiet ones")
    _click(at, "Next: audience")
    _click(at, "Next: channel")
    _click(at, "Next: content")
    at.text_input(key="w_b_email_subject").input("Only this week, {first_name|friend}")
    at.radio(key="w_variant_mode").set_value("test_then_winner")
    at.number_input(key="w_test_percent").set_value(30)
    at.number_input(key="w_test_hours").set_value(24.0)
    _click(at, "Next: schedule")
    # starting when confirmed: no date or time to fill in
    assert not at.date_input and not [t for t in at.time_input if t.key == "w_time"]
    at.radio(key="w_when").set_value("later").run()
    assert [d.key for d in at.date_input] == ["w_date"]
    at.radio(key="w_when").set_value("now").run()
    assert not at.date_input
    at.slider(key="w_holdout").set_value(20).run()
    assert ("20 % of 4 customers (1) will not be contacted, so you can see how many came back because of the "
            "campaign.") in texts(at)
    at.checkbox(key="w_always_on").check().run()
    at.number_input(key="w_reenroll").set_value(90).run()
    at.radio(key="w_send_time").set_value("best")
    _click(at, "Next: review")
    page = texts(at)
    assert "20% of the customers are kept back" in page and "Always on" in page
    assert "30% try both versions" in page
    assert "**Estimated cost.** About $0" in page
    _click(at, "Save as draft")
    [c] = _campaigns(engine)
    assert (c.holdout_percent, c.always_on, c.reenroll_after_days, c.send_time) == (20, True, 90, "best")
    assert (c.variant_mode, c.test_percent, c.test_hours) == ("test_then_winner", 30, 24.0)
    assert c.variants[1]["email_subject"] == "Only this week, {first_name|friend}"


def test_the_review_warns_when_nothing_can_go_out_for_a_while(app_db, shop, session):
    _customers(session, shop)
    tomorrow = datetime.now(ZoneInfo("America/New_York")) + timedelta(days=1)
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[tomorrow.weekday()]
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Texts")
    _click(at, "Next: audience")
    _click(at, "Next: channel")
    at.radio(key="w_method").set_value("sms").run()
    _click(at, "Next: content")
    _click(at, "Next: schedule")
    at.multiselect(key="w_days_allowed").set_value([day])
    _click(at, "Next: review")
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("Nothing goes out until 09:00 tomorrow in New York") for w in warnings), warnings
    assert "**Estimated cost.** About $" in texts(at)
    assert "SMS: 4 × $0.0083 (1 segment per text at $0.0083 a segment) = $0.03" in texts(at)


def test_the_starter_sequence_in_one_click(app_db, shop, session, engine):
    _customers(session, shop)
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Call first")
    _click(at, "Next: audience")
    _click(at, "Next: channel")
    _click(at, "Use the starter sequence")
    assert at.radio(key="w_method").value == "multi"
    assert [s.value for s in at.selectbox if s.key and s.key.startswith("w_step_channel_")] == ["call", "sms",
                                                                                                "email"]
    assert "no online booking link yet" in texts(at)
    _click(at, "Next: content")
    assert at.text_area(key="w_sms_template").value == wizard.STARTER_SMS
    _click(at, "Next: schedule")
    _click(at, "Next: review")
    page = texts(at)
    assert "Step 2: SMS — 1 h after the previous step, only if no call was answered (no answer or voicemail)" in page
    assert "Step 3: E-mail — 72 h after the previous step, only if they have not responded yet" in page
    _click(at, "Save as draft")
    [c] = _campaigns(engine)
    assert c.outreach_method == "multi" and [s["channel"] for s in c.steps] == ["call", "sms", "email"]


def test_no_api_field_name_leaks_into_an_error(app_db, shop, session):
    _customers(session, shop)
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Oops")
    _click(at, "Next: audience")
    _click(at, "Next: channel")
    at.radio(key="w_method").set_value("sms").run()
    _click(at, "Next: content")
    at.text_area(key="w_sms_template").input("Hi {first_nam}")
    _click(at, "Check and preview")
    said = [e.value for e in at.error]
    assert any(s.startswith("SMS text: Unknown variable {first_nam}") for s in said), said
    assert _leaks(at) == []
    # the review refuses a text emptied behind the form's back, in the wizard's words
    at.text_area(key="w_sms_template").input("Hi {first_name|there}")
    _click(at, "Next: schedule")
    _click(at, "Next: review")
    at.session_state["wizard"]["draft"]["sms_template"] = ""
    _click(at, "Save as draft")
    assert "SMS text: An SMS campaign needs the message text." in texts(at)
    assert "message_template" not in texts(at).lower().replace("{", "")


def test_edit_a_draft_saves_onto_it(app_db, shop, session, engine):
    _customers(session, shop)
    profile = session.get(Profile, shop.profile_id)
    draft = f.campaign(session, profile, name="Spring", method="sms", criteria={"last_contact_days": 240},
                       holdout_percent=10)
    session.commit()
    at = open_app(shop, "create_campaign", {"edit": str(draft.id)})
    assert at.title[0].value == "Edit “Spring”"
    assert at.text_input(key="w_name").value == "Spring"
    at.text_input(key="w_name").input("Spring, kinder")
    _click(at, "Next: audience")
    assert _count(at) == "3"  # the stored audience, for the stored channel
    button(at, "6. Review").click().run()
    assert [b.label for b in at.button if b.label in ("Save changes", "Save and start now", "Start now")] == [
        "Save changes", "Save and start now"]
    _click(at, "Save changes")
    [c] = _campaigns(engine)
    assert (c.id, c.name, c.status, c.outreach_method, c.holdout_percent) == (draft.id, "Spring, kinder", "draft",
                                                                            "sms", 10)
    assert c.message_template == f.CONTENT["sms"]["message_template"]
    assert at.title[0].value == "Spring, kinder"  # the campaign page


def test_a_started_campaign_cannot_be_edited_but_can_be_copied(app_db, shop, session, engine):
    _customers(session, shop)
    profile = session.get(Profile, shop.profile_id)
    running = f.campaign(session, profile, name="Running", criteria={"last_contact_days": 240})
    campaigns.start_campaign(session, profile_id=profile.id, campaign_id=running.id)
    session.commit()
    at = open_app(shop, "create_campaign", {"edit": str(running.id)})
    assert any("“Running” is running, so it can no longer be edited" in w.value for w in at.warning)
    assert at.title[0].value == "Create campaign"
    _click(at, "Copy it into a new campaign")
    assert at.text_input(key="w_name").value == "Copy of Running"
    assert "copied from “Running”" in texts(at)
    button(at, "6. Review").click().run()
    _click(at, "Save as draft")
    original, copy = _campaigns(engine)
    assert (original.id, original.status, original.name) == (running.id, "active", "Running")
    assert (copy.status, copy.name, copy.message_template, copy.target_criteria) == (
        "draft", "Copy of Running", original.message_template, original.target_criteria)
    count = read(engine, lambda s: s.scalar(select(func.count()).select_from(Campaign)))
    assert count == 2
