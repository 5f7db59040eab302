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
from core.errors import DomainError
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


# what a business can do about a missing setting: the platform's variable names, in the profile's words
_MISSING_WORDS = {
    "VAPI_API_KEY": "a Vapi API key",
    "RESEND_API_KEY": "a Resend API key",
    "RESEND_FROM or EMAIL_FROM": "a sender address (e-mail from)",
    "SMTP_URL": "an SMTP URL",
    "EMAIL_FROM": "a sender address (e-mail from)",
    "TWILIO_ACCOUNT_SID": "a Twilio account SID",
    "TWILIO_AUTH_TOKEN": "a Twilio auth token",
    "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID": "a sender number or messaging service (SMS from)",
    "VONAGE_API_KEY": "a Vonage API key",
    "VONAGE_API_SECRET": "a Vonage API secret",
    "VONAGE_FROM": "a sender number (SMS from)",
    "AWS_REGION": "AWS_REGION on the server (SNS uses the platform's AWS account)",
}


def missing_in_words(mode: ChannelMode) -> list[str]:
    """What is still missing for ``mode``'s channel to go live, as a business owner would set it."""
    return [_MISSING_WORDS.get(name, name) for name in mode.missing]


@dataclass(frozen=True)
class Webhook:
    """An address a provider must be told, so what happens to messages comes back here."""

    purpose: str
    url: str
    note: str = ""


def provider_webhooks(settings: Settings, channel: str, *, sms_from: str | None = None) -> list[Webhook]:
    """The webhook URLs to paste into the provider ``channel`` sends through with ``settings``."""
    base = settings.public_base_url.rstrip("/")
    provider = settings.provider_for(channel)
    number = sms_from or "the number you text from"
    if provider == "vapi":
        return [Webhook("Server URL of the assistant (call status and end-of-call reports)", f"{base}/webhooks/vapi",
                        "Vapi signs with the x-vapi-secret header: the platform's VAPI_WEBHOOK_SECRET.")]
    if provider == "resend":
        return [Webhook("Webhook for e-mail events (delivered, bounced, complained, clicked)",
                        f"{base}/webhooks/resend", "Resend shows a signing secret for it (whsec_…).")]
    if provider == "smtp":
        return [Webhook("Amazon SES: the SNS topic's HTTPS subscription", f"{base}/webhooks/ses",
                        "The topic must be listed in SES_TOPIC_ARNS on the server."),
                Webhook("SendGrid: Event Webhook (signed)", f"{base}/webhooks/sendgrid"),
                Webhook("Postmark: bounce and spam complaint webhook",
                        f"{base.replace('://', '://USER:PASSWORD@', 1)}/webhooks/postmark",
                        "USER and PASSWORD are the platform's POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD.")]
    if provider == "twilio":
        return [Webhook(f"“A message comes in” webhook of {number}", f"{base}/webhooks/twilio/inbound",
                        "Set it on the very number (or messaging service) in SMS from: replies and STOP are matched "
                        "to your business by the number they were sent to."),
                Webhook("Delivery status", f"{base}/webhooks/twilio/status",
                        "Nothing to paste: every text asks Twilio to report here.")]
    if provider == "vonage":
        return [Webhook("Delivery receipts (account settings)", f"{base}/webhooks/vonage/status"),
                Webhook(f"Inbound messages of {number}", f"{base}/webhooks/vonage/inbound",
                        "Set it on the very number in SMS from: replies and STOP are matched to your business by "
                        "the number they were sent to.")]
    return []  # SNS sends only: nothing comes back


@dataclass(frozen=True)
class ConnectionCheck:
    """What a *Test connection* found: ``ok`` with the provider's sentence, or the reason it failed."""

    channel: str
    provider: str
    ok: bool
    sentence: str


def test_connection(profile: Profile, *, channel: str, base: Settings | None = None) -> ConnectionCheck:
    """Ask the provider ``channel`` sends through for this business whether its credentials and sender
    work, without sending anything to anyone (the live adapter's ``check()``)."""
    from core.channels import PROVIDER_NAMES, get_channel
    from core.channels.base import ChannelError

    settings = settings_for(profile, base)
    provider = settings.provider_for(channel)
    name = PROVIDER_NAMES.get(provider, provider)
    if not settings.channel_live(channel):
        missing = ", ".join(missing_in_words(channel_modes(profile, base)[channel]))
        return ConnectionCheck(channel, provider, False, f"{name} is not set up yet, so this channel runs in "
                                                         f"sandbox mode; still missing: {missing}.")
    try:
        adapter = get_channel(channel, settings=settings)
        check = getattr(adapter, "check", None)
        if check is None:
            return ConnectionCheck(channel, provider, False, f"{name} offers no connection test; send yourself a "
                                                             "test from the campaign wizard instead.")
        return ConnectionCheck(channel, provider, True, str(check()))
    except ChannelError as exc:
        return ConnectionCheck(channel, provider, False, f"{name}: {exc.reason}")
    except DomainError as exc:  # the live adapter is not installed
        return ConnectionCheck(channel, provider, False, exc.message)
    except ValueError as exc:  # an adapter refusing settings it cannot use
        return ConnectionCheck(channel, provider, False, f"{name}: {exc}")


test_connection.__test__ = False  # type: ignore[attr-defined]  # a product function, not a pytest test
