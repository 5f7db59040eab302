"""The inbound-text policy every SMS provider shares (:mod:`core.inbound_sms`): what a text says — tables
of real-looking messages both ways, no database — and what it does to which businesses (both backends)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import inbound_sms
from core.inbound_sms import OPT_IN, OPT_OUT, REPLY, InboundText, Texter, concerned, meaning
from core.models import CampaignRecipient, OptOut, OutreachAttempt, OutreachEvent, Profile
from core.optouts import record_opt_out
from tests.channels import helpers as h

# --- what a text says ----------------------------------------------------------------------------------------

OPT_OUTS = [
    # the words FCC 24-24 names, and the carriers' keywords, however they are typed
    "STOP", "stop", "Stop.", "  STOPALL ", "stop all", "unsubscribe", "Cancel", "END", "quit", "REVOKE", "optout",
    "opt out", "Opt-Out", "STOP!", "STOP🛑", "Stoppp", "unsub", "Stop please", "Cancel please", "STOP NOW!!!",
    "STOP STOP STOP",
    # plainly asking, with politeness, punctuation and emoji around it
    "please stop", "Please stop texting me!! 😡", "Who is this? Stop texting me", "stop messaging me",
    "Stop sending me these", "Can you stop texting me", "You can stop texting me now, thanks", "i said stop",
    "Thanks but stop", "love you guys but please stop", "stop it", "remove me", "Remove me from your list please",
    "Hi, please remove me from this list. Thank you.", "take me off your list", "take my number off your list",
    "delete my number", "don't text me", "Do not text me again", "DONT TEXT ME", "never text me again",
    "Don't contact me", "leave me alone", "Leave me alone 🙄", "No more texts please", "please no more messages",
    "I want to unsubscribe", "I’d like to opt out", "i don't want these texts", "I do not want any more messages",
    "Unsubscribe me", "opt me out", "Wrong number", "wrong number, this is Dave", "no más", "Alto", "basta",
    # the audit's false negatives: "quit …", calls, the number itself
    "quit texting me", "quit messaging me", "Quit it", "Quit it!!", "Don't call or text me", "stop calling me",
    "Don't call me again", "lose my number", "Lose my number pls", "quit calling me", "Please stop contacting me",
    "do not call/text this number", "Stop texting and calling me!", "stop texting me and calling me",
    "don't text and call me", "Do not call", "no more calls", "No more texts or calls", "I don't want your calls",
    "stop the texts", "Stop these messages", "Cancel the reminders", "You have the wrong number", "wrong #",
    "I already unsubscribed", "I've already opted out twice", "don't bother",
]
REPLIES = [
    # "stop", "end", "cancel" … in another sense
    "can't stop smiling, see you Saturday", "Don't stop sending me deals, love them", "I'll stop by tomorrow",
    "Stop by at 3?", "Will you stop by the shop?", "I couldn't stop laughing", "My kids never stop asking about you",
    "See you at the end of the month", "the end", "no end in sight", "Cancel my 3pm appointment",
    "Can I end my membership and rejoin later?", "quitting smoking so I need the massage lol", "unstoppable deal",
    "Don't stop!", "Remove the gel polish too?", "sign me up!",
    # the audit's near-misses
    "Stop by later?", "Can I stop by at 3?", "I'll stop in tomorrow", "don't stop the deals!",
    "Is the bus stop near you?", "End of the month works", "Can you cancel my 3pm and rebook?",
    "Quite busy, call me next week", "I can't stop thinking about your pizza", "Remove the onions from my order",
    "Please text me the address", "stopped by yesterday, you were closed", "don't call it a comeback",
    "Don't text while driving", "I unsubscribed by mistake, add me back",
    # ordinary answers
    "Yes please! Can I come in on Saturday?", "Sounds great, book me in for next week.", "👍", "ok", "Thanks!",
    "Maybe later, busy month.", "No thanks", "Who is this?", "yes but not this month", "not interested right now",
]


@pytest.mark.parametrize("text", OPT_OUTS)
def test_a_request_to_stop_opts_out(text):
    said = meaning(text)
    assert said.kind == OPT_OUT, text
    assert said.rule in {rule.name for rule in inbound_sms.REVOCATION}
    assert f"(rule '{said.rule}')" in said.why and said.channels in (("sms",), ("sms", "call"))


@pytest.mark.parametrize("text", REPLIES)
def test_stop_in_another_sense_is_a_reply(text):
    said = meaning(text)
    assert said.kind == REPLY, text
    assert said.why and said.channels == ()
    assert said.rule is None or said.rule in {reading.name for reading in inbound_sms.NOT_REVOCATION}


def test_every_rule_cites_its_source_and_is_used():
    for rule in inbound_sms.REVOCATION:
        assert "FCC 24-24" in rule.source or "CTIA" in rule.source, rule.name
        assert rule.channels in (("sms",), ("sms", "call")), rule.name
    used = {meaning(text).rule for text in OPT_OUTS}
    assert used == {rule.name for rule in inbound_sms.REVOCATION}


def test_every_reading_of_a_reply_says_why_and_is_used():
    for reading in inbound_sms.NOT_REVOCATION:
        assert reading.why and "{word}" in reading.why, reading.name
    used = {meaning(text).rule for text in REPLIES}
    assert used == {reading.name for reading in inbound_sms.NOT_REVOCATION} | {None}


@pytest.mark.parametrize(("text", "rule", "why"), [
    ("Stop by later?", "a visit", "'stop' is followed by 'by later': a visit, not a request to stop texts"),
    ("stopped by yesterday, you were closed", "a visit",
     "'stopped' is followed by 'by yesterday': a visit, not a request to stop texts"),
    ("don't stop the deals!", "negated", "'don't stop' is negated: it does not ask us to stop"),
    ("Is the bus stop near you?", "a place", "'bus stop' names a place, not a request to stop"),
    ("End of the month works", "a time", "'end of the month' is a time, not a request to stop"),
    ("Can you cancel my 3pm and rebook?", "something else",
     "'cancel my 3pm' is about something else (an appointment, an order), not the texts"),
    ("Remove the onions from my order", "something else",
     "'remove the onions' is about something else (an appointment, an order), not the texts"),
    ("Quite busy, call me next week", "another word", "'quite' only resembles an opt-out word: it asks nothing of us"),
    ("Please text me the address", "asks to be contacted",
     "'text me' asks to be contacted, the opposite of a request to stop"),
    ("No end in sight!", "mentions stop", "mentions 'end' but does not ask to stop texting: “no end in sight”"),
    ("Who is this?", None, "no request to stop"),
])
def test_a_reply_says_why_it_is_not_a_request_to_stop(text, rule, why):
    assert meaning(text) == inbound_sms.Meaning(REPLY, rule, why)


@pytest.mark.parametrize(("text", "rule", "why"), [
    ("Please stop texting me!! 😡", "stop texting",
     "“please stop texting me” asks to stop texts (rule 'stop texting')"),
    ("Who is this? Stop calling me", "stop calling",
     "“stop calling me” asks to stop calls and texts (rule 'stop calling')"),
    ("STOP", "keyword", "“stop” asks to stop texts (rule 'keyword')"),
])
def test_an_opt_out_says_which_words_and_rule(text, rule, why):
    said = meaning(text)
    assert (said.kind, said.rule, said.why) == (OPT_OUT, rule, why)


@pytest.mark.parametrize(("text", "channels"), [
    # texts only: the request is about texts, or names nothing else
    ("STOP", ("sms",)), ("stop texting me", ("sms",)), ("take me off your list", ("sms",)), ("remove me", ("sms",)),
    ("Don't text, just call", ("sms",)), ("Stop texting and call me instead", ("sms",)),
    # calls too: it names calls, contact in general, or the number itself
    ("stop calling me", ("sms", "call")), ("Don't call me again", ("sms", "call")),
    ("Don't call or text me", ("sms", "call")), ("quit calling me", ("sms", "call")),
    ("stop contacting me", ("sms", "call")), ("lose my number", ("sms", "call")), ("leave me alone", ("sms", "call")),
    ("wrong number", ("sms", "call")), ("No more texts or calls", ("sms", "call")),
    ("Stop texting me and calling me", ("sms", "call")),
    ("Stop texting me. Stop calling me too.", ("sms", "call")),  # two requests: both count
    # calls alone, and texts asked for instead in the same text: calls only
    ("Don't call me, just text", ("call",)), ("Don't call me just text", ("call",)),
    ("Stop calling me, text me instead", ("call",)), ("stop calling me. Text me!", ("call",)),
    ("No more calls, only texts please", ("call",)), ("don't call me, texts are fine", ("call",)),
    ("Please don't call me, I prefer texts", ("call",)), ("I'd rather you text me, stop calling", ("call",)),
    # ... but not when the request names texts or contact, the number itself, or any request stops texts
    ("Don't call or text me, just email", ("sms", "call")), ("don't contact me, just text", ("sms", "call")),
    ("Stop calling and texting me, text only lol", ("sms", "call")), ("leave me alone, just text", ("sms", "call")),
    ("wrong number, text me", ("sms", "call")), ("Stop texting me. Stop calling me, text only", ("sms", "call")),
    ("Don't call me, and don't just text me either", ("sms", "call")),  # "just text" negated
])
def test_what_a_request_stops(text, channels):
    said = meaning(text)
    assert said.kind == OPT_OUT and said.channels == channels, said


@pytest.mark.parametrize(("text", "opted_out", "hint", "kind"), [
    ("START", False, None, OPT_IN),
    ("unstop", True, None, OPT_IN),
    ("Start.", False, None, OPT_IN),
    ("YES", True, None, OPT_IN),  # yes from a number that opted out: back in
    ("y", True, None, OPT_IN),
    ("YES", False, None, REPLY),  # yes to the offer
    ("Yes stop", True, None, OPT_OUT),
    ("HELP", False, None, inbound_sms.HELP),
    ("info", True, None, inbound_sms.HELP),
    ("Arrêt", False, "STOP", OPT_OUT),  # the provider's own reading (Twilio Advanced Opt-Out)
    ("go", False, "START", OPT_IN),
    ("starting monday?", False, None, REPLY),
])
def test_opting_back_in_and_asking_for_help(text, opted_out, hint, kind):
    assert meaning(text, opted_out=opted_out, hint=hint).kind == kind


SHARED_A, SHARED_B, OWN_C, OWN_MG = (Texter(uuid.uuid4(), uuid.uuid4(), None), Texter(uuid.uuid4(), None, None),
                                     Texter(uuid.uuid4(), uuid.uuid4(), "+1 (201) 555-0777"),
                                     Texter(uuid.uuid4(), uuid.uuid4(), "MG" + "b" * 32))
ALL = [SHARED_A, SHARED_B, OWN_C, OWN_MG]


@pytest.mark.parametrize(("to", "service", "owned", "expected"), [
    ("+12015550100", None, False, [SHARED_A, SHARED_B]),  # the platform's number: everyone on it
    ("12015550777", None, True, [OWN_C]),  # a business's own number (Vonage writes no "+"): that business
    ("+12015550777", None, True, [OWN_C]),
    ("+12015550999", "MG" + "b" * 32, True, [OWN_MG]),  # a number of the business's own messaging service
    ("+12015550999", "MG" + "a" * 32, False, [SHARED_A, SHARED_B]),  # the platform's service
    (None, None, False, ALL),  # nobody can tell which sender: everyone
])
def test_which_businesses_a_text_concerns(to, service, owned, expected):
    assert concerned(ALL, to=to, service=service, owned=owned) == expected


def test_senders_compare_as_the_providers_write_them():
    assert inbound_sms.sender_key("+1 (201) 555-0777") == inbound_sms.sender_key("12015550777") == "12015550777"
    assert inbound_sms.sender_key("BellaVista") == inbound_sms.sender_key("bellavista")
    assert inbound_sms.sender_key("  ") is None


# --- what it does -------------------------------------------------------------------------------------------------

PHONE = "+12125550101"
PLATFORM = "+12015550100"
OWN = "+12015550777"


def _texted(session: Session, profile: Profile, phone: str, now: datetime, *, minutes_ago: float) -> uuid.UUID:
    """A campaign of ``profile`` whose text to ``phone`` was accepted ``minutes_ago``; its recipient."""
    h.add_leads(session, profile, [{"phone": phone, "name": "Ann Lee"}], now=now)
    cid = h.campaign(session, profile, method="sms", now=now)
    recipient = session.scalars(select(CampaignRecipient).where(CampaignRecipient.campaign_id == cid)).one()
    session.add(OutreachAttempt(
        id=uuid.uuid4(), profile_id=profile.id, campaign_id=cid, recipient_id=recipient.id, step=0, attempt_no=1,
        channel="sms", provider="vonage", idempotency_key=f"reengage/{recipient.id}/0", outcome="accepted",
        provider_message_id=uuid.uuid4().hex[:16], detail={}, started_at=now - timedelta(minutes=minutes_ago),
        completed_at=now - timedelta(minutes=minutes_ago)))
    session.flush()
    return recipient.id


@pytest.fixture
def shops(session, now):
    """Two businesses on the platform's sender and one with its own number, each having texted PHONE."""
    out = {}
    for i, (name, sender) in enumerate((("Bella Vista", None), ("Studio Nine", None), ("Own Number Spa", OWN))):
        # a business row (no login: the policy needs none, and hashing a password is slow)
        profile = Profile(id=uuid.uuid4(), business_name=name, email=f"owner{i}@{uuid.uuid4().hex[:8]}.example",
                          phone=f"+1201555018{i}", sms_from=sender, consent_policy="none")
        session.add(profile)
        session.flush()
        out[name] = (profile, _texted(session, profile, PHONE, now, minutes_ago=30 - i))
    session.commit()
    return out


