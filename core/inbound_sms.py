"""What a text a customer sends us means, and what it does — one policy for every SMS provider.

Twilio's and Vonage's inbound webhooks (:mod:`core.webhooks.twilio`, :mod:`core.webhooks.vonage`)
check their signatures and read their own payloads into an :class:`InboundText`; :func:`handle`
does the rest, the same way for both.

**What it says** (:func:`meaning`, pure, tested with tables of real-looking messages):

- a request to stop texting (:data:`REVOCATION`, each rule with its source).  FCC 24-24 (47 CFR
  64.1200(a)(10)) lets a customer revoke consent "by any reasonable method": the words *stop,
  quit, end, revoke, opt out, cancel, unsubscribe* always count, and other words count when a
  reasonable person would read them as a request to stop.  The message is cut into clauses (at
  punctuation, emoji and "but"/"and"/"so"); it is a request to stop when one clause, apart from
  politeness ("please", "can you", "thanks", "now"), *is* an opt-out word, or *starts with* a plain
  request ("stop texting me…", "don't text me…", "take me off…", "leave me alone…").  So
  "Stop texting me!! 😡" and "Who is this? Please stop" opt out, while "can't stop smiling, see you
  Saturday" and "Don't stop sending me deals" are replies: there, "stop" is part of another
  sentence;
- START, UNSTOP — and YES from a number that has opted out — ask to be texted again;
- HELP, INFO ask who is texting;
- anything else is a reply; a positive one (YES, "book me in", 👍, … with no "no", "not", "later"
  in it) also converts.

**Which businesses it concerns.**  A text is an answer to the number it was sent to (Twilio's
``To``, Vonage's ``to``).  A business with its own sender (``profiles.sms_from``, which its own
provider account needs as well) hears only the texts sent to that sender; the businesses on the
platform's sender share it, so a text to a number that is no business's own concerns all of those
that have texted the customer.  A STOP sent to a business's own number reaches that business even
before it has texted the customer through us.

**What it does.**  A request to stop records an SMS opt-out (source ``sms_stop``) of the number with
every business it concerns — honoured from the next send, since the dispatcher checks opt-outs
again immediately before each text — and is answered with one confirmation naming them (47 CFR
64.1200(a)(11) allows that one text).  Opting back in removes only the opt-outs STOP created
(opt-outs recorded by staff stay).  HELP is answered with the name and phone of the business that
texted the number last.  A reply is a response of the most recent text sent to the number.

The provider's id of the inbound text is the id of the first event it records, so a replayed
webhook changes nothing — not even an opt-in — and is reported as a replay.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import desc, func, select
from sqlalchemy.orm import Session

from core.contacts import ContactError, normalize_phone
from core.db import utcnow
from core.models import CampaignRecipient, OptOut, OutreachAttempt, Profile
from core.optouts import opt_back_in, record_opt_out
from core.webhooks import Incoming, ingest

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
HELP = "help"
REPLY = "reply"
IGNORED = "ignored"

# --- what a text says (pure) -------------------------------------------------------------------------------

FCC_WORDS = ("FCC 24-24, 47 CFR 64.1200(a)(10): a reply of 'stop', 'quit', 'end', 'revoke', 'opt out', 'cancel' "
             "or 'unsubscribe' revokes consent")
FCC_REASONABLE = ("FCC 24-24, 47 CFR 64.1200(a)(10): other words revoke consent when a reasonable person would "
                  "understand them as a request to stop")
CARRIER_WORDS = ("CTIA Messaging Principles and Best Practices (2023), consumer opt-out: STOP, STOPALL, UNSUBSCRIBE, "
                 "CANCEL, END and QUIT are the carriers' opt-out keywords")


@dataclass(frozen=True)
class Rule:
    """One way of saying "stop texting me": a regular expression over one normalized clause."""

    name: str
    pattern: str
    whole: bool  # the clause is exactly this (politeness aside); otherwise the clause starts with it
    source: str


REVOCATION: tuple[Rule, ...] = (
    Rule("keyword", r"st+o+p+|unsubscribe|cancel|end|quit|revoke|opt ?out", True, FCC_WORDS),
    Rule("carrier keyword", r"stop ?all|unsub", True, CARRIER_WORDS),
    Rule("stop this", r"stop (?:it|this|that|them|these|those|all of (?:it|this|these|them))", True, FCC_REASONABLE),
    Rule("stop texting", r"stop (?:texting|txting|texing|messaging|msging|sending|contacting|spamming|bugging"
                         r"|bothering|harass?ing)", False, FCC_REASONABLE),
    Rule("don't text me", r"(?:don'?t|do not|never|dont you) (?:ever )?(?:text|txt|message|msg|sms|contact|spam"
                          r"|bother)(?: me| us| this number)?", False, FCC_REASONABLE),
    Rule("take me off", r"(?:remove|delete|take|drop|scratch) (?:me|my number|this number) (?:off|from|out)",
         False, FCC_REASONABLE),
    Rule("remove me", r"(?:remove|delete) (?:me|my number|this number)", True, FCC_REASONABLE),
    Rule("opt me out", r"opt me out|sign me (?:out|off)|unsub(?:scribe)? me", False, FCC_REASONABLE),
    Rule("leave me alone", r"leave me alone", False, FCC_REASONABLE),
    Rule("no more texts", r"no more (?:texts?|txts?|text messages|messages|msgs|sms|spam|of (?:these|this|your)"
                          r"|promos?|promotions|offers|marketing)", False, FCC_REASONABLE),
    Rule("I want to opt out", r"(?:i want|i wish|i need|i would like|i'?d like|i would love|i'?d love) to "
                              r"(?:unsubscribe|opt out|stop (?:receiving|getting)|be removed)", False, FCC_REASONABLE),
    Rule("I don't want texts", r"i (?:don'?t|do not) want (?:to (?:receive|get) )?(?:any ?more |more |your |these "
                               r"|those |any |this |the )*(?:texts?|txts?|messages|msgs|sms|spam)", False,
         FCC_REASONABLE),
    Rule("wrong number", r"wrong (?:number|person)", False,
         f"{FCC_REASONABLE}; the number's holder never agreed to these texts"),
    Rule("Spanish", r"parar|pare|alto|basta|cancelar|no mas(?: mensajes| textos)?|dar(?:me)? de baja", True,
         f"{FCC_REASONABLE}, in Spanish"),
)

# politeness around a request, dropped before the rules are matched
_LEAD = (r"(?:please|pls|plz|kindly|just|ok|okay|hey|hi|hello|sorry|yes|yeah|no|nope|thanks|thank you|seriously"
         r"|honestly|again|i said|i told you to|i asked you to|can you|could you|would you|will you|can u|could u"
         r"|you can|u can|you should|i want you to|i need you to|i'?d like you to|i would like you to|go ahead and"
         r"|i wish you'?d|i wish you would|you need to|u need to|you have to|guys|folks)")
_TRAIL = (r"(?:please|pls|plz|now|thanks|thank you|thank u|thx|ty|asap|immediately|already|right now|for good"
          r"|at all|ok|okay|seriously|forever|permanently|then|lol|for real|again|anymore|any more|guys)")
_LEAD_RE = re.compile(rf"^{_LEAD}\s+")
_TRAIL_RE = re.compile(rf"(?:\s+{_TRAIL})+$")
_COMPILED = tuple((rule, re.compile(rf"(?:{rule.pattern})" + ("" if rule.whole else r"(?:\s.*)?")))
                  for rule in REVOCATION)
# words that join two thoughts: each side is a clause of its own
_JOINERS = re.compile(r"\s+(?:but|and|so|then|because|cause|cuz|though)\s+")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "-": " ", "_": " ", "–": " ", "—": " "})

OPT_IN_WORDS = ("START", "UNSTOP")  # CTIA Messaging Principles; YES too when the number has opted out
YES_WORDS = ("YES", "Y")
HELP_WORDS = ("HELP", "INFO")  # CTIA Messaging Principles: answered with who is texting and how to stop
POSITIVE_WORDS = frozenset({"yes", "y", "yeah", "yep", "yup", "ya", "yea", "sure", "ok", "okay", "k", "book",
                            "absolutely", "definitely", "certainly", "please", "perfect", "great", "deal"})
POSITIVE_PHRASES = ("book me", "sign me up", "count me in", "i'm in", "im in", "see you", "i'd love", "id love",
                    "let's do it", "lets do it", "sounds good", "sounds great", "i would love", "works for me")
POSITIVE_EMOJI = ("👍", "👌", "🙌", "✅", "😍")
NEGATIVE_WORDS = frozenset({"no", "not", "don't", "dont", "never", "later", "busy", "maybe", "cancel", "can't",
                            "cant", "won't", "wont", "nope", "stop", "unsubscribe"})


@dataclass(frozen=True)
class Meaning:
    """What an inbound text asks for."""

    kind: str  # OPT_OUT | OPT_IN | HELP | REPLY
    rule: str | None = None  # the revocation rule that recognised an opt-out


def keyword(text: str) -> str:
    """The whole message as a keyword: trimmed, upper-cased, punctuation dropped."""
    return re.sub(r"[\s.!?,;:'\"]+", " ", text).strip().upper()


def clauses(text: str) -> list[str]:
    """The clauses of a message, normalized: case-folded, accents and emoji gone, one space between words."""
    folded = unicodedata.normalize("NFKD", text.casefold().translate(_APOSTROPHES))
    plain = "".join(ch for ch in folded if not unicodedata.combining(ch))
    # anything but letters, digits, apostrophes and spaces ends a clause (punctuation, emoji, symbols)
    marked = re.sub(r"[^a-z0-9' \t]+", "|", plain)
    out = []
    for chunk in marked.split("|"):
        for clause in _JOINERS.split(" " + " ".join(chunk.split()) + " "):
            words = " ".join(clause.strip(" '").split())
            if words:
                out.append(words)
    return out


def revocation(text: str) -> Rule | None:
    """The rule by which ``text`` asks to stop texting, or ``None`` when it does not."""
    for clause in clauses(text):
        core = _TRAIL_RE.sub("", clause)
        # the clause as it is, then without each word of politeness in front in turn ("no more texts" is a
        # request of its own before "no" is taken for politeness)
        while core:
            for rule, regex in _COMPILED:
                if regex.fullmatch(core):
                    return rule
            lead = _LEAD_RE.match(core)
            if lead is None:
                break
            core = core[lead.end():]
    return None


def is_positive(text: str) -> bool:
    """Whether a reply says yes (a booking, an agreement), not just anything."""
    lowered = text.strip().lower()
    words = re.findall(r"[a-z']+", lowered.replace("’", "'"))
    if any(w in NEGATIVE_WORDS for w in words):
        return False
    if any(e in text for e in POSITIVE_EMOJI):
        return True
    if words and words[0] in POSITIVE_WORDS:
        return True
    return any(phrase in lowered for phrase in POSITIVE_PHRASES)


def meaning(text: str, *, opted_out: bool = False, hint: str | None = None) -> Meaning:
    """What ``text`` asks for.  ``opted_out``: the number has opted out by STOP (then YES asks back in);
    ``hint``: the provider's own reading of the keyword (Twilio Advanced Opt-Out's ``OptOutType``)."""
    hint = (hint or "").strip().upper()
    word = keyword(text)
    if hint == "STOP":
        return Meaning(OPT_OUT, "the provider's opt-out keyword")
    rule = revocation(text)
    if rule is not None:
        return Meaning(OPT_OUT, rule.name)
    if hint == "START" or word in OPT_IN_WORDS or (opted_out and word in YES_WORDS):
        return Meaning(OPT_IN)
    if hint == "HELP" or word in HELP_WORDS:
        return Meaning(HELP)
    return Meaning(REPLY)


# --- which businesses a text concerns (pure) ---------------------------------------------------------------


def sender_key(sender: str | None) -> str | None:
    """A sender compared as the providers write it: a number by its digits ("+1 201-555-0100" and Vonage's
    "12015550100" are one), anything else (an alphanumeric sender, a messaging service) case-folded."""
    if not sender or not sender.strip():
        return None
    text = sender.strip()
    digits = re.sub(r"[\s().+-]", "", text)
    return digits if digits.isdigit() else text.casefold()


@dataclass(frozen=True)
class Texter:
    """A business that has texted the customer (or whose own number the text was sent to)."""

    profile_id: uuid.UUID
    recipient_id: uuid.UUID | None  # the recipient of its most recent text to the number, if any
    own_sender: str | None  # its own sender; None: the platform's


def concerned(texters: list[Texter], *, to: str | None, service: str | None, owned: bool) -> list[Texter]:
    """The businesses a text sent to ``to`` (through messaging service ``service``) concerns, in the order
    given: those whose own sender it is, and — unless it is some business's own number (``owned``) — all on
    the platform's sender.  Without a ``to`` nobody can tell, so every one of them."""
    to_key, service_key = sender_key(to), sender_key(service)
    if to_key is None and service_key is None:
        return list(texters)
    out = []
    for t in texters:
        own = sender_key(t.own_sender)
        if own is not None:
            if own in (to_key, service_key):
                out.append(t)
        elif not owned:
            out.append(t)
    return out


