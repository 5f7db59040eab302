"""The campaign list (pages/campaigns.py) and one campaign's page (pages/campaign.py) in AppTest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from core import campaigns
from core.models import Campaign, CampaignRecipient, Profile
from tests import factories as f
from tests.dashboard import helpers as h
from tests.dashboard.conftest import assert_clean, button, open_app, read, selectbox, texts


def _setup(session, shop, *, customers=3, **fields):
    profile = session.get(Profile, shop.profile_id)
    now = datetime.now(UTC)
    for i in range(customers):
        f.lead(session, profile, email=f"c{i:03d}@example.com", name=f"Customer {i:03d}", now=now)
    c = f.campaign(session, profile, method="email", name=fields.pop("name", "Spring win-back"), **fields)
    session.commit()
    return profile, c


def _status(engine, campaign_id):
    return read(engine, lambda s: s.scalar(select(Campaign.status).where(Campaign.id == campaign_id)))


def test_empty_list_invites_a_first_campaign(app_db, shop):
    at = open_app(shop, "campaigns")
    assert "You have no campaigns yet. Create your first one" in texts(at)
    assert [p.proto.label for p in at.get("page_link")] == ["Create your first campaign"]


def test_list_shows_status_progress_and_rates(app_db, shop, session):
    profile, c = _setup(session, shop)
    ids = h.recipients(session, c, now=datetime.now(UTC))
    h.set_state(session, ids[0], status="delivered", sent_at=datetime.now(UTC), delivered_at=datetime.now(UTC),
                responded_at=datetime.now(UTC), next_attempt_at=None)
    f.campaign(session, profile, method="sms", name="Feedback texts", campaign_type="feedback")
    session.commit()
    at = open_app(shop, "campaigns")
    table = at.dataframe[0].value
    assert list(table["name"]) == ["Feedback texts", "Spring win-back"]
    row = table[table["name"] == "Spring win-back"].iloc[0]
    assert list(row["status_badge"]) == ["Draft"] and row["progress_text"] == "1 of 3"
    assert row["response_rate"] == 100.0 and row["channel"] == "E-mail"  # percent, one decimal on screen
    assert row["next_send"] == "not started"

    at.selectbox(key="filter_type").set_value("feedback").run()
    assert list(at.dataframe[0].value["name"]) == ["Feedback texts"]
    at.selectbox(key="filter_status").set_value("active").run()
    assert "No campaign matches these filters" in texts(at)


def test_quick_actions_start_pause_and_stop_with_confirmation(app_db, shop, session, engine):
    _, c = _setup(session, shop)
    at = open_app(shop, "campaigns")
    assert selectbox(at, "Campaign").value == str(c.id)
    button(at, "Start now").click().run()
    assert_clean(at)
    assert _status(engine, c.id) == "active"
    assert [t.value for t in at.toast] == ["“Spring win-back” is running."]
    assert button(at, "Delete…").disabled

    button(at, "Pause").click().run()
    assert _status(engine, c.id) == "paused"
    assert button(at, "Resume") is not None

    button(at, "Stop…").click().run()
    assert "will stop for good" in texts(at)
    button(at, "Keep it running").click().run()
    assert _status(engine, c.id) == "paused" and "will stop for good" not in texts(at)

    button(at, "Stop…").click().run()
    button(at, "Stop the campaign").click().run()
    assert_clean(at)
    assert _status(engine, c.id) == "cancelled"
    assert button(at, "Stop…").disabled and button(at, "Start now").disabled


def test_delete_from_the_list(app_db, shop, session, engine):
    _, c = _setup(session, shop)
    at = open_app(shop, "campaigns")
    button(at, "Delete…").click().run()
    button(at, "Delete the campaign").click().run()
    assert_clean(at)
    assert _status(engine, c.id) is None
    assert "You have no campaigns yet" in texts(at)


def test_a_refused_action_is_explained(app_db, shop, session, engine):
    _, c = _setup(session, shop)
    at = open_app(shop, "campaigns")
    # someone else starts it meanwhile (another tab, the API): this page still offers "Start now"
    read(engine, lambda s: (campaigns.start_campaign(s, profile_id=shop.profile_id, campaign_id=c.id), s.commit()))
    button(at, "Start now").click().run()
    assert_clean(at)
    assert [e.value for e in at.error] == ["This campaign is already active."]


def test_open_goes_to_the_campaign_page(app_db, shop, session):
    _, c = _setup(session, shop)
    at = open_app(shop, "campaigns")
    button(at, "Open").click().run()
    assert_clean(at)
    assert at.title[0].value == "Spring win-back"
    assert at.query_params["id"] == str(c.id)


def test_campaign_page_overview_progress_and_recipients(app_db, shop, session):
    _, c = _setup(session, shop, customers=60)
    now = datetime.now(UTC)
    campaigns.start_campaign(session, profile_id=shop.profile_id, campaign_id=c.id, now=now)
    ids = [r.id for r in session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == c.id)
                                         .order_by(CampaignRecipient.created_at, CampaignRecipient.id))]
    for rid in ids[:10]:
        h.set_state(session, rid, status="sent", sent_at=now, last_channel="email", next_attempt_at=None)
    h.set_state(session, ids[0], status="failed", error_message="Mailbox does not exist")
    session.commit()

    at = open_app(shop, "campaign", {"id": str(c.id)})
    assert at.title[0].value == "Spring win-back"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Customers"] == "60" and metrics["Sent"] == "10" and metrics["Failed"] == "1"
    assert "10 of 60 customers done" in at.get("progress")[0].proto.text
    table = at.dataframe[0].value
    assert len(table) == 50  # one page, read with LIMIT/OFFSET
    assert "Showing 1–50 of 60" in texts(at)
    at.number_input(key="recipients_page").set_value(2).run()
    assert len(at.dataframe[0].value) == 10

    at.selectbox(key="recipient_status").set_value("failed").run()
    table = at.dataframe[0].value
    assert len(table) == 1 and table["error"].iloc[0] == "Mailbox does not exist"
    assert any(e.value == "Problem: Mailbox does not exist" for e in at.error)

    at.selectbox(key="recipient_status").set_value("").run()
    at.text_input(key="recipient_search").input("customer 017").run()
    assert list(at.dataframe[0].value["customer"]) == ["Customer 017"]


def test_recipient_detail_shows_what_happened(app_db, shop, session):
    profile = session.get(Profile, shop.profile_id)
    now = datetime.now(UTC)
    f.lead(session, profile, phone="+12015550177", name="Ana Lima", now=now)
    c = f.campaign(session, profile, method="call", name="Calls")
    (rid,) = h.recipients(session, c, now=now)
    h.attempt(session, rid, at=now - timedelta(minutes=5), channel="call")
    h.event(session, rid, "answered", now - timedelta(minutes=4), channel="call",
            payload={"transcript": "AI: Hello Ana\nCustomer: Yes, book me", "summary": "Booked Friday 10:00."})
    h.set_state(session, rid, status="answered", sent_at=now, answered_at=now, responded_at=now, converted=True)
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    page = texts(at)
    assert "**Ana Lima** — (201) 555-0177" in page  # formatted for people
    assert "**Call summary.** Booked Friday 10:00." in page
    assert at.expander[-1].label == "Call transcript"
    events = at.dataframe[1].value
    assert list(events["event"]) == ["Answered"]
    assert list(at.dataframe[2].value["outcome"]) == ["accepted"]


def test_a_put_off_customer_says_why_and_until_when(app_db, shop, session):
    """The engine keeps why it put a try off: the customer list and the customer's details say it."""
    profile = session.get(Profile, shop.profile_id)
    now = datetime.now(UTC)
    f.lead(session, profile, phone="+13055550177", name="Ana Lima", now=now)
    f.lead(session, profile, phone="+12125550178", name="Bo Reyes", now=now)
    c = f.campaign(session, profile, method="call", name="Calls")
    rids = h.recipients(session, c, now=now)
    why = ("3 calls in 24 hours already reached this FL number (Florida Telephone Solicitation Act (CS/SB 1120, "
           "2021), Fla. Stat. § 501.616(6)(a)–(b))")
    names = dict(session.execute(select(CampaignRecipient.id, CampaignRecipient.customer_name)
                                 .where(CampaignRecipient.id.in_(rids))).all())
    ana = next(rid for rid in rids if names[rid] == "Ana Lima")
    h.set_state(session, ana, status="queued", next_attempt_at=now + timedelta(hours=20), waiting_reason=why)
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    table = at.dataframe[0].value.set_index("customer")
    assert table.loc["Ana Lima", "waiting_reason"] == why and table.loc["Ana Lima", "next_attempt_at"] is not None
    assert not table.loc["Bo Reyes", "waiting_reason"]
    (chooser,) = [b for b in at.selectbox if b.label == "Details for"]
    chooser.select(str(ana)).run()
    assert_clean(at)
    (said,) = [i.value for i in at.info if "Waits until" in i.value]
    assert said.endswith(f": {why}.")


