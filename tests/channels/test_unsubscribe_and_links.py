"""The unsubscribe link (page and RFC 8058 one-click) and tracked links, from the e-mail the fake
Resend received to the database state."""

from __future__ import annotations

import re
from html import unescape

import pytest

from core import campaigns
from core.models import OptOut, OutreachEvent
from core.optouts import delete_opt_out
from core.tokens import read_unsubscribe_token, unsubscribe_token
from tests.channels import helpers as h
from tests.engine.helpers import settings as engine_settings

TEMPLATE = ("Hi {first_name|there},\n\nWe'd love to see you again at {business_name}: {promotion}.\n\n"
            "Book now: https://bellavista.example/book")


@pytest.fixture
def sent(session, factory, fake_resend, live, now):
    """An e-mail campaign with a booking link, sent to two customers through the fake Resend."""
    profile = h.business(session, name="Bella Vista")
    h.add_leads(session, profile, [{"email": "ann@example.com", "name": "Ann Lee"},
                                   {"email": "bo@example.com", "name": "Bo Kim"}], now=now)
    cid = h.campaign(session, profile, method="email", now=now, message_template=TEMPLATE)
    session.commit()
    assert h.run(factory, profile.id, cid, now, live).sent == 2
    mails = {e.to[0]: e.payload for e in fake_resend.emails.values()}
    return profile, cid, mails


def unsubscribe_path(payload: dict) -> str:
    header = payload["headers"]["List-Unsubscribe"]
    assert header.startswith(f"<{h.PUBLIC}/unsubscribe/") and header.endswith(">")
    return header[1:-1].removeprefix(h.PUBLIC)


