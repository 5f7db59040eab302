"""``POST /webhooks/twilio/status`` and ``/webhooks/twilio/inbound``: signatures over the public URL,
delivery reports, and every kind of text a customer sends back."""

from __future__ import annotations

from urllib.parse import urlencode
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient

import api
from core.inbound_sms import meaning
from core.optouts import is_opted_out, record_opt_out
from tests.channels import helpers as h
from tests.fakes.twilio import FakeTwilio

PHONES = ["+12125550101", "+12125550102", "+12125550103"]


@pytest.fixture
def texts(session, factory, fake_twilio, live, now):
    """An SMS campaign of three customers, one pass run: three texts at the fake."""
    profile = h.business(session, name="Bella Vista")
    profile.phone = "+12015550188"
    h.add_leads(session, profile, [{"phone": p, "name": f"Ann{i} Lee"} for i, p in enumerate(PHONES)], now=now)
    cid = h.campaign(session, profile, method="sms", now=now)
    session.commit()
    assert h.run(factory, profile.id, cid, now, live).sent == 3
    sids = {p: fake_twilio.sent_to(p)[0].sid for p in PHONES}
    return profile, cid, sids


# --- status callbacks ------------------------------------------------------------------------------------


def test_delivered_and_replayed(session, texts, fake_twilio, post):
    _, cid, sids = texts
    request = fake_twilio.status_callback(sids[PHONES[0]], "delivered")
    answer = fake_twilio.deliver(request, post)
    assert answer.status_code == 200 and answer.json()["applied"] == 1
    r = h.recipient(session, cid, PHONES[0])
    assert r.status == "delivered" and r.delivered_at is not None
    (event,) = h.events(session, provider="twilio")
    assert event.provider_event_id == f"{sids[PHONES[0]]}:delivered"
    before = h.snapshot(session)
    again = fake_twilio.deliver(request, post)
    assert again.status_code == 200 and again.json()["replayed"] == 1
    assert h.snapshot(session) == before
    assert h.results_match(session, cid)["delivered_count"] == 1


def test_undelivered_fails_with_the_carriers_reason(session, texts, fake_twilio, post):
    _, cid, sids = texts
    fake_twilio.deliver(fake_twilio.status_callback(sids[PHONES[1]], "undelivered", error_code=30007), post)
    r = h.recipient(session, cid, PHONES[1])
    assert r.status == "failed" and "30007" in r.error_message and "spam" in r.error_message
    h.results_match(session, cid)


def test_failed_because_the_number_opted_out(session, texts, fake_twilio, post):
    profile, cid, sids = texts
    fake_twilio.deliver(fake_twilio.status_callback(sids[PHONES[2]], "failed", error_code=21610), post)
    assert h.recipient(session, cid, PHONES[2]).status == "opted_out"
    assert (PHONES[2], "sms", "sms_stop") in h.opt_outs(session, profile.id)


def test_intermediate_statuses_are_kept_on_the_timeline(session, texts, fake_twilio, post):
    _, cid, sids = texts
    for status in ("queued", "sending", "sent"):
        fake_twilio.deliver(fake_twilio.status_callback(sids[PHONES[0]], status), post)
    assert [e.type for e in h.events(session, provider="twilio")] == ["status", "status", "status"]
    assert h.recipient(session, cid, PHONES[0]).status == "sent"


@pytest.mark.parametrize("forgery", ["wrong-token", "missing", "tampered", "internal-url"])
def test_a_bad_signature_changes_nothing(session, texts, fake_twilio, client, forgery):
    _, _, sids = texts
    _url, headers, body = fake_twilio.status_callback(sids[PHONES[0]], "delivered",
                                                     token="not-the-token" if forgery == "wrong-token" else None)
    if forgery == "missing":
        headers.pop("X-Twilio-Signature")
    if forgery == "tampered":
        body = body.replace(b"MessageStatus=delivered", b"MessageStatus=failed")
    if forgery == "internal-url":
        # signed for the address the app sees behind the proxy, not the public one Twilio calls
        params = dict(p.split("=", 1) for p in body.decode().split("&"))
        headers["X-Twilio-Signature"] = fake_twilio.sign("http://api.internal:8000/webhooks/twilio/status",
                                                         {k: v.replace("%2B", "+") for k, v in params.items()})
    before = h.snapshot(session)
    answer = client.post("/webhooks/twilio/status", content=body, headers=headers)
    assert answer.status_code == 401
    assert h.snapshot(session) == before


