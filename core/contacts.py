"""Normalizing phone numbers and e-mail addresses, the two ways to reach a customer.

Phones become E.164 (``phonenumbers``, the profile's default region for
national numbers); e-mails are validated (``email-validator``, syntax only) and
lower-cased.  A customer is identified by ``contact_key``: the phone, or the
e-mail for a customer without a phone.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import timezone as phone_timezone


class ContactError(ValueError):
    """A phone number or e-mail address that cannot be used (the message says why)."""


_PUNCTUATION = str.maketrans("", "", " ()-./\t")


def normalize_phone(raw: str, region: str = "US") -> str:
    """``raw`` as E.164 (``+12015550123``), or :class:`ContactError`."""
    text = raw.strip()
    # "(201) 555-0143" and "201-555-0143" are one number: parse each spelling once
    compact = text.translate(_PUNCTUATION) or text
    if compact in _VALID_E164:  # already the E.164 form of a number seen valid (any region reads it the same)
        return compact
    e164 = _normalize_phone(compact, region)
    if e164 is None:
        raise ContactError(f"{text!r} is not a valid phone number (region {region})")
    if len(_VALID_E164) >= _CACHE_SIZE:
        _VALID_E164.clear()
    _VALID_E164.add(e164)
    return e164


_CACHE_SIZE = 500_000
_VALID_E164: set[str] = set()


@lru_cache(maxsize=_CACHE_SIZE)
def _normalize_phone(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=_CACHE_SIZE)
def normalize_email(raw: str) -> str:
    """``raw`` validated and lower-cased, or :class:`ContactError`."""
    text = raw.strip()
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ContactError(f"{text!r} is not a valid e-mail address: {exc}") from exc
    return info.normalized.lower()


def normalize_contact(raw: str, region: str = "US") -> str:
    """A phone number or an e-mail address (whichever ``raw`` is), normalized."""
    return normalize_email(raw) if "@" in raw else normalize_phone(raw, region)


def contact_key(phone: str | None, email: str | None) -> str | None:
    """The customer a (normalized) phone/e-mail pair belongs to."""
    return phone or email or None


@lru_cache(maxsize=100_000)
def phone_timezones(e164: str) -> tuple[str, ...]:
    """IANA zones a number may ring in; empty when the number says nothing."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = phone_timezone.time_zones_for_number(number)
    return tuple(z for z in zones if z != phone_timezone.UNKNOWN_TIMEZONE)


def is_phone(contact: str) -> bool:
    return contact.startswith("+")
