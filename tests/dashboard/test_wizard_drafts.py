"""The wizard's pure parts (core/wizard.py): suggested texts that read well for any service name, audiences
that assume no status, the starter sequence, a stored campaign back into a draft (edit, copy), and errors
that never show the API's field names."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core import campaigns, wizard
from core.config import Settings
from core.errors import FieldError, Invalid
from core.models import Profile
from core.outbound import Sample, preview
from core.templates import sms_length
from core.testsend import unsaved_campaign
from tests import factories as f

SETTINGS = Settings(_env_file=None, secret_key="wizard-tests", public_base_url="https://shop.example")  # type: ignore[call-arg]
SERVICES = ("Haircut", "Oil change", "MRI scan", None)
PEOPLE = (("Maria Garcia", datetime(2025, 3, 3, 15, tzinfo=UTC)), (None, None))
CLUMSY = [
    re.compile(r"\b[Aa]n? (Haircut|Oil change|MRI scan|visit|appointment)\b"),  # "a Oil change", "a MRI scan"
    re.compile(r"\b(\w+) \1\b", re.IGNORECASE),  # a word twice: "visit visit", "your your"
    re.compile(r"on your last visit|since a while|your last visit with us on"),  # a fallback inside a phrase
    re.compile(r"  |\s[,.!?]|[{}]"),  # double spaces, space before punctuation, a placeholder left over
]


def _profile() -> Profile:
    return Profile(id=uuid.uuid4(), business_name="Bella Vista Salon", timezone="America/New_York",
                   booking_url="https://bellavista.example/book", price_per_sms_segment=0.0083,
                   price_per_email=0.001, price_per_call_minute=0.13)


@pytest.mark.parametrize("kind", sorted(wizard.PRESETS))
@pytest.mark.parametrize("service", SERVICES)
def test_suggested_texts_read_well_for_any_service_name(kind: str, service: str | None) -> None:
    profile = _profile()
    draft = wizard.new_draft(campaign_type=kind)
    for method in ("email", "sms", "call"):
        campaign = unsaved_campaign(profile=profile, data=wizard.campaign_data(
            {**draft, "outreach_method": method, "name": "x"}, status="draft"))
        for name, visit in PEOPLE:
            message = preview(campaign=campaign, profile=profile, agent=None, settings=SETTINGS, channel=method,
                              sample=Sample(customer_name=name, service_type=service, last_visit=visit))
            for text in filter(None, (message.subject, message.text)):
                for pattern in CLUMSY:
                    assert not pattern.search(text), (kind, method, service, name, pattern.pattern, text)
            if service and method != "sms" and kind != "promotional":  # texts stay short: the offer, not the service
                assert service in message.text, (kind, method)
            if method == "sms":
                # one text message with a long business name, footer included
                assert sms_length(message.text).segments == 1, message.text
                assert message.text.count("Reply STOP") == 1


def test_presets_assume_no_status_and_win_back_is_time_without_contact() -> None:
    today = datetime(2026, 6, 15, tzinfo=UTC).date()
    for kind in wizard.PRESETS:
        assert "status" not in wizard.preset_criteria(kind, today), kind
    assert wizard.preset_criteria("winback", today) == {"last_contact_days": 180}
    assert wizard.preset_criteria("followup", today) == {"last_contact_days": 2, "last_contact_after": "2026-05-16"}
    draft = wizard.new_draft(campaign_type="winback")
    switched = wizard.apply_type(draft, "feedback")
    assert switched["target_criteria"] == wizard.preset_criteria("feedback")  # untouched: it follows the type
    draft["target_criteria"] = {"last_contact_days": 90}
    assert wizard.apply_type(draft, "feedback")["target_criteria"] == {"last_contact_days": 90}  # the owner's own


def test_the_starter_sequence_is_call_then_a_text_with_the_booking_link_then_an_email(session, now) -> None:
    draft = wizard.starter_sequence({**wizard.new_draft(), "name": "Call first"})
    assert draft["steps"] == [{"channel": "call", "delay_hours": 0.0, "condition": "always"},
                              {"channel": "sms", "delay_hours": 1.0, "condition": "not_answered"},
                              {"channel": "email", "delay_hours": 72.0, "condition": "no_response"}]
    assert "{booking_link" in draft["sms_template"]
    profile = f.make_profile(session)
    c = campaigns.create_campaign(session, profile_id=profile.id, data=wizard.campaign_data(draft, status="draft"),
                                  now=now)
    assert [s["condition"] for s in c.steps] == ["always", "not_answered", "no_response"]
    assert c.sms_template == wizard.STARTER_SMS and c.call_script and c.email_subject
    # the text carries the booking link, or says what to do without one
    booked = preview(campaign=c, profile=_profile(), agent=None, settings=SETTINGS, channel="sms", step=1)
    assert "https://bellavista.example/book\nReply STOP to opt out" in booked.text
    plain = _profile()
    plain.booking_url = None
    assert "Book a time that suits you: just reply with a day" in preview(
        campaign=c, profile=plain, agent=None, settings=SETTINGS, channel="sms", step=1).text
    assert wizard.CONDITION_LABELS["voicemail"] == "only if the last call reached voicemail"
    assert set(wizard.CONDITION_LABELS) == {"always", "no_response", "not_answered", "voicemail", "answered"}


CASES = {
    "email with a split test": dict(outreach_method="email", variant_b={"email_subject": "B: {promotion} inside"},
                                    variant_b_share=30),
    "sms, held out, always on": dict(outreach_method="sms", holdout_percent=20, always_on=True,
                                     reenroll_after_days=90, send_time="best"),
    "multi, test then winner": dict(outreach_method="multi", steps=[dict(s) for s in wizard.STARTER_STEPS],
                                    sms_template=wizard.STARTER_SMS, variant_b={"call_script": "B: Hi {first_name}"},
                                    variant_mode="test_then_winner", test_percent=30, test_hours=24.0),
    "scheduled call": dict(outreach_method="call", start_mode="later", max_concurrent_calls=5,
                           target_criteria={"last_contact_days": 90, "score_min": 40, "status": "Lost"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_stored_campaign_comes_back_as_the_draft_it_was_made_from(session, now, case) -> None:
    profile = f.make_profile(session)
    draft = {**wizard.new_draft(campaign_type="promotional", timezone="America/Chicago"), "name": "Summer",
             "channel_chosen": True, **CASES[case]}
    if draft["start_mode"] == "later":
        draft["scheduled_at"] = (now + timedelta(days=2)).isoformat()
    data = wizard.campaign_data(draft, status="scheduled" if draft["start_mode"] == "later" else "draft")
    stored = campaigns.create_campaign(session, profile_id=profile.id, data=data, now=now)
    back = wizard.draft_from_campaign(stored, now=now)
    again = wizard.campaign_data(back, status=data["status"])
    assert again == {**data, "scheduled_at": again["scheduled_at"]}
    if draft["start_mode"] == "later":
        assert datetime.fromisoformat(again["scheduled_at"]) == now + timedelta(days=2)
    # an edit is saved onto the same campaign
    back["name"] = "Summer, edited"
    edited = campaigns.update_campaign(session, profile_id=profile.id, campaign_id=stored.id,
                                       data=wizard.campaign_data(back, status=data["status"]), now=now)
    assert edited.id == stored.id and edited.name == "Summer, edited"
    # a copy is a new campaign with the same content, starting when confirmed
    copy = wizard.draft_from_campaign(stored, copy_of=True, now=now)
    assert copy["name"] == "Copy of Summer, edited" and copy["start_mode"] == "now"
    twin = campaigns.create_campaign(session, profile_id=profile.id, data=wizard.campaign_data(copy, status="draft"),
                                     now=now)
    assert twin.id != stored.id
    for field in ("outreach_method", "steps", "variants", "message_template", "sms_template", "call_script",
                  "email_subject", "target_criteria", "holdout_percent", "always_on", "send_time", "variant_mode"):
        assert getattr(twin, field) == getattr(stored, field), field


def test_switching_channel_in_an_edit_drops_the_text_no_longer_sent(session, now) -> None:
    profile = f.make_profile(session)
    stored = campaigns.create_campaign(session, profile_id=profile.id, now=now, data=wizard.campaign_data(
        {**wizard.new_draft(), "name": "Mail"}, status="draft"))
    draft = wizard.draft_from_campaign(stored)
    draft["outreach_method"] = "sms"
    edited = campaigns.update_campaign(session, profile_id=profile.id, campaign_id=stored.id,
                                       data=wizard.campaign_data(draft, status="draft"), now=now)
    assert edited.email_subject is None and edited.message_template == wizard.PRESETS["winback"].sms_template


@pytest.mark.parametrize("error", [
    FieldError("message_template", "an e-mail campaign needs a message (message_template)"),
    FieldError("message_template", "message_template: write the e-mail message first"),
    FieldError("variants.1.sms_template", "unknown variable {promo}; known variables are {business_name}"),
    FieldError("variant_mode", "picking a winner needs two or more versions (variants)"),
    FieldError("target_criteria", "score_min must not be more than score_max"),
    FieldError("scheduled_at", "a scheduled campaign needs a start time (scheduled_at)"),
])
def test_errors_name_fields_as_the_wizard_does(error: FieldError) -> None:
    draft = {**wizard.new_draft(), "outreach_method": "multi", "steps": [dict(s) for s in wizard.STARTER_STEPS]}
    for sentence in [wizard.describe_error(error, draft), *wizard.describe_exception(Invalid([error]), draft)]:
        assert not re.search(r"[A-Za-z]+_[a-z_]+", sentence.replace("{business_name}", "")), sentence
        assert sentence.startswith(("E-mail message: ", "Version B: SMS text: ", "How the A/B test runs: ",
                                    "Audience: ", "Start time: ")), sentence