# --- acting on it -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundText:
    """An inbound text as any provider reports it (its signature already checked)."""

    provider: str
    message_id: str  # the provider's id of the inbound text: the id of the first event it records
    sender: str  # the customer's number, as the provider wrote it
    to: str | None  # the number the customer texted
    text: str
    service: str | None = None  # Twilio: the messaging service the number belongs to
    hint: str | None = None  # Twilio Advanced Opt-Out: STOP, START or HELP


@dataclass(frozen=True)
class Handled:
    """What an inbound text did."""

    kind: str  # OPT_OUT | OPT_IN | HELP | REPLY | IGNORED
    reply: str | None  # the one text to send back (None: none)
    replayed: bool  # the provider sent this text before: nothing changed
    phone: str | None  # the customer's number (E.164)
    businesses: tuple[uuid.UUID, ...] = ()  # the businesses it concerned
    owner: uuid.UUID | None = None  # the business whose own number the customer texted (its account answers)
    applied: int = 0  # events applied to a campaign recipient


def _phone(raw: str) -> str | None:
    text = raw.strip()
    if text.isdigit():  # Vonage writes numbers without the "+"
        text = "+" + text
    try:
        return normalize_phone(text)
    except ContactError:
        return None  # a short code, an alphanumeric sender: nobody we text


