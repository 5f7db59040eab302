"""What a text a customer sends us means, and what it does — one policy for every SMS provider.

Twilio's and Vonage's inbound webhooks (:mod:`core.webhooks.twilio`, :mod:`core.webhooks.vonage`)
check their signatures and read their own payloads into an :class:`InboundText`; :func:`handle`
does the rest, the same way for both.

**What it says** (:func:`meaning`, pure, tested with tables of real-looking messages):

- a request to stop texting (:data:`REVOCATION`, each rule with its source).  FCC 24-24 (47 CFR
  64.1200(a)(10)) lets a customer revoke consent "by any reasonable method": the words *stop,
  quit, end, revoke, opt out, cancel, unsubscribe* always count, and other words count when a
  reasonable person would read them as a request to stop.  The message is cut into clauses (at
  punctuation, emoji and "but"/"and"/"so" — not at the "and" of "stop texting and calling me"); it is
  a request to stop when one clause, apart from politeness ("please", "can you", "thanks", "now"),
  *is* an opt-out word, or *starts with* a plain request ("stop texting me…", "quit calling me…",
  "don't call or text me…", "take me off…", "lose my number…", "leave me alone…").  So "Stop texting
  me!! 😡" and "Who is this? Please stop" opt out, while "can't stop smiling, see you Saturday" and
  "Stop by later?" are replies: there, "stop" is part of another sentence.  A request stops texts;
  one that names calls, contact in general or the number itself ("stop calling me", "leave me
  alone", "wrong number") stops calls as well (each rule's ``channels``), unless it names calls alone and
  the same text asks to be texted instead ("don't call me, just text", "stop calling, texts are fine"):
  that stops calls only (:data:`FCC_CALLS_ONLY`), as "don't text, just call" stops texts only;
- START, UNSTOP — and YES from a number that has opted out — ask to be texted again (texts only: a
  request that stopped calls is not undone by a text);
- HELP, INFO ask who is texting;
- anything else is a reply; a positive one (YES, "book me in", 👍, … with no "no", "not", "later"
  in it) also converts.

Every reading says why (:attr:`Meaning.why`, kept with the text's events as ``why`` and ``rule``): an
opt-out names the clause and the rule ("“stop calling me” asks to stop calls and texts (rule 'stop
calling')"); a reply that looks like a request names the reading of :data:`NOT_REVOCATION` that
explains it ("'stop' is followed by 'by later': a visit, not a request to stop texts"), else "no
request to stop".  Those readings explain; they never overrule a rule.

**Which businesses it concerns.**  A text is an answer to the number it was sent to (Twilio's
``To``, Vonage's ``to``).  A business with its own sender (``profiles.sms_from``, which its own
provider account needs as well) hears only the texts sent to that sender; the businesses on the
platform's sender share it, so a text to a number that is no business's own concerns all of those
that have texted the customer.  A STOP sent to a business's own number reaches that business even
before it has texted the customer through us.

**What it does.**  A request to stop records an SMS opt-out (source ``sms_stop``) of the number with
every business it concerns — honoured from the next send, since the dispatcher checks opt-outs
again immediately before each text — and a call opt-out (source ``sms_stop`` as well) when it stops
calls too; it is answered with one confirmation naming them (47 CFR 64.1200(a)(11) allows that one
text).  A request to stop calls only records the call opt-outs, and the text is a reply: texts go
on.  A number that has opted out and asks again gets the confirmation again, and nothing else
changes: it asks because it is not sure it worked, and Twilio's own STOP handling answers every
opt-out keyword it receives the same way.  Opting back in removes only the SMS opt-outs STOP created
(opt-outs recorded by staff, and calls stopped by a text, stay).  HELP is answered with the name
and phone of the business that texted the number last.  A reply is a response of the most recent
text sent to the number.

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
# What a request stops.  Texts always: it answers a text.  Calls too when it names calls ("stop calling me",
# "don't call or text me"), contact in general ("stop contacting me", "leave me alone") or the number itself ("lose
# my number", "wrong number"): consent to calls is revoked by the same "any reasonable method", and a caller may
# not read a request about its calls that reached it by text as being about texts only (FCC 24-24 goes further:
# one revocation is to cover all of a caller's robocalls and robotexts, a part whose effective date the FCC
# deferred).  E-mail is another contact, kept by its own opt-outs.
TEXTS = ("sms",)
TEXTS_AND_CALLS = ("sms", "call")
FCC_CALLS = (f"{FCC_REASONABLE}; it names calls, and consent to calls is revoked the same way: calls stop too (and "
             f"texts, as the request came by text)")
FCC_NUMBER = f"{FCC_REASONABLE}; it asks that the number not be used at all, so calls stop as well as texts"
CALLS = ("call",)
# A request about calls that, in the same text, asks to be texted instead ("don't call me, just text", "stop calling,
# text me instead") stops calls only: the customer has said, by a reasonable method, what they revoke and what they
# keep (the counterpart of "don't text, just call", which stops texts only).  Requests about contact in general or
# the number itself never read so, and neither does any text that also asks to stop texts.
FCC_CALLS_ONLY = (f"{FCC_REASONABLE}; it names calls and, in the same text, asks to be texted instead: calls stop, "
                  f"texts go on")


@dataclass(frozen=True)
class Rule:
    """One way of saying "stop texting me": a regular expression over one normalized clause."""

    name: str
    pattern: str
    whole: bool  # the clause is exactly this (politeness aside); otherwise the clause starts with it
    source: str
    channels: tuple[str, ...] = TEXTS  # what the request stops


_TEXT = r"(?:text|txt|message|msg|sms)"  # "don't text me"
_TEXTING = r"(?:texting|txting|texing|messaging|msging|sending|spamming)"  # "stop texting me"
_CALL = r"(?:call|phone|robocall|contact|reach out to)"  # "don't call me": contact covers calls
_CALLING = r"(?:calling|phoning|ringing|robocalling|contacting|reaching out)"  # "stop calling me"
_TEXTS = r"(?:texts?|txts?|text messages|messages|msgs|sms)"  # "no more texts"
_CALLS = r"(?:calls|phone calls|robocalls|robo calls)"  # "no more calls"
_AND = r"(?:or|and|n|nor)"
# whom not to call or text, or nothing more ("do not call"): not "don't call it a comeback", "don't text and drive"
_ME = r"(?: me| us| this (?:number|phone)| my (?:number|phone|cell)| here|$)"
_THESE = r"(?:(?:the|these|those|this|your|all|all of|any|my) )*"  # "stop all these texts"

REVOCATION: tuple[Rule, ...] = (
    Rule("keyword", r"(?:st+o+p+|unsubscribe|cancel|end|quit|revoke|opt ?out)(?: st+o+p+)*", True, FCC_WORDS),
    Rule("carrier keyword", r"stop ?all|unsub", True, CARRIER_WORDS),
    Rule("stop this", r"stop (?:it|this|that|them|these|those|all of (?:it|this|these|them))", True, FCC_REASONABLE),
    # "quit" is one of the words FCC 24-24 names; "quit it" is "stop it"
    Rule("quit it", r"quit (?:it|this|that|them|these|those)", True, f"{FCC_REASONABLE}; 'quit' is one of its words"),
    Rule("stop the texts", rf"(?:stop|quit|end|cancel) {_THESE}(?:{_TEXTS}|spam|promos?|promotions|offers|alerts"
                           r"|notifications|reminders)", False, FCC_REASONABLE),
    # texts and calls named together ("stop texting and calling me", "stop the calls") stop both
    Rule("stop calling", rf"(?:stop|quit|cease) (?:{_TEXTING}(?: me)? {_AND} )?{_CALLING}"
                         rf"|(?:stop|quit|end|cancel) {_THESE}(?:{_TEXTS} {_AND} )?{_CALLS}", False, FCC_CALLS,
         TEXTS_AND_CALLS),
    Rule("stop texting", rf"stop (?:{_TEXTING}|bugging|bothering|harass?ing)", False, FCC_REASONABLE),
    Rule("quit texting", rf"quit (?:{_TEXTING}|bugging|bothering|harass?ing)", False,
         f"{FCC_REASONABLE}; 'quit' is one of its words"),
    # "don't call or text me", "do not text or call this number", "never contact me again"
    Rule("don't call me", rf"(?:don'?t|do not|never|dont you) (?:ever )?(?:{_TEXT} {_AND} )?{_CALL}"
                          rf"(?: {_AND} {_TEXT})?{_ME}", False, FCC_CALLS, TEXTS_AND_CALLS),
    Rule("don't text me", rf"(?:don'?t|do not|never|dont you) (?:ever )?(?:(?:{_TEXT}|spam){_ME}|bother(?: me| us)?)",
         False, FCC_REASONABLE),
    Rule("take me off", r"(?:remove|delete|take|drop|scratch) (?:me|my number|this number) (?:off|from|out)",
         False, FCC_REASONABLE),
    Rule("remove me", r"(?:remove|delete) me", True, FCC_REASONABLE),
    # the number itself dropped: it is not to be used at all
    Rule("lose my number", r"(?:lose|delete|erase|forget|remove|trash|toss|burn) (?:my|this) (?:phone )?"
                           r"(?:number|contact(?: info)?|info|details)", False, FCC_NUMBER, TEXTS_AND_CALLS),
    Rule("opt me out", r"opt me out|sign me (?:out|off)|unsub(?:scribe)? me", False, FCC_REASONABLE),
    Rule("already unsubscribed", r"i(?: already| have already|'?ve already| already have| have|'?ve)? "
                                 r"(?:unsubscribed|opted out|said stop|texted stop|replied stop|sent stop"
                                 r"|told you (?:to )?stop|asked (?:you )?to (?:stop|be removed))"
                                 r"(?: already| yesterday| before| twice| last (?:week|month|time)"
                                 r"| (?:a|one|two|three|\d+|many|several|\w+) (?:times|days? ago|weeks? ago"
                                 r"|months? ago))?", True,
         f"{FCC_REASONABLE}; a customer who says they already asked has asked"),
    Rule("leave me alone", r"leave me alone", False, FCC_NUMBER, TEXTS_AND_CALLS),
    Rule("no more calls", rf"no more (?:{_TEXTS} {_AND} )?{_CALLS}", False, FCC_CALLS, TEXTS_AND_CALLS),
    Rule("no more texts", r"no more (?:texts?|txts?|text messages|messages|msgs|sms|spam|of (?:these|this|your)"
                          r"|promos?|promotions|offers|marketing)", False, FCC_REASONABLE),
    Rule("I want to opt out", r"(?:i want|i wish|i need|i would like|i'?d like|i would love|i'?d love) to "
                              r"(?:unsubscribe|opt out|stop (?:receiving|getting)|be removed)", False, FCC_REASONABLE),
    Rule("I don't want calls", rf"i (?:don'?t|do not) want (?:to (?:receive|get) )?(?:any ?more |more |your |these "
                               rf"|those |any |this |the )*(?:{_TEXTS} {_AND} )?{_CALLS}", False, FCC_CALLS,
         TEXTS_AND_CALLS),
    Rule("I don't want texts", r"i (?:don'?t|do not) want (?:to (?:receive|get) )?(?:any ?more |more |your |these "
                               r"|those |any |this |the )*(?:texts?|txts?|messages|msgs|sms|spam)", False,
         FCC_REASONABLE),
    # the one answering never agreed to anything: consent to call or text a number is its current holder's (a
    # previous holder's does not pass on — the premise of the FCC's Reassigned Numbers Database, FCC 18-177), so
    # a "wrong number" tells us there is no consent for calls or texts, whatever our records say
    Rule("wrong number", r"(?:(?:you|u) (?:have|got|'?ve got|have got|texted|called|reached|'?ve reached|must have"
                         r"|have texted|have called) (?:the |a )?|(?:this|it) is (?:the |a )?)?wrong (?:number|person"
                         r"|phone)", False,
         f"{FCC_REASONABLE}; the number's holder never agreed to these texts or calls (a previous holder's consent "
         f"is not theirs: FCC 18-177, Reassigned Numbers Database)", TEXTS_AND_CALLS),
    Rule("Spanish", r"parar|pare|alto|basta|cancelar|no mas(?: mensajes| textos)?|dar(?:me)? de baja", True,
         f"{FCC_REASONABLE}, in Spanish"),
)


@dataclass(frozen=True)
class Reading:
    """Why a clause that looks like a request to stop is not one: a regular expression searched in one normalized
    clause, and the reason in words (``{word}``, ``{rest}``: what the expression's groups found)."""

    name: str
    pattern: str
    why: str


# Read only when no clause of the text asks to stop (:data:`REVOCATION` decides): they explain a reply, they never
# overrule a request.  First match wins, clause by clause.
NOT_REVOCATION: tuple[Reading, ...] = (
    Reading("negated", r"\b(?P<word>(?:don'?t|do not|never|can'?t|cannot|can not|couldn'?t|won'?t|wont|wouldn'?t"
                       r"|didn'?t|doesn'?t|not|no need to) (?:ever )?(?:stop|quit|end|cancel))\b",
            "'{word}' is negated: it does not ask us to stop"),
    Reading("a visit", r"\b(?P<word>stop(?:ped|ping|s)?|swing|pop) (?P<rest>(?:by|in|over|past|round|around"
                       r"|through)\b(?: [\w']+){0,2})",
            "'{word}' is followed by '{rest}': a visit, not a request to stop texts"),
    Reading("a place", r"\b(?P<word>(?:bus|train|subway|metro|truck|pit|rest|next|last|first|one|a|the|your|my|our"
                       r"|every) stop)\b",
            "'{word}' names a place, not a request to stop"),
    Reading("a time", r"\b(?P<word>end of (?:the |this |next )?[\w']+)",
            "'{word}' is a time, not a request to stop"),
    Reading("something else", r"\b(?P<word>cancel|end|quit|remove|delete|drop|take off) (?P<rest>(?:my|the|our|this"
                              r"|that|an?|his|her|their|tomorrow'?s|today'?s|saturday'?s|it for|for)\b(?: [\w']+)?)",
            "'{word} {rest}' is about something else (an appointment, an order), not the texts"),
    Reading("another word", r"\b(?P<word>stopped|stopping|stoppable|unstoppable|nonstop|stops|quitting|quits|quite"
                            r"|ended|ending|endless|cancelled|canceled|cancelling|canceling|cancellation"
                            r"|unsubscribed|removed)\b",
            "'{word}' only resembles an opt-out word: it asks nothing of us"),
    Reading("asks to be contacted", r"\b(?P<word>(?:text|txt|call|message|msg|email|ring|phone|contact) (?:me|us))\b",
            "'{word}' asks to be contacted, the opposite of a request to stop"),
    Reading("mentions stop", r"\b(?P<word>stop|stopall|unsubscribe|unsub|cancel|end|quit|revoke|optout|opt out"
                             r"|remove|delete)\b",
            "mentions '{word}' but does not ask to stop texting"),
)
NO_REQUEST = "no request to stop"

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
_READINGS = tuple((reading, re.compile(reading.pattern)) for reading in NOT_REVOCATION)
# words that join two thoughts: each side is a clause of its own ...
_JOIN_WORDS = frozenset({"but", "and", "so", "then", "because", "cause", "cuz", "though"})
# ... except an "and" inside one request to stop two media: "stop texting and calling me", "no more texts and calls"
_MEDIUM = re.compile(r"call|calls|calling|text|texts|texting|txt|txts|txting|message|messages|messaging|msg|msgs"
                     r"|phone|phoning|email|emails|emailing|sms|contact|contacting")
_MEDIUM_GOES_ON = re.compile(r"calls|calling|texts|texting|txts|txting|messages|messaging|msgs|phoning|emails"
                             r"|emailing|contacting|robocalls|robocalling|spamming")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "-": " ", "_": " ", "–": " ", "—": " ",
                              "&": " and ", "/": " or ", "#": " number "})

