"""The dashboard in a real browser: sign in, create a scheduled campaign with the
wizard, find it in the list, open it and its charts, visit every page — and no
Streamlit exception anywhere.  Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import select

from core.db import make_engine, session_scope
from core.demo import DEMO_EMAIL, DEMO_PASSWORD
from core.models import Campaign
from tests.browser.conftest import ARTIFACTS

pytestmark = pytest.mark.browser

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
EXCEPTION = "[data-testid='stException']"


def settle(page: Any, shot: str | None = None) -> None:
    """Wait until the script run is over and the page is drawn; fail on any exception shown."""
    page.wait_for_timeout(250)  # let a rerun triggered by the last action begin
    page.wait_for_selector(IDLE, state="attached")
    # the script-run state above is the signal; a quiet network is only a courtesy (an iframe or a static
    # file of a busy, just-started server may keep it from settling for a while without anything being wrong)
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_load_state("networkidle", timeout=5000)
    page.wait_for_timeout(400)  # charts and tables finish drawing after the run
    assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).first.inner_text()
    if shot:
        screenshot(page, shot)


def screenshot(page: Any, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main container, so grow the viewport to fit it first."""
    size = page.viewport_size
    height = page.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], "
                           "[data-testid=\"stSidebar\"]')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], int(height) + 40)})
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.set_viewport_size(size)


def heading(page: Any, text: str) -> None:
    page.get_by_role("heading", name=text, exact=True).first.wait_for()


def click(page: Any, name: str) -> None:
    """Click the Streamlit button labelled ``name`` (its material icon's name may precede the label)."""
    label = re.compile(rf"^\s*([a-z_]+\s*)?{re.escape(name)}\s*$")
    page.locator("button[data-testid^='stBaseButton']").filter(has_text=label).first.click()


def choose(page: Any, label: str, option: Any) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    box = page.locator("[data-testid='stSelectbox']").filter(has=page.get_by_text(label, exact=True))
    wanted = page.get_by_role("option", name=option).first
    for _ in range(3):  # a click on a box that already has focus may close the list instead of opening it
        box.locator("[role='combobox'], input").first.click()
        try:
            wanted.wait_for(timeout=3000)
            break
        except Exception:
            page.keyboard.press("Escape")
    wanted.click()


def nav(page: Any, label: str) -> None:
    page.locator("[data-testid='stSidebarNav'] a", has_text=label).first.click()
    heading(page, label)
    settle(page)


