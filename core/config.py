"""Process-wide settings, read once from the environment and `.env`.

Every variable the product understands is a field here; nothing else in the
code base reads ``os.environ``.  Channel credentials decide which adapter runs:
a channel whose credentials are missing runs in sandbox mode.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
DEFAULT_DATABASE_URL = f"sqlite:///{DATA_DIR / 'connext.db'}"


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


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

    # Public face
    public_base_url: str = Field("http://localhost:8000", description="Where webhooks and unsubscribe links point.")
    secret_key: SecretStr | None = Field(None, description="Signs unsubscribe and click tokens.")
    log_level: str = "INFO"
    api_max_body_bytes: int = Field(1_000_000, description="Larger request bodies are refused with 413.")

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

    # Resend (email)
    resend_api_key: SecretStr | None = None
    resend_base_url: str = "https://api.resend.com"
    resend_from: str | None = None
    resend_webhook_secret: SecretStr | None = None
    resend_max_per_second: float = Field(2.0, gt=0)

    # Twilio (SMS)
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_base_url: str | None = None
    twilio_max_per_second: float = Field(1.0, gt=0)

    # Sandbox channels: how much faster than real time simulated outcomes arrive.
    sandbox_speed: float = Field(1.0, gt=0)

    @field_validator(
        "vapi_assistant_id", "vapi_phone_number_id", "resend_from", "twilio_account_sid",
        "twilio_from_number", "twilio_messaging_service_sid", "twilio_base_url", mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vapi_api_key", "vapi_webhook_secret", "resend_api_key", "resend_webhook_secret",
                     "twilio_auth_token", "secret_key", mode="before")
    @classmethod
    def _blank_secret_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # --- derived -----------------------------------------------------------

    def signing_key(self) -> str:
        """The key that signs tokens; generated once into ``data/`` when unset."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = DATA_DIR / "secret_key"
        if not path.exists():
            DATA_DIR.mkdir(parents=True, exist_ok=True)
            try:
                with path.open("x") as fh:
                    fh.write(secrets.token_urlsafe(48))
            except FileExistsError:
                pass  # another process of `make run` wrote it first
            path.chmod(0o600)
        return path.read_text().strip()

    def channel_live(self, channel: str) -> bool:
        """True when the live adapter for ``channel`` has what it needs."""
        return not self.missing_for(channel)

    def missing_for(self, channel: str) -> list[str]:
        """Names of the variables a live ``channel`` still needs (empty when live)."""
        need: dict[str, object] = {}
        if channel == "call":
            # assistant and phone number may also come from each agent
            need = {"VAPI_API_KEY": _secret(self.vapi_api_key)}
        elif channel == "email":
            need = {"RESEND_API_KEY": _secret(self.resend_api_key), "RESEND_FROM": self.resend_from}
        elif channel == "sms":
            need = {"TWILIO_ACCOUNT_SID": self.twilio_account_sid,
                    "TWILIO_AUTH_TOKEN": _secret(self.twilio_auth_token),
                    "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID":
                        self.twilio_from_number or self.twilio_messaging_service_sid}
        else:
            raise ValueError(f"unknown channel {channel!r}")
        return [name for name, value in need.items() if not value]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (read once)."""
    return Settings()
