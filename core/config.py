"""Process-wide settings, read once from the environment and `.env`.

Every variable the product understands is a field here; nothing else in the
code base reads ``os.environ``.  Channel credentials decide which adapter runs:
a channel whose credentials are missing runs in sandbox mode.  The values here
are the *platform's* defaults; a business may set its own sender and
credentials in its profile (:func:`core.senders.settings_for` lays those over
these).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
DEFAULT_DATABASE_URL = f"sqlite:///{DATA_DIR / 'connext.db'}"
KEY_FILE = "secret_key"


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


class ConfigurationError(RuntimeError):
    """The process cannot run with this configuration; the message says what to set."""


class Settings(BaseSettings):
    """All configuration of the product (environment variables or `.env`)."""

    model_config = SettingsConfigDict(
        env_file=ROOT / ".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Storage
    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLAlchemy URL of the database.")
    test_database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        description="PostgreSQL server the test suite uses (a scratch database is created on it).",
    )
    database_pooler: bool = Field(
        False, description="The database is reached through a transaction-mode pooler (Supabase's port 6543, "
                           "PgBouncer): no server-side prepared statements, no session state.")

    # Public face
    public_base_url: str = Field("http://localhost:8000", description="Where webhooks and unsubscribe links point.")
    secret_key: SecretStr | None = Field(None, description="Signs links and sessions; encrypts stored credentials.")
    log_level: str = "INFO"
    api_max_body_bytes: int = Field(1_000_000, description="Larger request bodies are refused with 413.")

    # Dashboard sign-in
    dashboard_session_hours: float = Field(168.0, gt=0, description="A dashboard sign-in lasts this long.")
    login_max_failures: int = Field(5, ge=1, description="Failed sign-ins (per e-mail, per address) before a pause.")
    login_lock_minutes: float = Field(15.0, gt=0, description="How long sign-in pauses after too many failures.")

    # Scheduler
    scheduler_tick_seconds: float = Field(2.0, gt=0)
    scheduler_batch_size: int = Field(50, ge=1, le=1000)
    scheduler_lease_seconds: int = Field(120, ge=10)
    attribution_days: int = Field(14, ge=1, le=365)

    # Vapi (calls)
    vapi_api_key: SecretStr | None = None
    vapi_base_url: str = "https://api.vapi.ai"
    vapi_assistant_id: str | None = None
    vapi_phone_number_id: str | None = None
    vapi_webhook_secret: SecretStr | None = None
    vapi_max_concurrent_calls: int = Field(10, ge=1)

    # E-mail: Resend or any SMTP service (Amazon SES, SendGrid, Postmark, a relay)
    email_provider: Literal["resend", "smtp"] | None = Field(
        None, description="resend or smtp; default: whichever is configured, Resend first.")
    email_from: str | None = Field(None, description="Platform default sender address (else RESEND_FROM).")
    email_from_name: str | None = Field(None, description="Name shown as the sender (default: the business's name).")
    email_reply_to: str | None = Field(None, description="Where customers' replies go (default: the sender).")
    resend_api_key: SecretStr | None = None
    resend_base_url: str = "https://api.resend.com"
    resend_from: str | None = None
    resend_webhook_secret: SecretStr | None = None
    resend_max_per_second: float = Field(2.0, gt=0)
    smtp_url: SecretStr | None = Field(None, description="smtp://user:pass@host:587 (STARTTLS) or smtps://…:465.")
    smtp_ca_file: str | None = Field(None, description="A CA bundle to trust for the SMTP server's certificate.")
    smtp_max_per_second: float = Field(2.0, gt=0)
    ses_topic_arns: str | None = Field(None, description="Comma-separated SNS topic ARNs /webhooks/ses accepts.")
    sendgrid_webhook_public_key: str | None = Field(
        None, description="The Event Webhook's verification key (base64 DER), from SendGrid's settings.")
    postmark_webhook_user: str | None = None
    postmark_webhook_password: SecretStr | None = None

    # SMS: Twilio, Vonage or AWS SNS
    sms_provider: Literal["twilio", "vonage", "sns"] | None = Field(
        None, description="twilio, vonage or sns; default: whichever is configured, Twilio first.")
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_base_url: str | None = None
    twilio_max_per_second: float = Field(1.0, gt=0)
    vonage_api_key: str | None = None
    vonage_api_secret: SecretStr | None = None
    vonage_signature_secret: SecretStr | None = None
    vonage_signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512"] = "md5hash"
    vonage_from: str | None = None
    vonage_base_url: str = "https://rest.nexmo.com"
    vonage_max_per_second: float = Field(1.0, gt=0)
    aws_region: str | None = None
    sns_endpoint_url: str | None = Field(None, description="Another SNS endpoint (a local server in tests).")
    sns_sender_id: str | None = None
    sns_origination_number: str | None = None
    sns_max_per_second: float = Field(10.0, gt=0)

    # Events out (webhook endpoints of n8n, Zapier, CRMs)
    webhooks_allow_private_urls: bool = Field(
        False, description="Allow endpoints on loopback or private addresses (development and tests only).")
    webhook_timeout_seconds: float = Field(10.0, gt=0)

    # Sandbox channels: how much faster than real time simulated outcomes arrive, and whether the simulated
    # provider turns a few messages away as real ones do (about 1 in 100 for good, 1 in 50 tries for a moment).
    sandbox_speed: float = Field(1.0, gt=0)
    sandbox_refusals: bool = True

    @field_validator(
        "vapi_assistant_id", "vapi_phone_number_id", "resend_from", "email_from", "twilio_account_sid",
        "twilio_from_number", "twilio_messaging_service_sid", "twilio_base_url", "vonage_api_key", "vonage_from",
        "aws_region", "sns_endpoint_url", "email_from_name", "email_reply_to", "sns_sender_id",
        "sns_origination_number", "smtp_ca_file", "ses_topic_arns", "sendgrid_webhook_public_key",
        "postmark_webhook_user", "email_provider", "sms_provider",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vapi_api_key", "vapi_webhook_secret", "resend_api_key", "resend_webhook_secret",
                     "twilio_auth_token", "secret_key", "smtp_url", "vonage_api_secret", "vonage_signature_secret",
                     "postmark_webhook_password", mode="before")
    @classmethod
    def _blank_secret_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # --- derived -----------------------------------------------------------

    def embedded_database(self) -> Path | None:
        """The SQLite file of the embedded database, or ``None`` for a database server."""
        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database).resolve()

    def require_secret_key(self) -> None:
        """Refuse to run on a database server without ``SECRET_KEY`` (every process must sign alike)."""
        if self.secret_key is None and self.embedded_database() is None:
            raise ConfigurationError(
                "SECRET_KEY is not set: with a database server every process (dashboard, API, scheduler) must "
                "share one SECRET_KEY, or links signed by one are refused by another; set it to a long random "
                "value, the same everywhere.")

    def signing_key(self) -> str:
        """The key that signs tokens: ``SECRET_KEY``, or for the embedded database one generated once
        next to its file, so every process using that database signs alike whatever its folder."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        database = self.embedded_database()
        if database is None:
            self.require_secret_key()
            raise AssertionError("unreachable")
        return _key_beside(database)

    # --- channels ----------------------------------------------------------

    def email_sender(self) -> str | None:
        """The platform's default From address."""
        return self.email_from or self.resend_from

    def email_provider_name(self) -> str:
        """``resend`` or ``smtp``: the one chosen, else whichever is configured (Resend first)."""
        if self.email_provider:
            return self.email_provider
        if self.resend_api_key is None and self.smtp_url is not None:
            return "smtp"
        return "resend"

    def sms_provider_name(self) -> str:
        """``twilio``, ``vonage`` or ``sns``: the one chosen, else whichever is configured (Twilio first)."""
        if self.sms_provider:
            return self.sms_provider
        if self.twilio_account_sid or self.twilio_auth_token:
            return "twilio"
        if self.vonage_api_key or self.vonage_api_secret:
            return "vonage"
        return "twilio"

    def provider_for(self, channel: str) -> str:
        """The live provider a channel would use (whether or not it is configured)."""
        if channel == "call":
            return "vapi"
        if channel == "email":
            return self.email_provider_name()
        if channel == "sms":
            return self.sms_provider_name()
        raise ValueError(f"unknown channel {channel!r}")

    def channel_live(self, channel: str) -> bool:
        """True when the live adapter for ``channel`` has what it needs."""
        return not self.missing_for(channel)

    def missing_for(self, channel: str) -> list[str]:
        """Names of the variables a live ``channel`` still needs (empty when live)."""
        need: dict[str, object] = {}
        provider = self.provider_for(channel)
        if provider == "vapi":
            # assistant and phone number may also come from each agent
            need = {"VAPI_API_KEY": _secret(self.vapi_api_key)}
        elif provider == "resend":
            need = {"RESEND_API_KEY": _secret(self.resend_api_key), "RESEND_FROM or EMAIL_FROM": self.email_sender()}
        elif provider == "smtp":
            need = {"SMTP_URL": _secret(self.smtp_url), "EMAIL_FROM": self.email_sender()}
        elif provider == "twilio":
            need = {"TWILIO_ACCOUNT_SID": self.twilio_account_sid,
                    "TWILIO_AUTH_TOKEN": _secret(self.twilio_auth_token),
                    "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID":
                        self.twilio_from_number or self.twilio_messaging_service_sid}
        elif provider == "vonage":
            need = {"VONAGE_API_KEY": self.vonage_api_key, "VONAGE_API_SECRET": _secret(self.vonage_api_secret),
                    "VONAGE_FROM": self.vonage_from}
        elif provider == "sns":
            need = {"AWS_REGION": self.aws_region}
        return [name for name, value in need.items() if not value]


def _key_beside(database: Path) -> str:
    """The signing key kept next to the embedded database's file, made once by whichever process comes
    first (written whole under another name, then linked into place: a reader never sees half a key)."""
    path = database.parent / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{KEY_FILE}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
            os.chmod(tmp, 0o600)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # another process using the same database made it first: theirs stands
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (read once)."""
    return Settings()
