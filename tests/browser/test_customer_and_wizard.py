"""In a real browser: a customer's page shows the e-mail they were sent, rendered in a sandboxed frame; a
draft is edited and a campaign duplicated from the wizard; the wizard's new steps, Settings' Channels and
Business profile tabs — and no Streamlit exception on any of these pages.  Screenshots go to
test-artifacts/browser/."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import exists, select

from core import campaigns
from core.db import make_engine, session_scope
from core.demo import DEMO_EMAIL, DEMO_PASSWORD
from core.models import Campaign, CampaignRecipient, Customer, OutreachAttempt, Profile
from tests.browser.conftest import _serve
from tests.browser.test_dashboard import click, heading, settle

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chromium_path: object) -> Iterator[tuple[str, str]]:
    """A dashboard of its own for this module (the tests write to its database)."""
    yield from _serve(tmp_path_factory)


def open_signed_in(page: Any, url: str, title: str | re.Pattern[str]) -> None:
    """Open ``url``; sign in first when the browser has no session yet (the sign-in lands on ``url``)."""
    page.goto(url)
    password = page.get_by_label("Password", exact=True)
    # the sign-in form or the page itself, whichever the first run draws
    password.or_(page.get_by_role("heading", name=title)).first.wait_for()
    if password.count():
        page.get_by_label("E-mail", exact=True).fill(DEMO_EMAIL)
        page.get_by_label("Password", exact=True).fill(DEMO_PASSWORD)
        click(page, "Sign in")
    page.get_by_role("heading", name=title).first.wait_for()
    settle(page)


def main_text(page: Any) -> str:
    return str(page.locator("[data-testid='stMain']").inner_text())


def test_the_customer_page_shows_the_email_as_sent(server: tuple[str, str], page: Any) -> None:
    base, url = server
    engine = make_engine(url)
    with session_scope(engine) as session:
        a, r = OutreachAttempt, CampaignRecipient
        customer_id, name = session.execute(
            select(Customer.id, Customer.customer_name).join(r, r.customer_id == Customer.id)
            .join(Campaign, Campaign.id == r.campaign_id)
            .where(Campaign.name == "Win back dormant regulars", Customer.customer_name.is_not(None),
                   exists().where(a.recipient_id == r.id, a.channel == "email", a.outcome == "accepted"))
            .order_by(Customer.customer_name).limit(1)).one()
    engine.dispose()
    open_signed_in(page, f"{base}/customer?id={customer_id}", name)
    main = main_text(page)
    assert "Win back dormant regulars" in main and "E-mail ·" in main and "Subject:" in main
    outer = page.locator("[data-testid='stIFrame']").first
    outer.scroll_into_view_if_needed()
    frame = page.frame_locator("[data-testid='stIFrame']").first
    assert frame.locator("iframe").first.get_attribute("sandbox") == ""  # nothing in the e-mail runs
    email = frame.frame_locator("iframe[sandbox]").locator("body")
    email.wait_for()
    body = email.inner_text()
    assert name.split()[0] in body and "Unsubscribe" in body
    settle(page, "21-customer-page")
    page.get_by_role("tab", name=re.compile("Leads")).click()
    settle(page, "22-customer-leads")
    page.get_by_role("tab", name=re.compile("Opt-outs and consents")).click()
    settle(page, "23-customer-opt-outs-consents")


def test_edit_a_draft_and_duplicate_a_campaign_in_the_wizard(server: tuple[str, str], page: Any) -> None:
    base, url = server
    engine = make_engine(url)
    with session_scope(engine) as session:
        profile_id = session.scalars(select(Profile.id)).one()
        draft = campaigns.create_campaign(session, profile_id=profile_id, data={
            "name": "Browser draft", "campaign_type": "winback", "outreach_method": "sms",
            "target_criteria": {"last_contact_days": 200},
            "message_template": "Hi {first_name|there}, {business_name} misses you!", "holdout_percent": 10})
        draft_id = draft.id
        running_id = session.scalars(select(Campaign.id).where(Campaign.status == "active").limit(1)).one()
    open_signed_in(page, f"{base}/create_campaign?edit={draft_id}", "Edit “Browser draft”")
    settle(page, "24-wizard-edit-basics")
    name = page.get_by_label("Campaign name", exact=True)
    assert name.input_value() == "Browser draft"
    name.fill("Browser draft, edited")
    click(page, "Next: audience")
    page.get_by_text("Who this reaches").wait_for()
    settle(page, "25-wizard-edit-audience")
    click(page, "Next: channel")
    page.get_by_text("Starter sequence", exact=True).wait_for()
    settle(page, "26-wizard-edit-channel")
    click(page, "Next: content")
    page.get_by_text("Send yourself a test").wait_for()
    click(page, "Next: schedule")
    page.get_by_text("Measure what it brings").wait_for()
    assert page.get_by_label("Date", exact=True).count() == 0  # "as soon as I confirm": no date to pick
    settle(page, "27-wizard-edit-schedule")
    click(page, "Next: review")
    page.get_by_text("Ready to go").wait_for()
    settle(page, "28-wizard-edit-review")
    main = main_text(page)
    assert "Estimated cost." in main and "10% of the customers are kept back" in main
    click(page, "Save changes")
    heading(page, "Browser draft, edited")
    settle(page, "29-edited-draft-page")

    # a copy: a new draft, the original untouched
    open_signed_in(page, f"{base}/create_campaign?copy={draft_id}", "Create campaign")
    assert page.get_by_label("Campaign name", exact=True).input_value() == "Copy of Browser draft, edited"
    settle(page, "30-wizard-copy")
    page.get_by_role("button", name=re.compile("6. Review")).click()
    page.get_by_text("Ready to go").wait_for()
    settle(page)
    click(page, "Save as draft")
    heading(page, "Copy of Browser draft, edited")
    settle(page)

    # a running campaign is not edited, but offered as a copy
    open_signed_in(page, f"{base}/create_campaign?edit={running_id}", "Create campaign")
    page.get_by_text("so it can no longer be edited").wait_for()
    settle(page, "31-wizard-edit-running")
    with session_scope(engine) as session:
        names = sorted(session.scalars(select(Campaign.name).where(Campaign.name.like("%Browser draft%"))))
        status = session.scalars(select(Campaign.status).where(Campaign.id == draft_id)).one()
    engine.dispose()
    assert names == ["Browser draft, edited", "Copy of Browser draft, edited"] and status == "draft"


def test_the_new_wizard_steps_and_settings_tabs_show_no_exception(server: tuple[str, str], page: Any) -> None:
    base, _ = server
    open_signed_in(page, f"{base}/create_campaign", "Create campaign")
    if page.get_by_role("button", name=re.compile("Start over|New campaign instead")).count():
        click(page, "Start over")
        settle(page)
    page.get_by_label("Campaign name", exact=True).fill(f"Tour {uuid.uuid4().hex[:4]}")
    click(page, "Next: audience")
    page.get_by_text("Counted for any channel").wait_for()
    settle(page, "32-wizard-audience-any-channel")
    click(page, "Next: channel")
    page.get_by_text("Starter sequence", exact=True).wait_for()
    click(page, "Use the starter sequence")
    settle(page, "33-wizard-starter-sequence")
    click(page, "Next: content")
    page.get_by_text("Send yourself a test").wait_for()
    settle(page, "34-wizard-starter-content")
    click(page, "Next: schedule")
    page.get_by_text("Measure what it brings").wait_for()
    page.get_by_text("Always on: keep enrolling customers as they start matching").click()
    settle(page, "35-wizard-schedule-always-on")
    click(page, "Next: review")
    page.get_by_text("Ready to go").wait_for()
    settle(page, "36-wizard-review-cost")
    open_signed_in(page, f"{base}/settings", "Settings")
    settle(page, "37-settings-channels")
    page.get_by_role("tab", name="Business profile").click()
    settle(page, "38-settings-business-profile")