def _text(body: str, *, to: str | None = PLATFORM, sender: str = PHONE) -> InboundText:
    return InboundText(provider="vonage", message_id=uuid.uuid4().hex, sender=sender.removeprefix("+"), to=to,
                       text=body)


def _stopped(session: Session) -> dict[str, str]:
    rows = session.execute(select(Profile.business_name, OptOut.source).join(OptOut, OptOut.profile_id == Profile.id)
                           .where(OptOut.contact == PHONE, OptOut.channel == "sms")).all()
    session.commit()
    return dict(rows)


def test_stop_to_the_platforms_number_reaches_the_businesses_that_share_it(session, shops, now):
    done = inbound_sms.handle(session, _text("Please stop texting me"), now=now)
    assert done.kind == OPT_OUT and not done.replayed
    assert done.reply == ("You're unsubscribed from Studio Nine and Bella Vista and will get no more texts. "
                          "Reply START to resubscribe.")
    assert _stopped(session) == {"Bella Vista": "sms_stop", "Studio Nine": "sms_stop"}
    for name in ("Bella Vista", "Studio Nine"):
        assert session.get(CampaignRecipient, shops[name][1]).status == "opted_out"
    assert session.get(CampaignRecipient, shops["Own Number Spa"][1]).status != "opted_out"


