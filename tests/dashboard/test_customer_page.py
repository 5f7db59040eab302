"""The customer page (pages/customer.py, DESIGN §14) in AppTest: every message as it was sent — the e-mail
rendered in a sandboxed frame, the text, the call's summary, transcript and recording — clicks with their
address, leads, opt-outs and consents; reachable from the customer list; another business's customer is
not found."""

from __future__ import annotations

import html
import re
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import accounts, consents, optouts
from core.db import utcnow
from core.dispatch import run_campaign_pass
from core.models import Customer, Profile
from tests.dashboard.conftest import Shop, assert_clean, open_app, texts
from tests.dashboard.helpers import event
from tests.engine import helpers as h

PHONE, EMAIL = "+12015550142", "maria@example.com"


def _story(session: Session, shop: Shop) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """Maria got an e-mail, a text and a call, each sent by the real dispatcher; she clicked, replied and
    answered.  Returns her customer id and the recipient ids by channel."""
    now = utcnow() - timedelta(hours=2)  # it all happened earlier today
    profile = session.get(Profile, shop.profile_id)
    assert profile is not None
    profile.consent_policy = "none"  # not about consent here
    profile.booking_url = "https://bellavista.example/book"
    h.add_leads(session, profile, [{"phone": PHONE, "email": EMAIL, "name": "Maria Garcia", "service": "Color"},
                                   {"phone": "+12015550143", "email": "liam@example.com", "name": "Liam Chen"}],
                now=now)
    session.commit()
    factory = h.factory(session.get_bind())  # type: ignore[arg-type]
    recipients: dict[str, uuid.UUID] = {}
    for method, content in (("email", {"email_subject": "We miss you, {first_name|there}",
                                       "message_template": "Hi {first_name|there}, <b>book</b> again: "
                                                           "{booking_link}\n\nSee you, {business_name}"}),
                            ("sms", {"message_template": "Hi {first_name|there}, {business_name} misses you!"}),
                            ("call", {"call_script": "Hi {first_name|there}, this is {business_name}."})):
        with factory() as s, s.begin():
            cid = h.campaign(s, s.get(Profile, shop.profile_id), method=method, now=now,  # type: ignore[arg-type]
                             name=f"Spring {method}", **content)
        run_campaign_pass(factory, profile_id=shop.profile_id, campaign_id=cid, now=now, settings=h.settings(),
                          worker="test", adapters={method: h.Scripted(method)})
        with factory() as s:
            recipients[method] = next(r.id for r in h.recipients(s, cid) if r.contact_key == PHONE)
    with factory() as s, s.begin():
        event(s, recipients["email"], "delivered", now + timedelta(seconds=5))
        event(s, recipients["email"], "clicked", now + timedelta(minutes=3),
              payload={"url": "https://bellavista.example/book"})
        event(s, recipients["sms"], "replied", now + timedelta(minutes=4), channel="sms",
              payload={"text": "Yes please, Friday?"})
        event(s, recipients["call"], "answered", now + timedelta(minutes=5), channel="call",
              payload={"summary": "She wants a color appointment on Friday.",
                       "transcript": "AI: Hi Maria\nUser: Friday works",
                       "recording_url": "https://recordings.example/call-1.wav"})
        event(s, recipients["call"], "converted", utcnow() + timedelta(days=3), channel="call")  # not yet
        consents.record_consent(s, profile_id=shop.profile_id, contact=PHONE, channel="sms", level="express_written",
                                source="manual", proof="Signed card at the desk")
        optouts.record_opt_out(s, profile_id=shop.profile_id, contact=EMAIL, channel="email", source="manual",
                               reason="Prefers texts")
    with factory() as s:
        customer_id = s.scalars(select(Customer.id).where(Customer.profile_id == shop.profile_id,
                                                          Customer.contact_key == PHONE)).one()
    return customer_id, recipients


def _frames(at) -> list[str]:  # type: ignore[no-untyped-def]
    """The HTML the page put in iframes."""
    return [str(e.proto.srcdoc) for e in at.get("iframe")]