# the rules that name calls and nothing else (not contact in general, not the number)
CALL_RULES = frozenset({"stop calling", "don't call me", "no more calls", "I don't want calls"})
_T = r"(?:texts?|txts?|messages?|msgs?|sms)"
# "just text", "text me instead", "texts only", "texts are fine", "I prefer texts", "I'd rather you text": texts welcome
_KEEP_TEXTING = re.compile(
    rf"\b(?:(?:just|only) {_T}(?: me| us)?|{_T} (?:me |us )?(?:instead|only)"
    rf"|(?:{_T}|texting) (?:is|are|'?s|'?re) (?:fine|ok|okay|good|better|great|best)"
    rf"|i prefer (?:a |to be )?(?:{_T}|texting|texted)|i(?:'?d| would) rather (?:you )?(?:text|txt|message)(?: me)?)\b")
_NEGATED = re.compile(r"\b(?:don'?t|do not|never|not|no|nor|won'?t|can'?t|cannot)\s*$")
_TEXT_ME = re.compile(r"(?:text|txt|message|msg|sms) (?:me|us)(?: instead)?")  # a clause of its own: "Text me."
# words that put texts (or contact in general) into the request itself: "don't call or text me"
_NAMES_TEXTS = re.compile(r"\b(?:text|texts|texting|txt|txts|txting|message|messages|messaging|msg|msgs|sms|spam"
                          r"|spamming|sending|contact|contacting|reach)\b")


