"""The send path against what the real world does to it (DESIGN §13): a Vapi webhook that arrives
before the dispatcher recorded the call, what a call's analysis does and does not mean, and tracked
links that only lead where the business pointed them — the real dispatcher, the live adapters, the
loopback fakes and the real app."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from sqlalchemy import select

from core import clicks
from core.channels.vapi import VapiChannel
from core.models import CampaignRecipient
from core.ratelimit import calls_in_progress
from core.tokens import click_token
from core.webhooks.vapi import asks_not_to_be_called, successful
from tests.channels import helpers as h

# --- finding 4: Vapi's end report overtakes the dispatcher's record of the call ------------------------------


class EndsBeforeItIsRecorded:
    """The live Vapi adapter, on a line where every call is short: Vapi has already posted the call's
    ``status-update: ended`` and its end-of-call report when the create request's answer comes back —
    before the dispatcher has stored the call id."""

    def __init__(self, inner: VapiChannel, fake: Any, post: h.Post) -> None:
        self.inner, self.fake, self.post = inner, fake, post
        self.channel, self.provider, self.live = inner.channel, inner.provider, inner.live
        self.answers: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send(self, message):
        result = self.inner.send(message)
        call_id = result.provider_message_id
        self.fake.end_call(call_id, ended_reason="customer-ended-call", duration=20,
                           transcript="AI: Hi, this is Bella Vista.\nUser: Not now, thanks.")
        for early in (self.fake.status_update(call_id, "ended", ended_reason="customer-ended-call"),
                      self.fake.end_of_call_report(call_id)):
            self.answers.append(self.fake.deliver(early, self.post).status_code)
        return result


def test_an_end_report_that_arrives_before_the_call_id_is_recorded_frees_the_line(
        session, factory, fake_vapi, live, post, now):
    """Finding 4: ten customers, three lines.  Every call ends before the dispatcher hears back from Vapi;
    the early reports close the calls, so the other seven are called at once, not 30 minutes later."""
    profile = h.business(session)
    phones = [f"+1212555{n:04d}" for n in range(10)]
    h.add_leads(session, profile, [{"phone": p, "name": f"Pat{n} Doe"} for n, p in enumerate(phones)], now=now)
    cid = h.campaign(session, profile, method="call", now=now)
    session.commit()
    limited = live.model_copy(update={"vapi_max_concurrent_calls": 3})
    adapter = EndsBeforeItIsRecorded(VapiChannel(limited), fake_vapi, post)
    t = now
    for _ in range(4):  # passes a minute apart, until the campaign is done
        if h.campaign_status(session, cid) != "active":
            break
        h.run(factory, profile.id, cid, t, limited, adapters={"call": adapter})
        t += timedelta(minutes=1)
    assert t <= now + timedelta(minutes=2)  # done within two passes
    assert set(adapter.answers) == {200}
    assert sorted(c["customer"]["number"] for c in fake_vapi.created()) == phones  # everybody, once
    attempts = h.attempts(session, cid)
    assert len(attempts) == 10
    # the dispatcher's own write came after the reports: it recorded the call id without reopening the call
    assert all(a.outcome == "accepted" and a.provider_message_id and a.completed_at is not None for a in attempts)
    assert all(a.cost == round(20 / 60 * profile.price_per_call_minute, 6) for a in attempts)  # 20 s at the price
    assert {r.status for r in h.recipients(session, cid)} == {"answered"}
    assert calls_in_progress(session, campaign_id=cid, now=t) == (0, 0)
    session.commit()
    h.results_match(session, cid)


# --- finding 6: what a call's analysis means ------------------------------------------------------------------


@pytest.mark.parametrize(("evaluation", "structured", "expected"), [
    ("true", {}, True), (True, {}, True), ("pass", {}, True), (8, {}, True), ("8/10", {}, True), ("85%", {}, True),
    (None, {"appointment_booked": True}, True), (None, {"appointment": "2026-06-20T10:00"}, True),
    (None, {"appointment": "Saturday 10:00"}, True), (None, {"booked": "yes"}, True),
    (None, {"appointment": "declined"}, False), (None, {"appointment": "not booked"}, False),
    (None, {"appointment": "TBD"}, False), (None, {"appointment": ""}, False), ("b", {}, False),
    ("false", {}, False), ("fail", {}, False), (6, {}, False), ("60%", {}, False), ("not successful", {}, False),
    (None, {"appointment": {"status": "pending"}}, False), (None, {"appointment_booked": "no"}, False),
])
def test_only_an_explicit_yes_is_a_conversion(evaluation, structured, expected):
    assert successful(evaluation, structured) is expected


@pytest.mark.parametrize(("said", "expected"), [
    ("Please don't call me again.", True), ("Stop calling me.", True), ("Take me off your list", True),
    ("Do not call this number.", True), ("Don't call me anymore", True),
    ("Don't call me before noon.", False), ("Don't call me on weekends, call me Monday", False),
    ("Please don't call me after 6pm", False), ("Don't call me at work", False), ("Sure, call me next week", False),
])
def test_only_a_request_to_stop_is_a_do_not_call(said, expected):
    assert asks_not_to_be_called(said) is expected


@pytest.fixture
def one_call(session, factory, fake_vapi, live, now):
    profile = h.business(session)
    h.add_leads(session, profile, [{"phone": "+12125550101", "name": "Ann Lee"}], now=now)
    cid = h.campaign(session, profile, method="call", now=now)
    session.commit()
    assert h.run(factory, profile.id, cid, now, live).sent == 1
    (call,) = fake_vapi.created()
    return profile, cid, call["id"]


def test_a_declined_appointment_is_no_win_back(session, one_call, fake_vapi, post):
    """Finding 6: ``{"appointment": "declined"}`` with a "b" grade is an answered call, not a conversion —
    no "won back" lead is created."""
    profile, cid, call_id = one_call
    fake_vapi.end_call(call_id, transcript="AI: Shall I book you in?\nUser: No thanks, not this month.",
                       structured_data={"appointment": "declined", "interest": "not booked"}, success_evaluation="b")
    assert fake_vapi.deliver(fake_vapi.end_of_call_report(call_id), post).status_code == 200
    r = h.recipient(session, cid, "+12125550101")
    assert r.status == "answered" and not r.converted and r.converted_at is None
    assert h.leads_of(session, profile.id, source="campaign") == []
    assert h.results_match(session, cid)["converted_count"] == 0


def test_a_preferred_time_is_no_opt_out(session, one_call, fake_vapi, post):
    """Finding 6: "don't call me before noon" asks for another time; the customer stays reachable."""
    profile, cid, call_id = one_call
    fake_vapi.end_call(call_id, transcript="AI: Hi Ann!\nUser: Don't call me before noon, I work nights.")
    fake_vapi.deliver(fake_vapi.end_of_call_report(call_id), post)
    assert h.opt_outs(session, profile.id) == set()
    assert h.recipient(session, cid, "+12125550101").status == "answered"


# --- finding 8: tracked links lead only where the business pointed them ----------------------------------------

LINKED = ("Hi {first_name|there},\n\nCome back to {business_name}: {promotion}.\n\n"
          "Book now: https://bellavista.example/book")


@pytest.fixture
def mailed(session, factory, fake_resend, live, now):
    """Two customers mailed through the fake Resend; one of them has a web address for a name."""
    profile = h.business(session)
    h.add_leads(session, profile, [{"email": "evil@example.com", "name": "https://evil.example/login now"},
                                   {"email": "bo@example.com", "name": "Bo Kim"}], now=now)
    cid = h.campaign(session, profile, method="email", now=now, message_template=LINKED)
    session.commit()
    assert h.run(factory, profile.id, cid, now, live).sent == 2
    return cid, {e.to[0]: e.payload for e in fake_resend.emails.values()}


def _links(html: str) -> list[str]:
    return [unescape(u) for u in re.findall(r'href="([^"]+)"', html)]


def test_a_customers_name_is_never_a_link(session, client, mailed):
    """Finding 8: a lead named ``https://evil.example/login`` is greeted by that text, but it is neither a
    link nor a tracked redirect; the business's own booking link is."""
    _cid, mails = mailed
    html = mails["evil@example.com"]["html"]
    assert "https://evil.example/login" in html  # the text is there …
    assert not any("evil.example" in link for link in _links(html))  # … but not as a link
    tracked = [link for link in _links(html) if "/c/" in link]
    assert len(tracked) == 1
    answer = client.get(tracked[0].removeprefix(h.PUBLIC), headers={"user-agent": "Mozilla/5.0 (iPhone)"})
    assert answer.status_code == 302 and answer.headers["location"] == "https://bellavista.example/book"


