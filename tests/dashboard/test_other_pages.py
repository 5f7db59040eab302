"""Analytics, Customers and Settings pages in AppTest."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import select

from core import accounts
from core.models import ApiKey, Lead, OptOut, Profile
from tests import factories as f
from tests.dashboard import helpers as h
from tests.dashboard.conftest import assert_clean, button, open_app, read, selectbox, texts

CSV_GOOD = ("customer_name,customer_phone,customer_email,status,service_type,created_at,notes\n"
            "Maria Garcia,(201) 555-0142,maria@example.com,Closed,Color,2025-01-10,\n"
            "Liam Chen,,liam@example.com,New,Haircut,2025-03-02T14:30:00,Prefers mornings\n")
CSV_BAD = CSV_GOOD + "No Contact,,,Closed,,2025-01-01,\nBad Phone,12,,Closed,,2025-01-01,\n"


def _values(array):
    """A Plotly data array, which Plotly may ship base64-encoded with its dtype."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


# --- analytics --------------------------------------------------------------------------------------


def _ab_campaign(session, shop):
    profile = session.get(Profile, shop.profile_id)
    now = datetime.now(UTC)
    for i in range(40):
        f.lead(session, profile, email=f"ab{i:02d}@example.com", name=f"AB {i:02d}", now=now)
    c = f.campaign(session, profile, method="email", name="A/B offer",
                   variants=[{"name": "A"}, {"name": "B", "email_subject": "Treat for {first_name|you}"}])
    ids = h.recipients(session, c, now=now - timedelta(hours=3))
    for i, rid in enumerate(ids):
        sent = now - timedelta(hours=2, minutes=i)
        # a fixed split (selection assigns versions at random): A 6 of 16 responded, B 8 of 24
        h.set_state(session, rid, status="delivered", sent_at=sent, delivered_at=sent, last_channel="email",
                    next_attempt_at=None, variant="A" if i < 16 else "B")
        h.event(session, rid, "sent", sent)
        h.event(session, rid, "delivered", sent + timedelta(seconds=30))
        if i % 3 == 0:
            h.event(session, rid, "opened", sent + timedelta(minutes=20))
            h.set_state(session, rid, responded_at=sent + timedelta(minutes=25))
    session.commit()
    return c


def test_analytics_for_one_campaign(app_db, shop, session):
    c = _ab_campaign(session, shop)
    at = open_app(shop, "analytics", {"id": str(c.id)})
    assert selectbox(at, "Show results for").value == str(c.id)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Customers": "40", "Sent": "40", "Response rate (of sent)": "35.0%",
                       "Conversion rate (of sent)": "0.0%", "Opted out": "0", "Cost so far": "$0.00",
                       "Estimated cost": "$0.04", "Cost per customer who came back": "—"}
    # no holdout: the page says how many came back, and that only a holdout can tell what the campaign changed
    assert any("Without a holdout group there is no telling" in i.value for i in at.info)
    charts = at.get("plotly_chart")
    assert len(charts) == 5  # funnel, statuses, timeline, versions, channels
    funnel = json.loads(charts[0].proto.spec)["data"][0]
    assert funnel["y"] == ["Customers", "Sent", "Delivered", "Opened", "Responded", "Converted"]
    assert _values(funnel["x"]) == [40, 40, 40, 14, 14, 0]
    # the funnel's percentages have the same base as the rates: sent
    assert funnel["text"] == ["40", "40 · 100.0% of sent", "40 · 100.0% of sent", "14 · 35.0% of sent",
                              "14 · 35.0% of sent", "0 · 0.0% of sent"]
    versions = json.loads(charts[3].proto.spec)["layout"]["yaxis"]
    assert versions["tickformat"] == ".0%" and versions["dtick"] == 0.1
    verdicts = [i.value for i in at.info] + [s.value for s in at.success]
    assert any(v.startswith("Version A is ahead on response rate: 37.5% against 33.3% for version B.")
               for v in verdicts)
    download = at.get("download_button")[0]
    assert download.proto.label == "Download every customer's result (CSV)"