def _bare(clause: str) -> str:
    """A clause without the politeness around it ("please", "thanks", …)."""
    core = _TRAIL_RE.sub("", clause)
    while (lead := _LEAD_RE.match(core)) is not None:
        core = core[lead.end():]
    return core


def _keeps_texting(text: str, found: list[tuple[Rule, str]]) -> str | None:
    """The words by which a text whose requests all name calls alone asks to be texted instead ("just text"),
    or ``None`` (see :data:`FCC_CALLS_ONLY`)."""
    if not found or any(rule.name not in CALL_RULES for rule, _ in found):
        return None
    requests = {clause for _, clause in found}
    keep = None
    for clause in clauses(text):
        hit = _KEEP_TEXTING.search(clause)
        if hit is not None and _NEGATED.search(clause[:hit.start()]):
            hit = None  # "don't just text me either"
        if hit is not None:
            keep, rest = keep or hit.group(0), clause[:hit.start()] + clause[hit.end():]
        elif _TEXT_ME.fullmatch(_bare(clause)):
            keep, rest = keep or _bare(clause), ""
        else:
            rest = clause
        if clause in requests and _NAMES_TEXTS.search(rest):
            return None  # the request itself names texts or contact in general
    return keep


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
    """What an inbound text asks for, and why it was read so."""

    kind: str  # OPT_OUT | OPT_IN | HELP | REPLY
    # the entry that decided: for an opt-out the REVOCATION rule; for a reply that looks like a request to stop, the
    # NOT_REVOCATION reading that explains it (None: nothing in it looked like one)
    rule: str | None = None
    why: str = ""  # in words, for the shop owner and the reviewer: kept with the text's event
    channels: tuple[str, ...] = ()  # what an opt-out stops: ("sms",), ("sms", "call") or ("call",)