def test_the_signature_covers_the_public_url_whatever_the_host_says(session, texts, fake_twilio, client):
    """Behind a proxy the request's Host is the app's own; the URL Twilio signed is PUBLIC_BASE_URL's."""
    _, cid, sids = texts
    _url, headers, body = fake_twilio.status_callback(sids[PHONES[0]], "delivered")
    answer = client.post("/webhooks/twilio/status", content=body,
                         headers={**headers, "Host": "10.0.0.7:8000", "X-Forwarded-Host": "evil.example"})
    assert answer.status_code == 200
    assert h.recipient(session, cid, PHONES[0]).status == "delivered"


def test_extra_parameters_and_a_query_are_signed_like_any_other(session, texts, fake_twilio, client):
    _, cid, sids = texts
    params = {"MessageSid": sids[PHONES[1]], "MessageStatus": "delivered", "To": PHONES[1], "From": "+12015550100",
              "AccountSid": fake_twilio.account_sid, "ChannelPrefix": "sms", "ChannelInstallSid": "XE" + "0" * 32,
              "Empty": "", "StructuredMessage": "false"}
    url = f"{h.PUBLIC}/webhooks/twilio/status?campaign=autumn&retry=1"
    signature = fake_twilio.sign(url, params)
    answer = client.post("/webhooks/twilio/status?campaign=autumn&retry=1", content=urlencode(params),
                         headers={"X-Twilio-Signature": signature,
                                  "Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200 and h.recipient(session, cid, PHONES[1]).status == "delivered"
    # the same request without its query was not what Twilio signed
    refused = client.post("/webhooks/twilio/status", content=urlencode(params),
                          headers={"X-Twilio-Signature": signature,
                                   "Content-Type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 401


def test_a_message_we_did_not_send_is_ignored(session, texts, fake_twilio, post):
    before = h.snapshot(session)
    answer = post(*fake_twilio._signed(f"{h.PUBLIC}/webhooks/twilio/status",
                                       {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}, None))
    assert answer.status_code == 200 and answer.json()["ignored"] == 1
    assert h.snapshot(session)["recipients"] == before["recipients"]


def test_without_an_auth_token_everything_is_refused(engine, texts, fake_twilio, live):
    _, _, sids = texts
    app = api.create_app(engine=engine, settings=live.model_copy(update={"twilio_auth_token": None}))
    with TestClient(app) as c:
        _url, headers, body = fake_twilio.status_callback(sids[PHONES[0]], "delivered")
        assert c.post("/webhooks/twilio/status", content=body, headers=headers).status_code == 401


# --- inbound texts -------------------------------------------------------------------------------------------


def inbound(fake: FakeTwilio, post, phone: str, body: str):
    answer = fake.deliver(fake.inbound(phone, body), post)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/xml")
    return answer.text


def messages(twiml: str) -> list[str]:
    """The texts a TwiML answer sends back."""
    return [m.text or "" for m in ElementTree.fromstring(twiml).iter("Message")]


@pytest.mark.parametrize("word", ["STOP", "stop", "Stop.", "  STOPALL ", "unsubscribe", "Cancel", "END", "quit",
                                  "REVOKE", "optout", "Stop texting me", "opt out", "STOP!", "Quit it",
                                  "quit texting me"])
def test_every_stop_keyword_opts_out(session, texts, fake_twilio, post, word):
    profile, cid, _ = texts
    reply = inbound(fake_twilio, post, PHONES[0], word)
    assert "<Response><Message>You're unsubscribed from Bella Vista" in reply
    assert "START" in reply
    assert messages(reply) == ["You're unsubscribed from Bella Vista and will get no more texts. "
                               "Reply START to resubscribe."]  # exactly one confirmation
    assert (PHONES[0], "sms", "sms_stop") in h.opt_outs(session, profile.id)
    r = h.recipient(session, cid, PHONES[0])
    assert r.status == "opted_out" and r.responded_at is None
    h.results_match(session, cid)


def test_a_message_that_only_contains_stop_is_not_an_opt_out(session, texts, fake_twilio, post):
    profile, cid, _ = texts
    inbound(fake_twilio, post, PHONES[0], "Don't stop sending me deals, love them")
    assert h.opt_outs(session, profile.id) == set()
    assert h.recipient(session, cid, PHONES[0]).responded_at is not None


def test_a_second_stop_is_confirmed_once_more_and_changes_nothing_else(session, texts, fake_twilio, post):
    """A number that has opted out and texts STOP again is not sure it worked: it gets the one confirmation again
    (Twilio's own STOP handling does the same), and nothing else changes."""
    profile, cid, _ = texts
    first = messages(inbound(fake_twilio, post, PHONES[0], "STOP"))
    before = h.snapshot(session)
    again = messages(inbound(fake_twilio, post, PHONES[0], "stop"))
    assert again == first and len(again) == 1
    after = h.snapshot(session)
    assert after["opt_outs"] == before["opt_outs"] and after["recipients"] == before["recipients"]
    assert h.opt_outs(session, profile.id) == {(PHONES[0], "sms", "sms_stop")}
    assert [e.type for e in h.events(session, provider="twilio")].count("opted_out") == 2  # both on the timeline
    h.results_match(session, cid)


@pytest.mark.parametrize("text", ["stop calling me", "Don't call or text me", "wrong number"])
def test_a_text_asking_to_stop_calls_opts_out_of_calls_too(session, texts, fake_twilio, post, text):
    profile, cid, _ = texts
    reply = messages(inbound(fake_twilio, post, PHONES[0], text))
    assert reply == ["You're unsubscribed from Bella Vista and will get no more texts or calls. "
                     "Reply START to get texts again."]
    assert h.opt_outs(session, profile.id) == {(PHONES[0], "sms", "sms_stop"), (PHONES[0], "call", "sms_stop")}
    assert is_opted_out(session, profile_id=profile.id, contact=PHONES[0], channel="call")
    assert h.recipient(session, cid, PHONES[0]).status == "opted_out"
    # START brings back the texts only
    assert len(messages(inbound(fake_twilio, post, PHONES[0], "START"))) == 1
    assert h.opt_outs(session, profile.id) == {(PHONES[0], "call", "sms_stop")}


@pytest.mark.parametrize("text", ["Stop by later?", "Can you cancel my 3pm and rebook?",
                                  "Quite busy, call me next week"])
def test_a_near_miss_is_a_response_that_says_why(session, texts, fake_twilio, post, text):
    profile, cid, _ = texts
    reply = inbound(fake_twilio, post, PHONES[0], text)
    assert messages(reply) == []  # no confirmation: nothing was stopped
    assert h.opt_outs(session, profile.id) == set()
    r = h.recipient(session, cid, PHONES[0])
    assert r.status != "opted_out" and r.responded_at is not None and r.response_data["reply"] == text
    (event,) = [e for e in h.events(session, provider="twilio") if e.type == "replied"]
    said = meaning(text)  # the reason the shop owner sees: why it was not taken for a request to stop
    assert said.rule and (event.payload["rule"], event.payload["why"]) == (said.rule, said.why)


def test_stop_reaches_every_business_that_texted_the_number(session, factory, texts, fake_twilio, post, live, now):
    first, _, _ = texts
    other = h.business(session, name="Studio Nine")
    h.add_leads(session, other, [{"phone": PHONES[0], "name": "Ann Lee"}], now=now)
    cid = h.campaign(session, other, method="sms", now=now)
    session.commit()
    assert h.run(factory, other.id, cid, now, live).sent == 1
    reply = inbound(fake_twilio, post, PHONES[0], "STOP")
    assert "Bella Vista" in reply and "Studio Nine" in reply
    assert (PHONES[0], "sms", "sms_stop") in h.opt_outs(session, first.id)
    assert (PHONES[0], "sms", "sms_stop") in h.opt_outs(session, other.id)
    assert h.recipient(session, cid, PHONES[0]).status == "opted_out"
    # a business that never texted the number is not involved
    third = h.business(session, name="Quiet Shop")
    session.commit()
    assert h.opt_outs(session, third.id) == set()


def test_start_opts_back_in_but_keeps_what_staff_recorded(session, texts, fake_twilio, post):
    profile, _, _ = texts
    inbound(fake_twilio, post, PHONES[0], "STOP")
    inbound(fake_twilio, post, PHONES[1], "STOP")
    record_opt_out(session, profile_id=profile.id, contact=PHONES[1], channel="all", source="manual")
    session.commit()
    start = inbound(fake_twilio, post, PHONES[0], "START")
    assert len(messages(start)) == 1 and "subscribed again" in messages(start)[0]
    assert "subscribed again" in inbound(fake_twilio, post, PHONES[1], "unstop")
    assert h.opt_outs(session, profile.id) == {(PHONES[1], "all", "manual")}
    assert "opted_in" in {e.type for e in h.events(session, provider="twilio")}


def test_yes_opts_in_only_a_number_that_opted_out(session, texts, fake_twilio, post):
    profile, cid, _ = texts
    inbound(fake_twilio, post, PHONES[0], "STOP")
    assert "subscribed again" in inbound(fake_twilio, post, PHONES[0], "YES")
    assert h.opt_outs(session, profile.id) == set()
    assert not h.recipient(session, cid, PHONES[0]).converted
    # a YES from a number that never opted out is a yes to the offer
    assert inbound(fake_twilio, post, PHONES[1], "Yes") == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    r = h.recipient(session, cid, PHONES[1])
    assert r.converted and r.responded_at is not None and r.response_data["reply"] == "Yes"
    (lead,) = h.leads_of(session, profile.id, source="campaign")
    assert (lead.customer_phone, lead.status, lead.campaign_id) == (PHONES[1], "New", cid)


def test_help_answers_with_the_business(session, texts, fake_twilio, post):
    reply = inbound(fake_twilio, post, PHONES[0], "help")
    assert "Bella Vista" in reply and "+12015550188" in reply and "STOP" in reply
    assert len(messages(reply)) == 1
    assert "Reply STOP" in inbound(fake_twilio, post, "+13125550199", "INFO")  # a stranger: no business named


@pytest.mark.parametrize(("text", "converted"), [
    ("Yes please! Can I come in on Saturday?", True),
    ("Sounds great, book me in for next week.", True),
    ("👍", True),
    ("ok", True),
    ("Thanks!", False),
    ("Maybe later, busy month.", False),
    ("No thanks", False),
    ("Who is this?", False),
    ("yes but not this month", False),
])
def test_replies_are_responses_and_positive_ones_convert(session, texts, fake_twilio, post, text, converted):
    profile, cid, _ = texts
    inbound(fake_twilio, post, PHONES[2], text)
    r = h.recipient(session, cid, PHONES[2])
    assert r.responded_at is not None and r.response_data["reply"] == text
    assert r.converted is converted
    assert len(h.leads_of(session, profile.id, source="campaign")) == (1 if converted else 0)
    counts = h.results_match(session, cid)
    assert (counts["responded_count"], counts["converted_count"]) == (1, 1 if converted else 0)


def test_an_inbound_replay_changes_nothing_not_even_an_opt_in(session, texts, fake_twilio, post):
    profile, cid, _ = texts
    start = fake_twilio.inbound(PHONES[0], "START")
    inbound(fake_twilio, post, PHONES[0], "STOP")
    assert fake_twilio.deliver(start, post).status_code == 200  # START (after a STOP: opted in)
    inbound(fake_twilio, post, PHONES[0], "STOP")  # stops again
    before = h.snapshot(session)
    assert fake_twilio.deliver(start, post).status_code == 200  # the old START, replayed
    assert h.snapshot(session) == before
    assert (PHONES[0], "sms", "sms_stop") in h.opt_outs(session, profile.id)
    reply = fake_twilio.inbound(PHONES[1], "Yes please")
    fake_twilio.deliver(reply, post)
    fake_twilio.deliver(reply, post)
    assert len(h.leads_of(session, profile.id, source="campaign")) == 1
    assert len(h.recipient(session, cid, PHONES[1]).response_data["replies"]) == 1


def test_a_stranger_and_a_forgery(session, texts, fake_twilio, post, client):
    before = h.snapshot(session)
    reply = inbound(fake_twilio, post, "+13125550199", "STOP")  # nobody texted this number
    assert "unsubscribed" in reply
    after = h.snapshot(session)
    assert after["opt_outs"] == before["opt_outs"] and after["recipients"] == before["recipients"]
    _url, headers, body = fake_twilio.inbound(PHONES[0], "STOP", token="forged")
    before = h.snapshot(session)
    assert client.post("/webhooks/twilio/inbound", content=body, headers=headers).status_code == 401
    assert h.snapshot(session) == before