def test_stop_to_a_businesss_own_number_reaches_that_business_alone(session, shops, now):
    done = inbound_sms.handle(session, _text("STOP", to=OWN.removeprefix("+")), now=now)
    assert "Own Number Spa" in done.reply and "Bella Vista" not in done.reply
    assert _stopped(session) == {"Own Number Spa": "sms_stop"}
    assert done.owner == shops["Own Number Spa"][0].id
    # START to the platform's number does not undo it; START to the business's number does
    inbound_sms.handle(session, _text("START"), now=now)
    assert _stopped(session) == {"Own Number Spa": "sms_stop"}
    back = inbound_sms.handle(session, _text("start", to=OWN), now=now)
    assert back.kind == OPT_IN and "Own Number Spa" in back.reply and _stopped(session) == {}


def test_stop_to_an_own_number_that_has_not_texted_the_customer_yet(session, shops, now):
    stranger = "+13125550199"
    done = inbound_sms.handle(session, _text("unsubscribe", to=OWN, sender=stranger), now=now)
    assert done.kind == OPT_OUT and done.owner == shops["Own Number Spa"][0].id
    owner = shops["Own Number Spa"][0].id
    assert session.scalars(select(OptOut.source).where(OptOut.contact == stranger, OptOut.profile_id == owner)
                           ).all() == ["sms_stop"]
    assert session.scalar(select(OptOut.id).where(OptOut.contact == stranger, OptOut.profile_id != owner)) is None