def test_every_email_carries_the_one_click_headers_and_a_visible_link(session, sent):
    _, cid, mails = sent
    ann = h.recipient(session, cid, "ann@example.com")
    payload = mails["ann@example.com"]
    path = unsubscribe_path(payload)
    assert payload["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = path.rsplit("/", 1)[1]
    assert read_unsubscribe_token(token, h.live_settings()) == ann.id
    assert "ann" not in token and "@" not in token  # no personal data in the link
    assert f"{h.PUBLIC}{path}" in payload["text"] and f'href="{h.PUBLIC}{path}"' in payload["html"]


def test_the_page_asks_first_and_changes_nothing(session, sent, client):
    profile, _, mails = sent
    answer = client.get(unsubscribe_path(mails["ann@example.com"]))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert "Bella Vista" in page and "ann@example.com" in page
    assert re.search(r'<form method="post"[^>]*>.*<button type="submit">Unsubscribe</button>', page, re.S)
    assert answer.headers["cache-control"] == "no-store" and "set-cookie" not in answer.headers
    assert h.opt_outs(session, profile.id) == set()


@pytest.mark.parametrize("how", ["one-click-urlencoded", "one-click-multipart", "the-page-button"])
def test_one_click_unsubscribes_at_once(session, sent, client, how):
    profile, cid, mails = sent
    path = unsubscribe_path(mails["ann@example.com"])
    if how == "one-click-urlencoded":
        answer = client.post(path, content=b"List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    elif how == "one-click-multipart":
        answer = client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    else:
        answer = client.post(path, data={"confirm": "yes"})
    assert answer.status_code == 200 and "unsubscribed" in answer.text and "set-cookie" not in answer.headers
    assert h.opt_outs(session, profile.id) == {("ann@example.com", "email", "unsubscribe_link")}
    r = h.recipient(session, cid, "ann@example.com")
    assert r.status == "opted_out"
    assert h.results_match(session, cid)["opted_out_count"] == 1
    # again (a mail client retrying, a second click): the same answer, nothing new
    events = h.count(session, OutreachEvent)
    assert client.post(path, content=b"List-Unsubscribe=One-Click",
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 200
    assert h.count(session, OutreachEvent) == events and h.count(session, OptOut) == 1
    # and the page now says so
    assert "unsubscribed" in client.get(path).text


@pytest.mark.parametrize("token", ["tampered", "garbage", "other-key", "dotted"])
def test_a_link_that_is_not_ours_is_a_404_page(session, sent, client, token):
    profile, cid, mails = sent
    real = unsubscribe_path(mails["ann@example.com"]).rsplit("/", 1)[1]
    r = h.recipient(session, cid, "ann@example.com")
    value = {"tampered": real[:-2] + ("AA" if not real.endswith("AA") else "BB"), "garbage": "%00%ff..--__",
             "other-key": unsubscribe_token(r.id, engine_settings(secret_key="another-key")),
             "dotted": "a.b"}[token]
    for method in ("get", "post"):
        answer = getattr(client, method)(f"/unsubscribe/{value}")
        assert answer.status_code == 404 and "not valid" in answer.text
    assert h.opt_outs(session, profile.id) == set()


def test_after_staff_remove_the_opt_out_the_link_works_again(session, sent, client):
    profile, _, mails = sent
    path = unsubscribe_path(mails["bo@example.com"])
    client.post(path)
    (opt_out,) = session.query(OptOut).filter(OptOut.profile_id == profile.id).all()
    delete_opt_out(session, profile_id=profile.id, opt_out_id=opt_out.id)
    session.commit()
    assert "Unsubscribe from Bella Vista?" in unescape(client.get(path).text)
    client.post(path)
    assert h.opt_outs(session, profile.id) == {("bo@example.com", "email", "unsubscribe_link")}


def test_the_next_campaign_skips_the_address(session, factory, sent, client, fake_resend, live, now):
    profile, _, mails = sent
    # a campaign selected before the click: the check at send time skips the address
    waiting = h.campaign(session, profile, method="email", now=now)
    session.commit()
    client.post(unsubscribe_path(mails["ann@example.com"]))
    report = h.run(factory, profile.id, waiting, now, live)
    assert (report.sent, report.opted_out) == (1, 1)
    assert fake_resend.emails_per_address() == {"ann@example.com": 1, "bo@example.com": 2}
    # a campaign created afterwards does not even select it
    later = campaigns.create_campaign(session, profile_id=profile.id, data={
        "name": "Spring", "campaign_type": "promotional", "outreach_method": "email",
        "email_subject": "Spring offers", "message_template": "New season at {business_name}"}, now=now)
    selection = campaigns.select_campaign_recipients(session, profile_id=profile.id, campaign_id=later.id, now=now)
    session.commit()
    assert (selection.selected, selection.suppressed) == (1, 1)


def test_links_in_the_html_are_tracked_and_redirect(session, sent, client):
    _, cid, mails = sent
    payload = mails["bo@example.com"]
    # the text part keeps the address; the HTML part links through the tracker
    assert "Book now: https://bellavista.example/book" in payload["text"]
    tracked = re.findall(r'href="([^"]+)"', payload["html"])
    link = next(u for u in tracked if "/c/" in unescape(u))
    assert unescape(link).startswith(f"{h.PUBLIC}/c/") and ">https://bellavista.example/book</a>" in payload["html"]
    assert any("/unsubscribe/" in u for u in tracked)  # the unsubscribe link is never tracked
    path = unescape(link).removeprefix(h.PUBLIC)
    answer = client.get(path)
    assert answer.status_code == 302 and answer.headers["location"] == "https://bellavista.example/book"
    r = h.recipient(session, cid, "bo@example.com")
    assert r.responded_at is not None and r.response_data["clicked_url"] == "https://bellavista.example/book"
    assert r.status == "sent"  # a click is a response, not a delivery report
    clicks = [e for e in h.events(session, provider="link")]
    assert [e.type for e in clicks] == ["clicked"]
    assert client.get(path).status_code == 302  # clicked again: still works, counted once
    assert len(h.events(session, provider="link")) == 1
    assert h.results_match(session, cid)["responded_count"] == 1
    # an altered token leads nowhere
    assert client.get(path[:-3] + "xyz").status_code == 404
