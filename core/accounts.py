"""Businesses, their logins, API keys and voice agents.

Passwords are stored as Argon2 hashes; API keys as SHA-256 digests (a key is
long and random, so a fast digest is enough and lets a request find its key by
index).  Neither can be read back: a key is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import uuid
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.config import Settings
from core.contacts import ContactError, normalize_email, normalize_phone
from core.db import utcnow
from core.errors import Conflict, FieldError, Invalid, NotFound
from core.models import CONSENT_POLICIES, EMAIL_PROVIDERS, SMS_PROVIDERS, Agent, ApiKey, Profile, User
from core.schemas import check_timezone
from core.senders import SECRET_FIELDS, SECRET_LABELS, store_secrets

_hasher = PasswordHasher()
KEY_PREFIX = "cx_"
MIN_PASSWORD = 8


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _check_profile_fields(*, business_name: str | None, timezone: str | None, region: str | None,
                          phone: str | None) -> list[FieldError]:
    errors = []
    if business_name is not None and not business_name.strip():
        errors.append(FieldError("business_name", "a business needs a name"))
    if timezone is not None:
        try:
            check_timezone(timezone)
        except ValueError as exc:
            errors.append(FieldError("timezone", str(exc)))
    if region is not None and (len(region) != 2 or not region.isalpha()):
        errors.append(FieldError("default_region", "a two-letter country code such as US or GB"))
    if phone:
        try:
            normalize_phone(phone, (region or "US").upper())
        except ContactError as exc:
            errors.append(FieldError("phone", str(exc)))
    return errors


def create_profile(
    session: Session, *, business_name: str, email: str, password: str | None = None,
    timezone: str = "America/New_York", default_region: str = "US", phone: str | None = None,
) -> tuple[Profile, str, str | None]:
    """Create a business with its owner's login and a first API key.

    Returns ``(profile, api_key, password)``; ``password`` is generated when not
    given (and returned so it can be shown once).
    """
    errors = _check_profile_fields(business_name=business_name, timezone=timezone, region=default_region,
                                   phone=phone)
    try:
        login = normalize_email(email)
    except ContactError as exc:
        errors.append(FieldError("email", str(exc)))
        login = email
    generated = None
    if password is None:
        password = generated = secrets.token_urlsafe(12)
    elif len(password) < MIN_PASSWORD:
        errors.append(FieldError("password", f"use at least {MIN_PASSWORD} characters"))
    if errors:
        raise Invalid(errors)
    if session.scalar(select(User.id).where(User.email == login)) is not None:
        raise Conflict(f"A login for {login} already exists.", field="email")
    region = default_region.upper()
    profile = Profile(id=uuid.uuid4(), business_name=business_name.strip(), email=login, timezone=timezone,
                      default_region=region, phone=normalize_phone(phone, region) if phone else None)
    session.add(profile)
    session.add(User(id=uuid.uuid4(), profile_id=profile.id, email=login, password_hash=_hasher.hash(password)))
    session.flush()
    key = create_api_key(session, profile_id=profile.id, name="default")[1]
    return profile, key, generated


def get_profile(session: Session, *, profile_id: uuid.UUID) -> Profile:
    """The business, or :class:`NotFound`."""
    profile = session.get(Profile, profile_id)
    if profile is None:
        raise NotFound("This business does not exist.", field="profile")
    return profile


def profile_for_login(session: Session, *, email: str) -> uuid.UUID:
    """The business a login e-mail belongs to, or :class:`NotFound`."""
    profile_id = session.scalar(select(User.profile_id).where(User.email == email.strip().lower()))
    if profile_id is None:
        raise NotFound(f"No login {email}.", field="email")
    return profile_id


PRICE_FIELDS = ("price_per_sms_segment", "price_per_call_minute", "price_per_email")
PRICE_MAX = 100.0
_MESSAGING_SERVICE = re.compile(r"^MG[0-9a-fA-F]{32}$")
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_PROVIDER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_FIELD_WORDS = {
    "email_from": "The sender address (e-mail from)", "email_reply_to": "The reply-to address",
    "email_from_name": "The sender name", "sms_from": "The SMS sender", "vapi_assistant_id": "The Vapi assistant id",
    "vapi_phone_number_id": "The Vapi phone number id", "email_provider": "The e-mail provider",
    "sms_provider": "The SMS provider", "consent_policy": "The consent policy",
    "price_per_sms_segment": "The price per SMS segment", "price_per_call_minute": "The price per call minute",
    "price_per_email": "The price per e-mail",
}


def _check_sender_fields(*, values: dict[str, str | None], region: str) -> tuple[dict[str, str | None],
                                                                             list[FieldError]]:
    """The sender identity fields normalized (``None``: cleared), and what is wrong with them."""
    out: dict[str, str | None] = {}
    errors: list[FieldError] = []
    for name, raw in values.items():
        text = raw.strip() if raw is not None else ""
        words = _FIELD_WORDS[name]
        if not text:
            out[name] = None
        elif name in ("email_from", "email_reply_to"):
            try:
                out[name] = normalize_email(text)
            except ContactError:
                errors.append(FieldError(name, f"{words} must be an e-mail address such as hello@yourshop.com "
                                               f"('{text[:80]}' is not)"))
        elif name == "email_from_name":
            if len(text) > 200 or any(ch in text for ch in "\r\n<>\""):
                errors.append(FieldError(name, f"{words} is at most 200 characters, on one line, without < > or \""))
            else:
                out[name] = text
        elif name == "sms_from":
            if _MESSAGING_SERVICE.match(text) or _ALPHANUMERIC_SENDER.match(text):
                out[name] = text
            else:
                try:
                    # stored in E.164: inbound texts (STOP) are matched to the business by the number they went to
                    out[name] = normalize_phone(text, region)
                except ContactError:
                    errors.append(FieldError(name, f"{words} must be a phone number (like +1 201 555 0100), a "
                                                   "Twilio messaging service SID (MG…) or a sender name of up to "
                                                   f"11 letters and digits ('{text[:40]}' is none of them)"))
        elif name in ("vapi_assistant_id", "vapi_phone_number_id"):
            if _PROVIDER_ID.match(text):
                out[name] = text
            else:
                errors.append(FieldError(name, f"{words} is the id Vapi shows for it (letters, digits and - only, "
                                               "up to 100 characters)"))
        elif name == "email_provider":
            if text in EMAIL_PROVIDERS:
                out[name] = text
            else:
                errors.append(FieldError(name, f"{words} is one of {', '.join(EMAIL_PROVIDERS)} (or empty for "
                                               "whichever is set up)"))
        elif name == "sms_provider":
            if text in SMS_PROVIDERS:
                out[name] = text
            else:
                errors.append(FieldError(name, f"{words} is one of {', '.join(SMS_PROVIDERS)} (or empty for "
                                               "whichever is set up)"))
    return out, errors


def _check_secrets(changes: Mapping[str, str | None]) -> list[FieldError]:
    errors = []
    for name, value in changes.items():
        if name not in SECRET_FIELDS:
            errors.append(FieldError(name, f"'{name}' is not a credential this service stores; known: "
                                           + ", ".join(SECRET_FIELDS)))
            continue
        text = (value or "").strip()
        if len(text) > 2000:
            errors.append(FieldError(name, f"{SECRET_LABELS[name]} is longer than 2,000 characters"))
        elif name == "smtp_url" and text:
            from core.channels.base import ChannelError
            from core.channels.smtp_email import parse_url

            try:
                parse_url(text)
            except ChannelError as exc:
                errors.append(FieldError(name, f"{SECRET_LABELS[name]}: {exc.reason.replace('SMTP_URL', 'the URL')}"))
    return errors


def update_profile(session: Session, *, profile_id: uuid.UUID, business_name: str | None = None,
                   timezone: str | None = None, default_region: str | None = None, phone: str | None = None,
                   booking_url: str | None = None, consent_policy: str | None = None,
                   email_from: str | None = None, email_from_name: str | None = None,
                   email_reply_to: str | None = None, sms_from: str | None = None,
                   vapi_assistant_id: str | None = None, vapi_phone_number_id: str | None = None,
                   email_provider: str | None = None, sms_provider: str | None = None,
                   price_per_sms_segment: float | None = None, price_per_call_minute: float | None = None,
                   price_per_email: float | None = None, secrets: Mapping[str, str | None] | None = None,
                   settings: Settings | None = None) -> Profile:
    """Change what is given of the business's profile: ``None`` leaves a field as it is, an empty text clears
    an optional one (phone, booking link, sender identity, provider choice).

    ``secrets`` sets (a value) or clears (empty or ``None``) the business's provider credentials
    (:data:`core.senders.SECRET_FIELDS`), stored encrypted and never read back.  Every field at fault is
    named in one :class:`Invalid`.
    """
    profile = get_profile(session, profile_id=profile_id)
    region = (default_region or profile.default_region).upper()
    errors = _check_profile_fields(business_name=business_name, timezone=timezone,
                                   region=default_region or profile.default_region, phone=phone)
    if booking_url and not booking_url.strip().startswith(("http://", "https://")):
        errors.append(FieldError("booking_url", "a web address starting with https://"))
    if consent_policy is not None and consent_policy not in CONSENT_POLICIES:
        errors.append(FieldError("consent_policy", f"{_FIELD_WORDS['consent_policy']} is us_tcpa (consent records "
                                                   "are needed for calls and texts) or none (the business takes "
                                                   "responsibility for consent)"))
    prices = {"price_per_sms_segment": price_per_sms_segment, "price_per_call_minute": price_per_call_minute,
              "price_per_email": price_per_email}
    for name, price in prices.items():
        if price is not None and (isinstance(price, bool) or not math.isfinite(price) or not
                                  0 <= price <= PRICE_MAX):
            errors.append(FieldError(name, f"{_FIELD_WORDS[name]} is an amount from 0 to {PRICE_MAX:g}"))
    given = {"email_from": email_from, "email_from_name": email_from_name, "email_reply_to": email_reply_to,
             "sms_from": sms_from, "vapi_assistant_id": vapi_assistant_id,
             "vapi_phone_number_id": vapi_phone_number_id, "email_provider": email_provider,
             "sms_provider": sms_provider}
    senders, sender_errors = _check_sender_fields(values={k: v for k, v in given.items() if v is not None},
                                                  region=region)
    errors += sender_errors
    if secrets:
        errors += _check_secrets(secrets)
    new_sender = senders.get("sms_from")
    if new_sender and new_sender != profile.sms_from and session.scalar(select(Profile.id).where(
            Profile.sms_from == new_sender, Profile.id != profile_id).limit(1)) is not None:
        errors.append(FieldError("sms_from", f"{new_sender} is already the SMS sender of another business here; "
                                             "replies and STOP messages could not tell you apart, so each business "
                                             "needs a number of its own"))
    if errors:
        raise Invalid(errors)
    if business_name is not None:
        profile.business_name = business_name.strip()
    if timezone is not None:
        profile.timezone = timezone
    if default_region is not None:
        profile.default_region = default_region.upper()
    if phone is not None:
        profile.phone = normalize_phone(phone, profile.default_region) if phone.strip() else None
    if booking_url is not None:
        profile.booking_url = booking_url.strip() or None
    if consent_policy is not None:
        profile.consent_policy = consent_policy
    for name, value in senders.items():
        setattr(profile, name, value)
    for name, price in prices.items():
        if price is not None:
            setattr(profile, name, round(float(price), 6))
    if secrets:
        store_secrets(profile, secrets, settings)
    profile.updated_at = utcnow()
    session.flush()
    return profile


def verify_login(session: Session, *, email: str, password: str) -> User | None:
    """The user whose e-mail and password match, else ``None`` (same work either way)."""
    user = session.scalars(select(User).where(User.email == email.strip().lower())).one_or_none()
    if user is None:
        # spend the same time as a real check so a wrong e-mail is not distinguishable
        with suppress(VerificationError):
            _hasher.verify(_dummy_hash(), password)
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    user.last_login_at = utcnow()
    return user



@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash("not a real password")


def set_password(session: Session, *, user_id: uuid.UUID, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"use at least {MIN_PASSWORD} characters", field="password")
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    user.password_hash = _hasher.hash(password)


def create_api_key(session: Session, *, profile_id: uuid.UUID, name: str = "default") -> tuple[ApiKey, str]:
    """A new key for the profile; the plain key is returned once and never stored."""
    name = (name or "").strip() or "default"
    if len(name) > 100:
        raise Invalid("use at most 100 characters", field="name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(id=uuid.uuid4(), profile_id=profile_id, name=name, prefix=key[:10], key_hash=_hash_key(key))
    session.add(row)
    session.flush()
    return row, key


def list_api_keys(session: Session, *, profile_id: uuid.UUID) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.profile_id == profile_id)
                                .order_by(ApiKey.created_at.desc())))


def revoke_api_key(session: Session, *, profile_id: uuid.UUID, key_id: uuid.UUID,
                   now: datetime | None = None) -> ApiKey:
    """Revoke a key at once; requests with it get 401 from now on."""
    row = session.scalars(select(ApiKey).where(ApiKey.id == key_id, ApiKey.profile_id == profile_id)).one_or_none()
    if row is None:
        raise NotFound("No such API key.", field="key_id")
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
    session.flush()
    return row


def authenticate_api_key(session: Session, *, key: str, now: datetime | None = None) -> uuid.UUID | None:
    """The profile a presented key belongs to, or ``None`` (unknown or revoked)."""
    if not key or len(key) > 200:
        return None
    digest = _hash_key(key)
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).one_or_none()
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        return None
    now = now or utcnow()
    # write the last-use time at most once a minute per key
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now
    return row.profile_id


def create_agent(session: Session, *, profile_id: uuid.UUID, name: str, vapi_assistant_id: str | None = None,
                 vapi_phone_number_id: str | None = None) -> Agent:
    """Register a CONNEXT voice agent of the business."""
    if not name or not name.strip():
        raise Invalid("an agent needs a name", field="name")
    get_profile(session, profile_id=profile_id)
    agent = Agent(id=uuid.uuid4(), profile_id=profile_id, name=name.strip(),
                  vapi_assistant_id=vapi_assistant_id or None, vapi_phone_number_id=vapi_phone_number_id or None)
    session.add(agent)
    session.flush()
    return agent


def list_agents(session: Session, *, profile_id: uuid.UUID) -> list[Agent]:
    return list(session.scalars(select(Agent).where(Agent.profile_id == profile_id).order_by(Agent.name)))


def count_profiles(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Profile)) or 0)