def test_start_undoes_only_what_stop_did(session, shops, now):
    inbound_sms.handle(session, _text("stop"), now=now)
    bella = shops["Bella Vista"][0]
    session.execute(OptOut.__table__.delete().where(OptOut.profile_id == bella.id))
    record_opt_out(session, profile_id=bella.id, contact=PHONE, channel="sms", source="manual")
    done = inbound_sms.handle(session, _text("YES"), now=now)  # yes, from a number that opted out
    assert done.kind == OPT_IN and "Studio Nine" in done.reply
    assert _stopped(session) == {"Bella Vista": "manual"}


def test_a_replay_changes_nothing(session, shops, now):
    text = _text("stop")
    inbound_sms.handle(session, text, now=now)
    inbound_sms.handle(session, _text("START"), now=now)
    again = inbound_sms.handle(session, text, now=now)
    assert again.replayed and again.kind == OPT_OUT
    assert _stopped(session) == {}


def test_help_names_the_business_that_texted_last_from_that_number(session, shops, now):
    done = inbound_sms.handle(session, _text("HELP"), now=now)
    assert done.reply == "Studio Nine. Call us at +12015550181. Reply STOP to opt out."
    own = inbound_sms.handle(session, _text("info", to=OWN), now=now)
    assert own.reply == "Own Number Spa. Call us at +12015550182. Reply STOP to opt out."
    nobody = inbound_sms.handle(session, _text("help", sender="+13125550199"), now=now)
    assert nobody.reply == "Reply STOP to opt out of these texts."
    assert _stopped(session) == {}