def test_analytics_for_all_campaigns_and_empty_states(app_db, shop, session):
    at = open_app(shop, "analytics")
    assert "Results appear here once you have a campaign" in texts(at)
    _ab_campaign(session, shop)
    not_started = f.campaign(session, session.get(Profile, shop.profile_id), method="sms", name="Not started")
    session.commit()
    at = open_app(shop, "analytics")
    assert selectbox(at, "Show results for").value == "all"
    comparison = at.dataframe[-1].value
    assert set(comparison["name"]) == {"A/B offer", "Not started"}
    assert at.get("download_button")[0].proto.label == "Download this table (CSV)"
    assert "Not started" in selectbox(at, "Show results for").options
    selectbox(at, "Show results for").set_value(str(not_started.id)).run()
    assert_clean(at)
    assert "No customer has been selected yet, so there is nothing to count." in texts(at)


# --- customers ----------------------------------------------------------------------------------------


def test_import_all_or_nothing_then_skip_invalid(app_db, shop, engine):
    at = open_app(shop, "customers")
    assert "No customers yet. Import a CSV file" in texts(at)
    at.file_uploader(key="import_file").upload("leads.csv", CSV_BAD.encode(), "text/csv")
    button(at, "Import").click().run()
    assert_clean(at)
    assert any(e.value.startswith("Nothing was imported: 2 rows have a problem.") for e in at.error)
    rejected = at.dataframe[-1].value
    assert list(rejected["line"]) == [4, 5]
    assert "customer_phone or customer_email is required" in rejected["error"].iloc[0]
    assert read(engine, lambda s: s.scalars(select(Lead).where(Lead.profile_id == shop.profile_id)).all()) == []

    at.radio(key="import_mode").set_value("skip_invalid")
    button(at, "Import").click().run()
    assert any(s.value.startswith("Imported 2 leads; left out 2 rows with problems") for s in at.success)
    leads = read(engine, lambda s: s.scalars(select(Lead).where(Lead.profile_id == shop.profile_id)).all())
    assert sorted(lead.customer_phone or lead.customer_email for lead in leads) == ["+12015550142",
                                                                                   "liam@example.com"]
    table = at.dataframe[0].value
    assert set(table["name"]) == {"Maria Garcia", "Liam Chen"}

    button(at, "Import").click().run()  # the same file again adds nothing
    assert any("Imported 0 leads; skipped 2 already there" in s.value for s in at.success)


def test_customer_search_and_erase(app_db, shop, session, engine):
    profile = session.get(Profile, shop.profile_id)
    now = datetime.now(UTC)
    f.lead(session, profile, phone="+12015550123", email="ana@example.com", name="Ana Lima", now=now)
    f.lead(session, profile, phone="+12015550999", name="Bea Cruz", now=now)
    session.commit()
    at = open_app(shop, "customers")
    at.text_input(key="customer_search").input("lima").run()
    assert list(at.dataframe[0].value["name"]) == ["Ana Lima"]
    assert selectbox(at, "Customer").value == "+12015550123"
    button(at, "Erase personal data…").click().run()
    assert "removes **Ana Lima · (201) 555-0123**'s personal details for good" in texts(at)
    button(at, "Erase personal data").click().run()
    assert_clean(at)
    assert any(s.value.startswith("Erased the personal details from 1 lead") for s in at.success)
    names = read(engine, lambda s: sorted(n or "" for n in s.scalars(
        select(Lead.customer_name).where(Lead.profile_id == shop.profile_id))))
    assert names == ["", "Bea Cruz"]
    at.text_input(key="customer_search").input("").run()
    assert list(at.dataframe[0].value["name"]) == ["Bea Cruz"]