def keyword(text: str) -> str:
    """The whole message as a keyword: trimmed, upper-cased, punctuation dropped."""
    return re.sub(r"[\s.!?,;:'\"]+", " ", text).strip().upper()


def _split(words: list[str]) -> list[list[str]]:
    """Words cut into clauses at the words that join two thoughts (see :data:`_JOIN_WORDS`)."""
    out: list[list[str]] = []
    current: list[str] = []
    for i, word in enumerate(words):
        after = words[i + 1] if i + 1 < len(words) else ""
        one_request = word == "and" and current and after and (
            _MEDIUM_GOES_ON.fullmatch(after) or (_MEDIUM.fullmatch(current[-1]) and _MEDIUM.fullmatch(after)))
        if word in _JOIN_WORDS and not one_request:
            if current:
                out.append(current)
            current = []
        else:
            current.append(word)
    if current:
        out.append(current)
    return out


def clauses(text: str) -> list[str]:
    """The clauses of a message, normalized: case-folded, accents and emoji gone, one space between words."""
    folded = unicodedata.normalize("NFKD", text.casefold().translate(_APOSTROPHES))
    plain = "".join(ch for ch in folded if not unicodedata.combining(ch))
    # anything but letters, digits, apostrophes and spaces ends a clause (punctuation, emoji, symbols)
    marked = re.sub(r"[^a-z0-9' \t]+", "|", plain)
    out = []
    for chunk in marked.split("|"):
        for clause in _split(chunk.split()):
            words = " ".join(" ".join(clause).strip(" '").split())
            if words:
                out.append(words)
    return out