def test_an_expired_click_token_leads_nowhere(session, client, mailed, monkeypatch):
    cid, _ = mailed
    r = h.recipient(session, cid, "bo@example.com")
    import itsdangerous.timed

    real = itsdangerous.timed.time
    monkeypatch.setattr(itsdangerous.timed, "time", type("Then", (), {"time": staticmethod(
        lambda: real.time() - 181 * 86400)}))
    old = click_token(r.id, "https://bellavista.example/book", h.live_settings())
    monkeypatch.setattr(itsdangerous.timed, "time", real)
    fresh = click_token(r.id, "https://bellavista.example/book", h.live_settings())
    assert client.get(f"/c/{old}").status_code == 404
    assert client.get(f"/c/{fresh}").status_code == 302


@pytest.mark.parametrize("agent", [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) SafeLinks",
    "Proofpoint URL Defense", "Mozilla/4.0 (compatible; ms-office; MSOffice 16)", ""])
def test_a_link_scanner_is_no_response(session, client, mailed, agent):
    """Finding 8: a scanner's click (Outlook Safe Links, Proofpoint …) still redirects and stays on the
    timeline, but is not a response; the customer's own click afterwards is."""
    cid, mails = mailed
    (link,) = [u for u in _links(mails["bo@example.com"]["html"]) if "/c/" in u]
    path = link.removeprefix(h.PUBLIC)
    assert client.get(path, headers={"user-agent": agent}).status_code == 302
    r = h.recipient(session, cid, "bo@example.com")
    assert r.responded_at is None
    assert h.results_match(session, cid)["responded_count"] == 0
    client.get(path, headers={"user-agent": "Mozilla/5.0 (Macintosh) Safari/605.1.15"})
    assert h.recipient(session, cid, "bo@example.com").responded_at is not None


