"""The frame (app.py): sign-in, navigation, sidebar, sign-out."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import ENTRY, PASSWORD, assert_clean, button, open_app, texts

NAVIGATION = ["Campaigns", "Create campaign", "Analytics", "Customers", "Settings"]


def _login(email: str, password: str) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=30).run()
    assert [t.value for t in at.title] == ["CONNEXT Re-engagement"]
    at.text_input(key="login_email").input(email)
    at.text_input(key="login_password").input(password)
    button(at, "Sign in").click()
    return at.run()


def test_wrong_password_is_refused_with_a_sentence(shop):
    at = _login(shop.email, "not the password")
    assert_clean(at)
    assert [e.value for e in at.error] == ["That e-mail and password do not match. Check both and try again."]
    assert "profile_id" not in at.session_state
    at = _login("nobody@bellavista.example", PASSWORD)
    assert "do not match" in at.error[0].value
    at = _login("", "")
    assert at.error[0].value == "Enter your e-mail address and your password."


def test_sign_in_shows_the_business_and_sign_out_forgets_it(shop):
    at = _login(shop.email.upper(), PASSWORD)
    assert_clean(at)
    assert at.session_state["profile_id"] == str(shop.profile_id)
    assert [t.value for t in at.title] == ["Campaigns"]
    sidebar = "\n".join(str(m.value) for m in at.sidebar.markdown)
    assert "**Bella Vista Salon**" in sidebar
    assert "Calls :orange-badge[sandbox]" in sidebar and "E-mail :orange-badge[sandbox]" in sidebar
    assert "nothing reaches customers" in "\n".join(c.value for c in at.sidebar.caption)

    at.switch_page("../../pages/create_campaign.py").run()
    assert "wizard" in at.session_state
    button(at, "Sign out").click()
    at.run()
    assert "profile_id" not in at.session_state
    assert "wizard" not in at.session_state  # the next person at this browser starts clean
    assert at.text_input(key="login_email") is not None


def test_navigation_has_the_five_pages_and_hidden_campaign_and_customer_pages(shop):
    at = open_app(shop)
    pages = {info["page_name"]: info for info in at._registered_pages.values()}
    assert list(pages) == [*NAVIGATION, "Campaign", "Customer"]
    assert pages["Campaign"]["url_pathname"] == "campaign"
    assert pages["Customer"]["url_pathname"] == "customer"
    for file, title in (("campaigns", "Campaigns"), ("create_campaign", "Create campaign"),
                        ("analytics", "Analytics"), ("customers", "Customers"), ("settings", "Settings")):
        at.switch_page(f"../../pages/{file}.py").run()
        assert_clean(at)
        assert at.title[0].value == title


def test_a_deep_link_waits_for_the_sign_in(shop):
    at = AppTest.from_file(str(ENTRY), default_timeout=30)
    at.query_params["id"] = "not-a-campaign"
    at.run()
    assert [t.value for t in at.title] == ["CONNEXT Re-engagement"]
    assert "Sign in with your business login" in texts(at)
