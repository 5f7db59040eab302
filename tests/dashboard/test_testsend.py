"""The wizard's preview rendering and test send (core.testsend): the sandbox,
and live e-mail through a fake Resend server driven by the real adapter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from core.config import Settings
from core.errors import Conflict, DomainError, Invalid, NotFound
from core.models import OutreachAttempt, OutreachEvent
from core.testsend import SampleCustomer, SendTestResult, render_message, send_test, unsaved_campaign
from tests import factories as f
from tests.fakes.resend import DEFAULT_KEY, FakeResend

SUBJECT = "We miss you, {first_name|there}!"
BODY = "Hi {first_name|there},\n\nEnjoy {promotion} at {business_name}. Visit https://bellavista.example/book"
SAMPLE = SampleCustomer(customer_name="Maria Garcia", service_type="Color",
                        last_visit=datetime(2025, 12, 1, 15, tzinfo=UTC))


def sandbox_settings() -> Settings:
    return Settings(_env_file=None, resend_api_key=None, resend_from=None, vapi_api_key=None,  # type: ignore[call-arg]
                    twilio_account_sid=None, twilio_auth_token=None)


def live_email_settings(url: str) -> Settings:
    return Settings(_env_file=None, resend_api_key=DEFAULT_KEY, resend_from="hello@bellavista.example",  # type: ignore[call-arg]
                    resend_base_url=url, public_base_url="https://connext.example")


def _send_until_accepted(session, **kwargs) -> SendTestResult:
    """The sandbox refuses or delays a few sends on purpose, like a real provider; a person would click again."""
    refusals = []
    for _ in range(6):
        try:
            return send_test(session, **kwargs)
        except (Conflict, Invalid) as exc:
            assert "sandbox" in exc.message
            refusals.append(exc.message)
    raise AssertionError(f"the sandbox refused six test sends in a row: {refusals}")


def test_render_message_for_each_channel(session):
    profile = f.make_profile(session, name="Bella Vista")
    profile.timezone = "America/New_York"

    def render(channel, **data):
        campaign = unsaved_campaign(profile=profile, data={"outreach_method": channel, **data})
        return render_message(campaign=campaign, profile=profile, channel=channel, sample=SAMPLE,
                              settings=Settings(_env_file=None, secret_key="t"))  # type: ignore[call-arg]

    email = render("email", message_template=BODY, email_subject=SUBJECT, variables={"promotion": "20% off"})
    assert email.subject == "We miss you, Maria!"
    assert email.text.startswith("Hi Maria,\n\nEnjoy 20% off at Bella Vista.")
    assert "Unsubscribe: http" in email.text and email.text.count("Unsubscribe") == 1  # the footer, once
    assert '/c/' in (email.html or "") and ">https://bellavista.example/book</a>" in (email.html or "")
    assert email.sms is None and email.cost == profile.price_per_email

    sms = render("sms", message_template="Hi {first_name|there}, " + "x" * 155)
    assert sms.text.startswith("Hi Maria, ") and sms.text.endswith("\nReply STOP to opt out")
    assert (sms.sms.segments, sms.sms.encoding) == (2, "GSM-7")
    assert sms.cost == round(2 * profile.price_per_sms_segment, 6)
    own = render("sms", message_template="Hi {first_name|there}! Reply STOP to opt out.")
    assert own.text == "Hi Maria! Reply STOP to opt out." and own.sms.segments == 1  # never twice

    call = render("call", call_script="Hello {first_name}, since {last_visit_date}.")
    assert call.text == "Hello Maria, since December 1, 2025."
    assert "unsubscribe_url" not in call.values and call.cost is None

    with pytest.raises(Invalid) as exc:
        render("email", message_template="Hi {frist_name}", email_subject="x")
    assert exc.value.field == "message_template" and "{frist_name}" in exc.value.message
    with pytest.raises(Invalid) as exc:
        render("email", message_template="Hi", email_subject=" ")
    assert exc.value.field == "email_subject"
    with pytest.raises(Invalid) as exc:
        render("call", call_script="")
    assert exc.value.field == "call_script"


def test_sandbox_test_send_is_simulated_and_records_nothing(session, now):
    p = f.make_profile(session, name="Bella Vista")
    for channel, to in (("email", "Owner@BellaVista.example"), ("sms", "(201) 555-0100"), ("call", "+12015550100")):
        result = _send_until_accepted(session, profile_id=p.id, channel=channel, to=to,
                                      template=BODY if channel != "call" else "Hi {first_name|there}",
                                      subject_template=SUBJECT if channel == "email" else None,
                                      variables={"promotion": "20% off"}, sample=SAMPLE,
                                      settings=sandbox_settings())
        assert not result.live and result.provider == "sandbox"
        assert result.to == ("owner@bellavista.example" if channel == "email" else "+12015550100")
        assert result.sentence().startswith("Sandbox mode: the test")
        assert "nothing really went out" in result.sentence()
    assert result.text == "Hi Maria"
    assert session.scalar(select(func.count()).select_from(OutreachEvent)) == 0
    assert session.scalar(select(func.count()).select_from(OutreachAttempt)) == 0


def test_live_test_email_goes_through_resend(session, now):
    p = f.make_profile(session, name="Bella Vista")
    with FakeResend() as fake:
        result = send_test(session, profile_id=p.id, channel="email", to="owner@bellavista.example", template=BODY,
                           subject_template=SUBJECT, variables={"promotion": "20% off"}, sample=SAMPLE,
                           settings=live_email_settings(fake.url))
        assert result.live and result.provider == "resend"
        assert result.sentence().startswith("Test e-mail sent to owner@bellavista.example through Resend")
        (email,) = fake.emails.values()
        assert email.to == ["owner@bellavista.example"]
        assert email.subject == "We miss you, Maria!"  # the very message a customer gets
        assert email.payload["tags"] == [{"name": "test", "value": "true"}]
        assert "Enjoy 20% off at Bella Vista." in email.payload["text"]
        assert "<p>Hi Maria,</p>" in email.payload["html"]
        assert result.provider_message_id == email.id

        # a second click is a second e-mail, not an idempotent replay of the first
        send_test(session, profile_id=p.id, channel="email", to="owner@bellavista.example", template=BODY,
                  subject_template=SUBJECT, variables={"promotion": "20% off"}, sample=SAMPLE,
                  settings=live_email_settings(fake.url))
        assert fake.emails_per_address()["owner@bellavista.example"] == 2


def test_provider_refusals_become_sentences(session, now):
    p = f.make_profile(session)
    with FakeResend() as fake:
        settings = live_email_settings(fake.url)
        fake.fail_address("bad@bellavista.example")
        with pytest.raises(Invalid) as exc:
            send_test(session, profile_id=p.id, channel="email", to="bad@bellavista.example", template=BODY,
                      subject_template=SUBJECT, variables={"promotion": "x"}, settings=settings)
        assert exc.value.field == "to" and exc.value.errors[0].message.startswith("Resend refused the test")
        fake.set_quota(0)
        with pytest.raises(Conflict) as exc:
            send_test(session, profile_id=p.id, channel="email", to="owner@bellavista.example", template=BODY,
                      subject_template=SUBJECT, variables={"promotion": "x"}, settings=settings)
        assert "cannot send right now" in exc.value.message and "quota" in exc.value.message
        fake.set_quota(None)
        fake.fail_next(3, status=503, name="service_unavailable")
        with pytest.raises(Conflict) as exc:
            send_test(session, profile_id=p.id, channel="email", to="owner@bellavista.example", template=BODY,
                      subject_template=SUBJECT, variables={"promotion": "x"}, settings=settings)
        assert "try again in a minute" in exc.value.message


def test_bad_input_is_refused_before_anything_is_sent(session, now):
    p = f.make_profile(session)
    common = {"profile_id": p.id, "settings": sandbox_settings()}
    cases = [
        ({"channel": "email", "to": "not-an-address", "template": "Hi", "subject_template": "S"}, "to"),
        ({"channel": "sms", "to": "", "template": "Hi"}, "to"),
        ({"channel": "sms", "to": "12", "template": "Hi"}, "to"),
        ({"channel": "sms", "to": "+12015550100", "template": "Hi {promo}"}, "message_template"),
        ({"channel": "email", "to": "a@b.example", "template": "Hi", "subject_template": ""}, "email_subject"),
        ({"channel": "fax", "to": "+12015550100", "template": "Hi"}, "channel"),
    ]
    for kwargs, field in cases:
        with pytest.raises(DomainError) as exc:
            send_test(session, **common, **kwargs)
        assert exc.value.field == field, kwargs
    with pytest.raises(NotFound):
        send_test(session, **common, channel="call", to="+12015550100", template="Hi",
                  agent_id=f.make_profile(session).id)
