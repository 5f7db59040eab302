"""The dashboard is true and alive, in a real browser: a reload keeps the session (and sign-out ends it, a
forged cookie signs nobody in), a running campaign's customer table changes without a click, a campaign
started outside its window says when it will send — and no Streamlit exception on any of these pages.
Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import campaigns
from core.config import Settings
from core.db import make_engine, session_factory, session_scope, utcnow
from core.demo import DEMO_EMAIL, DEMO_PASSWORD
from core.models import Campaign, Profile
from core.scheduling import tick
from core.schemas import DAYS
from tests.browser.conftest import _serve
from tests.browser.test_dashboard import click, heading, settle

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chromium_path: object) -> Iterator[tuple[str, str]]:
    """A dashboard of its own for this module (its database is written to by the tests)."""
    yield from _serve(tmp_path_factory)


def sign_in(page: Any, base: str, path: str = "") -> None:
    page.goto(f"{base}/{path}")
    page.get_by_label("E-mail", exact=True).fill(DEMO_EMAIL)
    page.get_by_label("Password", exact=True).fill(DEMO_PASSWORD)
    click(page, "Sign in")


def new_campaign(url: str, name: str, **fields: Any) -> uuid.UUID:
    """An e-mail campaign of the demo business over everyone, started now."""
    engine = make_engine(url)
    with session_scope(engine) as session:
        profile_id = session.scalars(select(Profile.id)).one()
        c = campaigns.create_campaign(session, profile_id=profile_id, data={
            "name": name, "campaign_type": "winback", "outreach_method": "email", "target_criteria": {},
            "email_subject": "We miss you, {first_name|there}", "message_template": "Come back to {business_name}.",
            **fields})
        campaigns.start_campaign(session, profile_id=profile_id, campaign_id=c.id)
        cid = c.id
    engine.dispose()
    return cid


def wait_for_table(page: Any, pattern: str, timeout: float = 20_000) -> None:
    """Wait until the first table shows ``pattern`` (its cells are drawn on a canvas; this reads their
    accessible text), without touching the page."""
    page.wait_for_function("p => { const t = document.querySelector(\"[data-testid='stDataFrame']\"); "
                           "if (t === null) return false; const rows = [...t.querySelectorAll(\"[role='row']\")]; "
                           "return rows.slice(1).some(r => new RegExp(p).test(r.textContent)); }",  # not the header
                           arg=pattern, timeout=timeout)


def sidebar_text(page: Any) -> str:
    return str(page.locator("[data-testid='stSidebar']").inner_text())


def test_a_reload_keeps_the_session_and_sign_out_ends_it(server: tuple[str, str], page: Any) -> None:
    base, url = server
    sign_in(page, base)
    heading(page, "Campaigns")
    settle(page, "live-01-signed-in")
    assert any(c["name"] == "connext_session" for c in page.context.cookies())
    assert "connext_session" not in page.url and "token" not in page.url

    page.reload()
    heading(page, "Campaigns")
    settle(page, "live-02-after-reload")
    assert "Bella Vista Salon & Spa" in sidebar_text(page)

    # a pasted link in a new tab lands on its page, signed in
    engine = make_engine(url)
    with session_scope(engine) as session:
        cid, name = session.execute(select(Campaign.id, Campaign.name)
                                    .where(Campaign.name == "Win back dormant regulars")).one()
    engine.dispose()
    tab = page.context.new_page()
    tab.goto(f"{base}/campaign?id={cid}")
    heading(tab, name)
    settle(tab, "live-03-pasted-link")
    tab.close()

    click(page, "Sign out")
    page.get_by_label("E-mail", exact=True).wait_for()
    settle(page)
    page.reload()
    page.get_by_label("E-mail", exact=True).wait_for()
    settle(page, "live-04-signed-out")
    assert page.get_by_role("heading", name="Campaigns", exact=True).count() == 0


def test_a_forged_or_revoked_cookie_signs_nobody_in(server: tuple[str, str], browser: Any) -> None:
    base, _ = server
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    sign_in(page, base)
    heading(page, "Campaigns")
    settle(page)
    real = next(c for c in context.cookies() if c["name"] == "connext_session")
    click(page, "Sign out")
    page.get_by_label("E-mail", exact=True).wait_for()
    context.close()

    for value in (real["value"], real["value"][:-4] + "AAAA", "not-a-token"):  # revoked, altered, made up
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.add_cookies([{"name": "connext_session", "value": value, "url": base}])
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(base)
        page.get_by_label("E-mail", exact=True).wait_for()
        settle(page)
        assert page.get_by_role("heading", name="Campaigns", exact=True).count() == 0
        # and the browser is told to forget it
        page.wait_for_function("!document.cookie.includes('connext_session=" + value[:8] + "')")
        context.close()


def test_a_running_campaigns_customers_change_without_a_click(server: tuple[str, str], page: Any) -> None:
    base, url = server
    cid = new_campaign(url, "Live win-back", rate_limit_per_minute=10000,
                       send_window={"start": "00:00", "end": "24:00", "days": list(DAYS)})
    sign_in(page, base, f"campaign?id={cid}")
    heading(page, "Live win-back")
    settle(page, "live-05-running-before")
    wait_for_table(page, "Waiting")
    assert "Sending now:" in page.locator("[data-testid='stMain']").inner_text()

    # the scheduler sends (sandbox, fast-forwarded) while nobody touches the page
    engine = make_engine(url)
    settings = Settings(_env_file=None, database_url=url, resend_max_per_second=1000,  # type: ignore[call-arg]
                        sandbox_speed=1000)
    tick(session_factory(engine), worker="live-test", settings=settings)
    engine.dispose()
    wait_for_table(page, "Sent|Delivered")
    # the counts and the table are two fragments, each refreshed every few seconds on its own: the counts
    # follow within one refresh, still without a click
    page.wait_for_function("() => [...document.querySelectorAll(\"[data-testid='stMetric']\")].some(m => "
                           "/^\\s*Sent\\b/.test(m.innerText) && /[1-9]/.test(m.innerText.split('\\n').pop()))",
                           timeout=3 * 3_000 + 5_000)
    settle(page, "live-06-running-after")
    metrics = page.locator("[data-testid='stMetric']", has_text="Sent").first.inner_text()
    assert int(metrics.split()[-1].replace(",", "")) > 0


def test_a_campaign_started_outside_its_window_says_when_it_sends(server: tuple[str, str], page: Any) -> None:
    base, url = server
    today = utcnow().astimezone(ZoneInfo("America/New_York")).weekday()
    cid = new_campaign(url, "Thursday letters", send_window={"start": "09:00", "end": "17:00",
                                                             "days": [DAYS[(today + 3) % 7]]})
    sign_in(page, base, f"campaign?id={cid}")
    heading(page, "Thursday letters")
    settle(page, "live-07-waiting-for-window")
    main = page.locator("[data-testid='stMain']").inner_text()
    assert re.search(r"Waiting for the send window \(09:00–17:00, \w{3}, the customer's local time\): the first "
                     r"e-mails go out on \w+, \w{3} \d+ at 09:00 in \w[\w ]+, in \d+ days?", main), main

    # the list says it short, and a click on the row opens the campaign
    page.locator("[data-testid='stSidebarNav'] a", has_text="Campaigns").first.click()
    heading(page, "Campaigns")
    settle(page, "live-08-list-next-send")
    rows = page.locator("[data-testid='stDataFrame'] [role='row']")
    texts = [rows.nth(i).text_content() or "" for i in range(rows.count())]
    index = next(i for i, text in enumerate(texts) if "Thursday letters" in text)
    assert re.search(r"next send \w{3} 09:00|next send \w{3} \d+ 09:00", texts[index]), texts[index]
    # the grid is drawn on a canvas: click the selection box at the start of that row (35 px per row)
    box = page.locator("[data-testid='stDataFrame']").first.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 * index + 17)
    heading(page, "Thursday letters")
    settle(page)


def test_the_analytics_pages_draw_without_an_exception(server: tuple[str, str], page: Any) -> None:
    base, url = server
    engine = make_engine(url)
    with session_scope(engine) as session:
        cid = session.scalars(select(Campaign.id).where(Campaign.name == "Win back dormant regulars")).one()
    engine.dispose()
    sign_in(page, base, f"analytics?id={cid}")
    heading(page, "Analytics")
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page, "live-09-analytics-campaign")
    text = page.locator("[data-testid='stMain']").inner_text()
    assert "None" not in text and "of sent" in text
    page.goto(f"{base}/analytics")
    heading(page, "Analytics")
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page, "live-10-analytics-all")
