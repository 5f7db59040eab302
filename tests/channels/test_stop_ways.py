"""Every way a customer says "stop" is honoured on the next send, through the live adapters.

For each way: a first campaign reaches two customers; a second campaign is already selected
(both customers in it) when the first customer says stop; the second campaign then skips that
customer at send time — the fake provider gets nothing for them — and a third campaign created
afterwards leaves them out when it selects its recipients."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core import accounts
from tests.channels import helpers as h
from tests.fakes.resend import FakeResend
from tests.fakes.twilio import FakeTwilio
from tests.fakes.vapi import FakeVapi

ANN = {"phone": "+12125550101", "email": "ann@example.com", "name": "Ann Lee"}
BO = {"phone": "+12125550102", "email": "bo@example.com", "name": "Bo Kim"}


@dataclass
class World:
    session: Any
    post: h.Post
    client: TestClient
    key: str
    vapi: FakeVapi
    twilio: FakeTwilio
    resend: FakeResend
    sent_to_ann: str  # the provider's id of the first campaign's message (call, text, e-mail) to Ann

    def sends_to_ann(self, channel: str) -> int:
        if channel == "call":
            return len(self.vapi.calls_to(ANN["phone"]))
        if channel == "sms":
            return len(self.twilio.sent_to(ANN["phone"]))
        return self.resend.emails_per_address()[ANN["email"]]


def _sms_keyword(w: World) -> None:
    w.twilio.deliver(w.twilio.inbound(ANN["phone"], "Stop"), w.post)


def _sms_stop_in_words(w: World) -> None:
    w.twilio.deliver(w.twilio.inbound(ANN["phone"], "please stop"), w.post)


def _sms_failed_21610(w: World) -> None:
    w.twilio.deliver(w.twilio.status_callback(w.sent_to_ann, "failed", error_code=21610), w.post)


def _call_structured(w: World) -> None:
    w.vapi.end_call(w.sent_to_ann, transcript="AI: Hi Ann!\nUser: Not interested.", structured_data={"doNotCall": True})
    w.vapi.deliver(w.vapi.end_of_call_report(w.sent_to_ann), w.post)


def _call_said(w: World) -> None:
    w.vapi.end_call(w.sent_to_ann, transcript="AI: Hi Ann, this is Bella Vista.\nUser: Take me off your list.")
    w.vapi.deliver(w.vapi.end_of_call_report(w.sent_to_ann), w.post)


def _unsubscribe_path(w: World) -> str:
    header = w.resend.emails[w.sent_to_ann].payload["headers"]["List-Unsubscribe"]
    return header[1:-1].removeprefix(h.PUBLIC)


def _email_one_click(w: World) -> None:
    assert w.client.post(_unsubscribe_path(w), content=b"List-Unsubscribe=One-Click",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 200


def _email_page(w: World) -> None:
    assert w.client.get(_unsubscribe_path(w)).status_code == 200
    assert w.client.post(_unsubscribe_path(w), data={"confirm": "yes"}).status_code == 200


def _email_hard_bounce(w: World) -> None:
    w.resend.deliver(w.resend.signed(w.resend.event(w.sent_to_ann, "email.bounced", bounce={
        "type": "Permanent", "message": "550 no such user"})), w.post)


def _email_complaint(w: World) -> None:
    w.resend.deliver(w.resend.signed(w.resend.event(w.sent_to_ann, "email.complained")), w.post)


def _email_suppressed(w: World) -> None:
    w.resend.deliver(w.resend.signed(w.resend.event(w.sent_to_ann, "email.suppressed")), w.post)


def _asked_the_shop(w: World, channel: str) -> None:
    answer = w.client.post("/api/opt-outs", json={"contact": ANN["phone"] if channel != "email" else ANN["email"],
                                                  "channel": "all", "reason": "Asked at the front desk"},
                           headers={"Authorization": f"Bearer {w.key}"})
    assert answer.status_code == 201


WAYS: dict[str, tuple[str, Callable[[World], None], tuple[str, str]]] = {
    "sms-STOP-keyword": ("sms", _sms_keyword, ("sms", "sms_stop")),
    "sms-stop-in-words": ("sms", _sms_stop_in_words, ("sms", "sms_stop")),
    "sms-carrier-says-opted-out": ("sms", _sms_failed_21610, ("sms", "sms_stop")),
    "call-flagged-by-the-assistant": ("call", _call_structured, ("call", "call_request")),
    "call-said-to-the-assistant": ("call", _call_said, ("call", "call_request")),
    "email-one-click": ("email", _email_one_click, ("email", "unsubscribe_link")),
    "email-unsubscribe-page": ("email", _email_page, ("email", "unsubscribe_link")),
    "email-hard-bounce": ("email", _email_hard_bounce, ("email", "bounce")),
    "email-spam-complaint": ("email", _email_complaint, ("email", "complaint")),
    "email-suppressed-by-resend": ("email", _email_suppressed, ("email", "bounce")),
    "call-asked-the-shop": ("call", lambda w: _asked_the_shop(w, "call"), ("all", "manual")),
    "sms-asked-the-shop": ("sms", lambda w: _asked_the_shop(w, "sms"), ("all", "manual")),
    "email-asked-the-shop": ("email", lambda w: _asked_the_shop(w, "email"), ("all", "manual")),
}


def _first_send(channel: str, vapi: FakeVapi, twilio: FakeTwilio, resend: FakeResend) -> str:
    if channel == "call":
        return str(vapi.calls_to(ANN["phone"])[0]["id"])
    if channel == "sms":
        return twilio.sent_to(ANN["phone"])[0].sid
    return next(e.id for e in resend.emails.values() if e.to == [ANN["email"]])


@pytest.mark.parametrize("way", list(WAYS))
def test_stop_is_honoured_on_the_next_send(session, factory, fake_vapi, fake_twilio, fake_resend, live, client,
                                           post, now, way):
    channel, say_stop, recorded = WAYS[way]
    profile, key, _ = accounts.create_profile(session, business_name="Bella Vista",
                                              email=f"owner-{uuid.uuid4().hex[:8]}@bellavista.example",
                                              password="correct horse battery")
    profile.consent_policy = "none"  # the ways to say stop, whatever consent the business keeps
    h.add_leads(session, profile, [ANN, BO], now=now)
    first = h.campaign(session, profile, method=channel, now=now)
    session.commit()
    assert h.run(factory, profile.id, first, now, live).sent == 2
    # the next campaign is already selected, both customers in it, when Ann says stop
    waiting = h.campaign(session, profile, method=channel, now=now)
    session.commit()
    assert len(h.recipients(session, waiting)) == 2
    world = World(session, post, client, key, fake_vapi, fake_twilio, fake_resend,
                  _first_send(channel, fake_vapi, fake_twilio, fake_resend))

    say_stop(world)

    contact = ANN["email"] if channel == "email" else ANN["phone"]
    assert (contact, *recorded) in h.opt_outs(session, profile.id)
    before = world.sends_to_ann(channel)
    report = h.run(factory, profile.id, waiting, now, live)
    assert (report.sent, report.opted_out) == (1, 1)
    assert world.sends_to_ann(channel) == before == 1  # the provider never heard of Ann again
    assert h.recipient(session, waiting, ANN["phone"]).status == "opted_out"  # customers are keyed by phone
    h.results_match(session, waiting)
    # a campaign created afterwards does not select her at all
    later = h.campaign(session, profile, method=channel, now=now)
    session.commit()
    assert [r.contact_key for r in h.recipients(session, later)] == [BO["phone"]]


def test_the_providers_own_block_is_recorded_and_honoured(session, factory, fake_twilio, live, now):
    """Twilio blocked the number (the customer texted STOP while no webhook reached us): the refused
    send records the opt-out, and no later campaign asks Twilio again."""
    profile = h.business(session)
    h.add_leads(session, profile, [ANN, BO], now=now)
    first = h.campaign(session, profile, method="sms", now=now)
    session.commit()
    fake_twilio.blocked.add(ANN["phone"])
    report = h.run(factory, profile.id, first, now, live)
    assert (report.sent, report.opted_out) == (1, 1)
    assert (ANN["phone"], "sms", "sms_stop") in h.opt_outs(session, profile.id)
    posts = len(fake_twilio.posts())
    later = h.campaign(session, profile, method="sms", now=now)
    session.commit()
    h.run(factory, profile.id, later, now, live)
    assert [f["To"] for f in fake_twilio.posts()[posts:]] == [BO["phone"]]