def test_a_click_seconds_after_the_send_is_a_scanner(session, mailed):
    """Finding 8: a click within ten seconds of the send is a scanner opening the mail as it arrives."""
    cid, _ = mailed
    r = h.recipient(session, cid, "bo@example.com")
    s = h.live_settings()
    token = click_token(r.id, "https://bellavista.example/book", s)
    agent = "Mozilla/5.0 (Windows NT 10.0) Chrome/120"
    assert clicks.follow(session, token=token, settings=s, now=r.sent_at + timedelta(seconds=4),
                         user_agent=agent) == "https://bellavista.example/book"
    session.commit()
    assert h.recipient(session, cid, "bo@example.com").responded_at is None
    clicks.follow(session, token=token, settings=s, now=r.sent_at + timedelta(minutes=5), user_agent=agent)
    session.commit()
    assert h.recipient(session, cid, "bo@example.com").responded_at is not None


def test_a_token_for_an_address_that_is_not_a_web_link_is_refused(session, client, mailed):
    cid, _ = mailed
    r = h.recipient(session, cid, "bo@example.com")
    for target in ("javascript:alert(1)", "data:text/html,hi", "//evil.example"):
        assert client.get(f"/c/{click_token(r.id, target, h.live_settings())}").status_code == 404
    assert client.get(f"/c/{click_token(uuid.uuid4(), 'https://x.example', h.live_settings())}").status_code == 302
    assert session.scalar(select(CampaignRecipient.responded_at).where(CampaignRecipient.id == r.id)) is None
