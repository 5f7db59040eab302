"""Each business sends as itself: its sender identity and provider credentials over the platform's.

A profile may carry its own e-mail sender (address, name, reply-to), SMS sender (a
number, or a Twilio messaging service), Vapi phone number and assistant, a provider
choice per channel, and write-only credentials (:data:`SECRET_FIELDS`, encrypted with
:mod:`core.vault`).  :func:`settings_for` lays them over the process's
:class:`~core.config.Settings`, which stay the platform-wide defaults; every adapter is
built from the result, so a business with its own Twilio account texts from its own
number through its own account, and one without uses the platform's.

A business that brings its own credentials for a provider brings its own sender for it
too: the platform's sender belongs to the platform's account and would be refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from core import vault
from core.config import Settings, get_settings
from core.models import CHANNELS, Profile

# write-only credentials a business may store (never returned; GET lists which are set)
SECRET_FIELDS = ("resend_api_key", "resend_webhook_secret", "smtp_url", "twilio_account_sid", "twilio_auth_token",
                 "vonage_api_key", "vonage_api_secret", "vonage_signature_secret", "vapi_api_key")
# identity fields of a profile that override the platform's
IDENTITY_FIELDS = ("email_from", "email_from_name", "email_reply_to", "sms_from", "vapi_assistant_id",
                   "vapi_phone_number_id", "email_provider", "sms_provider")
SECRET_LABELS = {
    "resend_api_key": "Resend API key", "resend_webhook_secret": "Resend webhook signing secret",
    "smtp_url": "SMTP URL", "twilio_account_sid": "Twilio account SID", "twilio_auth_token": "Twilio auth token",
    "vonage_api_key": "Vonage API key", "vonage_api_secret": "Vonage API secret",
    "vonage_signature_secret": "Vonage signature secret", "vapi_api_key": "Vapi API key",
}


def stored_secrets(profile: Profile, settings: Settings | None = None) -> dict[str, str]:
    """The business's decrypted credentials (only those set)."""
    values = vault.decrypt_json(profile.encrypted_secrets, settings)
    return {k: str(v) for k, v in values.items() if k in SECRET_FIELDS and v}


def secrets_set(profile: Profile, settings: Settings | None = None) -> list[str]:
    """Names of the credentials the business has stored (what ``GET /api/profile`` shows)."""
    try:
        return sorted(stored_secrets(profile, settings))
    except vault.VaultError:
        return []


def store_secrets(profile: Profile, changes: Mapping[str, str | None], settings: Settings | None = None) -> None:
    """Set (a value) or clear (``None`` or empty) some of the business's credentials."""
    unknown = sorted(set(changes) - set(SECRET_FIELDS))
    if unknown:
        raise ValueError(f"unknown credentials: {', '.join(unknown)}")
    try:
        current = stored_secrets(profile, settings)
    except vault.VaultError:
        current = {}  # unreadable with this SECRET_KEY: what is given now replaces it
    for name, value in changes.items():
        if value is None or not str(value).strip():
            current.pop(name, None)
        else:
            current[name] = str(value).strip()
    profile.encrypted_secrets = vault.encrypt_json(current, settings) if current else None