def test_opt_outs_add_and_remove(app_db, shop, engine):
    at = open_app(shop, "customers")
    assert "Nobody has opted out yet." in texts(at)
    at.text_input(key="optout_contact").input("(201) 555-0188")
    at.selectbox(key="optout_channel").set_value("sms")
    at.text_input(key="optout_reason").input("Asked at the desk")
    button(at, "Add to the opt-out list").click().run()
    assert_clean(at)
    row = read(engine, lambda s: s.scalars(select(OptOut).where(OptOut.profile_id == shop.profile_id)).one())
    assert (row.contact, row.channel, row.source, row.reason) == ("+12015550188", "sms", "manual",
                                                                  "Asked at the desk")
    assert list(at.dataframe[-1].value["contact"]) == ["+12015550188"]

    at.text_input(key="optout_contact").input("not a contact")
    button(at, "Add to the opt-out list").click().run()
    assert any("is not a phone number" in e.value or "not a valid" in e.value for e in at.error)

    button(at, "Remove…").click().run()
    assert "will be reachable again" in texts(at)
    button(at, "Remove the opt-out").click().run()
    assert read(engine, lambda s: s.scalars(select(OptOut)).all()) == []
    assert "Nobody has opted out yet." in texts(at)


# --- settings ----------------------------------------------------------------------------------------------


def test_settings_channels_say_sandbox_and_what_is_missing(app_db, shop):
    at = open_app(shop, "settings")
    page = texts(at)
    assert "To go live, add in the **Business profile** tab: a Resend API key, a sender address (e-mail from)." \
        in page
    assert "`RESEND_API_KEY`" in page and "`VAPI_API_KEY`" in page and "`TWILIO_ACCOUNT_SID`" in page
    assert page.count("To go live, add") == 3


def test_api_key_is_shown_once_and_can_be_revoked(app_db, shop, engine):
    at = open_app(shop, "settings")
    assert len(at.dataframe[0].value) == 1  # the key made with the business
    at.text_input(key="new_key_name").input("Booking system")
    button(at, "Create key").click().run()
    assert_clean(at)
    shown = [c.value for c in at.code if not c.value.startswith("http")]  # the Channels tab shows webhook URLs
    assert len(shown) == 1 and shown[0].startswith("cx_")
    key = shown[0]
    assert read(engine, lambda s: accounts.authenticate_api_key(s, key=key)) == shop.profile_id
    stored = read(engine, lambda s: s.scalars(select(ApiKey).where(ApiKey.name == "Booking system")).one())
    assert key not in (stored.key_hash, stored.prefix) and key.startswith(stored.prefix)
    button(at, "I have copied it").click().run()
    assert not [c for c in at.code if c.value.startswith("cx_")]

    choices = selectbox(at, "Key")
    choices.set_value(str(stored.id)).run()
    button(at, "Revoke…").click().run()
    button(at, "Revoke the key").click().run()
    assert_clean(at)
    assert read(engine, lambda s: accounts.authenticate_api_key(s, key=key)) is None
    table = at.dataframe[0].value
    assert table.loc[table["name"] == "Booking system", "state"].iloc[0] == "Revoked"


def test_business_profile_update_and_refusal(app_db, shop, engine):
    at = open_app(shop, "settings")
    form_inputs = {t.label: t for t in at.text_input}
    form_inputs["Business name"].input("Bella Vista Spa")
    form_inputs["Online booking link"].input("https://bellavista.example/book")
    button(at, "Save").click().run()
    assert_clean(at)
    profile = read(engine, lambda s: s.get(Profile, shop.profile_id))
    assert (profile.business_name, profile.booking_url) == ("Bella Vista Spa", "https://bellavista.example/book")
    assert at.session_state["business_name"] == "Bella Vista Spa"

    {t.label: t for t in at.text_input}["Business phone"].input("123")
    button(at, "Save").click().run()
    assert any("is not a valid phone number" in e.value for e in at.error)