def test_campaign_page_actions(app_db, shop, session, engine):
    _, c = _setup(session, shop)
    at = open_app(shop, "campaign", {"id": str(c.id)})
    assert "This is a draft: nothing is sent until you start it." in texts(at)
    assert "Customers are selected when the campaign starts" in texts(at)
    button(at, "Start now").click().run()
    assert _status(engine, c.id) == "active"
    assert len(at.dataframe[0].value) == 3
    button(at, "Pause").click().run()
    assert _status(engine, c.id) == "paused"
    button(at, "Stop…").click().run()
    button(at, "Stop the campaign").click().run()
    assert _status(engine, c.id) == "cancelled"
    button(at, "Delete…").click().run()
    button(at, "Delete the campaign").click().run()
    assert_clean(at)
    assert _status(engine, c.id) is None
    assert at.title[0].value == "Campaigns"


def test_a_paused_campaign_says_why(app_db, shop, session):
    _, c = _setup(session, shop)
    session.execute(update(Campaign).where(Campaign.id == c.id).values(
        status="paused", status_reason="Resend says the daily quota is used up; resume tomorrow."))
    session.commit()
    at = open_app(shop, "campaign", {"id": str(c.id)})
    assert any("daily quota is used up" in w.value for w in at.warning)


def test_unknown_or_foreign_campaign(app_db, shop, session):
    other = f.make_profile(session)
    foreign = f.campaign(session, other, method="email")
    session.commit()
    at = open_app(shop, "campaign", {"id": str(foreign.id)})
    assert [e.value for e in at.error] == ["This campaign does not exist any more (it may have been deleted)."]
    at = open_app(shop, "campaign", {"id": "nonsense"})
    assert "Open a campaign from the campaign list" in texts(at)