def revocations(text: str) -> list[tuple[Rule, str]]:
    """Every rule by which ``text`` asks to stop, each with the clause it read, in order (clause by clause, then
    :data:`REVOCATION`'s order); empty when it does not ask to stop."""
    found: list[tuple[Rule, str]] = []
    for clause in clauses(text):
        core = _TRAIL_RE.sub("", clause)
        # the clause as it is, then without each word of politeness in front in turn ("no more texts" is a
        # request of its own before "no" is taken for politeness)
        while core:
            matched = [rule for rule, regex in _COMPILED if regex.fullmatch(core)]
            if matched:
                found += [(rule, clause) for rule in matched if rule not in {r for r, _ in found}]
                break
            lead = _LEAD_RE.match(core)
            if lead is None:
                break
            core = core[lead.end():]
    return found


def revocation(text: str) -> Rule | None:
    """The first rule by which ``text`` asks to stop, or ``None`` when it does not."""
    found = revocations(text)
    return found[0][0] if found else None


def not_a_request(text: str) -> tuple[Reading | None, str]:
    """Why ``text`` — which asks nobody to stop — is not a request to stop: the first reading of
    :data:`NOT_REVOCATION` that fits one of its clauses, with its reason in words; ``(None, "no request to
    stop")`` when nothing in it looks like one."""
    for clause in clauses(text):
        for reading, regex in _READINGS:
            found = regex.search(clause)
            if found is not None:
                groups = {k: v for k, v in found.groupdict().items() if v is not None}
                why = reading.why.format(word=groups.get("word", ""), rest=groups.get("rest", ""))
                return reading, why + (f": “{clause}”" if reading.name == "mentions stop" else "")
    return None, NO_REQUEST


