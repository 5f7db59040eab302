"""North American numbers (+1) checked a prefix at a time — with exactly the answers of ``phonenumbers``.

An import reads hundreds of thousands of distinct phone numbers; asking
``phonenumbers`` whether each is valid, and which time zone it rings in, costs
about 0.2 ms a number — most of a big import.  For a number of the North
American Numbering Plan, written ``2015550123``, ``12015550123`` or
``+12015550123`` (any punctuation), both answers depend only on the first few
digits of its ten: the library decides them with regular expressions over the
national number and a table of prefixes, and those expressions only look at
the leading digits and then take any digits (``…[2-9]\\d{6}``).  How many
leading digits matter is *read from the installed metadata* by
:func:`prefix_digits` (it walks each expression's parse tree; today 7), so
the first number with a given prefix is asked of the library and the others
with that prefix reuse its answers.  When the structure cannot be shown (a
future metadata release with another shape), :func:`prefix_digits` says so
and every number goes to the library, as before.  Refusals always do, so
their message is the library's.
"""

from __future__ import annotations

import re
from functools import lru_cache
from re import _constants as sre_constants  # the standard library's regular expression parser
from re import _parser as sre_parser
from typing import Any

from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE
from phonenumbers.tzdata import TIMEZONE_DATA

from core.contacts import _PUNCTUATION, ContactError, normalize_phone, phone_timezones

NATIONAL_LENGTH = 10
# the descriptions phonenumbers matches a number against to find its region, validity and type
_DESCRIPTIONS = ("general_desc", "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost",
                 "personal_number", "voip", "pager", "uan", "voicemail")
# the spellings read a prefix at a time: ten national digits, with "1" or "+1" before them
_FORMS = re.compile(r"(\+1|1)?([2-9]\d{9})")
_DIGIT = [(sre_constants.CATEGORY, sre_constants.CATEGORY_DIGIT)]
_UNSURE = (sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT, sre_constants.GROUPREF,
           sre_constants.GROUPREF_EXISTS)


def _width(items: list[Any]) -> tuple[int, int]:
    return sre_parser.SubPattern(sre_parser.State(), list(items)).getwidth()


def _free(op: Any, av: Any) -> bool:
    """A piece that takes any digits: ``\\d`` or ``\\d{n}``."""
    if op == sre_constants.IN:
        return bool(av == _DIGIT)
    if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
        low, high, sub = av
        return bool(low == high and len(sub) == 1 and _free(*sub[0]))
    return False


def _sequence(items: list[Any]) -> int | None:
    """How many leading characters a fixed-width sequence looks at (``None``: not fixed-width throughout)."""
    total = last = 0
    for op, av in items:
        if op in _UNSURE:
            return None
        low, high = _width([(op, av)])
        if low != high:
            return None
        looked = 0 if _free(op, av) else _piece(op, av)
        if looked is None:
            return None
        if looked:
            last = total + looked
        total += low
    return last


def _piece(op: Any, av: Any) -> int | None:
    if op == sre_constants.SUBPATTERN:
        return _sequence(list(av[-1]))
    if op == sre_constants.BRANCH:
        alternatives = [list(a) for a in av[1]]
        if len({_width(a) for a in alternatives}) != 1:
            return None
        looked = [_sequence(a) for a in alternatives]
        return None if any(x is None for x in looked) else max(x for x in looked if x is not None)
    return _width([(op, av)])[1]  # anything else: every character it covers matters


def _looked_at(pattern: str, length: int) -> int | None:
    """How many leading characters a full match of ``pattern`` on a string of ``length`` digits depends on."""
    tree = list(sre_parser.parse(pattern))
    alternatives = [list(a) for a in tree[0][1][1]] if len(tree) == 1 and tree[0][0] == sre_constants.BRANCH \
        else [tree]
    out = 0
    for alternative in alternatives:
        low, high = _width(alternative)
        if not low <= length <= high:
            continue  # can never match a string of this length
        if low != high:
            return None
        looked = _sequence(alternative)
        if looked is None:
            return None
        out = max(out, looked)
    return out


@lru_cache(maxsize=1)
def prefix_digits() -> int | None:
    """How many leading digits of a ten-digit North American national number decide its validity, its type
    (so its region) and its time zones in the installed ``phonenumbers``; ``None`` when that cannot be shown."""
    needed = 0
    for region in COUNTRY_CODE_TO_REGION_CODE[1]:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None:
            return None
        for name in _DESCRIPTIONS:
            desc = getattr(metadata, name, None)
            if desc is None or desc.national_number_pattern is None:
                continue
            looked = _looked_at(desc.national_number_pattern, NATIONAL_LENGTH)
            if looked is None:
                return None
            needed = max(needed, looked)
        if metadata.leading_digits:  # matched at the start of the number: it reads at most its longest match
            needed = max(needed, sre_parser.parse(metadata.leading_digits).getwidth()[1])
    zones = max((len(k) for k in TIMEZONE_DATA if k.startswith("1")), default=1) - 1  # after the country code
    needed = max(needed, zones)
    return needed if needed <= NATIONAL_LENGTH else None


_PREFIXES: dict[str, tuple[bool, str | None]] = {}  # prefix → (valid, the one time zone or None)


def _zone(e164: str) -> str | None:
    zones = phone_timezones(e164)
    return zones[0] if len(zones) == 1 else None


def _known(national: str, raw: str, region: str) -> tuple[bool, str | None] | None:
    digits = prefix_digits()
    if digits is None:
        return None
    prefix = national[:digits]
    known = _PREFIXES.get(prefix)
    if known is None:
        try:
            e164 = normalize_phone(raw, region)
        except ContactError:
            known = (False, None)
        else:
            if e164 != f"+1{national}":  # never expected: then ask the library every time
                return None
            known = (True, _zone(e164))
        if len(_PREFIXES) >= 200_000:
            _PREFIXES.clear()
        _PREFIXES[prefix] = known
    return known


def normalize(raw: str, region: str = "US") -> str:
    """:func:`core.contacts.normalize_phone`, exactly; North American numbers a prefix at a time."""
    return normalize_with_zone(raw, region)[0]


def normalize_with_zone(raw: str, region: str = "US") -> tuple[str, str | None]:
    """The number normalized (:func:`normalize`) and its time zone (:func:`zone`), in one look-up."""
    text = raw.strip()
    compact = text.translate(_PUNCTUATION) or text
    match = _FORMS.fullmatch(compact)
    if match is not None and (match.group(1) == "+1" or region == "US"):
        known = _known(match.group(2), raw, region)
        if known is not None and known[0]:
            return f"+1{match.group(2)}", known[1]
    e164 = normalize_phone(raw, region)
    return e164, zone(e164)


def zone(e164: str) -> str | None:
    """The time zone of a normalized number when it names exactly one (:func:`core.contacts.phone_timezones`)."""
    if len(e164) == 12 and e164.startswith("+1") and e164[2] in "23456789" and e164[2:].isdigit():
        known = _known(e164[2:], e164, "US")
        if known is not None and known[0]:
            return known[1]
    return _zone(e164) if e164.startswith("+") else None