def sender_variants(sender: str | None) -> list[str]:
    """Spellings of a sender that ``profiles.sms_from`` may hold."""
    if not sender or not sender.strip():
        return []
    key = sender_key(sender) or ""
    found = {sender.strip(), key}
    if key.isdigit():
        found.add("+" + key)
    return sorted(found)


def _texters(session: Session, phone: str, to: str | None, service: str | None) -> tuple[list[Texter], bool]:
    """The businesses that texted ``phone`` (most recent text first), then those whose STOP opt-outs
    cover it or whose own number ``to`` is; and whether ``to`` / ``service`` is some business's own."""
    a, r = OutreachAttempt, CampaignRecipient
    last = func.max(a.started_at).label("last")
    rows = session.execute(
        select(r.profile_id, r.id, last).join(a, a.recipient_id == r.id)
        .where(r.contact_key == phone, r.customer_phone == phone, a.channel == "sms", a.outcome == "accepted")
        .group_by(r.profile_id, r.id).order_by(desc(last), r.id).limit(500)).all()
    latest: dict[uuid.UUID, uuid.UUID | None] = {}
    for profile_id, recipient_id, _ in rows:
        latest.setdefault(profile_id, recipient_id)
    for profile_id in session.scalars(select(OptOut.profile_id).where(
            OptOut.contact == phone, OptOut.channel == "sms", OptOut.source == "sms_stop").order_by(OptOut.created_at)):
        latest.setdefault(profile_id, None)
    own_numbers = sender_variants(to) + sender_variants(service)
    owners = list(session.scalars(select(Profile.id).where(Profile.sms_from.in_(own_numbers)).order_by(
        Profile.created_at))) if own_numbers else []
    for profile_id in owners:
        latest.setdefault(profile_id, None)
    senders = dict(session.execute(select(Profile.id, Profile.sms_from).where(
        Profile.id.in_(list(latest)))).all()) if latest else {}
    texters = [Texter(p, rid, senders.get(p)) for p, rid in latest.items() if p in senders]
    # a business whose own sender was written differently from the provider's spelling is still an owner
    owned = bool(owners) or any(sender_key(t.own_sender) in (sender_key(to), sender_key(service))
                                for t in texters if t.own_sender)
    return texters, owned