def _what(channels: tuple[str, ...]) -> str:
    if "call" in channels:
        return "calls and texts" if "sms" in channels else "calls"
    return "texts"


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
    """What ``text`` asks for, and why.  ``opted_out``: the number has opted out by STOP (then YES asks back in);
    ``hint``: the provider's own reading of the keyword (Twilio Advanced Opt-Out's ``OptOutType``)."""
    hint = (hint or "").strip().upper()
    word = keyword(text)
    if hint == "STOP":
        return Meaning(OPT_OUT, "the provider's opt-out keyword",
                       "the provider (Twilio Advanced Opt-Out) read it as an opt-out keyword", TEXTS)
    found = revocations(text)
    if found:
        rule, clause = found[0]
        keep = _keeps_texting(text, found)
        if keep is not None:
            return Meaning(OPT_OUT, rule.name, f"“{clause}” asks to stop calls, and “{keep}” to keep the texts "
                                               f"(rule '{rule.name}')", CALLS)
        channels = tuple(c for c in TEXTS_AND_CALLS if any(c in r.channels for r, _ in found))
        return Meaning(OPT_OUT, rule.name, f"“{clause}” asks to stop {_what(channels)} (rule '{rule.name}')",
                       channels)
    if hint == "START" or word in OPT_IN_WORDS or (opted_out and word in YES_WORDS):
        return Meaning(OPT_IN, why=f"“{word or hint}” asks to be texted again"
                       + (" (the number had opted out)" if word in YES_WORDS else ""))
    if hint == "HELP" or word in HELP_WORDS:
        return Meaning(HELP, why=f"“{word or hint}” asks who is texting")
    reading, why = not_a_request(text)
    return Meaning(REPLY, reading.name if reading else None, why)


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
    why: str = ""  # why the text was read so (:attr:`Meaning.why`)
    channels: tuple[str, ...] = ()  # what an opt-out stopped: ("sms",), ("sms", "call") or ("call",)


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


