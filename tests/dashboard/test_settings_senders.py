"""Settings (pages/settings.py), each business as itself (DESIGN §12): the Business profile tab edits who the
business sends as, its consent policy and prices, and its write-only credentials; the Channels tab says per
channel whether it is live for this business, through whose account, what is missing, where the provider
reports back, and tests the connection; the sidebar says it per business."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from core import accounts
from core.config import get_settings
from core.models import Profile
from tests.dashboard.conftest import Shop, assert_clean, button, open_app, read, texts
from tests.fakes.resend import FakeResend

OWN_KEY = "re_own_key_for_settings_7c1"


def _inputs(at):  # type: ignore[no-untyped-def]
    return {t.label: t for t in at.text_input}


def test_the_business_profile_sets_who_it_sends_as(app_db, shop, engine):
    at = open_app(shop, "settings")
    assert "My business takes responsibility for consent" in at.radio(key="profile_policy").options[1]
    fields = _inputs(at)
    fields["E-mail from (address)"].input("Hello@BellaVista.example")
    fields["Sender name"].input("Bella Vista Salon")
    fields["Replies go to"].input("desk@bellavista.example")
    fields["SMS from"].input("(201) 555-0199")
    fields["Vapi assistant id"].input("asst_bella")
    at.radio(key="profile_policy").set_value("none")
    {n.label: n for n in at.number_input}["Per SMS segment"].set_value(0.0079)
    button(at, "Save").click().run()
    assert_clean(at)
    p = read(engine, lambda s: s.get(Profile, shop.profile_id))
    assert (p.email_from, p.email_from_name, p.email_reply_to, p.sms_from, p.vapi_assistant_id) == (
        "hello@bellavista.example", "Bella Vista Salon", "desk@bellavista.example", "+12015550199", "asst_bella")
    assert (p.consent_policy, p.price_per_sms_segment) == ("none", 0.0079)

    # a bad value is refused in a sentence naming the field, and nothing changes
    _inputs(at)["E-mail from (address)"].input("not an address")
    _inputs(at)["Sender name"].input("Someone else")
    button(at, "Save").click().run()
    assert any(e.value.startswith("The sender address (e-mail from) must be an e-mail address") for e in at.error)
    assert read(engine, lambda s: s.get(Profile, shop.profile_id)).email_from_name == "Bella Vista Salon"


def test_credentials_are_write_only_and_stored_encrypted(app_db, shop, engine):
    at = open_app(shop, "settings")
    at.text_input(key="secret_resend_api_key").input(OWN_KEY)
    button(at, "Save credentials").click().run()
    assert_clean(at)
    stored = read(engine, lambda s: s.get(Profile, shop.profile_id)).encrypted_secrets
    assert stored and OWN_KEY not in stored
    # never shown again: the field is empty, and only "set" says it is there
    assert at.text_input(key="secret_resend_api_key").value == ""
    assert OWN_KEY not in texts(at) and all(OWN_KEY not in str(t.value) for t in at.text_input)
    assert at.text_input(key="secret_resend_api_key").placeholder == "set — type to replace"
    at.button(key="clear_resend_api_key").click().run()
    assert read(engine, lambda s: s.get(Profile, shop.profile_id)).encrypted_secrets is None
    assert at.text_input(key="secret_resend_api_key").placeholder == "not set"
    at.text_input(key="secret_smtp_url").input("http://mail.example.com")
    button(at, "Save credentials").click().run()
    assert any(e.value.startswith("SMTP URL: the URL must start with smtp:// or smtps://") for e in at.error), \
        [e.value for e in at.error]


@pytest.fixture
def own_resend(monkeypatch: pytest.MonkeyPatch) -> FakeResend:
    with FakeResend(api_key=OWN_KEY) as fake:
        monkeypatch.setenv("RESEND_BASE_URL", fake.url)
        monkeypatch.setenv("PUBLIC_BASE_URL", "https://shop.example")
        get_settings.cache_clear()
        yield fake  # type: ignore[misc]
        get_settings.cache_clear()


def test_channels_are_live_per_business_and_the_connection_is_tested(app_db, shop, session: Session, engine,
                                                                      own_resend):
    accounts.update_profile(session, profile_id=shop.profile_id, email_from="hello@bellavista.example",
                            sms_from="+12015550199", secrets={"resend_api_key": OWN_KEY})
    session.commit()
    other, _key, _ = accounts.create_profile(session, business_name="Studio Nine", password="x" * 12,
                                             email=f"o-{uuid.uuid4().hex[:6]}@studio.example")
    session.commit()
    at = open_app(shop, "settings")
    page = texts(at)
    assert "**E-mail** · Resend, through your own account" in page
    assert "To go live, add in the **Business profile** tab: a Vapi API key." in page
    assert any(c.value == "https://shop.example/webhooks/resend" for c in at.code)
    assert any(c.value == "https://shop.example/webhooks/twilio/inbound" for c in at.code)
    assert "“A message comes in” webhook of +12015550199" in page
    # the sidebar says it for this business
    assert "E-mail :green-badge[live]" in page and "SMS :orange-badge[sandbox]" in page
    at.button(key="test_connection_email").click().run()
    assert_clean(at)
    assert [s.value for s in at.success] == [
        "Connected to Resend; the domain bellavista.example is verified, so e-mails go out from "
        "hello@bellavista.example."]
    own_resend.domains = {}
    at.button(key="test_connection_email").click().run()
    assert any("has no domain bellavista.example" in e.value for e in at.error)
    # another business on the same platform: sandbox, nothing of Bella's
    theirs = open_app(Shop(other.id, "o@studio.example", "Studio Nine"), "settings")
    assert "E-mail :orange-badge[sandbox]" in texts(theirs) and "Resend, through your own account" not in texts(theirs)
    assert not [b for b in theirs.button if b.key == "test_connection_email"]