def _names(session: Session, profile_ids: list[uuid.UUID]) -> list[str]:
    if not profile_ids:
        return []
    found = dict(session.execute(select(Profile.id, Profile.business_name).where(Profile.id.in_(profile_ids))).all())
    return [found[p] for p in profile_ids if p in found]


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return names[0] if names else ""
    return ", ".join(names[:-1]) + " and " + names[-1]


def _excerpt(text: str) -> str:
    words = " ".join(text.split())
    return words if len(words) <= 80 else words[:79] + "…"


def stop_reply(names: list[str]) -> str:
    """The one confirmation of an opt-out (no marketing in it, as 47 CFR 64.1200(a)(11) requires)."""
    return (f"You're unsubscribed{' from ' + _join(names) if names else ''} and will get no more texts. "
            f"Reply START to resubscribe.")


def handle(session: Session, text: InboundText, *, now: datetime | None = None) -> Handled:
    """Act on one inbound text (signature already checked) in the caller's transaction."""
    now = now or utcnow()
    message_id = text.message_id.strip()
    phone = _phone(text.sender)
    if not message_id or phone is None:
        return Handled(IGNORED, None, False, phone)
    texters, owned = _texters(session, phone, text.to, text.service)
    reached = concerned(texters, to=text.to, service=text.service, owned=owned)
    profiles = [t.profile_id for t in reached]
    with_text = [t for t in reached if t.recipient_id is not None]
    owner = next((t.profile_id for t in reached if t.own_sender
                  and sender_key(t.own_sender) in (sender_key(text.to), sender_key(text.service))), None)
    stopped = set(session.scalars(select(OptOut.profile_id).where(
        OptOut.contact == phone, OptOut.channel == "sms", OptOut.source == "sms_stop",
        OptOut.profile_id.in_(profiles)))) if profiles else set()
    said = meaning(text.text, opted_out=bool(stopped), hint=text.hint)
    common: dict[str, Any] = {"provider": text.provider, "channel": "sms", "occurred_at": now}
    payload: dict[str, Any] = {"text": text.text[:1600], "from": phone, "to": text.to}
    applied = 0

    def first(kind: str, extra: dict[str, Any] | None = None) -> bool:
        """Record the text's own event (id: the provider's message id); False when it is a replay."""
        nonlocal applied
        rid = with_text[0].recipient_id if with_text else None
        item = Incoming(event_id=message_id, type=kind, recipient_id=rid, payload={**payload, **(extra or {})},
                        **common)
        done = ingest(session, [item], now=now)
        applied += done.applied
        return done.replayed == 0

    def each(kind: str, targets: list[Texter], extra: dict[str, Any] | None = None) -> None:
        nonlocal applied
        done = ingest(session, [Incoming(event_id=f"{message_id}:{t.profile_id}", type=kind,
                                         recipient_id=t.recipient_id, payload={**payload, **(extra or {})}, **common)
                                for t in targets], now=now)
        applied += done.applied

    def result(kind: str, reply: str | None, fresh: bool) -> Handled:
        return Handled(kind, reply, not fresh, phone, tuple(profiles), owner, applied)

    if said.kind == OPT_OUT:
        reason = f"replied “{_excerpt(text.text) or 'STOP'}”"
        extra = {"reason": reason, "rule": said.rule}
        fresh = first("opted_out", extra)
        if fresh:
            each("opted_out", with_text[1:], extra)
            for t in reached:
                if t.recipient_id is None:  # no text of its own to hang the opt-out on: recorded directly
                    record_opt_out(session, profile_id=t.profile_id, contact=phone, channel="sms",
                                   source="sms_stop", reason=reason, now=now)
        return result(OPT_OUT, stop_reply(_names(session, profiles)), fresh)

    if said.kind == OPT_IN:
        fresh = first("opted_in")
        back = [p for p in profiles if p in stopped]
        if fresh and back:
            opt_back_in(session, profile_ids=back, contact=phone, channel="sms", source="sms_stop")
            each("opted_in", [t for t in with_text[1:] if t.profile_id in stopped])
        names = _join(_names(session, back or profiles))
        return result(OPT_IN, f"You're subscribed again{' to texts from ' + names if names else ''}. "
                              f"Reply STOP to opt out.", fresh)

    if said.kind == HELP:
        fresh = first("status", {"keyword": keyword(text.text) or "HELP"})
        about = with_text[0].profile_id if with_text else owner
        profile = session.get(Profile, about) if about is not None else None
        if profile is None:
            return result(HELP, "Reply STOP to opt out of these texts.", fresh)
        contact = f" Call us at {profile.phone}." if profile.phone else ""
        return result(HELP, f"{profile.business_name}.{contact} Reply STOP to opt out.", fresh)

    fresh = first("replied")
    if fresh and with_text and is_positive(text.text):
        done = ingest(session, [Incoming(event_id=f"{message_id}:converted", type="converted",
                                         recipient_id=with_text[0].recipient_id,
                                         payload={**payload, "source": "positive SMS reply"}, **common)], now=now)
        applied += done.applied
    return result(REPLY, None, fresh)
