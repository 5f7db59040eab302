"""What the dashboard shows of the live channels: where every opt-out came from, and why the
system paused a campaign (a provider refused its credentials)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.models import Profile
from core.optouts import record_opt_out
from tests.channels import helpers as h
from tests.dashboard.conftest import Shop, open_app, texts
from tests.engine.helpers import add_leads, campaign
from tests.fakes.vapi import FakeVapi

SOURCES = {"sms_stop": ("+12015550101", "sms", "Replied STOP"),
           "bounce": ("bo@example.com", "email", "E-mail bounced"),
           "complaint": ("cy@example.com", "email", "Marked as spam"),
           "unsubscribe_link": ("dee@example.com", "email", "Unsubscribe link"),
           "call_request": ("+12015550105", "call", "Asked on a call")}


def test_the_opt_out_list_says_how_each_customer_opted_out(app_db, shop, session: Session):
    for source, (contact, channel, _label) in SOURCES.items():
        record_opt_out(session, profile_id=shop.profile_id, contact=contact, channel=channel, source=source,
                       reason=f"recorded from {source}")
    session.commit()
    at = open_app(shop, "customers")
    table = at.dataframe[-1].value
    shown = dict(zip(table["contact"], table["source"], strict=True))
    assert shown == {contact: label for contact, _channel, label in SOURCES.values()}


def test_a_campaign_paused_by_a_refused_key_says_why(app_db, shop, session: Session, factory, now):
    with FakeVapi() as fake:
        shop_profile(session, shop).consent_policy = "none"  # about the refused key, whatever consent is kept
        add_leads(session, shop_profile(session, shop), [{"phone": "+12125550101", "name": "Ann Lee"}], now=now)
        cid = campaign(session, shop_profile(session, shop), method="call", now=now)
        session.commit()
        wrong = h.live_settings(vapi=fake, vapi_api_key="not-the-key")
        h.run(factory, shop.profile_id, cid, now, wrong)
    row = h.campaign_row(session, cid)
    assert row.status == "paused" and "VAPI_API_KEY" in row.status_reason
    at = open_app(shop, "campaign", query={"id": str(cid)})
    assert "Vapi refused the API key" in texts(at) and "fix VAPI_API_KEY, then resume" in texts(at)


def shop_profile(session: Session, shop: Shop) -> Profile:
    profile = session.get(Profile, shop.profile_id)
    assert profile is not None
    return profile
