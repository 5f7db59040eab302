"""The wizard's pure helpers (core.wizard), and that what it builds is a valid campaign."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import campaigns, wizard
from core.errors import FieldError, Invalid
from core.models import CAMPAIGN_TYPES
from core.templates import check_template
from tests import factories as f


@pytest.mark.parametrize("kind", CAMPAIGN_TYPES)
def test_every_preset_uses_only_known_variables(kind):
    preset = wizard.PRESETS[kind]
    for name in wizard.CONTENT_FIELDS:
        check_template(getattr(preset, name), field=name, extra_variables=preset.variables.keys())
    assert "{unsubscribe_url}" in preset.message_template
    assert "STOP" in preset.sms_template


@pytest.mark.parametrize("method", ["email", "sms", "call", "multi"])
def test_a_new_draft_becomes_a_valid_campaign_for_every_channel(session, now, method):
    p = f.make_profile(session)
    f.lead(session, p, phone="+12015550100", email="a@example.com", now=now)
    draft = wizard.new_draft(campaign_type="winback", timezone="America/Chicago")
    draft.update(name="  Spring win-back ", outreach_method=method)
    if method == "multi":
        draft["steps"] = [{"channel": "email", "delay_hours": 0, "condition": "always"},
                          {"channel": "sms", "delay_hours": 48, "condition": "no_response"}]
    data = wizard.campaign_data(draft, status="draft")
    assert set(data) >= {"name", "campaign_type", "outreach_method", "target_criteria", "send_window"}
    c = campaigns.create_campaign(session, profile_id=p.id, data=data, now=now)
    assert c.name == "Spring win-back" and c.outreach_method == method and c.status == "draft"
    assert c.timezone == "America/Chicago"
    assert c.target_criteria == {"last_contact_days": 180}  # no status assumed: the business's words vary
    if method == "sms":
        assert c.message_template == draft["sms_template"] == wizard.PRESETS["winback"].sms_template
    if method == "multi":
        assert c.sms_template and c.email_subject and [s["channel"] for s in c.steps] == ["email", "sms"]


def test_scheduled_draft_with_an_ab_test(session, now):
    p = f.make_profile(session)
    draft = wizard.new_draft(campaign_type="promotional")
    start = now + timedelta(days=2)
    draft.update(name="Summer offer", start_mode="later", scheduled_at=start.isoformat(),
                 variant_b={"email_subject": "Only this week: {promotion}", "call_script": "not used by e-mail"},
                 variant_b_share=30)
    data = wizard.campaign_data(draft, status="scheduled")
    assert data["variants"] == [{"name": "A", "weight": 70},
                                {"name": "B", "weight": 30, "email_subject": "Only this week: {promotion}"}]
    c = campaigns.create_campaign(session, profile_id=p.id, data=data, now=now)
    assert c.status == "scheduled" and c.scheduled_at == start
    assert c.variables == {"promotion": "15% off all services this month"}
    # "start now" drafts carry no start time even if one was picked earlier
    draft["start_mode"] = "now"
    assert wizard.campaign_data(draft, status="draft")["scheduled_at"] is None


def test_validation_errors_point_to_the_step_that_fixes_them(session, now):
    p = f.make_profile(session)
    draft = wizard.new_draft()
    draft.update(name="", outreach_method="email", email_subject="", message_template="Hi {frist_name}",
                 rate_limit_per_minute=0)
    with pytest.raises(Invalid) as exc:
        campaigns.create_campaign(session, profile_id=p.id, data=wizard.campaign_data(draft, status="draft"))
    by_step = wizard.errors_by_step(exc.value.errors, draft)
    assert set(by_step) == {1, 5}  # pydantic stops at field rules before the content checks run
    assert by_step[1] == ["Campaign name: This cannot be empty."]
    assert by_step[5][0].startswith("Sending pace:")

    draft.update(name="Fine", rate_limit_per_minute=30)
    with pytest.raises(Invalid) as exc:
        campaigns.create_campaign(session, profile_id=p.id, data=wizard.campaign_data(draft, status="draft"))
    by_step = wizard.errors_by_step(exc.value.errors, draft)
    assert list(by_step) == [4]
    text = " ".join(by_step[4])
    assert "E-mail subject: An e-mail campaign needs a subject." in text
    assert "E-mail message: Unknown variable {frist_name}" in text

    draft.update(email_subject="Hello", message_template="Hi", start_mode="later", scheduled_at=None)
    with pytest.raises(Invalid) as exc:
        campaigns.create_campaign(session, profile_id=p.id, data=wizard.campaign_data(draft, status="scheduled"))
    assert wizard.errors_by_step(exc.value.errors, draft) == {
        5: ["Start time: A scheduled campaign needs a start time."]}


def test_step_of_and_labels():
    assert wizard.step_of("target_criteria.filters.0.field") == 2
    assert wizard.step_of("variants.1.email_subject") == 4
    assert wizard.step_of("steps") == 3
    assert wizard.step_of(None) == 6
    sms = {"outreach_method": "sms"}
    assert wizard.field_label("message_template", sms) == "SMS text"
    assert wizard.describe_error(FieldError("send_window", "pick at least one day")) == \
        "Send window: Pick at least one day."


def test_changing_type_replaces_only_untouched_texts():
    draft = wizard.new_draft(campaign_type="winback")
    draft["call_script"] = "My own words for {first_name|you}."
    switched = wizard.apply_type(draft, "feedback")
    assert switched["email_subject"] == wizard.PRESETS["feedback"].email_subject
    assert switched["call_script"] == "My own words for {first_name|you}."
    assert switched["target_criteria"] == wizard.preset_criteria("feedback")
    assert "promotion" not in switched["variables"]  # the win-back default went with its texts
    draft["variables"] = {"promotion": "a free gloss"}
    kept = wizard.apply_type(draft, "promotional")
    assert kept["variables"] == {"promotion": "a free gloss"}


def test_templates_for_each_channel_and_version_b():
    draft = wizard.new_draft()
    draft.update(outreach_method="multi", variant_b={"email_subject": "B subject"},
                 steps=[{"channel": "email"}, {"channel": "sms"}, {"channel": "email"}])
    assert wizard.used_channels(draft) == ["email", "sms"]
    assert wizard.content_fields_for(draft) == ["email_subject", "message_template", "sms_template"]
    assert wizard.templates_for(draft, "sms") == (None, draft["sms_template"])
    assert wizard.templates_for(draft, "email", variant_b=True) == ("B subject", draft["message_template"])
    assert wizard.templates_for({**draft, "outreach_method": "sms"}, "sms") == (None, draft["sms_template"])
    assert wizard.content_fields_for({**draft, "outreach_method": "sms"}) == ["sms_template"]


def test_variables_round_trip_and_bad_lines():
    values, bad = wizard.parse_variables("promotion = 20% off\n\n# a note\n{season}: spring\nnonsense")
    assert values == {"promotion": "20% off", "season": "spring"}
    assert bad == ["nonsense"]
    assert wizard.parse_variables(wizard.format_variables(values))[0] == values


def test_describe_criteria_in_words():
    lines = wizard.describe_criteria({"last_contact_days": 180, "status": ["Closed"], "min_leads": 2,
                                      "service_type": ["Color", "Cut"], "agent_id": "a1",
                                      "filters": [{"field": "notes", "op": "contains", "value": "wedding"}]},
                                     agent_names={"a1": "Ava"})
    assert lines == ["Not in touch for at least 180 days.", "Their most recent lead is Closed.",
                     "Their most recent lead was handled by Ava.", "In touch at least 2 times.",
                     "Had Color or Cut at some point.", "Notes contains wedding."]
    assert wizard.describe_criteria({}) == ["Every customer you can reach on this channel."]


def test_duration_estimate_respects_pace_provider_caps_and_window():
    quick = wizard.estimate_duration(audience=300, outreach_method="email", rate_limit_per_minute=30)
    assert quick.per_minute == 30 and quick.sending_minutes == 10
    assert "About 10 minutes of sending for 300 contacts at 30 per minute" in quick.sentence()

    capped = wizard.estimate_duration(audience=600, outreach_method="sms", rate_limit_per_minute=500,
                                      provider_per_minute={"sms": 60})
    assert capped.per_minute == 60 and capped.sending_minutes == 10

    # 2 calls at once, 3 minutes each: 0.67 calls a minute; 10:00-18:00 on 5 days a week
    calls = wizard.estimate_duration(audience=1000, outreach_method="call", rate_limit_per_minute=30,
                                     max_concurrent_calls=2,
                                     send_window={"start": "10:00", "end": "18:00",
                                                  "days": ["mon", "tue", "wed", "thu", "fri"]})
    assert calls.per_minute == pytest.approx(0.67, abs=0.01)
    assert calls.window_minutes_per_day == 480
    assert calls.sending_days == pytest.approx(1500 / 480)
    assert calls.calendar_days == pytest.approx(1500 / 480 * 7 / 5)
    assert "sending days" in calls.sentence() and "calendar days" in calls.sentence()

    # SMS never before 08:00 or after 21:00, even with a 24-hour window
    night = wizard.estimate_duration(audience=10, outreach_method="sms", rate_limit_per_minute=10,
                                     send_window={"start": "00:00", "end": "24:00", "days": ["sat"]})
    assert night.window_minutes_per_day == 13 * 60
    closed = wizard.estimate_duration(audience=10, outreach_method="sms", rate_limit_per_minute=10,
                                      send_window={"start": "21:00", "end": "23:00", "days": ["sat"]})
    assert "never overlap" in closed.sentence()
    multi = wizard.estimate_duration(audience=100, outreach_method="multi", rate_limit_per_minute=100,
                                     steps=[{"channel": "email"}, {"channel": "sms", "delay_hours": 48}])
    assert multi.sends == 200 and multi.follow_up_hours == 48
    assert "48 hours" in multi.sentence()
    assert wizard.estimate_duration(audience=0, outreach_method="email", rate_limit_per_minute=5).sentence() \
        .startswith("Nobody")


@given(audience=st.integers(1, 200_000), rate=st.integers(1, 10_000), extra=st.integers(1, 1000))
def test_more_customers_never_take_less_time(audience, rate, extra):
    a = wizard.estimate_duration(audience=audience, outreach_method="email", rate_limit_per_minute=rate)
    b = wizard.estimate_duration(audience=audience + extra, outreach_method="email", rate_limit_per_minute=rate)
    assert b.sending_minutes > a.sending_minutes
    assert b.calendar_days >= a.calendar_days
    faster = wizard.estimate_duration(audience=audience, outreach_method="email", rate_limit_per_minute=rate + 1)
    assert faster.sending_minutes < a.sending_minutes


@pytest.mark.parametrize(("now", "zone", "expected"), [
    # 19:30 in New York is 00:30 UTC the next day: tomorrow is New York's tomorrow
    (datetime(2026, 12, 5, 0, 30, tzinfo=UTC), "America/New_York", datetime(2026, 12, 5, 10, 0)),
    (datetime(2026, 12, 4, 15, 0, tzinfo=UTC), "America/New_York", datetime(2026, 12, 5, 10, 0)),
    # 09:00 in Sydney is 22:00 UTC the day before
    (datetime(2026, 12, 4, 22, 0, tzinfo=UTC), "Australia/Sydney", datetime(2026, 12, 6, 10, 0)),
    (datetime(2026, 3, 7, 23, 0, tzinfo=UTC), "America/Los_Angeles", datetime(2026, 3, 8, 10, 0)),  # DST day
])
def test_a_later_start_defaults_to_tomorrow_at_ten_in_the_campaigns_zone(now, zone, expected):
    start = wizard.default_start(zone, now)
    assert start == expected.replace(tzinfo=ZoneInfo(zone)) and start > now


def test_new_draft_start_defaults():
    draft = wizard.new_draft(timezone="Europe/Paris")
    assert draft["timezone"] == "Europe/Paris" and draft["start_mode"] == "now"
    assert draft["send_window"]["days"] == ["mon", "tue", "wed", "thu", "fri", "sat"]


def test_an_sms_campaign_takes_its_text_and_version_b_from_the_sms_field(session, now):
    p = f.make_profile(session)
    draft = wizard.new_draft(campaign_type="feedback")
    draft.update(name="Feedback", outreach_method="sms",
                 variant_b={"sms_template": "Rate us 1-5, {first_name|friend}!"})
    data = wizard.campaign_data(draft, status="draft")
    assert data["sms_template"] is None and data["message_template"] == wizard.PRESETS["feedback"].sms_template
    assert data["variants"][1] == {"name": "B", "weight": 50, "message_template": "Rate us 1-5, {first_name|friend}!"}
    c = campaigns.create_campaign(session, profile_id=p.id, data=data, now=now)
    assert c.message_template.startswith("Hi {first_name|there}, it's {business_name}.")
    assert wizard.field_label("variants.1.message_template", draft) == "Version B: SMS text"
