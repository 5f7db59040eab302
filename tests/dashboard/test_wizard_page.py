"""The six-step wizard (pages/create_campaign.py) in AppTest."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from core.models import Campaign, CampaignRecipient, Profile
from tests import factories as f
from tests.dashboard.conftest import assert_clean, button, open_app, read, texts


def _customers(session, shop, now_days_ago=(400, 300, 250, 20)):
    """Four customers, three of them not seen for more than 180 days."""
    profile = session.get(Profile, shop.profile_id)
    profile.consent_policy = "none"  # these tests are not about consent (a new business asks for it: §10)
    names = ["Maria Garcia", "Liam Chen", "Ava Patel", "Noah Kim"]
    now = datetime.now(UTC)
    for i, (name, days) in enumerate(zip(names, now_days_ago, strict=True)):
        f.lead(session, profile, phone=f"+1201555{1000 + i:04d}", email=f"{name.split()[0].lower()}@example.com",
               name=name, status="Closed", days_ago=days, now=now, service_type="Color")
    session.commit()


def _next(at: AppTest, label: str) -> AppTest:
    button(at, label).click()
    at.run()
    assert_clean(at)
    return at


def _walk_to_review(at: AppTest, *, name: str = "Spring win-back") -> AppTest:
    at.text_input(key="w_name").input(name)
    at.radio(key="w_type").set_value("winback")
    _next(at, "Next: audience")
    assert "Step 2 of 6: Audience" in at.get("progress")[0].proto.text
    _next(at, "Next: channel")
    _next(at, "Next: content")
    _next(at, "Next: schedule")
    return at


def test_walking_the_wizard_schedules_a_campaign(app_db, shop, session, engine):
    _customers(session, shop)
    at = open_app(shop, "create_campaign")
    assert at.title[0].value == "Create campaign"
    _walk_to_review(at)
    # step 5: a start time tomorrow at 10:00 in New York, Monday to Friday 10–18
    at.radio(key="w_when").set_value("later").run()  # the date and time appear only for a later start
    tomorrow = date.today() + timedelta(days=1)
    at.date_input(key="w_date").set_value(tomorrow)
    at.time_input(key="w_time").set_value(time(10, 0))
    at.multiselect(key="w_days_allowed").set_value(["mon", "tue", "wed", "thu", "fri"])
    at.time_input(key="w_window_start").set_value(time(10, 0))
    at.time_input(key="w_window_end").set_value(time(18, 0))
    at.number_input(key="w_rate").set_value(12)
    _next(at, "Next: review")
    page = texts(at)
    assert "Not in touch for at least 180 days." in page
    assert "Estimated duration." in page and "per minute" in page
    assert at.metric[0].value == "3"  # three dormant customers; the one seen 20 days ago is not
    _next(at, "Schedule campaign")

    campaign = read(engine, lambda s: s.scalars(select(Campaign).where(Campaign.profile_id == shop.profile_id))
                    .one())
    assert (campaign.name, campaign.status, campaign.outreach_method) == ("Spring win-back", "scheduled", "email")
    assert campaign.scheduled_at == datetime.combine(tomorrow, time(10), ZoneInfo("America/New_York")) \
        .astimezone(UTC)
    assert campaign.send_window == {"start": "10:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
    assert campaign.rate_limit_per_minute == 12
    assert campaign.email_subject == "We miss you, {first_name|there}!"
    assert campaign.variables == {"promotion": "20% off your next visit"}
    # the wizard is done: its draft is gone and the campaign page is open
    assert "wizard" not in at.session_state
    assert at.title[0].value == "Spring win-back"


def test_start_now_selects_the_customers_at_once(app_db, shop, session, engine):
    _customers(session, shop)
    at = open_app(shop, "create_campaign")
    _walk_to_review(at, name="Right away")
    _next(at, "Next: review")
    _next(at, "Start now")
    campaign = read(engine, lambda s: s.scalars(select(Campaign)).one())
    assert campaign.status == "active" and campaign.started_at is not None
    n = read(engine, lambda s: s.scalar(select(func.count()).select_from(CampaignRecipient)
                                        .where(CampaignRecipient.campaign_id == campaign.id)))
    assert n == 3
    assert at.title[0].value == "Right away"


def test_save_as_draft(app_db, shop, session, engine):
    at = open_app(shop, "create_campaign")
    _walk_to_review(at, name="Maybe later")
    _next(at, "Next: review")
    assert "Nobody to contact yet" in texts(at)
    _next(at, "Save as draft")
    campaign = read(engine, lambda s: s.scalars(select(Campaign)).one())
    assert (campaign.name, campaign.status, campaign.scheduled_at) == ("Maybe later", "draft", None)


def test_a_campaign_needs_a_name(app_db, shop):
    at = open_app(shop, "create_campaign")
    _next(at, "Next: audience")
    assert [e.value for e in at.error] == ["Campaign name: give the campaign a name so you can find it later."]
    assert "Step 1 of 6" in at.get("progress")[0].proto.text


def test_unknown_variable_and_missing_content_are_shown_under_the_field(app_db, shop):
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Typo")
    _next(at, "Next: audience")
    _next(at, "Next: channel")
    _next(at, "Next: content")
    at.text_input(key="w_email_subject").input("")
    at.text_area(key="w_message_template").input("Hi {frist_name|there}, see you at {business_name}.")
    _next(at, "Next: schedule")
    errors = [e.value for e in at.error]
    assert "E-mail subject: write this before going on." in errors
    assert any(e.startswith("E-mail message: Unknown variable {frist_name}; known variables are") for e in errors)
    assert "Step 4 of 6" in at.get("progress")[0].proto.text

    at.text_input(key="w_email_subject").input("Hello {first_name|there}")
    at.text_area(key="w_message_template").input("Hi {first_name|there}, enjoy {promotion}.")
    at.text_area(key="w_variables").input("promotion = a free blow-dry")
    _next(at, "Check and preview")
    assert not at.error
    preview = texts(at)
    assert "**Subject:** Hello there" in preview  # nobody in the audience: the fallbacks show
    _next(at, "Next: schedule")
    assert "Step 5 of 6" in at.get("progress")[0].proto.text


def test_preview_uses_a_real_customer_and_counts_sms_segments(app_db, shop, session):
    _customers(session, shop)
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Texts")
    _next(at, "Next: audience")
    assert at.metric[0].value == "3"
    _next(at, "Next: channel")
    at.radio(key="w_method").set_value("sms").run()
    _next(at, "Next: content")
    assert at.text_area[0].label == "SMS text"
    at.text_area(key="w_sms_template").input("Hi {first_name|there}! " + "Lovely to see you again. " * 7)
    _next(at, "Check and preview")
    samples = at.selectbox(key="w_preview_customer")
    assert samples.options[0].startswith("Ava Patel")  # most recently in touch first
    assert at.get("text")[0].value.startswith("Hi Ava! Lovely")
    assert any("2 SMS segments" in w.value and "billed as 2 messages" in w.value for w in at.warning)


def test_test_send_in_sandbox_says_it_was_simulated(app_db, shop):
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Test me")
    _next(at, "Next: audience")
    _next(at, "Next: channel")
    _next(at, "Next: content")
    assert at.text_input(key="w_test_email").value == shop.email
    outcomes = []
    for _ in range(4):  # the sandbox refuses a few sends on purpose, like a real provider
        _next(at, "Send test")
        outcomes = [*(i.value for i in at.info), *(e.value for e in at.error)]
        if any(o.startswith("Sandbox mode: the test e-mail to") for o in outcomes):
            break
    assert any(o.startswith(f"Sandbox mode: the test e-mail to {shop.email}") for o in outcomes), outcomes
    at.text_input(key="w_test_email").input("not an address")
    _next(at, "Send test")
    assert any("is not a valid e-mail address" in e.value for e in at.error)


def test_the_draft_survives_other_pages_and_start_over_clears_it(app_db, shop):
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Keep me")
    _next(at, "Next: audience")
    at.number_input(key="w_days").set_value(90).run()  # the count follows at once: no button
    at.switch_page("../../pages/customers.py").run()
    at.switch_page("../../pages/create_campaign.py").run()
    assert_clean(at)
    assert "Step 2 of 6" in at.get("progress")[0].proto.text
    assert at.number_input(key="w_days").value == 90
    button(at, "1. Basics").click().run()
    assert at.text_input(key="w_name").value == "Keep me"
    _next(at, "Start over")
    assert at.text_input(key="w_name").value == ""
    assert at.session_state["wizard"]["draft"]["target_criteria"] == {"last_contact_days": 180}


def test_bad_audience_conditions_are_explained(app_db, shop):
    at = open_app(shop, "create_campaign")
    at.text_input(key="w_name").input("Odd")
    _next(at, "Next: audience")
    at.selectbox(key="w_filter_field_0").set_value("notes")
    at.selectbox(key="w_filter_op_0").set_value("gt")
    at.text_input(key="w_filter_value_0").input("x")
    _next(at, "Next: channel")
    assert "Step 2 of 6" in at.get("progress")[0].proto.text
    assert [e.value for e in at.error] == [
        "Audience: Operator 'gt' does not apply to 'notes'; allowed: eq, ne, in, not_in, contains, not_contains, "
        "starts_with, is_null, not_null."]


def test_review_sends_errors_back_to_their_step(app_db, shop):
    at = open_app(shop, "create_campaign")
    _walk_to_review(at, name="Broken")
    _next(at, "Next: review")
    # the draft changed behind the form's back (e.g. an older tab): the save is refused and explained
    at.session_state["wizard"]["draft"]["email_subject"] = ""
    _next(at, "Start now")
    page = texts(at)
    assert "A few things need fixing before the campaign can be saved:" in page
    assert "**Step 4 · Content**: E-mail subject: An e-mail campaign needs a subject." in page
    _next(at, "Fix in step 4")
    assert "Step 4 of 6" in at.get("progress")[0].proto.text