def test_replies_go_to_the_latest_text_from_the_number_written_to(session, shops, now):
    done = inbound_sms.handle(session, _text("Sounds great, book me in for Saturday 👍"), now=now)
    assert done.kind == REPLY and done.reply is None and _stopped(session) == {}
    studio = session.get(CampaignRecipient, shops["Studio Nine"][1], populate_existing=True)
    assert studio.responded_at is not None and studio.converted
    assert studio.response_data["reply"] == "Sounds great, book me in for Saturday 👍"
    for name in ("Bella Vista", "Own Number Spa"):
        assert session.get(CampaignRecipient, shops[name][1], populate_existing=True).responded_at is None
    own = inbound_sms.handle(session, _text("Who is this?", to=OWN), now=now)
    assert own.kind == REPLY
    spa = session.get(CampaignRecipient, shops["Own Number Spa"][1], populate_existing=True)
    assert spa.responded_at is not None and not spa.converted
    assert session.scalars(select(OutreachEvent.type).where(OutreachEvent.provider == "vonage")
                           .order_by(OutreachEvent.received_at)).all().count("replied") == 2


def test_a_sender_that_is_not_a_phone_number_is_ignored(session, shops, now):
    done = inbound_sms.handle(session, _text("STOP", sender="VONAGE"), now=now)
    assert done.kind == inbound_sms.IGNORED and done.reply is None and _stopped(session) == {}


def _opt_outs(session: Session) -> set[tuple[str, str, str]]:
    """``{(business, channel, source)}`` of PHONE."""
    rows = session.execute(select(Profile.business_name, OptOut.channel, OptOut.source)
                           .join(OptOut, OptOut.profile_id == Profile.id).where(OptOut.contact == PHONE)).all()
    session.commit()
    return {(r[0], r[1], r[2]) for r in rows}