def test_sign_in_create_a_scheduled_campaign_and_read_its_results(dashboard: str, page: Any) -> None:
    page.goto(dashboard)
    settle(page, "01-sign-in")
    page.get_by_label("E-mail", exact=True).fill(DEMO_EMAIL)
    page.get_by_label("Password", exact=True).fill(DEMO_PASSWORD)
    click(page, "Sign in")
    heading(page, "Campaigns")
    settle(page, "02-campaigns")
    sidebar = page.locator("[data-testid='stSidebar']")
    assert "Bella Vista Salon & Spa" in sidebar.inner_text()
    assert "sandbox" in sidebar.inner_text()

    # --- the wizard --------------------------------------------------------------------------------
    nav(page, "Create campaign")
    page.get_by_label("Campaign name", exact=True).fill("Browser win-back")
    settle(page, "03-wizard-basics")
    click(page, "Next: audience")
    page.get_by_text("Who this reaches").wait_for()
    settle(page, "04-wizard-audience")
    click(page, "Next: channel")
    page.get_by_text("How should we reach them?").wait_for()
    settle(page, "05-wizard-channel")
    click(page, "Next: content")
    page.get_by_text("Send yourself a test").wait_for()
    settle(page, "06-wizard-content")
    click(page, "Send test")
    page.get_by_text(re.compile(r"Sandbox mode: the test e-mail|sandbox: ")).first.wait_for()
    settle(page)
    click(page, "Next: schedule")
    page.get_by_text("When should it start?").wait_for()
    page.get_by_text("At a date and time", exact=True).click()
    settle(page, "07-wizard-schedule")
    click(page, "Next: review")
    page.get_by_text("Ready to go").wait_for()
    settle(page, "08-wizard-review")
    assert "Estimated duration." in page.locator("[data-testid='stMain']").inner_text()
    click(page, "Schedule campaign")
    heading(page, "Browser win-back")
    settle(page, "09-campaign-scheduled")
    main = page.locator("[data-testid='stMain']").inner_text()
    assert "Scheduled: starts tomorrow at 10:00 (New York time)" in main and "Scheduled" in main

    # --- the list and the campaign pages ----------------------------------------------------------------
    nav(page, "Campaigns")
    settle(page, "10-campaign-list")
    row = page.locator("[data-testid='stDataFrame'] [role='row']", has_text="Browser win-back")
    assert row.count() == 1 and "Scheduled" in row.inner_text()
    click(page, "Open")
    heading(page, "Browser win-back")
    settle(page)
    click(page, "Results and charts")
    heading(page, "Analytics")
    settle(page, "11-analytics-scheduled")

    # the demo's e-mail campaign ran in sandbox mode: its page and charts have real numbers
    nav(page, "Campaigns")
    choose(page, "Campaign", re.compile("Win back dormant regulars"))
    settle(page)
    click(page, "Open")
    heading(page, "Win back dormant regulars")
    settle(page, "12-campaign-page")
    main = page.locator("[data-testid='stMain']").inner_text()
    assert "customers done" in main and "Customers in this campaign" in main
    click(page, "Results and charts")
    heading(page, "Analytics")
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page, "13-analytics-campaign")
    assert page.locator(".js-plotly-plot").count() == 5  # funnel, statuses, timeline, versions, channels
    with page.expect_download() as download:
        click(page, "Download every customer's result (CSV)")
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert download.value.suggested_filename.startswith("win-back-dormant-regulars-recipients-")
    customers = page.locator("[data-testid='stMetric']", has_text="Customers").first.inner_text()
    assert len(exported) == int(customers.split()[-1].replace(",", ""))
    assert {"customer_email", "status", "outcome"} <= set(exported[0])
    settle(page)

    # --- every other page -----------------------------------------------------------------------------------
    nav(page, "Analytics")
    choose(page, "Show results for", "All campaigns")
    settle(page, "14-analytics-all")
    nav(page, "Customers")
    settle(page, "15-customers")
    page.get_by_role("tab", name="Import leads").click()
    settle(page, "16-customers-import")
    page.get_by_role("tab", name="Opt-outs").click()
    settle(page, "17-customers-optouts")
    nav(page, "Settings")
    settle(page, "18-settings")
    page.get_by_role("tab", name="API keys").click()
    settle(page, "19-settings-keys")
    page.get_by_role("tab", name="Business profile").click()
    settle(page, "20-settings-profile")


def test_a_deep_link_opened_first_after_a_server_start_lands_after_the_sign_in(
        cold_dashboard: tuple[str, str], page: Any) -> None:
    # Streamlit's legacy routing of the pages/ folder runs the very first request of a fresh server
    # without the frame; the page sends the visitor to sign in, and the sign-in takes them on
    base, url = cold_dashboard
    engine = make_engine(url)
    with session_scope(engine) as session:
        campaign_id, name = session.execute(select(Campaign.id, Campaign.name)
                                            .where(Campaign.name == "Win back dormant regulars")).one()
    engine.dispose()
    page.goto(f"{base}/campaign?id={campaign_id}")
    page.get_by_label("E-mail", exact=True).fill(DEMO_EMAIL)
    page.get_by_label("Password", exact=True).fill(DEMO_PASSWORD)
    click(page, "Sign in")
    heading(page, name)
    settle(page)
    assert page.get_by_text("Customers in this campaign", exact=True).count() == 1
    click(page, "Results and charts")
    page.wait_for_url(re.compile(rf"/analytics\?id={campaign_id}$"))
    settle(page)
