"""One message builder (DESIGN §14): what the wizard previews is, byte for byte, what the dispatcher hands
the provider — for every channel, every A/B version, with and without footers the text already carries."""

from __future__ import annotations

import re
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import accounts
from core.dispatch import run_campaign_pass
from core.outbound import Sample, preview
from core.tokens import read_click_token
from tests.engine import helpers as h

TRACKED = re.compile(r'href="https://shop\.example/c/([^"]+)"')


def untracked(html: str | None) -> str | None:
    """``html`` with each tracked link replaced by the recipient and address its token names."""
    if html is None:
        return None

    def target(match: re.Match[str]) -> str:
        read = read_click_token(match.group(1), h.settings())
        assert read is not None
        return f'href="tracked:{read[0]}:{read[1]}"'

    return TRACKED.sub(target, html)


WORDS = st.sampled_from(["Hi", "hello", "we", "miss", "you", "at", "this", "month", "stop by", "book", "now",
                         "ÀÉ", "€5 off", "😊", "-", "\n", "\n\n", ",", "!"])
PLACEHOLDERS = st.sampled_from(["{first_name|there}", "{customer_name}", "{business_name}", "{service_type|visit}",
                                "{last_visit_date|a while}", "{promotion}", "{booking_link}", "{agent_name|we}"])
ENDINGS = st.sampled_from(["", " Reply STOP to opt out.", " Text STOP to unsubscribe",
                           " Unsubscribe: {unsubscribe_url}", " https://shop.example/book?who={first_name}"])


@st.composite
def templates(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(WORDS, PLACEHOLDERS), min_size=1, max_size=12))
    return " ".join(parts) + draw(ENDINGS)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(email_a=templates(), email_b=templates(), sms=templates(), call=templates(), subject=templates())
def test_the_preview_is_what_the_dispatcher_sends(session, engine, now, email_a, email_b, sms, call, subject):
    profile = h.business(session)
    profile.booking_url = "https://book.shop.example/now"
    people = [{"phone": f"+1212555{n:04d}", "email": f"p{n}@example.com", "name": f"Pat{n} Doe",
               "service": "Oil change"} for n in range(4)]
    h.add_leads(session, profile, people, now=now)
    agent = accounts.create_agent(session, profile_id=profile.id, name="Ava")
    cid = h.campaign(session, profile, method="multi", now=now, agent_id=agent.id,
                     email_subject=subject.replace("{unsubscribe_url}", ""), message_template=email_a,
                     sms_template=sms, call_script=call, max_concurrent_calls=10, variables={"promotion": "20% off"},
                     variants=[{"name": "A"}, {"name": "B", "message_template": email_b}],
                     steps=[{"channel": "email"}, {"channel": "sms"}, {"channel": "call"}])
    session.commit()
    doubles = {ch: h.Scripted(ch) for ch in ("email", "sms", "call")}
    factory = h.factory(engine)
    for minutes in (0, 1, 2, 3):
        run_campaign_pass(factory, profile_id=profile.id, campaign_id=cid, now=now + timedelta(minutes=minutes),
                          settings=h.settings(), adapters=doubles, worker="parity")
    sent = [m for d in doubles.values() for m in d.sent]
    assert len(sent) == 12
    rows = {r.id: r for r in h.recipients(session, cid)}
    from core.models import Agent, Campaign

    campaign = session.get(Campaign, cid)
    agent_row = session.get(Agent, agent.id)
    for message in sent:
        r = rows[message.recipient_id]
        sample = Sample(customer_name=r.customer_name, customer_phone=r.customer_phone,
                        customer_email=r.customer_email, service_type="Oil change",
                        last_visit=now - timedelta(days=200))
        shown = preview(campaign=campaign, profile=profile, agent=agent_row, settings=h.settings(),
                        channel=message.channel, sample=sample, variant=r.variant, step=message.step,
                        recipient_id=r.id)
        # a tracked link's token carries when it was made: compare where each link leads
        assert (shown.subject, shown.text, untracked(shown.html)) == (message.subject, message.text,
                                                                     untracked(message.html))
        if message.channel == "sms":
            assert message.text.count("STOP") == shown.text.count("STOP") and message.text.count("Reply STOP") <= 1
        if message.channel == "email":
            assert message.text.count("Unsubscribe") <= 1 or "{unsubscribe_url}" in email_a + email_b
    session.commit()