def test_a_text_asking_to_stop_calls_stops_calls_and_texts(session, shops, now):
    done = inbound_sms.handle(session, _text("Stop calling me"), now=now)
    assert done.kind == OPT_OUT and done.channels == ("sms", "call")
    assert done.reply == ("You're unsubscribed from Studio Nine and Bella Vista and will get no more texts or calls. "
                          "Reply START to get texts again.")
    assert _opt_outs(session) == {(name, channel, "sms_stop") for name in ("Bella Vista", "Studio Nine")
                                  for channel in ("sms", "call")}
    (reason,) = set(session.scalars(select(OptOut.reason).where(OptOut.contact == PHONE)))
    assert reason == "replied “Stop calling me”"
    # START brings the texts back, not the calls: a text is no consent to be called
    back = inbound_sms.handle(session, _text("START"), now=now)
    assert back.kind == OPT_IN
    assert _opt_outs(session) == {(name, "call", "sms_stop") for name in ("Bella Vista", "Studio Nine")}


def test_a_request_to_stop_calls_that_asks_for_texts_stops_calls_only(session, shops, now):
    done = inbound_sms.handle(session, _text("Don't call me, just text"), now=now)
    assert done.kind == OPT_OUT and done.channels == ("call",)
    assert done.why == "“don't call me” asks to stop calls, and “just text” to keep the texts (rule 'don't call me')"
    assert done.reply == ("OK, you will get no more calls from Studio Nine and Bella Vista. Texts go on; reply STOP "
                          "to stop them too.")
    assert _opt_outs(session) == {(name, "call", "sms_stop") for name in ("Bella Vista", "Studio Nine")}
    # the text is a reply on the timeline of the business that texted last, with why it was read so
    (event,) = session.scalars(select(OutreachEvent).where(OutreachEvent.payload["why"].as_string().is_not(None)))
    assert event.type == "replied" and event.payload["channels"] == ["call"]
    assert event.recipient_id == shops["Studio Nine"][1]
    session.commit()
    # STOP afterwards stops the texts as well
    inbound_sms.handle(session, _text("STOP"), now=now + timedelta(minutes=1))
    assert _opt_outs(session) == {(name, channel, "sms_stop") for name in ("Bella Vista", "Studio Nine")
                                  for channel in ("sms", "call")}


def test_a_request_to_stop_texts_leaves_calls_alone(session, shops, now):
    done = inbound_sms.handle(session, _text("Please stop texting me"), now=now)
    assert done.channels == ("sms",)
    assert {channel for _, channel, _ in _opt_outs(session)} == {"sms"}


def test_a_second_stop_is_confirmed_again_and_changes_nothing_else(session, shops, now):
    first = inbound_sms.handle(session, _text("STOP"), now=now)
    before = _opt_outs(session)
    again = inbound_sms.handle(session, _text("stop"), now=now + timedelta(minutes=3))
    assert again.kind == OPT_OUT and not again.replayed and again.reply == first.reply
    assert _opt_outs(session) == before
    stops = session.scalars(select(OutreachEvent.type).where(OutreachEvent.type == "opted_out")).all()
    assert len(stops) == 4  # each text on the timeline of both businesses it concerns


def test_why_a_text_was_read_so_is_kept_with_its_event(session, shops, now):
    inbound_sms.handle(session, _text("Stop by later?"), now=now)
    inbound_sms.handle(session, _text("Quit it!!"), now=now)
    payloads = {e.type: e.payload for e in session.scalars(select(OutreachEvent).where(
        OutreachEvent.provider == "vonage", OutreachEvent.provider_event_id.not_like("%:%")))}
    assert payloads["replied"]["rule"] == "a visit"
    assert payloads["replied"]["why"] == "'stop' is followed by 'by later': a visit, not a request to stop texts"
    assert payloads["opted_out"]["rule"] == "quit it" and payloads["opted_out"]["channels"] == ["sms"]
    assert payloads["opted_out"]["why"] == "“quit it” asks to stop texts (rule 'quit it')"
    assert _opt_outs(session) == {(name, "sms", "sms_stop") for name in ("Bella Vista", "Studio Nine")}
