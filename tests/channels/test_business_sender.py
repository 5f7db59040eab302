"""Each business sends as itself (DESIGN §12): a business's own Resend key and sender, set through its
profile, really reach the provider through a campaign — the platform has no Resend account of its own —
and its *Test connection* asks that same account; a business without its own stays in sandbox mode."""

from __future__ import annotations

import uuid

import pytest

from core import accounts, senders
from core.models import Profile
from tests.channels import helpers as h
from tests.engine import helpers as engine_helpers
from tests.fakes.resend import FakeResend

OWN_KEY = "re_bellavista_own_0f3a9c"


@pytest.fixture
def own_resend() -> FakeResend:
    with FakeResend(api_key=OWN_KEY, webhook_url=f"{h.PUBLIC}/webhooks/resend") as fake:
        yield fake  # type: ignore[misc]


def test_a_business_own_resend_key_and_sender_reach_the_provider(session, factory, own_resend, now):
    # the platform points at Resend's address but holds no key and no sender: alone, e-mail is sandboxed
    # (a sandbox that takes every message: the sandboxed business's count is compared with the live one's)
    platform = h.live_settings(resend_base_url=own_resend.url, sandbox_refusals=False)
    assert not platform.channel_live("email")
    bella = h.business(session, name="Bella Vista")
    plain = h.business(session, name="Studio Nine")
    accounts.update_profile(session, profile_id=bella.id, email_from="hello@bellavista.example",
                            email_from_name="Bella Vista Salon", email_reply_to="desk@bellavista.example",
                            secrets={"resend_api_key": OWN_KEY}, settings=platform)
    assert OWN_KEY not in (bella.encrypted_secrets or "")  # stored encrypted
    assert senders.channel_modes(bella, platform)["email"].own_account
    assert not senders.channel_modes(plain, platform)["email"].live
    for profile, domain in ((bella, "bella.example"), (plain, "nine.example")):
        h.add_leads(session, profile, [{"email": f"ann@{domain}", "name": "Ann Doe"},
                                       {"email": f"bo@{domain}", "name": "Bo Li"}], now=now)
    bella_campaign = h.campaign(session, bella, method="email", now=now)
    plain_campaign = h.campaign(session, plain, method="email", now=now)
    session.commit()

    assert h.run(factory, bella.id, bella_campaign, now, platform).sent == 2
    assert h.run(factory, plain.id, plain_campaign, now, platform).sent == 2  # simulated: nothing reaches Resend
    assert sorted(e.to[0] for e in own_resend.emails.values()) == ["ann@bella.example", "bo@bella.example"]
    for email in own_resend.emails.values():
        assert email.sender == "Bella Vista Salon <hello@bellavista.example>"
        assert email.payload["reply_to"] == "desk@bellavista.example"
    # the fake takes only its account's key: every request was authorised with the business's own
    assert [r.status for r in own_resend.requests if r.path == "/emails"] == [200, 200]
    assert {a.provider for a in engine_helpers.attempts(session, bella_campaign)} == {"resend"}
    assert {a.provider for a in engine_helpers.attempts(session, plain_campaign)} == {"sandbox"}

    # Test connection asks the business's own account, and says what is wrong when it cannot
    fresh = session.get(Profile, bella.id)
    found = senders.test_connection(fresh, channel="email", base=platform)
    assert found.ok and found.sentence == ("Connected to Resend; the domain bellavista.example is verified, so "
                                           "e-mails go out from hello@bellavista.example.")
    own_resend.domains = {"bellavista.example": "pending"}
    refused = senders.test_connection(fresh, channel="email", base=platform)
    assert not refused.ok and "not verified" in refused.sentence
    accounts.update_profile(session, profile_id=bella.id, secrets={"resend_api_key": "re_wrong_" + uuid.uuid4().hex},
                            settings=platform)
    wrong = senders.test_connection(fresh, channel="email", base=platform)
    assert not wrong.ok and wrong.sentence.startswith("Resend: Resend refused the API key")
    sandboxed = senders.test_connection(plain, channel="email", base=platform)
    assert not sandboxed.ok and "still missing: a Resend API key, a sender address (e-mail from)" in sandboxed.sentence
