"""End to end, one channel at a time: live credentials pointing at the fake provider, a campaign
started, the scheduler's tick (or one dispatch pass) sends, the fake posts its signed webhooks to
the API, and the recipients, the campaign's results and the opt-out list say what happened."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from html import unescape

import httpx
import pytest
import uvicorn

import api
from core import accounts, campaigns, consents
from core.leads import add_lead
from core.outbound import STOP_FOOTER
from core.scheduling import tick
from tests.channels import helpers as h


def business_with_key(session, name="Bella Vista"):
    """A business under the US consent policy (the default), as a new one is."""
    profile, key, _ = accounts.create_profile(session, business_name=name, phone="+12015550188",
                                              email=f"owner-{uuid.uuid4().hex[:8]}@bellavista.example",
                                              password="correct horse battery")
    assert profile.consent_policy == "us_tcpa"
    return profile, key


def consented(session, profile, phones, channel: str = "all") -> None:
    """The customers' express written consent, on record as a web form collected it."""
    for phone in phones:
        consents.record_consent(session, profile_id=profile.id, contact=phone, channel=channel,
                                level="express_written", source="web_form", proof="booking form, checkbox 2")


def strings(value) -> list[str]:
    """Every text inside a JSON document."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in strings(v)]
    if isinstance(value, list):
        return [t for v in value for t in strings(v)]
    return [value] if isinstance(value, str) else []


def results(client, key, cid) -> dict:
    answer = client.get(f"/api/campaigns/{cid}/results", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200
    return answer.json()


def test_a_call_campaign_to_its_outcomes(session, factory, fake_vapi, live, client, post, now):
    profile, key = business_with_key(session)
    agent = accounts.create_agent(session, profile_id=profile.id, name="Mia", vapi_assistant_id="asst_mia",
                                  vapi_phone_number_id="pn_bella")
    h.add_leads(session, profile, [{"phone": "+12125550101", "name": "Ann Lee"},
                                   {"phone": "+12125550102", "name": "Bo Kim"}], now=now)
    consented(session, profile, ["+12125550101", "+12125550102"], "call")
    cid = h.campaign(session, profile, method="call", now=now, agent_id=agent.id,
                     call_script="Hi {first_name|there}, this is {agent_name} at {business_name}. {promotion}!",
                     variables={"promotion": "Your next colour is 20% off"})
    session.commit()

    report = tick(factory, now=now, worker="scheduler-1", settings=live)
    assert report.sent == 2
    ann, bo = fake_vapi.calls_to("+12125550101")[0], fake_vapi.calls_to("+12125550102")[0]
    body = fake_vapi.posts()[0]
    assert body["assistantId"] == "asst_mia" and body["phoneNumberId"] == "pn_bella" and "metadata" not in body
    assert ann["assistantOverrides"]["firstMessage"] == \
        "Hi Ann, this is Mia at Bella Vista. Your next colour is 20% off!"
    assert not any("{" in text for text in strings(fake_vapi.posts()))  # our template syntax never reaches Vapi
    # while the calls are under way the campaign cannot complete
    assert tick(factory, now=now, worker="scheduler-1", settings=live).completed == 0

    fake_vapi.deliver(fake_vapi.status_update(ann["id"], "ringing"), post)
    fake_vapi.deliver(fake_vapi.status_update(ann["id"], "in-progress"), post)
    fake_vapi.end_call(ann["id"], ended_reason="customer-ended-call",
                       transcript="AI: Hi Ann, this is Mia at Bella Vista.\nUser: Oh hi! Yes, book me for Saturday.",
                       summary="Ann booked a colour appointment for Saturday.", success_evaluation="8",
                       structured_data={"appointment_booked": True, "appointment_time": "Saturday 10:00"},
                       recording_url="https://storage.vapi.ai/ann-mono.wav")
    fake_vapi.deliver(fake_vapi.status_update(ann["id"], "ended", ended_reason="customer-ended-call"), post)
    assert fake_vapi.deliver(fake_vapi.end_of_call_report(ann["id"]), post).status_code == 200
    fake_vapi.end_call(bo["id"], ended_reason="customer-did-not-answer", duration=25)
    fake_vapi.deliver(fake_vapi.end_of_call_report(bo["id"]), post)

    a, b = h.recipient(session, cid, "+12125550101"), h.recipient(session, cid, "+12125550102")
    assert a.status == "answered" and a.converted and a.response_data["summary"].startswith("Ann booked")
    assert a.response_data["recording_url"].endswith("ann-mono.wav") and a.response_data["success"] == "8"
    assert b.status == "sent" and b.response_data["ended_reason"] == "customer-did-not-answer"
    (lead,) = h.leads_of(session, profile.id, source="campaign")
    assert (lead.customer_phone, lead.status, lead.campaign_id, lead.agent_id) == ("+12125550101", "New", cid,
                                                                                  agent.id)
    # both calls ended: the next tick completes the campaign
    assert tick(factory, now=now, worker="scheduler-1", settings=live).completed == 1
    assert h.campaign_row(session, cid).status == "completed"
    counts = results(client, key, cid)
    assert {k: counts[k] for k in ("sent_count", "answered_count", "converted_count", "responded_count")} == {
        "sent_count": 2, "answered_count": 1, "converted_count": 1, "responded_count": 1}
    h.results_match(session, cid)


def test_an_sms_campaign_to_its_outcomes(session, factory, fake_twilio, live, client, post, now):
    profile, key = business_with_key(session)
    phones = ["+12125550101", "+12125550102", "+12125550103"]
    h.add_leads(session, profile, [{"phone": p, "name": n} for p, n in zip(phones, ["Ann Lee", "Bo Kim", "Cy Park"],
                                                                           strict=True)], now=now)
    consented(session, profile, phones, "sms")
    cid = h.campaign(session, profile, method="sms", now=now)
    session.commit()
    assert h.run(factory, profile.id, cid, now, live).sent == 3
    first = {p: fake_twilio.sent_to(p)[0] for p in phones}
    assert all(m.body.endswith(STOP_FOOTER) and m.body.startswith("Hi ") for m in first.values())
    assert all(m.status_callback == f"{h.PUBLIC}/webhooks/twilio/status" for m in first.values())

    for p in phones:
        assert fake_twilio.deliver(fake_twilio.status_callback(first[p].sid, "sent"), post).status_code == 200
        fake_twilio.deliver(fake_twilio.status_callback(first[p].sid, "delivered"), post)
    fake_twilio.deliver(fake_twilio.inbound(phones[0], "Yes please! Saturday?"), post)
    stop = fake_twilio.deliver(fake_twilio.inbound(phones[1], "STOP"), post)
    assert "unsubscribed" in stop.text

    assert {r.contact_key: r.status for r in h.recipients(session, cid)} == {
        phones[0]: "delivered", phones[1]: "opted_out", phones[2]: "delivered"}
    assert h.recipient(session, cid, phones[0]).converted
    assert h.opt_outs(session, profile.id) == {(phones[1], "sms", "sms_stop")}
    counts = results(client, key, cid)
    assert (counts["delivered_count"], counts["responded_count"], counts["converted_count"],
            counts["opted_out_count"]) == (3, 1, 1, 1)

    # the next campaign: the number that said STOP is skipped; the others know how to opt out already
    nxt = h.campaign(session, profile, method="sms", now=now, message_template="Hi {first_name|there}, new hours!")
    session.commit()
    report = h.run(factory, profile.id, nxt, now, live)
    assert (report.sent, report.opted_out) == (2, 0)
    assert len(fake_twilio.sent_to(phones[1])) == 1  # never texted again
    assert [m.body for m in fake_twilio.sent_to(phones[0])][1] == "Hi Ann, new hours!"  # no second STOP footer
    assert {r.contact_key for r in h.recipients(session, nxt)} == {phones[0], phones[2]}  # suppressed at selection


def test_an_email_campaign_to_its_outcomes(session, factory, fake_resend, live, client, post, now):
    profile, key = business_with_key(session)
    addresses = ["ann@example.com", "bo@example.com", "cy@example.com", "dee@example.com"]
    h.add_leads(session, profile, [{"email": e, "name": f"{e[:3].title()} Doe"} for e in addresses], now=now)
    cid = h.campaign(session, profile, method="email", now=now,
                     message_template="Hi {first_name|there},\n\nBook again: https://bellavista.example/book")
    session.commit()
    assert h.run(factory, profile.id, cid, now, live).sent == 4
    ids = {e.to[0]: e.id for e in fake_resend.emails.values()}
    for address in addresses:
        fake_resend.deliver(fake_resend.signed(fake_resend.event(ids[address], "email.sent")), post)
    for address in ("ann@example.com", "dee@example.com"):
        fake_resend.deliver(fake_resend.signed(fake_resend.event(ids[address], "email.delivered")), post)
    fake_resend.deliver(fake_resend.signed(fake_resend.event(ids["bo@example.com"], "email.bounced", bounce={
        "type": "Permanent", "subType": "General", "message": "550 5.1.1 user unknown"})), post)
    fake_resend.deliver(fake_resend.signed(fake_resend.event(ids["cy@example.com"], "email.delivered")), post)
    fake_resend.deliver(fake_resend.signed(fake_resend.event(ids["cy@example.com"], "email.complained")), post)
    # Ann follows the tracked booking link, then books through the business's agent two days later
    html = fake_resend.emails[ids["ann@example.com"]].payload["html"]
    link = next(unescape(u) for u in re.findall(r'href="([^"]+)"', html) if "/c/" in u)
    assert client.get(link.removeprefix(h.PUBLIC)).status_code == 302
    add_lead(session, profile_id=profile.id, customer_name="Ann Doe", customer_email="ann@example.com",
             status="New", created_at=now + timedelta(days=2))
    session.commit()
    # Dee unsubscribes with one click in her mail app
    dee = fake_resend.emails[ids["dee@example.com"]].payload["headers"]["List-Unsubscribe"][1:-1]
    assert client.post(dee.removeprefix(h.PUBLIC), content=b"List-Unsubscribe=One-Click",
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 200

    statuses = {r.contact_key: (r.status, r.converted) for r in h.recipients(session, cid)}
    assert statuses == {"ann@example.com": ("delivered", True), "bo@example.com": ("failed", False),
                        "cy@example.com": ("opted_out", False), "dee@example.com": ("opted_out", False)}
    assert h.opt_outs(session, profile.id) == {("bo@example.com", "email", "bounce"),
                                              ("cy@example.com", "email", "complaint"),
                                              ("dee@example.com", "email", "unsubscribe_link")}
    counts = results(client, key, cid)
    assert (counts["sent_count"], counts["delivered_count"], counts["responded_count"], counts["converted_count"],
            counts["failed_count"], counts["opted_out_count"]) == (4, 3, 1, 1, 1, 2)

    # the next campaign reaches only Ann: every address that said stop is left out
    nxt = campaigns.create_campaign(session, profile_id=profile.id, data={
        "name": "Autumn", "campaign_type": "promotional", "outreach_method": "email",
        "email_subject": "Autumn at {business_name}", "message_template": "See you soon!"}, now=now)
    campaigns.start_campaign(session, profile_id=profile.id, campaign_id=nxt.id, now=now)
    session.commit()
    assert h.run(factory, profile.id, nxt.id, now, live).sent == 1
    assert fake_resend.emails_per_address() == {"ann@example.com": 2, "bo@example.com": 1, "cy@example.com": 1,
                                                "dee@example.com": 1}


# --- the same loop over real HTTP: the API served by uvicorn, the fake posting to it -------------------------


@pytest.fixture
def served(engine, live) -> Iterator[str]:
    """The API on a free port (a real server), configured like production behind its proxy."""
    config = uvicorn.Config(api.create_app(engine=engine, settings=live), host="127.0.0.1", port=0,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_stop_over_real_http(session, factory, fake_twilio, live, served, now):
    profile, _ = business_with_key(session)
    h.add_leads(session, profile, [{"phone": "+12125550101", "name": "Ann Lee"}], now=now)
    consented(session, profile, ["+12125550101"], "sms")
    cid = h.campaign(session, profile, method="sms", now=now)
    session.commit()
    h.run(factory, profile.id, cid, now, live)

    def post(url, headers, body):  # the proxy: public URL in, the app's own address out
        return httpx.post(served + url.removeprefix(h.PUBLIC), content=body, headers=headers, timeout=10)

    answer = fake_twilio.deliver(fake_twilio.inbound("+12125550101", "stop"), post)
    assert answer.status_code == 200 and "<Message>" in answer.text
    assert h.opt_outs(session, profile.id) == {("+12125550101", "sms", "sms_stop")}
    assert post(*fake_twilio.inbound("+12125550101", "START", token="forged")).status_code == 401
    assert h.opt_outs(session, profile.id) == {("+12125550101", "sms", "sms_stop")}