def stop_reply(names: list[str], channels: tuple[str, ...] = TEXTS) -> str:
    """The one confirmation of an opt-out (no marketing in it, as 47 CFR 64.1200(a)(11) requires).  When it
    stopped calls too it says so, and that START brings back the texts only; when it stopped calls alone, that
    texts go on and how to stop them."""
    who = f" from {_join(names)}" if names else ""
    if "sms" not in channels:
        return f"OK, you will get no more calls{who}. Texts go on; reply STOP to stop them too."
    if "call" in channels:
        return f"You're unsubscribed{who} and will get no more texts or calls. Reply START to get texts again."
    return f"You're unsubscribed{who} and will get no more texts. Reply START to resubscribe."


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
    # why it was read so goes with every event of the text: the customer's page and the event feed can say it
    payload: dict[str, Any] = {"text": text.text[:1600], "from": phone, "to": text.to, "why": said.why,
                               "rule": said.rule}
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
        return Handled(kind, reply, not fresh, phone, tuple(profiles), owner, applied, said.why, said.channels)

    if said.kind == OPT_OUT and "sms" not in said.channels:
        # calls stopped, texts welcome: the text is a reply (the customer goes on getting texts), and each business
        # it concerns records a call opt-out, honoured at the next call
        reason = f"replied “{_excerpt(text.text)}”"
        fresh = first("replied", {"reason": reason, "channels": list(said.channels)})
        if fresh:
            for t in reached:
                record_opt_out(session, profile_id=t.profile_id, contact=phone, channel="call", source="sms_stop",
                               reason=reason, now=now)
        return result(OPT_OUT, stop_reply(_names(session, profiles), said.channels), fresh)

    if said.kind == OPT_OUT:
        reason = f"replied “{_excerpt(text.text) or 'STOP'}”"
        extra = {"reason": reason, "channels": list(said.channels)}
        fresh = first("opted_out", extra)
        if fresh:
            each("opted_out", with_text[1:], extra)
            for t in reached:
                if t.recipient_id is None:  # no text of its own to hang the opt-out on: recorded directly
                    record_opt_out(session, profile_id=t.profile_id, contact=phone, channel="sms",
                                   source="sms_stop", reason=reason, now=now)
                if "call" in said.channels:  # the event stops texts; calls are recorded here, for every business
                    record_opt_out(session, profile_id=t.profile_id, contact=phone, channel="call",
                                   source="sms_stop", reason=reason, now=now)
        # every request is confirmed, a repeated STOP too (as the carriers do): one text, no marketing in it
        return result(OPT_OUT, stop_reply(_names(session, profiles), said.channels), fresh)

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
