"""Who a campaign may reach, for every consent policy × campaign type × channel × consent on record
(DESIGN §10), through the real selection and the real preview, on SQLite and PostgreSQL.

The expectation is written out by hand below, from the rule as the law states it (FCC 24-17: an AI voice
is an artificial voice; a marketing call or text needs prior express written consent, an informational
one prior express consent; e-mail needs none) — not computed by the code under test."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from core import targeting
from core.models import CampaignRecipient, Consent
from tests import factories as f

# one customer per consent situation (each has a phone and an e-mail address)
SITUATIONS = {
    "nothing": [],
    "express": [("{ch}", "express", False)],
    "written": [("{ch}", "express_written", False)],
    "written, revoked": [("{ch}", "express_written", True)],
    "written, other channel": [("{other}", "express_written", False)],
    "all, written": [("all", "express_written", False)],
    "all, express": [("all", "express", False)],
}
# who is selected — by hand: (policy, purpose, channel) -> the situations that reach the customer
EVERYONE = set(SITUATIONS)
WRITTEN = {"written", "all, written"}
ANY_CONSENT = {"express", "written", "all, written", "all, express"}
EXPECTED = {
    ("us_tcpa", "marketing", "call"): WRITTEN,
    ("us_tcpa", "marketing", "sms"): WRITTEN,
    ("us_tcpa", "marketing", "email"): EVERYONE,
    ("us_tcpa", "informational", "call"): ANY_CONSENT,
    ("us_tcpa", "informational", "sms"): ANY_CONSENT,
    ("us_tcpa", "informational", "email"): EVERYONE,
    **{("none", purpose, channel): EVERYONE for purpose in ("marketing", "informational")
       for channel in ("call", "sms", "email")},
}
PURPOSE = {"winback": "marketing", "promotional": "marketing", "followup": "marketing", "feedback": "informational"}
CASES = list(itertools.product(("us_tcpa", "none"), PURPOSE, ("call", "sms", "email")))


@pytest.mark.parametrize(("policy", "campaign_type", "channel"), CASES, ids=["-".join(c) for c in CASES])
def test_who_is_selected(session, now, policy, campaign_type, channel):
    shop = f.make_profile(session, consent_policy=policy)
    other = {"call": "sms", "sms": "call", "email": "sms"}[channel]
    for n, (name, records) in enumerate(SITUATIONS.items()):
        phone = f"+1312555{n:04d}"
        f.lead(session, shop, phone=phone, email=f"c{n}@example.com", name=name, now=now)
        for ch, level, revoked in records:
            session.add(Consent(id=uuid.uuid4(), profile_id=shop.id, contact=phone,
                                channel=ch.format(ch=channel if channel != "email" else "sms", other=other),
                                level=level, source="manual", captured_at=now - timedelta(days=30),
                                revoked_at=now - timedelta(days=1) if revoked else None))
    session.flush()
    expected = EXPECTED[(policy, PURPOSE[campaign_type], channel)]
    left_out = len(SITUATIONS) - len(expected)

    preview = targeting.preview_audience(session, profile_id=shop.id, target_criteria={}, outreach_method=channel,
                                         campaign_type=campaign_type, now=now)
    assert preview.count == len(expected)
    assert preview.suppressed_by == {"opted_out": 0, "no_consent": left_out, "dnc": 0, "no_contact": 0}

    campaign = f.campaign(session, shop, method=channel, campaign_type=campaign_type)
    result = targeting.select_recipients(session, campaign=campaign, now=now)
    chosen = set(session.scalars(select(CampaignRecipient.customer_name)
                                 .where(CampaignRecipient.campaign_id == campaign.id)))
    assert chosen == expected
    assert (result.selected, result.suppressed_by["no_consent"]) == (len(expected), left_out)
