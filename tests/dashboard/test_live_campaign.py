"""The campaign page and list say what the campaign waits for, refresh themselves, count holdouts apart,
link every customer, and keep destructive buttons out of the primary style (AppTest, both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update

from core import campaigns
from core.models import Campaign, CampaignRecipient, Profile
from core.schemas import DAYS
from tests import factories as f
from tests.dashboard import helpers as h
from tests.dashboard.conftest import assert_clean, button, open_app, texts


def _sms_campaign(session, shop, *, customers=3, **fields):
    profile = session.get(Profile, shop.profile_id)
    profile.consent_policy = "none"  # not a consent test
    now = datetime.now(UTC)
    for i in range(customers):
        f.lead(session, profile, phone=f"+1201555{i:04d}", name=f"Customer {i}", now=now)
    c = f.campaign(session, profile, method="sms", name="Texts", **fields)
    session.commit()
    return profile, c


def test_a_started_campaign_says_why_nothing_is_sent_yet(app_db, shop, session):
    # a window on the day after tomorrow only (New York time): closed now, whatever hour the test runs at
    today = datetime.now(ZoneInfo("America/New_York")).weekday()
    _, c = _sms_campaign(session, shop, send_window={"start": "09:00", "end": "19:00",
                                                     "days": [DAYS[(today + 2) % 7]]})
    campaigns.start_campaign(session, profile_id=shop.profile_id, campaign_id=c.id)
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    said = [i.value for i in at.info]
    assert any(s.startswith("Waiting for the send window (09:00–19:00, ") and "the first texts go out" in s
               and "in New York, in " in s for s in said), said
    # the page refreshes itself while the campaign runs
    assert "Refreshes every 3 seconds." in texts(at)

    at = open_app(shop, "campaigns")
    row = at.dataframe[0].value.iloc[0]
    assert row["next_send"].startswith("next send ")


def test_phones_are_formatted_and_every_row_links_to_its_customer(app_db, shop, session):
    _, c = _sms_campaign(session, shop)
    campaigns.start_campaign(session, profile_id=shop.profile_id, campaign_id=c.id)
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    assert_clean(at)
    table = at.dataframe[0].value
    assert sorted(table["phone"]) == ["(201) 555-0000", "(201) 555-0001", "(201) 555-0002"]
    assert all(link.startswith("customer?id=") for link in table["customer_page"])
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()
    links = [p.proto for p in at.get("page_link")]
    assert any(p.label == "Customer page" and "customer" in p.page for p in links)


def test_holdouts_are_shown_apart_and_counts_agree(app_db, shop, session):
    _, c = _sms_campaign(session, shop, customers=5)
    campaigns.start_campaign(session, profile_id=shop.profile_id, campaign_id=c.id)
    ids = h.recipients(session, session.get(Campaign, c.id), now=datetime.now(UTC))
    session.execute(update(CampaignRecipient).where(CampaignRecipient.id.in_(ids[:2]))
                    .values(status="holdout", next_attempt_at=None))
    sent = datetime.now(UTC) - timedelta(minutes=3)
    h.set_state(session, ids[2], status="failed", sent_at=sent, error_message="Twilio 21211: invalid number",
                next_attempt_at=None)
    h.set_state(session, ids[3], status="opted_out", sent_at=sent, delivered_at=sent, next_attempt_at=None)
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Customers"] == "3" and metrics["Failed"] == "1" and metrics["Opted out"] == "1"
    assert metrics["Delivered"] == "1"  # ever delivered, although opted out now
    page = texts(at)
    assert "Plus 2 customers kept back as a holdout group" in page
    assert "Why customers failed: Twilio 21211: invalid number (1)." in page
    assert "2 of 3 customers done" in at.get("progress")[0].proto.text
    assert "Response rate 0.0% of sent, conversion rate 0.0% of sent." in page

    at = open_app(shop, "analytics", {"id": str(c.id)})
    assert {m.label: m.value for m in at.metric}["Customers"] == "3"
    assert "2 customers kept back as a holdout group" in texts(at)
    assert "Why customers failed: Twilio 21211: invalid number (1)." in texts(at)
    at = open_app(shop, "campaigns")
    assert at.dataframe[0].value.iloc[0]["progress_text"] == "2 of 3"


def test_a_paused_campaign_says_why_and_delete_is_never_primary(app_db, shop, session, engine):
    _, c = _sms_campaign(session, shop)
    campaigns.start_campaign(session, profile_id=shop.profile_id, campaign_id=c.id)
    session.execute(update(Campaign).where(Campaign.id == c.id).values(
        status="paused", status_reason="Paused automatically: 12 of the last 20 attempts failed."))
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    assert [w.value for w in at.warning] == [
        "Paused: Paused automatically: 12 of the last 20 attempts failed. Nothing is sent until you resume it."]
    delete = button(at, "Delete…")
    assert delete.proto.type != "primary"
    delete.click().run()
    assert_clean(at)
    assert button(at, "Delete the campaign").proto.type == "secondary"
    assert button(at, "Keep it").proto.type == "primary"
    at = open_app(shop, "campaigns")
    assert at.dataframe[0].value.iloc[0]["next_send"] == "paused: Paused automatically"
    assert "Nothing is sent until you resume it." in texts(at)


def test_a_scheduled_page_refreshes_and_comes_alive_when_started(app_db, shop, session, engine):
    _, c = _sms_campaign(session, shop)
    session.execute(update(Campaign).where(Campaign.id == c.id).values(
        status="scheduled", scheduled_at=datetime.now(UTC) + timedelta(hours=2)))
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    assert any(i.value.startswith("Scheduled: starts at ") or i.value.startswith("Scheduled: starts tomorrow")
               for i in at.info)
    # the scheduler starts it: the next refresh draws the running campaign
    with engine.begin() as conn:
        conn.execute(update(Campaign).where(Campaign.id == c.id).values(scheduled_at=datetime.now(UTC)))
    from core.db import session_factory
    from core.scheduling import start_due_campaigns

    start_due_campaigns(session_factory(engine))
    at.run()
    assert_clean(at)
    assert ":green-badge[Running]" in texts(at)
    assert len(at.dataframe[0].value) == 3
