"""In a real browser: the campaign page's "who was left out, and the law" panel and the wizard's review say who
is left out and why, and list the states with their own rules for calls and texts — without a Streamlit
exception.  Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from core import campaigns
from core.db import make_engine, session_scope
from core.models import Profile
from tests.browser.conftest import ARTIFACTS, _serve
from tests.browser.test_customer_and_wizard import main_text, open_signed_in
from tests.browser.test_dashboard import settle
from tests.dashboard.test_compliance_panels import seed_customers

pytestmark = pytest.mark.browser

SERVICE = "Keratin (browser)"  # only these customers had it: the campaign's audience


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chromium_path: object) -> Iterator[tuple[str, str]]:
    """A dashboard of its own for this module (the test writes to its database)."""
    yield from _serve(tmp_path_factory)


def test_who_is_left_out_and_the_law_on_the_campaign_page_and_in_the_review(server: tuple[str, str],
                                                                             page: Any) -> None:
    base, url = server
    engine = make_engine(url)
    with session_scope(engine) as session:
        profile = session.scalars(select(Profile)).one()
        assert profile.consent_policy == "us_tcpa"
        seed_customers(session, profile, service_type=SERVICE)  # as the AppTest tests have them
        c = campaigns.create_campaign(session, profile_id=profile.id, data={
            "name": "Keratin win-back texts", "campaign_type": "winback", "outreach_method": "sms",
            "target_criteria": {"service_type": [SERVICE]},
            "message_template": "Hi {first_name|there}, your keratin treatment at {business_name} is due!"})
        campaigns.start_campaign(session, profile_id=profile.id, campaign_id=c.id)
        campaign_id = c.id
    engine.dispose()

    open_signed_in(page, f"{base}/campaign?id={campaign_id}", "Keratin win-back texts")
    page.get_by_text("Who was left out (4), and the law").click()
    page.get_by_text("Customers in states with their own rules for calls and texts").wait_for()
    panel = page.locator("[data-testid='stExpander']").filter(has_text="Who was left out (4), and the law")
    panel.scroll_into_view_if_needed()
    settle(page, "40-campaign-left-out-and-the-law")
    said = str(panel.inner_text())
    assert "4 customers who matched were left out when the campaign chose its customers:" in said
    assert "2 customers had no written consent to texts. Win-back texts are marketing" in said
    assert re.search(r"Florida\s+2\s+08:00–20:00\s+3 calls \(texts not counted\)", said), said
    assert re.search(r"Maryland\s+1\s+08:00–20:00\s+3 calls and texts together", said), said
    assert "None" not in said.replace("None of", "")
    panel.screenshot(path=str(ARTIFACTS / "41-campaign-left-out-panel.png"))

    # the link opens the Customers page on its consent and do-not-call tab, still signed in
    panel.get_by_text("Import consent or manage the do-not-call list").click()
    page.wait_for_url(re.compile(r"/customers\?tab=Consent"))
    selected = page.get_by_role("tab", selected=True)
    selected.wait_for()
    assert selected.inner_text().strip() == "Consent & do-not-call"
    page.get_by_text("Numbers on this list are never called or texted").wait_for()
    settle(page, "44-customers-consent-tab-from-the-link")

    # the wizard's review of a copy: the same audience, counted as it stands now
    open_signed_in(page, f"{base}/create_campaign?copy={campaign_id}", "Create campaign")
    page.get_by_role("button", name=re.compile("6. Review")).click()
    page.get_by_text("Ready to go").wait_for()
    settle(page, "42-wizard-review-left-out-and-the-law")
    main = main_text(page)
    # a new campaign matches the same customers, and leaves out the same ones for the same reasons
    assert "4 customers who match are left out:" in main
    assert "1 customer who matches has no phone number, so they are not counted." in main
    assert re.search(r"Florida\s+2\s+08:00–20:00", main), main
    assert "Import consent or manage the do-not-call list" in main
    # beside the channel, as the owner picks it: the reasons in words too
    page.get_by_role("button", name=re.compile("3. Channel")).click()
    page.get_by_text("Starter sequence", exact=True).wait_for()
    settle(page, "43-wizard-channel-left-out")
    assert "2 customers have no written consent to texts." in main_text(page)