def _overrides(profile: Profile, secret: Mapping[str, str], base: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def put_secret(name: str, value: str | None) -> None:
        out[name] = SecretStr(value) if value else None

    # e-mail: own credentials mean own sender
    email_own = any(secret.get(k) for k in ("resend_api_key", "smtp_url"))
    if profile.email_provider:
        out["email_provider"] = profile.email_provider
    elif email_own:
        out["email_provider"] = "resend" if secret.get("resend_api_key") else "smtp"
    if email_own:
        put_secret("resend_api_key", secret.get("resend_api_key"))
        put_secret("smtp_url", secret.get("smtp_url"))
        out["email_from"] = profile.email_from
        out["resend_from"] = None
    elif profile.email_from:
        out["email_from"] = profile.email_from
    if secret.get("resend_webhook_secret"):
        put_secret("resend_webhook_secret", secret["resend_webhook_secret"])
    if profile.email_from_name:
        out["email_from_name"] = profile.email_from_name
    if profile.email_reply_to:
        out["email_reply_to"] = profile.email_reply_to

    # SMS
    provider = profile.sms_provider
    twilio_own = bool(secret.get("twilio_account_sid") or secret.get("twilio_auth_token"))
    vonage_own = bool(secret.get("vonage_api_key") or secret.get("vonage_api_secret"))
    if provider is None and twilio_own:
        provider = "twilio"
    elif provider is None and vonage_own:
        provider = "vonage"
    if provider:
        out["sms_provider"] = provider
    if twilio_own:
        out["twilio_account_sid"] = secret.get("twilio_account_sid")
        put_secret("twilio_auth_token", secret.get("twilio_auth_token"))
        out["twilio_from_number"] = out["twilio_messaging_service_sid"] = None
    if vonage_own:
        out["vonage_api_key"] = secret.get("vonage_api_key")
        put_secret("vonage_api_secret", secret.get("vonage_api_secret"))
        out["vonage_from"] = None
    if secret.get("vonage_signature_secret"):
        put_secret("vonage_signature_secret", secret["vonage_signature_secret"])
    if profile.sms_from:
        sender = profile.sms_from.strip()
        target = provider or base.sms_provider_name()
        if target == "twilio" and sender.upper().startswith("MG"):
            out["twilio_messaging_service_sid"], out["twilio_from_number"] = sender, None
        elif target == "twilio":
            out["twilio_from_number"], out["twilio_messaging_service_sid"] = sender, None
        elif target == "vonage":
            out["vonage_from"] = sender
        elif target == "sns":
            out["sns_origination_number"] = sender

    # calls
    if secret.get("vapi_api_key"):
        put_secret("vapi_api_key", secret["vapi_api_key"])
        out["vapi_assistant_id"] = profile.vapi_assistant_id
        out["vapi_phone_number_id"] = profile.vapi_phone_number_id
    else:
        if profile.vapi_assistant_id:
            out["vapi_assistant_id"] = profile.vapi_assistant_id
        if profile.vapi_phone_number_id:
            out["vapi_phone_number_id"] = profile.vapi_phone_number_id
    return out


def settings_for(profile: Profile | None, base: Settings | None = None) -> Settings:
    """The settings a business sends with: the platform's, with the business's own sender and
    credentials laid over them.  An unreadable credential store (``SECRET_KEY`` changed) counts as
    no credentials: the platform's defaults apply, and Settings says the credentials need entering again."""
    base = base or get_settings()
    if profile is None:
        return base
    try:
        secret = stored_secrets(profile, base)
    except vault.VaultError:
        secret = {}
    overrides = _overrides(profile, secret, base)
    return base.model_copy(update=overrides) if overrides else base


def account_key(settings: Settings, channel: str) -> str:
    """A short, stable name for the provider account ``channel`` sends through with these settings (its
    rate limits are the account's: two businesses with their own accounts do not share them)."""
    provider = settings.provider_for(channel)
    credential = {
        "vapi": settings.vapi_api_key, "resend": settings.resend_api_key, "smtp": settings.smtp_url,
        "twilio": settings.twilio_account_sid, "vonage": settings.vonage_api_key, "sns": settings.aws_region,
    }.get(provider)
    raw = credential.get_secret_value() if isinstance(credential, SecretStr) else str(credential or "")
    return f"{provider}:{hashlib.sha256(raw.encode('utf-8')).hexdigest()[:12]}"


@dataclass(frozen=True)
class ChannelMode:
    """Whether a business's channel really sends, and through what."""

    channel: str
    live: bool
    provider: str
    own_account: bool
    missing: tuple[str, ...]


def channel_modes(profile: Profile | None, base: Settings | None = None) -> dict[str, ChannelMode]:
    """Per channel: live or sandbox for this business, which provider, whether through its own account,
    and what is still missing to go live."""
    base = base or get_settings()
    settings = settings_for(profile, base)
    try:
        own = stored_secrets(profile, base) if profile is not None else {}
    except vault.VaultError:
        own = {}
    own_by_channel = {"call": {"vapi_api_key"}, "email": {"resend_api_key", "smtp_url"},
                      "sms": {"twilio_account_sid", "twilio_auth_token", "vonage_api_key", "vonage_api_secret"}}
    out = {}
    for channel in CHANNELS:
        missing = tuple(settings.missing_for(channel))
        out[channel] = ChannelMode(channel=channel, live=not missing, provider=settings.provider_for(channel),
                                   own_account=bool(own_by_channel[channel] & set(own)), missing=missing)
    return out