def test_the_customer_page_shows_every_message_as_sent(app_db, shop, session):
    customer_id, _ = _story(session, shop)
    at = open_app(shop, "customer", {"id": str(customer_id)})
    page = texts(at)
    assert at.title[0].value == "Maria Garcia"
    assert "(201) 555-0142 · maria@example.com" in page  # the phone as people write it
    assert {m.label: m.value for m in at.metric}["Leads"] == "1"
    # the e-mail, rendered in a frame whose inner document runs nothing and whose links are inert
    frames = _frames(at)
    assert len(frames) == 1
    inner = re.search(r'srcdoc="([^"]*)"', frames[0])
    assert inner is not None and "sandbox=''" in frames[0]
    document = html.unescape(inner.group(1))
    assert "Hi Maria, &lt;b&gt;book&lt;/b&gt; again:" in document  # the customer's e-mail, escaped as sent
    assert "Unsubscribe</a>" in document and "pointer-events:none" in document
    assert "**Subject:** We miss you, Maria" in page
    # the text and the call as sent
    sent_texts = [t.value for t in at.get("text")]
    assert "Hi Maria, Bella Vista Salon misses you!\nReply STOP to opt out" in sent_texts
    assert "Hi Maria, this is Bella Vista Salon." in page
    # what came back: the click with its address, the reply, the call's summary, transcript and recording
    assert "**Clicked a link**" in page and "[https://bellavista.example/book](https://bellavista.example/book)" in page
    assert "“Yes please, Friday?”" in page
    assert "Summary: She wants a color appointment on Friday." in page
    assert "[Listen to the recording](https://recordings.example/call-1.wav)" in page
    assert "AI: Hi Maria\nUser: Friday works" in sent_texts
    assert "**Booked**" not in page  # a sandbox outcome dated in the future is not shown before its time
    # opt-outs and consents
    frames_by_label = {t.label: t for t in at.tabs}
    assert "Opt-outs and consents (2)" in frames_by_label
    tables = [d.value for d in at.dataframe]
    assert any("Prefers texts" in set(t.get("reason", [])) for t in tables)
    assert any("Signed card at the desk" in set(t.get("proof", [])) for t in tables)
    assert_clean(at)


def test_another_business_customer_and_a_bad_id_are_not_found(app_db, shop, session):
    customer_id, _ = _story(session, shop)
    other, _key, _ = accounts.create_profile(session, business_name="Studio Nine",
                                             email=f"o-{uuid.uuid4().hex[:6]}@studio.example", password="x" * 12)
    session.commit()
    intruder = Shop(other.id, "intruder@studio.example", "Studio Nine")
    at = open_app(intruder, "customer", {"id": str(customer_id)})
    assert "No such customer." in texts(at) and "Maria" not in texts(at)
    assert not _frames(at)
    at = open_app(shop, "customer", {"id": "not-an-id"})
    assert "Open a customer from the customer list" in texts(at)


def test_the_customer_list_links_to_each_customer_page(app_db, shop, session):
    customer_id, _ = _story(session, shop)
    at = open_app(shop, "customers")
    table = at.dataframe[0].value
    row = table[table["email"] == EMAIL]
    assert list(row["page"]) == [f"customer?id={customer_id}"]
    # erasing stays a secondary action behind a confirmation
    erase = next(b for b in at.button if b.label == "Erase personal data…")
    assert erase.proto.type != "primary"


def test_a_text_back_says_why_it_was_or_was_not_an_opt_out(app_db, shop, session):
    """What a customer texted back is shown with how it was read, when the reading decided something: a reply
    that only looks like a request to stop says why it is not one ("Stop by later?")."""
    from core.inbound_sms import meaning

    customer_id, recipients = _story(session, shop)
    said = meaning("Can I stop by later?")
    with h.factory(session.get_bind())() as s, s.begin():  # type: ignore[arg-type]
        # the payload the inbound handler keeps with the text's event
        event(s, recipients["sms"], "replied", utcnow() - timedelta(minutes=30), channel="sms",
              payload={"text": "Can I stop by later?", "why": said.why, "rule": said.rule})
        plain = meaning("See you Friday")
        assert (plain.rule, plain.why) == (None, "no request to stop")
        event(s, recipients["sms"], "replied", utcnow() - timedelta(minutes=20), channel="sms",
              payload={"text": "See you Friday", "why": plain.why, "rule": plain.rule})
    page = texts(open_app(shop, "customer", {"id": str(customer_id)}))
    assert "“Can I stop by later?”" in page
    assert "'stop' is followed by 'by later': a visit, not a request to stop texts" in page
    assert "“See you Friday”" in page and "no request to stop" not in page  # a plain reply carries no note
